//! Wire test vectors: `tests/vectors/*.json` at the repository root, each a
//! deployment (JWKS, challenge key, policy), requests as a backend sends
//! them to `POST /v1/verify`, the instant they are verified at and what the
//! verifier answers. tests/vectors/README.md describes the format for other
//! implementations.
//!
//! The files are data, made by the seeded generator below: same code, same
//! bytes. One test regenerates them in memory and compares them with the
//! committed files (`MERIDIAN_UPDATE_VECTORS=1` rewrites them instead);
//! another replays the committed files through [`Verifier::verify`], each
//! with a fresh replay store, and checks every answer.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use meridian_protocol::jwk::Jwks;
use meridian_protocol::{Claims, base64url_encode, jws};
use meridian_verifier::geo::IpIntel;
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::{self, Minter};
use meridian_verifier::verdict::{ReasonCode, Verdict};
use meridian_verifier::{
    ChallengeKey, ChallengeKeys, CollectorKeys, ErrorCode, Keys, Policy, Verifier, VerifyInput, VerifyOutcome,
};
use serde::{Deserialize, Serialize};

/// Set to `1` to rewrite the committed vectors from the generator.
const UPDATE_ENV: &str = "MERIDIAN_UPDATE_VECTORS";

fn updating() -> bool {
    std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1")
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

// ---------------------------------------------------------------------------
// The format (tests/vectors/README.md).

/// One vector file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    /// The file's name without `.json`.
    name: String,
    /// What it shows, for a person.
    description: String,
    /// The verifier's configuration.
    deployment: Deployment,
    /// Requests verified in order against one replay store.
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deployment {
    /// The collector public keys, as `/.well-known/jwks.json` serves them.
    jwks: Jwks,
    /// Challenge MAC keys as `meridian serve` reads them: `ID:base64url`.
    challenge_key: Vec<String>,
    /// Challenge lifetime, seconds.
    challenge_lifetime_s: u32,
    /// The policy keys that differ from the defaults.
    policy: PolicyKeys,
    /// Which IP databases answer: `testkit` or `none`.
    ip_data: IpData,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyKeys {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    restricted_regions: Vec<meridian_verifier::geo::Country>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum IpData {
    /// `testkit::test_intel()`: documentation ranges, in memory.
    Testkit,
    /// No database: every country is unknown.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// The verification instant, Unix ms (the `now` the verifier is given).
    now_ms: i64,
    /// The challenge inside the token, as `GET /v1/challenge` issued it
    /// (informational: the token carries it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    challenge: Option<String>,
    /// The body of `POST /v1/verify`.
    request: Request,
    /// What the verifier answers.
    expected: Expected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    token: String,
    remote_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    accept_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expected_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expected_origin: Option<String>,
}

/// The parts of the answer a vector pins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    success: bool,
    verdict: String,
    score: u8,
    /// `reasons[].code`, in the answer's order.
    reasons: Vec<String>,
    error_codes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<ExpectedNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clock: Option<ExpectedClock>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedNetwork {
    ip: String,
    country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hosting: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    relay: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedClock {
    skew_ms: i64,
    uncertainty_ms: i64,
}

impl Expected {
    fn of(outcome: &VerifyOutcome) -> Self {
        Self {
            success: outcome.success,
            verdict: outcome.verdict.as_str().to_owned(),
            score: outcome.score,
            reasons: outcome.reasons.iter().map(|r| r.code.as_str().to_owned()).collect(),
            error_codes: outcome.error_codes.iter().map(|c| c.as_str().to_owned()).collect(),
            network: outcome.network.as_ref().map(|n| ExpectedNetwork {
                ip: n.ip.to_string(),
                country: n.country.clone(),
                asn: n.asn,
                hosting: n.hosting,
                relay: n.relay.and_then(|r| serde_json::to_value(r).ok()?.as_str().map(str::to_owned)),
            }),
            clock: outcome
                .clock
                .map(|c| ExpectedClock { skew_ms: c.skew_ms, uncertainty_ms: c.uncertainty_ms }),
        }
    }
}

// ---------------------------------------------------------------------------
// Replay: a vector's deployment built from its data alone.

fn verifier_of(deployment: &Deployment) -> Verifier {
    let collector = CollectorKeys::from_jwks(deployment.jwks.clone()).unwrap();
    let challenge_keys = deployment
        .challenge_key
        .iter()
        .map(|entry| {
            let (id, secret) = entry.split_once(':').unwrap();
            ChallengeKey::from_base64url(id.parse().unwrap(), secret).unwrap()
        })
        .collect();
    let challenge = ChallengeKeys::new(challenge_keys, deployment.challenge_lifetime_s).unwrap();
    let policy =
        Policy { restricted_regions: deployment.policy.restricted_regions.clone(), ..Policy::default() };
    let intel = match deployment.ip_data {
        IpData::Testkit => testkit::test_intel(),
        IpData::None => IpIntel::none(),
    };
    Verifier::new(Keys { collector, challenge }, policy, Arc::new(MemoryReplayStore::new(64)))
        .with_intel(Arc::new(intel))
}

/// What the verifier answers to each step, in order.
async fn answers(vector: &Vector) -> Vec<Expected> {
    let verifier = verifier_of(&vector.deployment);
    let mut answers = Vec::new();
    for step in &vector.steps {
        let request = &step.request;
        let input = VerifyInput {
            token: &request.token,
            remote_ip: request.remote_ip.parse().unwrap(),
            accept_language: request.accept_language.as_deref(),
            expected_action: request.expected_action.as_deref(),
            expected_origin: request.expected_origin.as_deref(),
            account: None,
            organization: None,
        };
        let now = Timestamp::from_millisecond(step.now_ms).unwrap();
        answers.push(Expected::of(&verifier.verify(&input, now).await));
    }
    answers
}

fn committed() -> BTreeMap<String, String> {
    std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn committed_vectors_replay() {
    if updating() {
        eprintln!("{UPDATE_ENV}=1: the files are being rewritten; run the tests again to replay them");
        return;
    }
    let files = committed();
    assert!(files.len() >= 20, "{} vectors in {}", files.len(), vectors_dir().display());
    let mut failures = Vec::new();
    for (file, text) in &files {
        let vector: Vector =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{file} is not a vector: {e}"));
        assert_eq!(format!("{}.json", vector.name), *file, "a vector's name is its file's");
        assert!(!vector.steps.is_empty(), "{file} has no steps");
        for (index, (step, answer)) in vector.steps.iter().zip(answers(&vector).await).enumerate() {
            if step.expected != answer {
                failures.push(format!(
                    "{file} step {index}:\n  expected {:?}\n  answered {answer:?}",
                    step.expected
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn vectors_are_what_the_generator_makes() {
    let generated: BTreeMap<String, String> =
        generate().await.iter().map(|v| (format!("{}.json", v.name), render(v))).collect();
    let dir = vectors_dir();
    if updating() {
        for stale in committed().keys().filter(|name| !generated.contains_key(*name)) {
            std::fs::remove_file(dir.join(stale)).unwrap();
        }
        for (name, text) in &generated {
            std::fs::write(dir.join(name), text).unwrap();
        }
        return;
    }
    let committed = committed();
    let mut differences: Vec<String> = generated
        .iter()
        .filter(|(name, text)| committed.get(*name) != Some(text))
        .map(|(name, _)| {
            if committed.contains_key(name) {
                format!("{name} differs")
            } else {
                format!("{name} is missing")
            }
        })
        .collect();
    differences.extend(
        committed
            .keys()
            .filter(|name| !generated.contains_key(*name))
            .map(|name| format!("{name} is not generated")),
    );
    assert!(
        differences.is_empty(),
        "tests/vectors is not what the generator makes ({}). If the change is intended, regenerate with \
         `{UPDATE_ENV}=1 cargo test -p meridian-verifier --test vectors` and review the diff.",
        differences.join(", ")
    );
}

#[tokio::test]
async fn the_generator_is_deterministic() {
    let first: Vec<String> = generate().await.iter().map(render).collect();
    let second: Vec<String> = generate().await.iter().map(render).collect();
    assert_eq!(first, second);
}

fn render(vector: &Vector) -> String {
    let mut text = serde_json::to_string_pretty(vector).unwrap();
    text.push('\n');
    text
}

// ---------------------------------------------------------------------------
// The generator.

/// The deployment's seed (`Minter::new`): the fuzz target's deployment, so
/// these tokens seed fuzz/corpus/verify_token.
const SEED: u8 = 1;
/// A collector key the deployment does not know.
const STRANGER_SEED: u8 = 2;
/// 2027-01-15T08:00:00Z, when most challenges are issued (and the instant
/// the fuzz target verifies at, give or take 100 ms).
const T0: i64 = 1_800_000_000_000;
/// Tokens are verified this long after their challenge was issued.
const LATER: i64 = 1_500;
const ORIGIN: &str = "https://shop.example";
const ACTION: &str = "login";

/// Documentation addresses of `testkit::test_intel()`.
const DE: &str = "192.0.2.200";
const DE_OTHER: &str = "192.0.2.201";
const JP: &str = "192.0.2.70";
const SG: &str = "192.0.2.10";
const US: &str = "192.0.2.130";
const US_HOSTING: &str = "198.51.100.70";
const CN: &str = "198.51.100.9";
const IN: &str = "198.51.100.130";
const FR: &str = "2001:db8:3::9";
const TOR: &str = "2001:db8:7::1";

/// What a vector's step is there to show; the generator refuses to write
/// a vector whose answer does not show it.
#[derive(Debug, Clone, Copy)]
enum Intent {
    /// The token is accepted: `allow`, score 0, no reasons.
    Clean,
    /// The token is accepted with this verdict (any, when `None`) and at
    /// least these reasons.
    Accepted(Option<Verdict>, &'static [ReasonCode]),
    /// The token is rejected with this error.
    Rejected(ErrorCode),
}

/// A vector before its answers are known.
struct Draft {
    name: &'static str,
    description: &'static str,
    restricted: &'static [&'static str],
    ip_data: IpData,
    steps: Vec<(Step, Intent)>,
}

impl Draft {
    fn new(name: &'static str, description: &'static str, step: Step, intent: Intent) -> Self {
        Self { name, description, restricted: &["CN"], ip_data: IpData::Testkit, steps: vec![(step, intent)] }
    }

    /// Another request after the first, against the same replay store.
    fn then(mut self, step: Step, intent: Intent) -> Self {
        self.steps.push((step, intent));
        self
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn nonce(tag: u8) -> [u8; 16] {
    let mut nonce = [tag; 16];
    nonce[0] = 0x4d;
    nonce
}

/// An honest browser's claims from a challenge issued to `from` at `at_ms`.
fn browser(
    minter: &Minter,
    from: &str,
    at_ms: i64,
    tag: u8,
    zone: &str,
    locale: &str,
    languages: &[&str],
) -> Claims {
    let mut claims = minter.honest_claims(ip(from), at_ms, nonce(tag), zone, locale, languages).unwrap();
    claims.origin = ORIGIN.into();
    claims
}

/// A Berlin browser, the starting point of the token-level vectors.
fn berlin(minter: &Minter, tag: u8) -> Claims {
    browser(minter, DE, T0, tag, "Europe/Berlin", "de-DE", &["de-DE", "de", "en"])
}

/// A login from `remote_ip` with `token`, verified at `now_ms`, naming the
/// expected origin and action.
fn step(now_ms: i64, token: String, remote_ip: &str, accept_language: Option<&str>) -> Step {
    let challenge = token
        .split('.')
        .nth(1)
        .and_then(meridian_protocol::base64url_decode)
        .and_then(|payload| Claims::from_json(&payload).ok())
        .map(|claims| claims.challenge);
    Step {
        now_ms,
        challenge,
        request: Request {
            token,
            remote_ip: remote_ip.into(),
            accept_language: accept_language.map(str::to_owned),
            expected_action: Some(ACTION.into()),
            expected_origin: Some(ORIGIN.into()),
        },
        expected: Expected::default(),
    }
}

fn drafts() -> Vec<Draft> {
    use ErrorCode as E;
    use Intent::{Accepted, Clean, Rejected};
    use ReasonCode as R;

    let minter = Minter::new(SEED);
    let stranger = Minter::new(STRANGER_SEED);
    let sign = |claims: &Claims| minter.sign(claims);
    let now = T0 + LATER;
    let german = Some("de-DE,de;q=0.9,en;q=0.8");
    let accepted = |verdict: Verdict, reasons: &'static [ReasonCode]| Accepted(Some(verdict), reasons);

    let mut drafts = vec![
        Draft::new(
            "honest-allow",
            "A browser in Berlin (de-DE) from a German IP: nothing is off.",
            step(now, sign(&berlin(&minter, 1)), DE, german),
            Clean,
        ),
        Draft::new(
            "traveller-allow",
            "A German traveller in Tokyo whose zone follows the trip, from a Japanese IP: the locale alone is not evidence.",
            step(
                now,
                sign(&browser(&minter, JP, T0, 2, "Asia/Tokyo", "de-DE", &["de-DE", "de"])),
                JP,
                Some("de-DE,de;q=0.9"),
            ),
            accepted(Verdict::Allow, &[]),
        ),
        Draft::new(
            "restricted-region-claim-deny",
            "The motivating case: Asia/Shanghai and zh-CN behind a Singapore IP while CN is restricted. \
             Both sides are UTC+08:00, so only the zone's country shows it.",
            step(
                now,
                sign(&browser(&minter, SG, T0, 3, "Asia/Shanghai", "zh-CN", &["zh-CN", "zh"])),
                SG,
                Some("zh-CN,zh;q=0.9"),
            ),
            accepted(Verdict::Deny, &[R::RestrictedRegionClaim, R::TzCountryMismatch]),
        ),
        Draft::new(
            "restricted-region-ip-deny",
            "A login from an IP in a restricted region.",
            step(now, sign(&browser(&minter, CN, T0, 4, "Asia/Shanghai", "zh-CN", &["zh-CN"])), CN, None),
            accepted(Verdict::Deny, &[R::RestrictedRegionIp]),
        ),
        Draft::new(
            "privacy-browser-review",
            "A privacy browser (resistFingerprinting: UTC in the page, Atlantic/Reykjavik in a worker, Intl en-US) \
             of a French reader from a French IPv6 address: the zone is withheld, not claimed, and with regions \
             restricted the policy's withheld_zone (review) decides.",
            step(
                now,
                sign(&{
                    let mut claims =
                        minter.privacy_browser_claims(ip(FR), T0, nonce(5), "UTC", &["fr-FR", "fr", "en-US"]);
                    claims.origin = ORIGIN.into();
                    claims
                }),
                FR,
                Some("fr-FR,fr;q=0.9,en-US;q=0.8"),
            ),
            accepted(Verdict::Review, &[R::PrivacyBrowser]),
        ),
        Draft::new(
            "hosting-ip",
            "A New York browser from a hosting network's address: reported, not enough to act on alone.",
            step(
                now,
                sign(&browser(&minter, US_HOSTING, T0, 6, "America/New_York", "en-US", &["en-US", "en"])),
                US_HOSTING,
                Some("en-US,en;q=0.9"),
            ),
            accepted(Verdict::Allow, &[R::HostingIp]),
        ),
        Draft::new(
            "tor-exit-review",
            "A Berlin browser from a Tor exit: the network says nothing about where the user is.",
            step(now, sign(&browser(&minter, TOR, T0, 7, "Europe/Berlin", "de-DE", &["de-DE"])), TOR, None),
            accepted(Verdict::Review, &[R::TorExit]),
        ),
        Draft::new(
            "half-hour-zone-legacy-name",
            "Asia/Calcutta, the name Chromium reports for Asia/Kolkata (UTC+05:30), from an Indian IP.",
            step(
                now,
                sign(&browser(&minter, IN, T0, 8, "Asia/Calcutta", "en-IN", &["en-IN", "hi"])),
                IN,
                Some("en-IN,en;q=0.9,hi;q=0.8"),
            ),
            Clean,
        ),
        Draft::new(
            "dst-edge-allow",
            "New York one minute after the 2027 spring-forward (07:00 UTC): UTC−04:00 now, −05:00 on 1 January, \
             −04:00 on 1 July.",
            {
                let at = "2027-03-14T07:01:00Z".parse::<Timestamp>().unwrap().as_millisecond();
                let claims = browser(&minter, US, at, 9, "America/New_York", "en-US", &["en-US"]);
                step(at + LATER, sign(&claims), US, None)
            },
            Clean,
        ),
        Draft::new(
            "zone-spoof-inconsistent",
            "A Shanghai machine whose page renamed its zone to America/New_York without changing the offsets \
             (+08:00), behind a US IP: the name disagrees with the offsets and resolvedOptions is not native.",
            step(
                now,
                sign(&{
                    let mut claims = browser(&minter, US, T0, 10, "Asia/Shanghai", "en-US", &["en-US"]);
                    claims.time_zone.zone = "America/New_York".into();
                    if let Some(integrity) = claims.integrity.as_mut() {
                        integrity.non_native = vec!["Intl.DateTimeFormat.prototype.resolvedOptions".into()];
                    }
                    claims
                }),
                US,
                Some("en-US"),
            ),
            Accepted(None, &[R::TzInternalInconsistent, R::TamperedApi]),
        ),
        Draft::new(
            "ip-changed",
            "The challenge was fetched from one German address and the login comes from another.",
            step(
                now,
                sign(&browser(&minter, DE, T0, 11, "Europe/Berlin", "de-DE", &["de-DE"])),
                DE_OTHER,
                None,
            ),
            Accepted(None, &[R::IpChanged]),
        ),
        Draft::new(
            "clock-skew",
            "A Berlin browser whose clock is ten minutes fast: the skew interval is [599 997, 600 003] ms.",
            step(
                now,
                sign(&{
                    let mut claims = minter.claims(ip(DE), T0, nonce(12));
                    claims.origin = ORIGIN.into();
                    claims.clock.received_at_ms += 600_000;
                    claims.signed_at_ms += 600_000;
                    testkit::report_honestly(&mut claims, "Europe/Berlin", "de-DE", &["de-DE"]).unwrap();
                    claims
                }),
                DE,
                None,
            ),
            Accepted(None, &[R::ClockSkew]),
        ),
        Draft::new(
            "automation",
            "A Berlin browser driven by WebDriver (navigator.webdriver is true).",
            step(
                now,
                sign(&{
                    let mut claims = berlin(&minter, 13);
                    if let Some(integrity) = claims.integrity.as_mut() {
                        integrity.webdriver = true;
                    }
                    claims
                }),
                DE,
                german,
            ),
            Accepted(None, &[R::Automation]),
        ),
        Draft {
            ip_data: IpData::None,
            ..Draft::new(
                "no-ip-data",
                "The honest Berlin browser on a verifier without IP databases: the country is unknown and \
                 nothing breaks.",
                step(now, sign(&berlin(&minter, 14)), DE, german),
                Accepted(None, &[]),
            )
        },
        // Tokens that are not acceptable.
        Draft::new(
            "missing-token",
            "An empty token field.",
            step(now, String::new(), DE, None),
            Rejected(E::MissingInputToken),
        ),
        Draft::new(
            "collector-error-marker",
            "The drop-in's marker for a browser that could not run WebAssembly: not a token, and the policy's \
             collector_error (review) decides the verdict.",
            step(now, "meridian-error:wasm-unavailable".into(), DE, None),
            Rejected(E::CollectorError),
        ),
        Draft::new(
            "malformed-not-jws",
            "Not three dot-separated parts.",
            step(now, "abc".into(), DE, None),
            Rejected(E::MalformedToken),
        ),
        Draft::new(
            "malformed-claims",
            "A correctly signed payload that is not Meridian claims.",
            step(now, jws::sign(br#"{"v":1}"#, &minter.signing_key, &minter.kid()), DE, None),
            Rejected(E::MalformedToken),
        ),
        Draft::new(
            "unsupported-claims-version",
            "Correctly signed claims of layout version 2.",
            step(
                now,
                sign(&{
                    let mut claims = berlin(&minter, 15);
                    claims.version = 2;
                    claims
                }),
                DE,
                None,
            ),
            Rejected(E::MalformedToken),
        ),
        Draft::new(
            "implausible-clock",
            "A correctly signed token whose round trip (one hour) cannot fit in the challenge's two minutes.",
            step(
                now,
                sign(&{
                    let mut claims = berlin(&minter, 16);
                    claims.clock.round_trip_ms = 3_600_000;
                    claims
                }),
                DE,
                None,
            ),
            Rejected(E::MalformedToken),
        ),
        Draft::new(
            "too-large",
            "A correctly signed token over 4 KiB (hundreds of languages); refused before it is parsed.",
            step(
                now,
                sign(&{
                    let mut claims = berlin(&minter, 17);
                    claims.locale.languages = (0..400).map(|i| format!("x-{i:03}")).collect();
                    claims
                }),
                DE,
                None,
            ),
            Rejected(E::MalformedToken),
        ),
        Draft::new(
            "alg-none",
            "The honest token's payload under `alg: none` with no signature.",
            step(
                now,
                with_header(&sign(&berlin(&minter, 18)), br#"{"alg":"none","typ":"JWT"}"#, ""),
                DE,
                None,
            ),
            Rejected(E::UnsupportedAlgorithm),
        ),
        Draft::new(
            "alg-hs256",
            "The honest token's payload under `alg: HS256` with a 32-byte MAC.",
            step(
                now,
                with_header(
                    &sign(&berlin(&minter, 19)),
                    br#"{"alg":"HS256","typ":"JWT"}"#,
                    &base64url_encode(&[7; 32]),
                ),
                DE,
                None,
            ),
            Rejected(E::UnsupportedAlgorithm),
        ),
        Draft::new(
            "unknown-kid",
            "Signed by a collector key the deployment does not publish, named by its own kid.",
            step(now, stranger.sign(&berlin(&minter, 20)), DE, None),
            Rejected(E::UnknownKey),
        ),
        Draft::new(
            "bad-signature",
            "The honest token with one character of its signature changed.",
            step(now, edit_signature(&sign(&berlin(&minter, 21))), DE, None),
            Rejected(E::BadSignature),
        ),
        Draft::new(
            "forged-kid",
            "Signed by a stranger's key but naming the deployment's kid.",
            step(
                now,
                jws::sign(berlin(&minter, 22).to_json().as_bytes(), &stranger.signing_key, &minter.kid()),
                DE,
                None,
            ),
            Rejected(E::BadSignature),
        ),
        Draft::new(
            "bad-challenge-mac",
            "Correctly signed claims around a challenge sealed by another deployment's MAC key.",
            step(
                now,
                sign(&{
                    let mut claims = berlin(&minter, 23);
                    claims.challenge =
                        stranger.keys.challenge.issue_with_nonce(ip(DE), T0, nonce(23)).challenge;
                    claims
                }),
                DE,
                None,
            ),
            Rejected(E::BadChallenge),
        ),
        Draft::new(
            "challenge-from-the-future",
            "A challenge issued a minute after the verification instant, beyond the 5 s leeway.",
            step(
                now,
                sign(&browser(&minter, DE, T0 + 60_000, 24, "Europe/Berlin", "de-DE", &["de-DE"])),
                DE,
                None,
            ),
            Rejected(E::BadChallenge),
        ),
        Draft::new(
            "expired",
            "The honest token verified three minutes after its challenge was issued (lifetime 120 s).",
            step(T0 + 180_000, sign(&berlin(&minter, 25)), DE, None),
            Rejected(E::Expired),
        ),
        Draft::new(
            "origin-mismatch",
            "The backend expects another origin than the one the token was collected on.",
            {
                let mut step = step(now, sign(&berlin(&minter, 26)), DE, None);
                step.request.expected_origin = Some("https://attacker.example".into());
                step
            },
            Rejected(E::OriginMismatch),
        ),
        Draft::new(
            "action-mismatch",
            "The backend expects another action than the one the token was collected for.",
            {
                let mut step = step(now, sign(&berlin(&minter, 27)), DE, None);
                step.request.expected_action = Some("password-reset".into());
                step
            },
            Rejected(E::ActionMismatch),
        ),
    ];
    let token = sign(&berlin(&minter, 28));
    drafts.push(
        Draft::new(
            "replayed",
            "The same token twice against one replay store: accepted once, then refused.",
            step(now, token.clone(), DE, german),
            Clean,
        )
        .then(step(now + 1_000, token, DE, german), Rejected(E::Replayed)),
    );
    drafts
}

/// `token`'s payload under another protected header and signature.
fn with_header(token: &str, header: &[u8], signature: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    format!("{}.{payload}.{signature}", base64url_encode(header))
}

/// `token` with one character in the middle of its signature changed.
fn edit_signature(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut signature = signature.as_bytes().to_vec();
    signature[20] = if signature[20] == b'A' { b'B' } else { b'A' };
    format!("{signed}.{}", String::from_utf8(signature).unwrap())
}

/// The vectors, each step answered by the verifier and checked against
/// what it is there to show.
async fn generate() -> Vec<Vector> {
    let minter = Minter::new(SEED);
    let mut vectors = Vec::new();
    for draft in drafts() {
        let (steps, intents): (Vec<Step>, Vec<Intent>) = draft.steps.into_iter().unzip();
        let mut vector = Vector {
            name: draft.name.into(),
            description: draft.description.into(),
            deployment: Deployment {
                jwks: minter.keys.collector.jwks().clone(),
                challenge_key: vec![minter.challenge_key_config(SEED)],
                challenge_lifetime_s: minter.keys.challenge.lifetime_s(),
                policy: PolicyKeys {
                    restricted_regions: draft
                        .restricted
                        .iter()
                        .filter_map(|c| meridian_verifier::geo::Country::parse(c))
                        .collect(),
                },
                ip_data: draft.ip_data,
            },
            steps,
        };
        let answers = answers(&vector).await;
        for ((step, answer), intent) in vector.steps.iter_mut().zip(answers).zip(intents) {
            check_intent(draft.name, &answer, intent);
            step.expected = answer;
        }
        vectors.push(vector);
    }
    vectors
}

fn check_intent(name: &str, answer: &Expected, intent: Intent) {
    match intent {
        Intent::Accepted(verdict, reasons) => {
            assert!(answer.success, "{name}: expected acceptance, got {answer:?}");
            if let Some(verdict) = verdict {
                assert_eq!(answer.verdict, verdict.as_str(), "{name}: {answer:?}");
            }
            for reason in reasons {
                assert!(
                    answer.reasons.iter().any(|r| r == reason.as_str()),
                    "{name}: no {reason:?} in {answer:?}"
                );
            }
        }
        Intent::Clean => {
            assert!(
                answer.success && answer.verdict == "allow" && answer.score == 0 && answer.reasons.is_empty(),
                "{name}: expected a clean allow, got {answer:?}"
            );
        }
        Intent::Rejected(code) => {
            assert!(!answer.success, "{name}: expected rejection, got {answer:?}");
            assert_eq!(answer.error_codes, [code.as_str()], "{name}: {answer:?}");
        }
    }
}
