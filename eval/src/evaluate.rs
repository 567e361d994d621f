//! Runs cases through the real verifier and tallies the results.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use jiff::Timestamp;
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::Minter;
use meridian_verifier::udp::UdpOrigins;
use meridian_verifier::verdict::Verdict;
use meridian_verifier::{Policy, Verifier, VerifyInput};

use crate::corpus::{Case, Class, Engine};
use crate::simulate;

/// The minter seed of the evaluation deployment.
pub const MINTER_SEED: u8 = 0x3e;

/// What the verifier said about one case.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The case's id.
    pub id: String,
    /// Its family.
    pub family: String,
    /// Its label.
    pub class: Class,
    /// Its browser engine.
    pub engine: Engine,
    /// Who it is.
    pub story: String,
    /// The verdict (`None` when the token was rejected, which no case expects).
    pub verdict: Option<Verdict>,
    /// The risk score.
    pub score: u8,
    /// Reason codes with their weights, strongest first.
    pub reasons: Vec<(String, i32)>,
    /// Error codes, when the token was rejected.
    pub errors: Vec<String>,
}

impl Outcome {
    /// Whether the verdict is the right one for the label.
    pub fn correct(&self) -> bool {
        match self.class {
            Class::Honest => self.verdict == Some(Verdict::Allow),
            Class::Evasion => matches!(self.verdict, Some(Verdict::Review | Verdict::Deny)),
        }
    }
}

/// Every policy cases may name.
pub const POLICIES: [&str; 3] = ["restrict-cn", "neutral", "restrict-cn-corporate"];

/// The policies cases name, for a deployment whose pages take their
/// challenges through the echo (`echo`: a page that skips it is held at
/// `review`, the policy's `withheld_echo`) or one without the echo.
///
/// # Errors
/// On a policy name the evaluation does not know.
pub fn policy(name: &str, echo: bool) -> Result<Policy, String> {
    let base = Policy {
        server_location: Some(server_location()),
        withheld_echo: if echo { Verdict::Review } else { Verdict::Allow },
        ..Policy::default()
    };
    let restricted = || meridian_verifier::geo::Country::parse("CN").into_iter().collect();
    match name {
        "restrict-cn" => Ok(Policy { restricted_regions: restricted(), ..base }),
        "neutral" => Ok(base),
        "restrict-cn-corporate" => Ok(Policy {
            restricted_regions: restricted(),
            trusted_networks: vec![crate::world::corporate_network()],
            ..base
        }),
        other => Err(format!("unknown policy {other:?}")),
    }
}

/// Where the evaluation's verifier runs ([`crate::latency::SERVER`]).
fn server_location() -> meridian_verifier::policy::Location {
    let (lat, lon) = crate::latency::SERVER;
    meridian_verifier::policy::Location { lat, lon }
}

/// A verifier per policy, over the evaluation's IP databases.
#[derive(Debug)]
pub struct Deployment {
    minter: Minter,
    /// Whether its pages take their challenges through the echo.
    echo: bool,
    verifiers: BTreeMap<String, Verifier>,
}

impl Deployment {
    /// The deployment every library evaluation uses, its pages taking the
    /// echo or not (see [`policy`]).
    pub fn new(echo: bool) -> Self {
        let minter = Minter::new(MINTER_SEED);
        let intel = Arc::new(crate::world::intel());
        let verifiers = POLICIES
            .into_iter()
            .filter_map(|name| {
                let store = Arc::new(MemoryReplayStore::new(100_000));
                let verifier = Verifier::new(minter.keys.clone(), policy(name, echo).ok()?, store)
                    .with_intel(intel.clone())
                    .with_udp_origins(Arc::new(UdpOrigins::new(100_000)));
                Some((name.to_owned(), verifier))
            })
            .collect();
        Self { minter, echo, verifiers }
    }

    /// The test minter.
    pub fn minter(&self) -> &Minter {
        &self.minter
    }

