//! The motivating scenarios, through the whole verifier (token, replay,
//! IP databases, checks, policy) over small databases written here, in
//! documentation address ranges (RFC 5737, RFC 3849).
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;
use meridian_protocol::Claims;
use meridian_verifier::geo::IpIntel;
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::testkit::Minter;
use meridian_verifier::verdict::{ReasonCode, Verdict};
use meridian_verifier::{Policy, Verifier, VerifyInput, VerifyOutcome};

fn test_intel() -> IpIntel {
    meridian_verifier::testkit::test_intel()
}

/// Claims as an honest browser in `zone` makes them at `at`.
fn browser(
    minter: &Minter,
    ip: IpAddr,
    at: Timestamp,
    zone: &str,
    locale: &str,
    languages: &[&str],
) -> Claims {
    minter.honest_claims(ip, at.as_millisecond(), nonce(at, zone), zone, locale, languages).unwrap()
}

fn nonce(at: Timestamp, zone: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&at.as_millisecond().to_le_bytes());
    for (i, b) in zone.bytes().enumerate() {
        n[8 + i % 8] ^= b;
    }
    n
}

struct Scenario {
    name: &'static str,
    zone: &'static str,
    locale: &'static str,
    languages: &'static [&'static str],
    ip: &'static str,
    at: &'static str,
    accept_language: Option<&'static str>,
    policy: fn() -> Policy,
    verdict: Verdict,
    must: &'static [ReasonCode],
    must_not: &'static [ReasonCode],
}

fn neutral() -> Policy {
    Policy::default()
}

fn restrict_cn() -> Policy {
    Policy {
        restricted_regions: meridian_verifier::geo::Country::parse("CN").into_iter().collect(),
        ..Policy::default()
    }
}

