//! Properties of the checks.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::geo::IpFacts;
use crate::verdict::Verdict;

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        any::<u32>().prop_map(|v| IpAddr::V6(Ipv4Addr::from(v).to_ipv6_mapped())),
    ]
}

fn any_zone() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "Asia/Shanghai",
            "Europe/Berlin",
            "Asia/Kolkata",
            "UTC",
            "Etc/GMT+5",
            "",
            "America/St_Johns"
        ])
        .prop_map(str::to_owned),
        ".{0,80}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_ip_and_any_claims_never_panic(
        challenge_ip in any_ip(),
        remote_ip in any_ip(),
        zone in any_zone(),
        offsets in any::<(i32, i32, i32)>(),
        locale in ".{0,40}",
        languages in prop::collection::vec(".{0,20}", 0..5),
        country in prop::option::of("[A-Z]{2}"),
        signed_at_ms in any::<i64>(),
        skew in any::<(i64, i64)>(),
        at_ms in -8_000_000_000_000i64..8_000_000_000_000i64,
        accept_language in prop::option::of(".{0,60}"),
        hosting in any::<Option<bool>>(),
        latency in prop::option::of((prop::option::of(any::<u32>()), any::<u32>())),
        located in any::<bool>(),
        udp in prop::option::of((any_ip(), prop::option::of("[A-Z]{2}"))),
        challenge_country in prop::option::of("[A-Z]{2}"),
    ) {
        let mut claims = meridian_protocol::Claims::example();
        claims.time_zone.zone = zone;
        (claims.time_zone.offset_now_min, claims.time_zone.offset_jan_min, claims.time_zone.offset_jul_min) = offsets;
        claims.locale.locale = locale;
        claims.locale.languages = languages;
        claims.signed_at_ms = signed_at_ms;
        let network = IpFacts {
            country: country.as_deref().and_then(Country::parse),
            asn: Some(64_500),
            org: None,
            hosting,
            relay: None,
        };
        let evidence = Evidence {
            claims: &claims,
            skew: ClockSkew { skew_ms: skew.0, uncertainty_ms: skew.1 },
            at: Timestamp::from_millisecond(at_ms).unwrap(),
            challenge_ip,
            challenge_country: challenge_country.as_deref().and_then(Country::parse),
            remote_ip,
            network: &network,
            accept_language: accept_language.as_deref(),
            latency: latency.map(|(tcp_rtt_us, echo_rtt_us)| crate::challenge::Latency { tcp_rtt_us, echo_rtt_us }),
            udp_origin: udp.map(|(ip, country)| (ip, country.as_deref().and_then(Country::parse))),
        };
        let policy = Policy {
            restricted_regions: vec![Country::parse("CN").unwrap()],
            server_location: located.then_some(SINGAPORE),
            ..Policy::default()
        };
        let reasons = run(&evidence, &policy);
        prop_assert!(reasons.windows(2).all(|w| w[0].weight >= w[1].weight));
        // The exoneration never takes away more than the settings added.
        let settings: i32 = reasons.iter().filter(|r| SETTINGS_REASONS.contains(&r.code)).map(|r| r.weight).sum();
        for reason in &reasons {
            if reason.code == ReasonCode::OutsideRegionByLatency {
                prop_assert!(reason.weight <= 0 && -reason.weight <= settings);
            } else {
                prop_assert!(reason.weight >= 0);
            }
        }
    }
}

#[test]
fn every_offset_of_a_country_is_found() {
    let summer: Timestamp = "2027-07-01T12:00:00Z".parse().unwrap();
    // Asia/Urumqi keeps UTC+06:00 in the tz database.
    assert_eq!(tz::country_offsets("CN", summer), [360, 480]);
    assert_eq!(tz::country_offsets("IN", summer), [330]);
    let us = tz::country_offsets("US", summer);
    assert!(us.contains(&-240) && us.contains(&-600), "{us:?}");
    assert!(tz::country_offsets("ZZ", summer).is_empty());
    assert_eq!(tz::format_offset(-210), "−03:30");
}

const SINGAPORE: crate::policy::Location = crate::policy::Location { lat: 1.29, lon: 103.85 };

