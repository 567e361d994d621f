//! Properties of the checks.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::geo::IpFacts;

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
            remote_ip,
            network: &network,
            accept_language: accept_language.as_deref(),
            latency: None,
        };
        let policy = Policy { restricted_regions: vec![Country::parse("CN").unwrap()], ..Policy::default() };
        let reasons = run(&evidence, &policy);
        prop_assert!(reasons.windows(2).all(|w| w[0].weight >= w[1].weight));
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