const ALL_TZ: &[ReasonCode] =
    &[ReasonCode::TzOffsetMismatch, ReasonCode::TzCountryMismatch, ReasonCode::TzInternalInconsistent];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "local user: zone, locale and IP agree",
        zone: "Europe/Berlin",
        locale: "de-DE",
        languages: &["de-DE", "de", "en"],
        ip: "192.0.2.200",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("de-DE,de;q=0.9,en;q=0.8"),
        policy: restrict_cn,
        verdict: Verdict::Allow,
        must: &[],
        must_not: &[
            ReasonCode::TzOffsetMismatch,
            ReasonCode::TzCountryMismatch,
            ReasonCode::LocaleCountryMismatch,
        ],
    },
    Scenario {
        name: "German traveller in Tokyo with the local zone",
        zone: "Asia/Tokyo",
        locale: "de-DE",
        languages: &["de-DE", "de"],
        ip: "192.0.2.70",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("de-DE,de;q=0.9"),
        policy: restrict_cn,
        verdict: Verdict::Allow,
        must: &[],
        must_not: ALL_TZ,
    },
    Scenario {
        name: "Shanghai browser behind a Singapore IP, CN restricted",
        zone: "Asia/Shanghai",
        locale: "zh-CN",
        languages: &["zh-CN", "zh"],
        ip: "192.0.2.10",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("zh-CN,zh;q=0.9"),
        policy: restrict_cn,
        verdict: Verdict::Deny,
        must: &[ReasonCode::RestrictedRegionClaim, ReasonCode::TzCountryMismatch],
        // Same offset on both sides: the offset check alone cannot see it.
        must_not: &[ReasonCode::TzOffsetMismatch, ReasonCode::TzInternalInconsistent],
    },
    Scenario {
        name: "Shanghai browser behind a Singapore IPv6, CN restricted",
        zone: "Asia/Shanghai",
        locale: "zh-CN",
        languages: &["zh-CN"],
        ip: "2001:db8:2::77",
        at: "2027-01-15T09:00:00Z",
        accept_language: None,
        policy: restrict_cn,
        verdict: Verdict::Deny,
        must: &[ReasonCode::RestrictedRegionClaim, ReasonCode::TzCountryMismatch],
        must_not: &[ReasonCode::TzOffsetMismatch],
    },
    Scenario {
        name: "the same browser without a restricting policy is only a mismatch",
        zone: "Asia/Shanghai",
        locale: "zh-CN",
        languages: &["zh-CN", "zh"],
        ip: "192.0.2.10",
        at: "2027-06-15T09:00:00Z",
        accept_language: None,
        policy: neutral,
        verdict: Verdict::Allow,
        must: &[ReasonCode::TzCountryMismatch],
        must_not: &[ReasonCode::RestrictedRegionClaim],
    },
    Scenario {
        name: "Berlin browser behind a US IP",
        zone: "Europe/Berlin",
        locale: "de-DE",
        languages: &["de-DE", "de"],
        ip: "192.0.2.130",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("de-DE,de;q=0.9"),
        policy: restrict_cn,
        // A traveller with a home clock looks the same: reported, not
        // enough for review on its own (docs/EVALUATION.md).
        verdict: Verdict::Allow,
        must: &[ReasonCode::TzOffsetMismatch, ReasonCode::TzCountryMismatch],
        must_not: &[ReasonCode::TzInternalInconsistent],
    },
    Scenario {
        name: "restricted-region IP",
        zone: "Asia/Shanghai",
        locale: "zh-CN",
        languages: &["zh-CN"],
        ip: "198.51.100.9",
        at: "2027-06-15T09:00:00Z",
        accept_language: None,
        policy: restrict_cn,
        verdict: Verdict::Deny,
        must: &[ReasonCode::RestrictedRegionIp],
        must_not: &[ReasonCode::RestrictedRegionClaim, ReasonCode::TzCountryMismatch],
    },
    Scenario {
        name: "hosting-ASN IP",
        zone: "America/New_York",
        locale: "en-US",
        languages: &["en-US", "en"],
        ip: "198.51.100.70",
        at: "2027-06-15T15:00:00Z",
        accept_language: Some("en-US,en;q=0.9"),
        policy: neutral,
        verdict: Verdict::Allow,
        must: &[ReasonCode::HostingIp],
        must_not: ALL_TZ,
    },
    Scenario {
        name: "DST edge: New York one minute after spring-forward",
        zone: "America/New_York",
        locale: "en-US",
        languages: &["en-US"],
        ip: "192.0.2.140",
        at: "2027-03-14T07:01:00Z",
        accept_language: None,
        policy: neutral,
        verdict: Verdict::Allow,
        must: &[],
        must_not: ALL_TZ,
    },
    Scenario {
        name: "DST edge: New York one minute before spring-forward",
        zone: "America/New_York",
        locale: "en-US",
        languages: &["en-US"],
        ip: "192.0.2.140",
        at: "2027-03-14T06:59:00Z",
        accept_language: None,
        policy: neutral,
        verdict: Verdict::Allow,
        must: &[],
        must_not: ALL_TZ,
    },
    Scenario {
        name: "DST edge: Berlin in the week of fall-back",
        zone: "Europe/Berlin",
        locale: "de-DE",
        languages: &["de-DE"],
        ip: "2001:db8:1::5",
        at: "2027-10-31T01:00:30Z",
        accept_language: None,
        policy: neutral,
        verdict: Verdict::Allow,
        must: &[],
        must_not: ALL_TZ,
    },
    Scenario {
        name: "half-hour zone under its legacy browser name",
        zone: "Asia/Calcutta",
        locale: "en-IN",
        languages: &["en-IN", "hi"],
        ip: "198.51.100.130",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("en-IN,en;q=0.9,hi;q=0.8"),
        policy: restrict_cn,
        verdict: Verdict::Allow,
        must: &[],
        must_not: &[
            ReasonCode::TzOffsetMismatch,
            ReasonCode::TzCountryMismatch,
            ReasonCode::LocaleCountryMismatch,
        ],
    },
    Scenario {
        name: "multilingual country: French speaker in Zurich",
        zone: "Europe/Zurich",
        locale: "fr-CH",
        languages: &["fr-CH", "fr", "de"],
        ip: "203.0.113.20",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("fr-CH,fr;q=0.9"),
        policy: restrict_cn,
        verdict: Verdict::Allow,
        must: &[],
        must_not: &[ReasonCode::TzCountryMismatch, ReasonCode::LocaleCountryMismatch],
    },
    Scenario {
        name: "page says English, the network stack says Chinese",
        zone: "Asia/Singapore",
        locale: "en-SG",
        languages: &["en-US"],
        ip: "192.0.2.11",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("zh-CN,zh;q=0.9"),
        policy: restrict_cn,
        verdict: Verdict::Allow,
        must: &[ReasonCode::AcceptLanguageMismatch],
        must_not: &[ReasonCode::TzCountryMismatch],
    },
    Scenario {
        name: "iPhone in Tokyo behind iCloud Private Relay",
        zone: "Asia/Tokyo",
        locale: "ja-JP",
        languages: &["ja-JP"],
        ip: "2001:db8:6::9",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("ja-JP"),
        policy: restrict_cn,
        verdict: Verdict::Allow,
        must: &[ReasonCode::PrivacyRelay],
        must_not: &[ReasonCode::HostingIp, ReasonCode::TzCountryMismatch, ReasonCode::TzOffsetMismatch],
    },
    Scenario {
        name: "Dutch laptop on Cloudflare WARP",
        zone: "Europe/Amsterdam",
        locale: "nl-NL",
        languages: &["nl-NL", "nl", "en"],
        ip: "2001:db8:5::9",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("nl-NL,nl;q=0.9"),
        policy: restrict_cn,
        verdict: Verdict::Allow,
        must: &[ReasonCode::PrivacyRelay],
        must_not: &[ReasonCode::HostingIp, ReasonCode::TzCountryMismatch],
    },
    Scenario {
        name: "Tor exit",
        zone: "Europe/Berlin",
        locale: "de-DE",
        languages: &["de-DE"],
        ip: "2001:db8:7::1",
        at: "2027-06-15T09:00:00Z",
        accept_language: None,
        policy: neutral,
        verdict: Verdict::Review,
        must: &[ReasonCode::TorExit],
        must_not: &[ReasonCode::HostingIp],
    },
    Scenario {
        name: "Icelander: Atlantic/Reykjavik is a claim, not a privacy browser",
        zone: "Atlantic/Reykjavik",
        locale: "is-IS",
        languages: &["is-IS", "is", "en"],
        ip: "2001:db8:4::9",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("is-IS,is;q=0.9"),
        policy: restrict_cn,
        verdict: Verdict::Allow,
        must: &[],
        must_not: &[
            ReasonCode::PrivacyBrowser,
            ReasonCode::TzOffsetMismatch,
            ReasonCode::TzCountryMismatch,
            ReasonCode::TzInternalInconsistent,
        ],
    },
    Scenario {
        name: "Tokyo employee behind the company's trusted Singapore egress",
        zone: "Asia/Tokyo",
        locale: "ja-JP",
        languages: &["ja-JP"],
        ip: "192.0.2.20",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("ja-JP"),
        policy: corporate_egress,
        verdict: Verdict::Allow,
        must: &[],
        must_not: &[
            ReasonCode::TzOffsetMismatch,
            ReasonCode::TzCountryMismatch,
            ReasonCode::LocaleCountryMismatch,
        ],
    },
    Scenario {
        name: "Shanghai staff behind the same trusted egress, CN restricted",
        zone: "Asia/Shanghai",
        locale: "zh-CN",
        languages: &["zh-CN", "zh"],
        ip: "192.0.2.20",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("zh-CN,zh;q=0.9"),
        policy: corporate_egress,
        verdict: Verdict::Deny,
        must: &[ReasonCode::RestrictedRegionClaim, ReasonCode::TzCountryMismatch],
        must_not: &[ReasonCode::HostingIp],
    },
    Scenario {
        name: "Shanghai browser from an address no database places, CN restricted",
        zone: "Asia/Shanghai",
        locale: "zh-CN",
        languages: &["zh-CN", "zh"],
        ip: "10.1.2.3",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("zh-CN,zh;q=0.9"),
        policy: restrict_cn,
        verdict: Verdict::Deny,
        must: &[ReasonCode::IpCountryUnknown, ReasonCode::RestrictedRegionClaim],
        must_not: &[],
    },
    Scenario {
        name: "Berlin browser from a private address",
        zone: "Europe/Berlin",
        locale: "de-DE",
        languages: &["de-DE", "de"],
        ip: "10.1.2.3",
        at: "2027-06-15T09:00:00Z",
        accept_language: Some("de-DE,de;q=0.9"),
        policy: restrict_cn,
        verdict: Verdict::Allow,
        must: &[ReasonCode::IpCountryUnknown],
        must_not: &[ReasonCode::RestrictedRegionClaim],
    },
];