    /// Verifies case number `index` as if it happened at `at`, its
    /// challenge taken through the echo when the deployment's pages take it
    /// (see [`simulate::login`]).
    ///
    /// # Errors
    /// When the case cannot be simulated or names an unknown policy.
    pub async fn run(&self, case: &Case, index: usize, at: Timestamp) -> Result<Outcome, String> {
        let login = simulate::login(case, &self.minter, index, at, self.echo)?;
        let verifier = self
            .verifiers
            .get(&case.policy)
            .ok_or_else(|| format!("{}: unknown policy {}", case.id, case.policy))?;
        // The drop-in's UDP probe, beside the echo: its source as the
        // verifier's UDP port would have noted it.
        if let Some((nonce, ip)) = simulate::udp_probe(case, index, at).filter(|_| self.echo)
            && let Some(origins) = verifier.udp_origins()
        {
            let now_ms = login.now.as_millisecond();
            origins.record(nonce, ip, now_ms + 60_000, now_ms);
        }
        let input = VerifyInput {
            token: &login.token,
            remote_ip: login.remote_ip,
            accept_language: Some(&login.accept_language),
            expected_action: Some("login"),
            expected_origin: None,
            account: None,
            organization: None,
        };
        let outcome = verifier.verify(&input, login.now).await;
        Ok(Outcome {
            id: case.id.clone(),
            family: case.family.clone(),
            class: case.class,
            engine: case.engine,
            story: case.story.clone(),
            verdict: outcome.success.then_some(outcome.verdict),
            score: outcome.score,
            reasons: outcome.reasons.iter().map(|r| (r.code.as_str().to_owned(), r.weight)).collect(),
            errors: outcome.error_codes.iter().map(|c| c.as_str().to_owned()).collect(),
        })
    }
}

/// Every case through the library, each at its own instant, in a
/// deployment whose pages take the echo when `echo` (without it, every
/// challenge is plain and none is held to `withheld_echo`).
///
/// # Errors
/// The first case that cannot be run.
pub async fn library(cases: &[Case], echo: bool) -> Result<Vec<Outcome>, String> {
    let deployment = Deployment::new(echo);
    let mut outcomes = Vec::with_capacity(cases.len());
    for (index, case) in cases.iter().enumerate() {
        outcomes.push(deployment.run(case, index, case.at).await?);
    }
    Ok(outcomes)
}

/// Verdict counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// `allow`.
    pub allow: usize,
    /// `review`.
    pub review: usize,
    /// `deny`.
    pub deny: usize,
    /// Token rejected (never expected).
    pub rejected: usize,
}

impl Tally {
    fn add(&mut self, verdict: Option<Verdict>) {
        match verdict {
            Some(Verdict::Allow) => self.allow += 1,
            Some(Verdict::Review) => self.review += 1,
            Some(Verdict::Deny) => self.deny += 1,
            None => self.rejected += 1,
        }
    }

    /// Cases counted.
    pub fn total(&self) -> usize {
        self.allow + self.review + self.deny + self.rejected
    }
}

/// The figures the targets are stated in.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Honest cases by verdict.
    pub honest: Tally,
    /// Evasion cases by verdict.
    pub evasion: Tally,
    /// Per family: label and verdicts.
    pub families: BTreeMap<String, (Class, Tally)>,
    /// Per engine: honest and evasion verdicts.
    pub engines: BTreeMap<Engine, [Tally; 2]>,
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

impl Summary {
    /// Tallies outcomes.
    pub fn of(outcomes: &[Outcome]) -> Self {
        let mut summary = Self {
            honest: Tally::default(),
            evasion: Tally::default(),
            families: BTreeMap::new(),
            engines: BTreeMap::new(),
        };
        for outcome in outcomes {
            match outcome.class {
                Class::Honest => summary.honest.add(outcome.verdict),
                Class::Evasion => summary.evasion.add(outcome.verdict),
            }
            summary
                .families
                .entry(outcome.family.clone())
                .or_insert((outcome.class, Tally::default()))
                .1
                .add(outcome.verdict);
            summary.engines.entry(outcome.engine).or_default()[usize::from(outcome.class == Class::Evasion)]
                .add(outcome.verdict);
        }
        summary
    }

    /// Evasion sent to review or deny, percent.
    pub fn evasion_caught(&self) -> f64 {
        percent(self.evasion.review + self.evasion.deny, self.evasion.total())
    }

    /// Honest users denied, percent.
    pub fn honest_denied(&self) -> f64 {
        percent(self.honest.deny, self.honest.total())
    }

    /// Honest users sent to review, percent.
    pub fn honest_reviewed(&self) -> f64 {
        percent(self.honest.review, self.honest.total())
    }
}

fn engine_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Chromium => "chromium",
        Engine::Firefox => "firefox",
        Engine::Webkit => "webkit",
    }
}

fn verdict_name(verdict: Option<Verdict>) -> &'static str {
    match verdict {
        Some(Verdict::Allow) => "allow",
        Some(Verdict::Review) => "review",
        Some(Verdict::Deny) => "deny",
        None => "rejected",
    }
}

fn reasons_text(outcome: &Outcome) -> String {
    if outcome.reasons.is_empty() && outcome.errors.is_empty() {
        return "—".into();
    }
    let mut parts: Vec<String> = outcome.reasons.iter().map(|(code, w)| format!("`{code}` {w}")).collect();
    parts.extend(outcome.errors.iter().map(|e| format!("error `{e}`")));
    parts.join(", ")
}