/// What the checks say about an honest browser in `zone` with `languages`,
/// seen from a Singapore IP by a verifier in Singapore restricting CN, whose
/// echo took `echo_ms`.
fn physics(zone: &str, languages: &[&str], echo_ms: Option<u32>, tampered: bool) -> (Vec<Reason>, Policy) {
    let at: Timestamp = "2027-03-01T08:00:00Z".parse().unwrap();
    let mut claims = meridian_protocol::Claims::example();
    claims.signed_at_ms = at.as_millisecond();
    crate::testkit::report_honestly(&mut claims, zone, languages[0], languages).unwrap();
    if tampered {
        claims.integrity.as_mut().unwrap().non_native.push("Intl.DateTimeFormat".into());
    }
    let policy = Policy {
        restricted_regions: vec![Country::parse("CN").unwrap()],
        server_location: Some(SINGAPORE),
        ..Policy::default()
    };
    (from_singapore(&claims, echo_ms, &policy), policy)
}

/// The checks on `claims` signed at their `signed_at_ms`, from a Singapore
/// IP, whose echo took `echo_ms` (none: a plain challenge).
fn from_singapore(claims: &meridian_protocol::Claims, echo_ms: Option<u32>, policy: &Policy) -> Vec<Reason> {
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    split(claims, echo_ms, policy, (ip, None))
}

/// [`from_singapore`], its challenge fetched (and echo run) from
/// `challenge`: an address and, when it is not the login's, its country.
fn split(
    claims: &meridian_protocol::Claims,
    echo_ms: Option<u32>,
    policy: &Policy,
    challenge: (IpAddr, Option<Country>),
) -> Vec<Reason> {
    let network = IpFacts { country: Country::parse("SG"), asn: None, org: None, hosting: None, relay: None };
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let evidence = Evidence {
        claims,
        skew: ClockSkew { skew_ms: 0, uncertainty_ms: 5 },
        at: Timestamp::from_millisecond(claims.signed_at_ms).unwrap(),
        challenge_ip: challenge.0,
        challenge_country: challenge.1,
        remote_ip: ip,
        network: &network,
        accept_language: None,
        latency: echo_ms
            .map(|ms| crate::challenge::Latency { tcp_rtt_us: Some(ms * 1000), echo_rtt_us: ms * 1000 }),
        udp_origin: None,
    };
    run(&evidence, policy)
}

fn has(reasons: &[Reason], code: ReasonCode) -> bool {
    reasons.iter().any(|r| r.code == code)
}

#[test]
fn a_quick_echo_clears_what_only_the_settings_said() {
    // A Chinese-speaking traveller in Singapore, 2 ms from a Singapore
    // verifier: within 300 km, and China is farther.
    let (reasons, policy) = physics("Asia/Shanghai", &["zh-CN", "zh"], Some(2), false);
    assert!(has(&reasons, ReasonCode::RestrictedRegionClaim), "{reasons:?}");
    let exoneration = reasons.iter().find(|r| r.code == ReasonCode::OutsideRegionByLatency).unwrap();
    assert_eq!(exoneration.weight, -50);
    assert!(
        exoneration.detail.contains("within 300 km") && exoneration.detail.contains("CN"),
        "{}",
        exoneration.detail
    );
    assert_eq!(policy.score(&reasons).1, Verdict::Allow, "{reasons:?}");
    // Without the echo the same browser is denied.
    let (reasons, policy) = physics("Asia/Shanghai", &["zh-CN", "zh"], None, false);
    assert_eq!(policy.score(&reasons).1, Verdict::Deny, "{reasons:?}");
}

#[test]
fn a_slow_echo_proves_nothing() {
    // 30 ms: within 4 500 km, which reaches China.
    let (reasons, policy) = physics("Asia/Shanghai", &["zh-CN", "zh"], Some(30), false);
    assert!(!has(&reasons, ReasonCode::OutsideRegionByLatency), "{reasons:?}");
    assert_eq!(policy.score(&reasons).1, Verdict::Deny);
}