/// CN restricted; 192.0.2.16/28 (in SG) is a company's egress whose staff
/// work in Singapore and Japan.
fn corporate_egress() -> Policy {
    Policy {
        trusted_networks: vec![meridian_verifier::policy::TrustedNetwork {
            name: "Example Corp Singapore egress".into(),
            networks: vec!["192.0.2.16/28".parse().unwrap()],
            countries: ["SG", "JP"]
                .iter()
                .filter_map(|c| meridian_verifier::geo::Country::parse(c))
                .collect(),
        }],
        ..restrict_cn()
    }
}

async fn run(scenario: &Scenario, intel: &Arc<IpIntel>) -> VerifyOutcome {
    let minter = Minter::new(9);
    let at: Timestamp = scenario.at.parse().unwrap();
    let ip: IpAddr = scenario.ip.parse().unwrap();
    let claims = browser(&minter, ip, at, scenario.zone, scenario.locale, scenario.languages);
    let token = minter.sign(&claims);
    let verifier =
        Verifier::new(minter.keys.clone(), (scenario.policy)(), Arc::new(MemoryReplayStore::new(100)))
            .with_intel(intel.clone());
    let input = VerifyInput {
        token: &token,
        remote_ip: ip,
        accept_language: scenario.accept_language,
        expected_action: Some("login"),
        expected_origin: None,
        account: None,
        organization: None,
    };
    verifier.verify(&input, Timestamp::from_millisecond(at.as_millisecond() + 1_500).unwrap()).await
}