/// The families physics cannot (or can only partly) see, each with an
/// engine-level spoof that leaves nothing in the page: a full tunnel
/// carries the browser's own connection; an exit that holds back its
/// acknowledgements stretches the verifier's round trip over the hidden
/// leg, which only a data centre's ceiling near the verifier shows.
pub const BLIND_SPOTS: [&str; 2] = ["full-tunnel-engine-spoof", "stretched-exit-engine-spoof"];

/// The library section of docs/EVALUATION.md: deterministic, so the test
/// suite can prove the committed figures are current. `outcomes` took
/// their challenges through the echo; `without` are the same cases with
/// plain challenges (a page that skips the echo), for comparison.
pub fn library_report(cases: &[Case], outcomes: &[Outcome], without: &[Outcome]) -> String {
    let summary = Summary::of(outcomes);
    let plain = Summary::of(without);
    let seen: Vec<Outcome> =
        outcomes.iter().filter(|o| !BLIND_SPOTS.contains(&o.family.as_str())).cloned().collect();
    let visible = Summary::of(&seen);
    let mut out = String::new();
    let row = |tally: &Tally| {
        let t = tally.total();
        format!(
            "| {} ({:.1} %) | {} ({:.1} %) | {} ({:.1} %) | {} |",
            tally.allow,
            percent(tally.allow, t),
            tally.review,
            percent(tally.review, t),
            tally.deny,
            percent(tally.deny, t),
            t
        )
    };
    let _ = writeln!(
        out,
        "{} cases: {} honest, {} evasion.\n",
        cases.len(),
        summary.honest.total(),
        summary.evasion.total()
    );
    let _ = writeln!(out, "### Confusion matrix\n");
    let _ = writeln!(out, "| class | allow | review | deny | cases |\n|---|---|---|---|---|");
    let _ = writeln!(out, "| honest {}", row(&summary.honest));
    let _ = writeln!(out, "| evasion {}", row(&summary.evasion));
    if summary.honest.rejected + summary.evasion.rejected > 0 {
        let _ = writeln!(
            out,
            "\n{} tokens were rejected outright (no verdict) — a defect in the evaluation.",
            summary.honest.rejected + summary.evasion.rejected
        );
    }

    let _ = writeln!(out, "\n### Targets\n");
    let _ = writeln!(out, "| target | measured | met |\n|---|---|---|");
    let yes = |met: bool| if met { "yes" } else { "**no**" };
    let caught = summary.evasion_caught();
    let denied = summary.honest_denied();
    let reviewed = summary.honest_reviewed();
    let _ =
        writeln!(out, "| evasion caught (review or deny) ≥ 97 % | {caught:.1} % | {} |", yes(caught >= 97.0));
    let _ = writeln!(out, "| honest users denied ≤ 0.5 % | {denied:.1} % | {} |", yes(denied <= 0.5));
    let _ =
        writeln!(out, "| honest users sent to review ≤ 3 % | {reviewed:.1} % | {} |", yes(reviewed <= 3.0));
    let _ = writeln!(
        out,
        "\nWithout the echo (the same cases in a deployment whose pages do not take it: plain challenges, no `withheld_echo` floor): evasion caught {:.1} %, honest denied {:.1} %, honest sent to review {:.1} %. Outside the named blind spots (`{}`): evasion caught {:.1} % ({} of {}).\n",
        plain.evasion_caught(),
        plain.honest_denied(),
        plain.honest_reviewed(),
        BLIND_SPOTS.join("`, `"),
        visible.evasion_caught(),
        visible.evasion.review + visible.evasion.deny,
        visible.evasion.total()
    );
    let _ = writeln!(out, "| anchor | measured | met |\n|---|---|---|");
    for (id, expected, label) in [
        (
            "anchor-motivating",
            Some(Verdict::Deny),
            "motivating case (Asia/Shanghai, zh-CN, SG IP, CN restricted) denied",
        ),
        ("anchor-german-in-tokyo", Some(Verdict::Allow), "German traveller in Tokyo allowed"),
    ] {
        let found = outcomes.iter().find(|o| o.id == id);
        let verdict = found.and_then(|o| o.verdict);
        let _ = writeln!(
            out,
            "| {label} | {} (score {}) | {} |",
            verdict_name(verdict),
            found.map_or(0, |o| o.score),
            yes(verdict == expected)
        );
    }

    let _ = writeln!(out, "\n### By engine\n");
    let _ = writeln!(out, "| engine | class | allow | review | deny | cases |\n|---|---|---|---|---|---|");
    for (engine, tallies) in &summary.engines {
        for (class, tally) in ["honest", "evasion"].iter().zip(tallies) {
            if tally.total() > 0 {
                let _ = writeln!(out, "| {} | {class} {}", engine_name(*engine), row(tally));
            }
        }
    }

    let _ = writeln!(out, "\n### By family\n");
    let _ = writeln!(
        out,
        "| family | class | cases | hidden leg, median | allow | review | deny | right | right without the echo |\n|---|---|---|---|---|---|---|---|---|"
    );
    let right = |class: &Class, tally: &Tally| match class {
        Class::Honest => tally.allow,
        Class::Evasion => tally.review + tally.deny,
    };
    for (family, (class, tally)) in &summary.families {
        let mut legs: Vec<u32> = cases
            .iter()
            .filter(|c| &c.family == family)
            .filter_map(|c| crate::latency::latency(c)?.hidden_leg_us())
            .collect();
        legs.sort_unstable();
        // No echo ran for a family whose echo is blocked.
        let median = legs
            .get(legs.len() / 2)
            .map_or_else(|| "—".to_owned(), |us| format!("{:.1} ms", f64::from(*us) / 1000.0));
        let before = plain.families.get(family).map_or(0.0, |(_, t)| percent(right(class, t), t.total()));
        let _ = writeln!(
            out,
            "| {family} | {} | {} | {median} | {} | {} | {} | {:.0} % | {before:.0} % |",
            if *class == Class::Honest { "honest" } else { "evasion" },
            tally.total(),
            tally.allow,
            tally.review,
            tally.deny,
            percent(right(class, tally), tally.total())
        );
    }

    // How close the verdicts are to flipping.
    let closest_caught =
        outcomes.iter().filter(|o| o.class == Class::Evasion && o.correct()).min_by_key(|o| o.score);
    let closest_allowed =
        outcomes.iter().filter(|o| o.class == Class::Honest && o.correct()).max_by_key(|o| o.score);
    let _ = writeln!(out, "\n### Margins\n");
    if let Some(o) = closest_caught {
        let _ = writeln!(
            out,
            "- Lowest-scoring evasion still caught: {} at {} ({}).",
            o.id,
            o.score,
            reasons_text(o)
        );
    }
    if let Some(o) = closest_allowed {
        let _ = writeln!(
            out,
            "- Highest-scoring honest case still allowed: {} at {} ({}).",
            o.id,
            o.score,
            reasons_text(o)
        );
    }

    let mut honest_wrong: Vec<&Outcome> =
        outcomes.iter().filter(|o| o.class == Class::Honest && !o.correct()).collect();
    // Denied before reviewed, then by score.
    honest_wrong.sort_by(|a, b| b.verdict.cmp(&a.verdict).then(b.score.cmp(&a.score)).then(a.id.cmp(&b.id)));
    let _ = writeln!(out, "\n### Worst false positives (honest, not allowed)\n");
    if honest_wrong.is_empty() {
        let _ = writeln!(out, "None.");
    } else {
        let _ = writeln!(out, "| case | verdict | score | reasons | who |\n|---|---|---|---|---|");
        for o in honest_wrong.iter().take(15) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                o.id,
                verdict_name(o.verdict),
                o.score,
                reasons_text(o),
                o.story
            );
        }
        if honest_wrong.len() > 15 {
            let _ = writeln!(out, "\n…and {} more.", honest_wrong.len() - 15);
        }
    }

    let mut missed: Vec<&Outcome> =
        outcomes.iter().filter(|o| o.class == Class::Evasion && !o.correct()).collect();
    missed.sort_by(|a, b| a.score.cmp(&b.score).then(a.id.cmp(&b.id)));
    let _ = writeln!(out, "\n### Misses (evasion allowed)\n");
    if missed.is_empty() {
        let _ = writeln!(out, "None.");
    } else {
        let _ = writeln!(out, "| case | score | reasons | who |\n|---|---|---|---|");
        for o in missed.iter().take(15) {
            let _ = writeln!(out, "| {} | {} | {} | {} |", o.id, o.score, reasons_text(o), o.story);
        }
        if missed.len() > 15 {
            let _ = writeln!(out, "\n…and {} more.", missed.len() - 15);
        }
    }

    let mut counts: BTreeMap<&str, [usize; 2]> = BTreeMap::new();
    for o in outcomes {
        for (code, _) in &o.reasons {
            counts.entry(code.as_str()).or_default()[usize::from(o.class == Class::Evasion)] += 1;
        }
    }
    let _ = writeln!(out, "\n### How often each reason fires\n");
    let _ = writeln!(out, "| reason | honest cases | evasion cases |\n|---|---|---|");
    for (code, [honest, evasion]) in counts {
        let _ = writeln!(out, "| `{code}` | {honest} | {evasion} |");
    }
    out
}
