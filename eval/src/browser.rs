//! The browser sample: cases run in real headless Chromium with the real
//! collector, verified through the HTTP API, and compared with the library
//! run of the same case at the same instant.
//!
//! Chromium runs in the case's zone (`TZ`), Intl locale (CDP) and languages
//! (`--accept-lang`), with the case's page spoof injected before any page
//! script. The demo trusts loopback as its proxy and the browser sends
//! `X-Forwarded-For`, so the challenge is issued to the case's IP; the login
//! is verified with the case's IP as `remote_ip`. Cases that need a clock
//! other than the machine's (DST transitions, skewed clocks) are not drawn.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use meridian_tests::{BrowserOptions, DemoOptions, spoof, start_browser, start_demo_configured, verify};
use serde_json::{Value, json};

use crate::corpus::{Case, Engine, Spoof};
use crate::evaluate::{self, Deployment};
use crate::simulate;
use crate::world::{NetworkKind, Origin};

/// One case run both ways.
#[derive(Debug, Clone)]
pub struct BrowserResult {
    /// The case's id.
    pub id: String,
    /// Who it is.
    pub story: String,
    /// The verdict through Chromium and the HTTP API.
    pub browser_verdict: String,
    /// Reason codes through Chromium.
    pub browser_reasons: Vec<String>,
    /// The verdict of the library run at the same instant.
    pub library_verdict: String,
    /// Reason codes of the library run.
    pub library_reasons: Vec<String>,
}

impl BrowserResult {
    /// Whether both runs reached the same verdict.
    pub fn agrees(&self) -> bool {
        self.browser_verdict == self.library_verdict
    }
}

/// Whether the demo's IP databases place `origin` the way the library's do
/// (relay lists and trusted networks are the library's alone).
fn plain(origin: &Origin) -> bool {
    matches!(origin.network, NetworkKind::Residential | NetworkKind::Hosting)
}

/// Draws `count` cases, round-robin over families and spoof kinds, from
/// the cases the machine's real clock can play in Chromium (the only
/// engine the sample drives: Firefox and WebKit cases run in the library only).
pub fn draw(cases: &[Case], count: usize) -> Vec<(usize, &Case)> {
    let mut by_family: BTreeMap<String, Vec<(usize, &Case)>> = BTreeMap::new();
    for (index, case) in cases.iter().enumerate() {
        if case.skew_s == 0
            && case.family != "dst-transition"
            && case.policy == "restrict-cn"
            && case.engine == Engine::Chromium
            && plain(&case.login_from)
            && case.challenge_from.as_ref().is_none_or(plain)
        {
            let spoof = case.spoof.as_ref().map(|s| format!("{:?}", std::mem::discriminant(s)));
            let key = format!("{}/{}", case.family, spoof.unwrap_or_default());
            by_family.entry(key).or_default().push((index, case));
        }
    }
    let mut drawn = Vec::with_capacity(count);
    let mut round = 0;
    while drawn.len() < count && by_family.values().any(|v| v.len() > round) {
        for members in by_family.values() {
            if let Some(member) = members.get(round)
                && drawn.len() < count
            {
                drawn.push(*member);
            }
        }
        round += 1;
    }
    drawn.sort_by_key(|(index, _)| *index);
    drawn
}

fn script(spoof: &Spoof) -> String {
    match spoof {
        Spoof::ZoneName { zone } => spoof::zone_name(zone),
        Spoof::Offset { minutes_west } => spoof::offset(*minutes_west),
        Spoof::Consistent { zone } => spoof::consistent(zone),
        Spoof::Hidden { zone } => spoof::hidden(zone),
        Spoof::Languages { language } => spoof::languages(language),
    }
}