#[test]
fn the_exoneration_never_outweighs_more_than_the_settings() {
    // Nothing to clear: it is reported with no weight.
    let (reasons, policy) = physics("Asia/Singapore", &["en-SG", "en"], Some(2), false);
    let exoneration = reasons.iter().find(|r| r.code == ReasonCode::OutsideRegionByLatency).unwrap();
    assert_eq!(exoneration.weight, 0);
    assert_eq!(policy.score(&reasons), (0, Verdict::Allow));
    // Tampering is not the settings: it stays.
    let (reasons, policy) = physics("Asia/Singapore", &["en-SG", "en"], Some(2), true);
    assert!(has(&reasons, ReasonCode::TamperedApi), "{reasons:?}");
    assert_eq!(policy.score(&reasons), (60, Verdict::Review), "{reasons:?}");
}

/// The checks on an honest Singapore browser whose page fetched a plain
/// challenge (no echo), from `origin`, under `policy`.
fn without_echo(origin: &str, policy: &Policy) -> Vec<Reason> {
    let at: Timestamp = "2027-03-01T08:00:00Z".parse().unwrap();
    let mut claims = meridian_protocol::Claims::example();
    claims.signed_at_ms = at.as_millisecond();
    claims.origin = origin.to_owned();
    crate::testkit::report_honestly(&mut claims, "Asia/Singapore", "en-SG", &["en-SG", "en"]).unwrap();
    from_singapore(&claims, None, policy)
}

#[test]
fn a_page_that_skipped_the_echo_is_held_where_the_policy_expects_it() {
    let restricted = Policy { restricted_regions: vec![Country::parse("CN").unwrap()], ..Policy::default() };
    // By default a plain challenge raises nothing.
    let reasons = without_echo("https://shop.example", &restricted);
    assert_eq!(restricted.score(&reasons), (0, Verdict::Allow), "{reasons:?}");
    // Expected: whatever else the browser shows, the login is reviewed.
    let expects = Policy { withheld_echo: Verdict::Review, ..restricted.clone() };
    let reasons = without_echo("https://shop.example", &expects);
    let withheld = reasons.iter().find(|r| r.code == ReasonCode::EchoWithheld).unwrap();
    assert_eq!(withheld.weight, 0, "a floor, not a step towards deny");
    assert!(
        withheld.detail.contains("without the echo") && withheld.detail.contains("review"),
        "{}",
        withheld.detail
    );
    assert_eq!(expects.score(&reasons), (0, Verdict::Review));
    let strict = Policy { withheld_echo: Verdict::Deny, ..restricted.clone() };
    assert_eq!(strict.score(&without_echo("https://shop.example", &strict)).1, Verdict::Deny);
    // A native client takes the echo too: without it, the same.
    assert_eq!(expects.score(&without_echo("native:https://api.example", &expects)).1, Verdict::Review);
    // Nor does a network the operator trusts have a hidden leg to show.
    let trusted = Policy::from_toml(
        "restricted_regions = [\"CN\"]\nwithheld_echo = \"review\"\n\
         [[trusted_networks]]\nname = \"Singapore office\"\nnetworks = [\"192.0.2.0/24\"]\ncountries = [\"SG\"]",
    )
    .unwrap();
    assert!(without_echo("https://shop.example", &trusted).is_empty());
    // Without restricted regions there is nothing for it to guard.
    let open = Policy { restricted_regions: Vec::new(), ..expects };
    assert!(without_echo("https://shop.example", &open).is_empty());
}

#[test]
fn an_echo_run_from_another_country_than_the_login_is_no_echo() {
    // A proxy rule sends the verifier's host direct from CN and the site
    // through a Singapore exit: the echo is quick, the login relayed, and
    // every setting says Singapore.
    let at: Timestamp = "2027-03-01T08:00:00Z".parse().unwrap();
    let mut claims = meridian_protocol::Claims::example();
    claims.signed_at_ms = at.as_millisecond();
    crate::testkit::report_honestly(&mut claims, "Asia/Singapore", "en-SG", &["en-SG", "en"]).unwrap();
    let policy = Policy {
        restricted_regions: vec![Country::parse("CN").unwrap()],
        server_location: Some(SINGAPORE),
        withheld_echo: Verdict::Review,
        ..Policy::default()
    };
    let direct: IpAddr = "198.51.100.20".parse().unwrap();
    let reasons = split(&claims, Some(40), &policy, (direct, Country::parse("CN")));
    assert!(has(&reasons, ReasonCode::RestrictedRegionIp), "{reasons:?}");
    let withheld = reasons.iter().find(|r| r.code == ReasonCode::EchoWithheld);
    assert!(
        withheld.is_some_and(|r| r.detail.contains("another country than the login")),
        "its timing is not the login's: {reasons:?}"
    );
    assert!(!has(&reasons, ReasonCode::OutsideRegionByLatency), "{reasons:?}");
    assert_eq!(policy.score(&reasons).1, Verdict::Deny, "{reasons:?}");
    // From another address of the same country (dual stack), the echo
    // still counts.
    let reasons = split(&claims, Some(2), &policy, (direct, Country::parse("SG")));
    assert!(!has(&reasons, ReasonCode::EchoWithheld) && !has(&reasons, ReasonCode::RestrictedRegionIp));
    assert_eq!(policy.score(&reasons).1, Verdict::Allow, "{reasons:?}");
}