#[tokio::test]
async fn scenarios() {
    let intel = Arc::new(test_intel());
    let mut failures = Vec::new();
    for scenario in SCENARIOS {
        let outcome = run(scenario, &intel).await;
        let codes: Vec<ReasonCode> = outcome.reasons.iter().map(|r| r.code).collect();
        let problems: Vec<String> = [
            (!outcome.success).then(|| format!("token rejected: {:?}", outcome.error_codes)),
            (outcome.verdict != scenario.verdict)
                .then(|| format!("verdict {:?}, expected {:?}", outcome.verdict, scenario.verdict)),
        ]
        .into_iter()
        .flatten()
        .chain(scenario.must.iter().filter(|c| !codes.contains(c)).map(|c| format!("missing {c:?}")))
        .chain(scenario.must_not.iter().filter(|c| codes.contains(c)).map(|c| format!("unexpected {c:?}")))
        .collect();
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {} (score {}, reasons {:#?})",
                scenario.name,
                problems.join("; "),
                outcome.score,
                outcome.reasons
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn network_facts_are_reported() {
    let intel = Arc::new(test_intel());
    let hosting = SCENARIOS.iter().find(|s| s.name == "hosting-ASN IP").unwrap();
    let outcome = run(hosting, &intel).await;
    let network = outcome.network.unwrap();
    assert_eq!(network.country.as_deref(), Some("US"));
    assert_eq!(network.asn, Some(16509));
    assert_eq!(network.org.as_deref(), Some("Amazon.com, Inc."));
    assert_eq!(network.hosting, Some(true));
    let json = serde_json::to_value(outcome.reasons).unwrap();
    assert_eq!(json[0]["code"], "hosting_ip");
    assert_eq!(json[0]["weight"], 25);
}

#[tokio::test]
async fn a_naive_zone_spoof_is_internally_inconsistent() {
    let intel = Arc::new(test_intel());
    let minter = Minter::new(9);
    let at: Timestamp = "2027-06-15T09:00:00Z".parse().unwrap();
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    // A Shanghai machine that only renamed its zone to New York.
    let mut claims = browser(&minter, ip, at, "Asia/Shanghai", "en-US", &["en-US"]);
    claims.time_zone.zone = "America/New_York".into();
    let token = minter.sign(&claims);
    let verifier =
        Verifier::new(minter.keys.clone(), Policy::default(), Arc::new(MemoryReplayStore::new(10)))
            .with_intel(intel);
    let input = VerifyInput {
        token: &token,
        remote_ip: ip,
        accept_language: None,
        expected_action: None,
        expected_origin: None,
        account: None,
        organization: None,
    };
    let outcome = verifier.verify(&input, at).await;
    assert!(
        outcome.reasons.iter().any(|r| r.code == ReasonCode::TzInternalInconsistent),
        "{:#?}",
        outcome.reasons
    );
}

#[tokio::test]
async fn without_databases_countries_are_unknown_and_nothing_breaks() {
    let intel = Arc::new(IpIntel::none());
    let berlin_in_us = SCENARIOS.iter().find(|s| s.name == "Berlin browser behind a US IP").unwrap();
    let outcome = run(berlin_in_us, &intel).await;
    assert!(outcome.success);
    assert_eq!(outcome.network.unwrap().country, None);
    assert!(outcome.reasons.iter().all(|r| r.code != ReasonCode::TzOffsetMismatch));
    assert_eq!(outcome.verdict, Verdict::Allow);
}

/// A privacy browser whose person reads French.
fn privacy_browser_claims(minter: &Minter, ip: IpAddr, at: Timestamp, page_zone: &str) -> Claims {
    let languages = ["fr-FR", "fr", "en-US"];
    minter.privacy_browser_claims(ip, at.as_millisecond(), nonce(at, "UTC"), page_zone, &languages)
}

async fn verify_claims(
    claims: &Claims,
    minter: &Minter,
    ip: IpAddr,
    at: Timestamp,
    policy: Policy,
) -> VerifyOutcome {
    let verifier = Verifier::new(minter.keys.clone(), policy, Arc::new(MemoryReplayStore::new(10)))
        .with_intel(Arc::new(test_intel()));
    let token = minter.sign(claims);
    let input = VerifyInput {
        token: &token,
        remote_ip: ip,
        accept_language: Some("fr-FR,fr;q=0.9,en-US;q=0.8"),
        expected_action: None,
        expected_origin: None,
        account: None,
        organization: None,
    };
    verifier.verify(&input, Timestamp::from_millisecond(at.as_millisecond() + 1_500).unwrap()).await
}

#[tokio::test]
async fn a_privacy_browser_withholds_its_zone_and_the_policy_decides() {
    let minter = Minter::new(9);
    let at: Timestamp = "2027-06-15T09:00:00Z".parse().unwrap();
    let paris: IpAddr = "2001:db8:3::9".parse().unwrap();
    for page_zone in ["UTC", "Atlantic/Reykjavik"] {
        let claims = privacy_browser_claims(&minter, paris, at, page_zone);
        let outcome = verify_claims(&claims, &minter, paris, at, neutral()).await;
        let codes: Vec<ReasonCode> = outcome.reasons.iter().map(|r| r.code).collect();
        assert_eq!(codes, [ReasonCode::PrivacyBrowser], "{page_zone}: {:#?}", outcome.reasons);
        assert_eq!(outcome.verdict, Verdict::Allow);

        // Regions restricted: a withheld zone cannot show it is outside them.
        let outcome = verify_claims(&claims, &minter, paris, at, restrict_cn()).await;
        assert_eq!(outcome.verdict, Verdict::Review, "{:#?}", outcome.reasons);
        let lenient = Policy { withheld_zone: Verdict::Allow, ..restrict_cn() };
        assert_eq!(verify_claims(&claims, &minter, paris, at, lenient).await.verdict, Verdict::Allow);
        let strict = Policy { withheld_zone: Verdict::Deny, ..restrict_cn() };
        assert_eq!(verify_claims(&claims, &minter, paris, at, strict).await.verdict, Verdict::Deny);
    }
    // Languages and network still count: the same browser with Chinese
    // languages behind a Singapore IP.
    let singapore: IpAddr = "192.0.2.12".parse().unwrap();
    let mut claims = privacy_browser_claims(&minter, singapore, at, "UTC");
    claims.locale.languages = vec!["zh-CN".into(), "zh".into()];
    if let Some(worker) = claims.worker.as_mut() {
        worker.languages = claims.locale.languages.clone();
    }
    let outcome = verify_claims(&claims, &minter, singapore, at, restrict_cn()).await;
    let codes: Vec<ReasonCode> = outcome.reasons.iter().map(|r| r.code).collect();
    assert!(codes.contains(&ReasonCode::AcceptLanguageMismatch), "{codes:?}");
    assert!(!codes.contains(&ReasonCode::TzCountryMismatch), "{codes:?}");
    assert!(outcome.verdict >= Verdict::Review);
}

#[tokio::test]
async fn confidence_grows_with_corroborating_evidence() {
    use meridian_verifier::verdict::Confidence;
    let intel = Arc::new(test_intel());
    let confidence_of = |outcome: &VerifyOutcome, code: ReasonCode| {
        outcome.reasons.iter().find(|r| r.code == code).map(|r| r.confidence)
    };
    // A German traveller's home clock behind a US IP: one soft signal.
    let berlin = SCENARIOS.iter().find(|s| s.name == "Berlin browser behind a US IP").unwrap();
    let outcome = run(berlin, &intel).await;
    assert_eq!(confidence_of(&outcome, ReasonCode::TzCountryMismatch), Some(Confidence::Medium));
    // Shanghai + zh-CN behind a Singapore IP: the zone and language agree.
    let shanghai =
        SCENARIOS.iter().find(|s| s.name == "Shanghai browser behind a Singapore IP, CN restricted").unwrap();
    let outcome = run(shanghai, &intel).await;
    assert_eq!(confidence_of(&outcome, ReasonCode::TzCountryMismatch), Some(Confidence::Medium));
    // ... and behind a hosting network as well: independent evidence agrees.
    let hosted = Scenario { ip: "198.51.100.70", ..*shanghai };
    let outcome = run(&hosted, &intel).await;
    assert_eq!(
        confidence_of(&outcome, ReasonCode::TzOffsetMismatch),
        Some(Confidence::High),
        "{:#?}",
        outcome.reasons
    );
    assert_eq!(confidence_of(&outcome, ReasonCode::RestrictedRegionClaim), Some(Confidence::High));
    let json = serde_json::to_value(&outcome.reasons).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|r| ["low", "medium", "high"].contains(&r["confidence"].as_str().unwrap()))
    );
}

#[tokio::test]
async fn an_unknown_country_with_restricted_claims_is_at_least_review_whatever_the_weights() {
    let intel = Arc::new(test_intel());
    let shanghai = SCENARIOS
        .iter()
        .find(|s| s.name == "Shanghai browser from an address no database places, CN restricted")
        .unwrap();
    fn light() -> Policy {
        let mut policy = restrict_cn();
        policy.weights.set(ReasonCode::RestrictedRegionClaim, 1);
        policy.weights.set(ReasonCode::IpCountryUnknown, 1);
        policy.weights.set(ReasonCode::LocaleCountryMismatch, 0);
        policy
    }
    let outcome = run(&Scenario { policy: light, ..*shanghai }, &intel).await;
    assert!(outcome.score < 50, "{:#?}", outcome.reasons);
    assert_eq!(outcome.verdict, Verdict::Review, "{:#?}", outcome.reasons);
    let unknown = outcome.reasons.iter().find(|r| r.code == ReasonCode::IpCountryUnknown).unwrap();
    assert!(unknown.detail.contains("private or reserved"), "{}", unknown.detail);
}