fn codes(body: &Value) -> Vec<String> {
    let mut codes: Vec<String> = body["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["code"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    codes.sort();
    codes
}

/// Runs `count` drawn cases in Chromium and through the library.
///
/// # Errors
/// When a case cannot be simulated.
pub async fn sample(cases: &[Case], count: usize) -> Result<Vec<BrowserResult>, String> {
    let demo = start_demo_configured(DemoOptions {
        intel: crate::world::intel(),
        // Without `server_location`: the browser's echo runs over loopback,
        // and the case's IP is only what `X-Forwarded-For` says.
        policy: Some(meridian_verifier::Policy {
            server_location: None,
            ..evaluate::policy("restrict-cn", false)?
        }),
        trusted_proxies: vec!["127.0.0.1/32".into()],
        udp_origin: false,
        console_secret: None,
    })
    .await;
    let deployment = Deployment::new(false);
    let mut results = Vec::new();
    for (n, (index, case)) in draw(cases, count).into_iter().enumerate() {
        eprintln!("  [{}/{count}] {}: {}", n + 1, case.id, case.story);
        let (remote_ip, challenge_ip) = simulate::ips(case, index);
        let browser = start_browser(BrowserOptions {
            time_zone: Some(case.zone.clone()),
            accept_language: Some(case.languages.join(",")),
            locale: Some(case.locale.clone()),
            init_script: case.spoof.as_ref().map(script),
            ..BrowserOptions::default()
        })
        .await;
        browser.forward_for(challenge_ip).await;
        let token = browser.collect_token(&demo.origin, "login").await;
        let now = Timestamp::now();
        drop(browser);
        let (status, body) = verify(
            &demo.origin,
            json!({
                "token": token,
                "remote_ip": remote_ip.to_string(),
                "accept_language": case.accept_language,
                "expected_action": "login",
            }),
        )
        .await;
        let browser_verdict = if status == 200 && body["success"] == json!(true) {
            body["verdict"].as_str().unwrap_or("none").to_owned()
        } else {
            format!("rejected ({status}: {})", body["error_codes"])
        };
        // The browser's echo runs over loopback; the library run is compared
        // without the latency model.
        let library = deployment.run(case, index, now).await?;
        let mut library_reasons: Vec<String> = library.reasons.iter().map(|(c, _)| c.clone()).collect();
        library_reasons.sort();
        results.push(BrowserResult {
            id: case.id.clone(),
            story: case.story.clone(),
            browser_verdict,
            browser_reasons: codes(&body),
            library_verdict: library.verdict.map_or("rejected", |verdict| verdict.as_str()).to_owned(),
            library_reasons,
        });
    }
    Ok(results)
}

/// The browser section of docs/EVALUATION.md.
pub fn report(results: &[BrowserResult]) -> String {
    let agree = results.iter().filter(|r| r.agrees()).count();
    let same_reasons = results.iter().filter(|r| r.browser_reasons == r.library_reasons).count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} cases in headless Chromium {}, measured {}: verdict agrees with the library in {agree} of {}, \
         the set of reasons in {same_reasons}.\n",
        results.len(),
        std::process::Command::new("chromium")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|v| format!("({})", v.trim()))
            .unwrap_or_default(),
        Timestamp::now().strftime("%Y-%m-%d"),
        results.len()
    );
    let _ = writeln!(
        out,
        "| case | Chromium + HTTP | library | reasons (Chromium) | reasons differ |\n|---|---|---|---|---|"
    );
    for r in results {
        let differ = if r.browser_reasons == r.library_reasons {
            String::new()
        } else {
            let only_browser: Vec<&str> = r
                .browser_reasons
                .iter()
                .filter(|c| !r.library_reasons.contains(c))
                .map(String::as_str)
                .collect();
            let only_library: Vec<&str> = r
                .library_reasons
                .iter()
                .filter(|c| !r.browser_reasons.contains(c))
                .map(String::as_str)
                .collect();
            format!("browser only: {}; library only: {}", only_browser.join(" "), only_library.join(" "))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {differ} |",
            r.id,
            r.browser_verdict,
            r.library_verdict,
            if r.browser_reasons.is_empty() { "—".to_owned() } else { r.browser_reasons.join(", ") }
        );
    }
    out
}