/// The checks on an honest Singapore browser whose login and echo come from
/// a hosting network in `country`, with the round trips the verifier
/// measured, by a verifier in Singapore (or one with no `server_location`).
fn from_a_data_centre(country: &str, tcp_ms: u32, echo_ms: u32, located: bool) -> Vec<Reason> {
    let at: Timestamp = "2027-03-01T08:00:00Z".parse().unwrap();
    let mut claims = meridian_protocol::Claims::example();
    claims.signed_at_ms = at.as_millisecond();
    crate::testkit::report_honestly(&mut claims, "Asia/Singapore", "en-SG", &["en-SG", "en"]).unwrap();
    let network = IpFacts {
        country: Country::parse(country),
        asn: Some(64_500),
        org: None,
        hosting: Some(true),
        relay: None,
    };
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let evidence = Evidence {
        claims: &claims,
        skew: ClockSkew { skew_ms: 0, uncertainty_ms: 5 },
        at,
        challenge_ip: ip,
        challenge_country: None,
        remote_ip: ip,
        network: &network,
        accept_language: None,
        latency: Some(crate::challenge::Latency {
            tcp_rtt_us: Some(tcp_ms * 1000),
            echo_rtt_us: echo_ms * 1000,
        }),
        udp_origin: None,
    };
    let policy = Policy {
        restricted_regions: vec![Country::parse("CN").unwrap()],
        server_location: located.then_some(SINGAPORE),
        ..Policy::default()
    };
    run(&evidence, &policy)
}

#[test]
fn an_exit_that_stretches_its_own_round_trip_does_not_hide_the_leg_behind_it() {
    // A Singapore data centre 1 ms away whose exit holds back its
    // acknowledgements: the kernel's round trip reads 80 ms, the echo 82.
    // (A full tunnel from far away to a Singapore data centre reads the
    // same.) Nowhere in Singapore is a data centre more than a few ms away,
    // so the most it can honestly take is counted, and the leg shows.
    let reasons = from_a_data_centre("SG", 80, 82, true);
    let relay =
        reasons.iter().find(|r| r.code == ReasonCode::RelayLatency).unwrap_or_else(|| panic!("{reasons:?}"));
    assert!(relay.detail.contains("80.0 ms, while a data centre in SG is at most"), "{}", relay.detail);
    // The same data centre with an honest round trip: nothing.
    assert!(!has(&from_a_data_centre("SG", 1, 3, true), ReasonCode::RelayLatency));
    // A data centre in the United States may honestly be 230 ms away.
    assert!(!has(&from_a_data_centre("US", 230, 235, true), ReasonCode::RelayLatency));
    // Without the verifier's location nothing is capped.
    assert!(!has(&from_a_data_centre("SG", 80, 82, false), ReasonCode::RelayLatency));
}

#[test]
fn the_farthest_point_of_a_country_bounds_it() {
    use crate::geo::distance::{distance_to_country_km, farthest_in_country_km};
    let (lat, lon) = (SINGAPORE.lat, SINGAPORE.lon);
    let sg = farthest_in_country_km("SG", lat, lon).unwrap();
    assert!(sg < 100.0, "{sg}");
    let us = farthest_in_country_km("US", lat, lon).unwrap();
    assert!(
        us > distance_to_country_km("US", lat, lon).unwrap() && us <= std::f64::consts::PI * 6371.0,
        "{us}"
    );
    assert_eq!(farthest_in_country_km("ZZ", lat, lon), None);
    assert_eq!(farthest_in_country_km("SG", f64::NAN, lon), None);
}
