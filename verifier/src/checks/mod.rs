//! The checks: each compares one thing the browser claims with the tz
//! database, the country tables or the network, and reports a [`Reason`]
//! with its weight and a sentence a person can read.

mod language;
pub mod tz;

use std::net::IpAddr;

use jiff::Timestamp;
use meridian_protocol::Claims;

use crate::geo::{Country, IpFacts, RelayKind};
use crate::net::canonical_ip;
use crate::policy::Policy;
use crate::tables;
use crate::token::ClockSkew;
use crate::verdict::{Reason, ReasonCode, Verdict};

pub use language::{locale_region, primary_language};

/// Everything the checks compare: the verified claims and the facts the
/// client cannot forge.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// What the browser stated (signature already verified).
    pub claims: &'a Claims,
    /// Browser clock skew.
    pub skew: ClockSkew,
    /// The instant the claims describe: the browser's signing time, clamped
    /// into the challenge's lifetime as the verifier measured it.
    pub at: Timestamp,
    /// The IP the challenge was issued to.
    pub challenge_ip: IpAddr,
    /// The country of `challenge_ip`, looked up when it is not the login's
    /// IP (`None`: the same IP, or a country no database knows).
    pub challenge_country: Option<Country>,
    /// The IP the backend saw the login from.
    pub remote_ip: IpAddr,
    /// What is known about `remote_ip`.
    pub network: &'a IpFacts,
    /// The login request's `Accept-Language`, if the backend forwarded it.
    pub accept_language: Option<&'a str>,
    /// The round trips the verifier sealed into the challenge, if the page
    /// took it through the echo.
    pub latency: Option<crate::challenge::Latency>,
    /// The source of the browser's UDP probe and its country, if the
    /// verifier's UDP port saw one for this challenge.
    pub udp_origin: Option<(IpAddr, Option<Country>)>,
}

/// Zones a browser reports when it withholds its own: privacy browsers
/// (Firefox's `resistFingerprinting`, Tor Browser, Mullvad Browser,
/// LibreWolf) say `UTC` or, since Firefox 128, `Atlantic/Reykjavik`, with
/// offset 0 all year. `UTC` names no place at all, whoever reports it.
const WITHHELD_ZONES: [&str; 16] = [
    "UTC",
    "Etc/UTC",
    "Etc/UCT",
    "UCT",
    "Etc/Universal",
    "Universal",
    "Etc/Zulu",
    "Zulu",
    "GMT",
    "Etc/GMT",
    "Etc/GMT0",
    "Etc/GMT+0",
    "Etc/GMT-0",
    "GMT0",
    "Etc/Greenwich",
    "Atlantic/Reykjavik",
];

/// Whether the browser withholds its zone rather than claiming one: a
/// [`WITHHELD_ZONES`] name, offset 0 now and on 1 January and 1 July, and
/// for `Atlantic/Reykjavik` no Icelandic sign (network, locale region or
/// language) — an Icelander's browser names its own zone. (Firefox's
/// `resistFingerprinting` forces the Intl locale to `en-US` unless the user
/// lets it follow the OS, and keeps the person's `navigator.languages`.)
pub fn withholds_zone(claims: &Claims, ip_country: Option<Country>) -> bool {
    let tz = &claims.time_zone;
    if !WITHHELD_ZONES.contains(&tz.zone.as_str())
        || tz.offset_now_min != 0
        || tz.offset_jan_min != 0
        || tz.offset_jul_min != 0
    {
        return false;
    }
    if tz.zone != "Atlantic/Reykjavik" {
        return true;
    }
    let iceland = Country::parse("IS");
    let icelandic = ip_country == iceland
        || locale_region(&claims.locale.locale).and_then(Country::parse) == iceland
        || language::browser_languages(claims).iter().any(|l| l == "is");
    !icelandic
}

/// Runs every check and returns the reasons found, strongest first.
pub fn run(evidence: &Evidence<'_>, policy: &Policy) -> Vec<Reason> {
    // The echo timed the connection that fetched the challenge. One from
    // another country than the login's timed another network (a proxy
    // rule that sends the verifier's host direct and the site through an
    // exit): it says nothing of the login's path, so it counts as no echo.
    let other_network = canonical_ip(evidence.challenge_ip) != canonical_ip(evidence.remote_ip)
        && evidence.challenge_country != evidence.network.country;
    let untimed;
    let echo_elsewhere = other_network && evidence.latency.is_some();
    let evidence = if echo_elsewhere {
        untimed = Evidence { latency: None, ..*evidence };
        &untimed
    } else {
        evidence
    };
    let restricted = policy.restricted_regions.as_slice();
    let mut reasons = Vec::new();
    let mut add = |code: ReasonCode, detail: String| {
        reasons.push(Reason::new(code, policy.weights.of(code), detail));
    };
    let claims = evidence.claims;
    let zone_name = claims.time_zone.zone.as_str();
    let zone = tz::zone(zone_name);
    let country = evidence.network.country;
    let withheld = withholds_zone(claims, country);
    // Where the user may be: the IP's country, and for a network the
    // operator trusts, the countries its users are in.
    let trusted = policy.trusted_network(evidence.remote_ip, evidence.network.asn);
    let mut places: Vec<Country> = country.into_iter().collect();
    for place in trusted.into_iter().flat_map(|network| network.countries.iter().copied()) {
        if !places.contains(&place) {
            places.push(place);
        }
    }
    // Made only for a sentence: most verifications have none to write.
    let place_names = || places.iter().map(Country::as_str).collect::<Vec<_>>().join("/");

    // The zone name against the offsets the browser reported.
    match &zone {
        None => add(
            ReasonCode::TzInternalInconsistent,
            format!("The browser reports the time zone {zone_name:?}, which the tz database does not know."),
        ),
        Some(tz) => {
            if let Some(detail) = internal_inconsistency(tz, zone_name, claims, evidence.at) {
                add(ReasonCode::TzInternalInconsistent, detail);
            }
        }
    }

    if withheld {
        add(
            ReasonCode::PrivacyBrowser,
            format!(
                "The browser withholds its time zone (it reports {zone_name} at UTC+00:00 all year, as privacy browsers do), so only its languages and the network can be compared."
            ),
        );
    } else if !places.is_empty() {
        // The claimed offset against every offset in use where the user may be.
        let offsets = match places.as_slice() {
            [one] => tz::country_offsets(one.as_str(), evidence.at),
            several => {
                let mut offsets: Vec<i32> = several
                    .iter()
                    .flat_map(|place| tz::country_offsets(place.as_str(), evidence.at))
                    .collect();
                offsets.sort_unstable();
                offsets.dedup();
                offsets
            }
        };
        let claimed = claims.time_zone.offset_now_min;
        if !offsets.is_empty() && !offsets.contains(&claimed) {
            add(
                ReasonCode::TzOffsetMismatch,
                format!(
                    "The browser's clock is at UTC{}, an offset not in use in {} right now (there: {}).",
                    tz::format_offset(claimed),
                    place_names(),
                    offsets
                        .iter()
                        .map(|o| format!("UTC{}", tz::format_offset(*o)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        // The zone's countries against the IP country.
        let zone_countries = tables::zone_countries(zone_name);
        if zone.is_some() && !places.iter().any(|place| zone_countries.contains(&place.as_str())) {
            let whose = if zone_countries.is_empty() {
                "a zone of no country".to_owned()
            } else {
                format!("a zone of {}", zone_countries.join(", "))
            };
            add(
                ReasonCode::TzCountryMismatch,
                format!(
                    "The browser's time zone {zone_name} is {whose}, but its IP is in {}.",
                    place_names()
                ),
            );
        }
    }
    if !places.is_empty() {
        // The browser's languages against the languages where the user may be.
        let spoken = || {
            places.iter().flat_map(|place| tables::country_languages(place.as_str()).iter().map(|l| l.code))
        };
        let mine = language::browser_languages(claims);
        if spoken().next().is_some() && !mine.is_empty() && !mine.iter().any(|l| spoken().any(|s| s == l)) {
            add(
                ReasonCode::LocaleCountryMismatch,
                format!(
                    "The browser's language ({}) is not among the languages of {} ({}).",
                    mine.join(", "),
                    place_names(),
                    spoken().take(4).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }

    // The Accept-Language header (sent by the network stack) against
    // navigator.languages (read in the page).
    if let Some(header) = evidence.accept_language
        && let Some(detail) = language::accept_language_mismatch(header, &claims.locale.languages)
    {
        add(ReasonCode::AcceptLanguageMismatch, detail);
    }

    let tolerance_ms = i64::from(policy.clock_skew_tolerance_s) * 1000;
    if evidence.skew.min_abs_ms() > tolerance_ms {
        add(
            ReasonCode::ClockSkew,
            format!(
                "The browser's clock is {} s {} the server's (±{} ms), more than the {} s tolerated.",
                evidence.skew.skew_ms.saturating_abs() / 1000,
                if evidence.skew.skew_ms > 0 { "ahead of" } else { "behind" },
                evidence.skew.uncertainty_ms,
                policy.clock_skew_tolerance_s
            ),
        );
    }

    match country {
        Some(country) if restricted.contains(&country) => {
            add(ReasonCode::RestrictedRegionIp, format!("The IP is in {country}, a restricted region."));
        }
        _ => {
            if let Some(detail) = restricted_claim(claims, zone_name, country, restricted) {
                add(ReasonCode::RestrictedRegionClaim, detail);
            }
        }
    }
    if country.is_none() {
        add(ReasonCode::IpCountryUnknown, unknown_country(evidence.remote_ip));
    }

    if let Some(integrity) = &claims.integrity {
        if !integrity.non_native.is_empty() {
            let names: Vec<&str> = integrity.non_native.iter().take(8).map(String::as_str).collect();
            add(
                ReasonCode::TamperedApi,
                format!("These functions in the page are not the browser's own: {}.", names.join(", ")),
            );
        }
        if integrity.webdriver {
            add(
                ReasonCode::Automation,
                "The browser says it is controlled by automation (navigator.webdriver).".into(),
            );
        }
    }
    if let Some(worker) = &claims.worker
        && let Some(detail) = worker_mismatch(claims, worker)
    {
        add(ReasonCode::WorkerScopeMismatch, detail);
    }

    match (evidence.network.relay, trusted) {
        (Some(relay), _) if relay.kind == RelayKind::Tor => add(
            ReasonCode::TorExit,
            "The IP is a Tor exit relay: the network says nothing about where the user is.".into(),
        ),
        (Some(relay), _) => add(
            ReasonCode::PrivacyRelay,
            match relay.country {
                Some(region) => format!(
                    "The IP is an egress of {}, which serves users in {region}; it is not a VPN exit.",
                    relay.kind.label()
                ),
                None => {
                    format!("The IP is an egress of {}, a privacy relay, not a VPN exit.", relay.kind.label())
                }
            },
        ),
        // The operator's own networks may well run in a cloud.
        (None, Some(_)) => {}
        (None, None) if evidence.network.hosting == Some(true) => {
            let org = evidence.network.org.as_deref().unwrap_or("unknown organisation");
            let asn = evidence.network.asn.unwrap_or_default();
            add(
                ReasonCode::HostingIp,
                format!("The IP belongs to AS{asn} ({org}), a hosting, cloud or VPN network."),
            );
        }
        (None, None) => {}
    }

    let challenge_ip = canonical_ip(evidence.challenge_ip);
    let remote_ip = canonical_ip(evidence.remote_ip);
    if challenge_ip != remote_ip {
        add(
            ReasonCode::IpChanged,
            format!("The challenge was fetched from {challenge_ip} but the login came from {remote_ip}."),
        );
    }
    // Where the challenge came from counts as much as where the login did.
    let challenge_restricted = challenge_ip != remote_ip
        && evidence.challenge_country.is_some_and(|c| restricted.contains(&c))
        && country.is_none_or(|c| !restricted.contains(&c));
    if let Some(region) = evidence.challenge_country.filter(|_| challenge_restricted) {
        add(
            ReasonCode::RestrictedRegionIp,
            format!("The challenge was fetched from {challenge_ip} in {region}, a restricted region."),
        );
    }

    // The second origin: UDP the browser sent around its proxy.
    if let Some((udp_ip, udp_country)) = evidence.udp_origin
        && canonical_ip(udp_ip) != canonical_ip(evidence.remote_ip)
    {
        let named =
            |c: Option<Country>| c.map_or_else(|| "an unknown country".to_owned(), |c| c.as_str().to_owned());
        // Another address in the same country is a dual-stack or carrier
        // pool, not a second origin.
        if udp_country.is_some() && udp_country != country {
            add(
                ReasonCode::UdpOriginMismatch,
                format!(
                    "The browser's UDP came from {udp_ip} ({}) while its login came from {} ({}): its web traffic goes through a proxy.",
                    named(udp_country),
                    canonical_ip(evidence.remote_ip),
                    named(country)
                ),
            );
        }
        if let Some(region) = udp_country.filter(|c| restricted.contains(c))
            && country.is_none_or(|c| !restricted.contains(&c))
            && !challenge_restricted
        {
            add(
                ReasonCode::RestrictedRegionIp,
                format!("The browser's UDP came from {udp_ip} in {region}, a restricted region."),
            );
        }
    }

    // A listed relay (Private Relay, WARP, Tor) already says the traffic is
    // relayed, and the trusted networks are relays the operator knows.
    let known_relay = trusted.is_some() || evidence.network.relay.is_some();
    if let Some(detail) = relay_latency(evidence, policy, known_relay) {
        let code = ReasonCode::RelayLatency;
        // A relay from farther away plus a device that points into a
        // restricted region: enough to deny, whatever the other weights.
        let zone_restricted = !withheld
            && country.is_none_or(|c| !restricted.contains(&c))
            && tables::zone_countries(zone_name)
                .iter()
                .any(|c| Country::parse(c).is_some_and(|c| restricted.contains(&c)));
        let weight = if zone_restricted {
            policy.weights.of(code).max(i32::try_from(policy.thresholds.deny).unwrap_or(i32::MAX))
        } else {
            policy.weights.of(code)
        };
        let detail = if zone_restricted {
            format!("{detail} The browser's zone {zone_name} is in a restricted region.")
        } else {
            detail
        };
        reasons.push(Reason::new(code, weight, detail));
    }

    // Without the echo the relay's distance went unmeasured, by the
    // client's choice or its network's: the policy's `withheld_echo` floor
    // decides. A trusted network or a listed relay has nothing for it to
    // show. The native collector takes the echo as the drop-in does.
    if evidence.latency.is_none()
        && !restricted.is_empty()
        && policy.withheld_echo != Verdict::Allow
        && !known_relay
    {
        let code = ReasonCode::EchoWithheld;
        let why = if echo_elsewhere {
            "The echo ran from another country than the login, so it says nothing of the login's path"
        } else {
            "The challenge was taken without the echo, so how far the client sits behind its network exit went unmeasured"
        };
        reasons.push(Reason::new(
            code,
            policy.weights.of(code),
            format!("{why}; the policy holds such a login at {} or above.", policy.withheld_echo.as_str()),
        ));
    }

    if let Some(detail) = outside_by_latency(evidence, policy) {
        // It takes away at most what the device's settings added.
        let settings: i32 =
            reasons.iter().filter(|r| SETTINGS_REASONS.contains(&r.code)).map(|r| r.weight).sum();
        let code = ReasonCode::OutsideRegionByLatency;
        let weight = policy.weights.of(code).max(-settings.max(0)).min(0);
        reasons.push(Reason::new(code, weight, detail));
    }

    crate::verdict::grade(&mut reasons);
    reasons.sort_by_key(|r| std::cmp::Reverse(r.weight));
    reasons
}

/// The hidden leg against the policy's `relay_latency_ms`, a hosting
/// network's TCP round trip counted at most [`data_centre_round_trip_us`];
/// never for a network the operator trusts (a company's gateway relays
/// honestly) or a listed relay (`known`).
fn relay_latency(evidence: &Evidence<'_>, policy: &Policy, known: bool) -> Option<String> {
    let latency = evidence.latency?;
    let measured = latency.tcp_rtt_us?;
    // An exit can make its own round trip look longer (by holding back its
    // acknowledgements), which would hide the leg behind it, and a full
    // tunnel to a data centre carries the connection on to the browser;
    // either way the round trip is longer than a data centre in the IP's
    // country can honestly be from here, and only that much is counted.
    let cap = data_centre_round_trip_us(evidence, policy).filter(|&cap| measured > cap);
    let tcp = cap.unwrap_or(measured);
    let hidden = latency.echo_rtt_us.saturating_sub(tcp);
    let threshold_us = policy.relay_latency_ms.saturating_mul(1000);
    if known || policy.relay_latency_ms == 0 || hidden <= threshold_us {
        return None;
    }
    let ms = |us: u32| f64::from(us) / 1000.0;
    Some(match cap {
        None => format!(
            "The page answered the server's echoes in {:.1} ms while the connection's own round trip is {:.1} ms: {:.1} ms lie beyond the connection's far end (more than the {} ms allowed), so the browser is that far behind a relay.",
            ms(latency.echo_rtt_us),
            ms(tcp),
            ms(hidden),
            policy.relay_latency_ms
        ),
        Some(cap) => format!(
            "The page answered the server's echoes in {:.1} ms and the connection's own round trip is {:.1} ms, while a data centre in {} is at most {:.1} ms from this verifier: {:.1} ms lie beyond the network exit (more than the {} ms allowed), so the browser is that far behind it, through a relay or a tunnel.",
            ms(latency.echo_rtt_us),
            ms(measured),
            evidence.network.country.as_ref().map_or("its country", Country::as_str),
            ms(cap),
            ms(hidden),
            policy.relay_latency_ms
        ),
    })
}

/// Route length over the great circle that a data centre's connection
/// stays within: published path-inflation measurements put the median near
/// 1.5 and the worst routes between well-connected networks near 3.
const DATA_CENTRE_PATH_FACTOR: f64 = 3.0;
/// Kilometres per millisecond of round trip in fibre (204 km/ms each way).
const FIBRE_KM_PER_MS_OF_ROUND_TRIP: f64 = 102.0;
/// Milliseconds a data centre's own network and a loaded host may add.
const DATA_CENTRE_SLACK_MS: f64 = 10.0;

/// The longest TCP round trip a connection from a data centre (a hosting
/// network) anywhere in its IP's country can honestly take to this
/// verifier, µs: the country's farthest point from `server_location`, over
/// routes three times the great circle, in fibre, plus 10 ms. `None` when
/// that cannot be said: not a hosting network, no `server_location`, no
/// country, or an echo run from another address than the login's.
fn data_centre_round_trip_us(evidence: &Evidence<'_>, policy: &Policy) -> Option<u32> {
    let location = policy.server_location?;
    if evidence.network.hosting != Some(true)
        || canonical_ip(evidence.challenge_ip) != canonical_ip(evidence.remote_ip)
    {
        return None;
    }
    let country = evidence.network.country?;
    let far_km = crate::geo::distance::farthest_in_country_km(country.as_str(), location.lat, location.lon)?;
    let ms = far_km * DATA_CENTRE_PATH_FACTOR / FIBRE_KM_PER_MS_OF_ROUND_TRIP + DATA_CENTRE_SLACK_MS;
    // At most half a world away: well inside u32's microseconds.
    Some((ms * 1000.0).round() as u32)
}

/// The reasons only the device's settings (zone, offsets, languages) give,
/// which `outside_region_by_latency` may offset. Not the network's, not
/// tampering, not the `Accept-Language` header against the page.
const SETTINGS_REASONS: [ReasonCode; 5] = [
    ReasonCode::TzOffsetMismatch,
    ReasonCode::TzCountryMismatch,
    ReasonCode::LocaleCountryMismatch,
    ReasonCode::RestrictedRegionClaim,
    ReasonCode::PrivacyBrowser,
];

/// Kilometres of distance per millisecond of round trip that nothing can
/// beat: light in vacuum (299 792 km/s) there and back. Fibre is slower
/// (about 204 km/ms one way), but microwave and satellite laser links are
/// not, so the bound takes the vacuum figure: it never clears a browser
/// that could be in a restricted region.
pub const KM_PER_MS_OF_ROUND_TRIP: f64 = 149.896;

/// Whether the echo puts the browser nearer the verifier than every
/// restricted region (a short round trip proves where someone is not; a
/// long one proves nothing): the reason's sentence.
fn outside_by_latency(evidence: &Evidence<'_>, policy: &Policy) -> Option<String> {
    let location = policy.server_location?;
    let latency = evidence.latency?;
    if policy.restricted_regions.is_empty() {
        return None;
    }
    let bound_km = f64::from(latency.echo_rtt_us) / 1000.0 * KM_PER_MS_OF_ROUND_TRIP;
    let mut nearest: Option<(f64, Country)> = None;
    for region in &policy.restricted_regions {
        // The kept points overestimate a distance by at most the gap:
        // take it off, so the distance is never more than the map's.
        let km = crate::geo::distance::distance_to_country_km(region.as_str(), location.lat, location.lon)?;
        let km = (km - crate::geo::distance::sampling_gap_km(region.as_str())?).max(0.0);
        if nearest.is_none_or(|(best, _)| km < best) {
            nearest = Some((km, *region));
        }
    }
    let (nearest_km, region) = nearest?;
    if bound_km >= nearest_km {
        return None;
    }
    Some(format!(
        "The page answered the server's echo in {:.1} ms, so the browser is within {:.0} km of this verifier (light covers no more); the nearest restricted region, {region}, is at least {:.0} km away.",
        f64::from(latency.echo_rtt_us) / 1000.0,
        bound_km,
        nearest_km
    ))
}

/// Compares the zone's offsets per the tz database with those the browser
/// reported now and on 1 January / 1 July.
fn internal_inconsistency(
    tz: &jiff::tz::TimeZone,
    zone_name: &str,
    claims: &Claims,
    at: Timestamp,
) -> Option<String> {
    let reported = &claims.time_zone;
    let expected_now = tz::offset_min(tz, at);
    // The browser computed "now" on its own clock; near a DST transition a
    // skewed clock may legitimately be on the other side of it.
    let at_browser_clock =
        Timestamp::from_millisecond(claims.signed_at_ms).ok().map(|t| tz::offset_min(tz, t));
    let mut wrong = Vec::new();
    if reported.offset_now_min != expected_now && at_browser_clock != Some(reported.offset_now_min) {
        wrong.push(format!(
            "now UTC{} (expected UTC{})",
            tz::format_offset(reported.offset_now_min),
            tz::format_offset(expected_now)
        ));
    }
    for (month, label, value) in
        [(1, "1 January", reported.offset_jan_min), (7, "1 July", reported.offset_jul_min)]
    {
        if let Some(expected) = tz::offset_on_first_of(tz, at, month)
            && expected != value
        {
            wrong.push(format!(
                "{label} UTC{} (expected UTC{})",
                tz::format_offset(value),
                tz::format_offset(expected)
            ));
        }
    }
    if let Some(integrity) = &claims.integrity {
        if integrity.intl_offset_min != reported.offset_now_min {
            wrong.push(format!(
                "Intl formats the time at UTC{} while Date reports UTC{}",
                tz::format_offset(integrity.intl_offset_min),
                tz::format_offset(reported.offset_now_min)
            ));
        }
        if let Some(printed) = integrity.string_offset_min
            && printed != reported.offset_now_min
        {
            wrong.push(format!(
                "Date.prototype.toString prints GMT{} while getTimezoneOffset reports UTC{}",
                tz::format_offset(printed),
                tz::format_offset(reported.offset_now_min)
            ));
        }
        // Local mean time in 1880 differs from zone to zone; browsers' and
        // the verifier's tz data may disagree by minutes for linked zones,
        // so only a gap of over an hour counts.
        if let Some(expected) = tz::offset_at_local_midnight(tz, 1880, 1, 1)
            && (i64::from(integrity.historical_offset_s) - i64::from(expected)).abs() > 3600
        {
            wrong.push(format!(
                "1 January 1880 at UTC{} (expected about UTC{} for {zone_name})",
                tz::format_offset(integrity.historical_offset_s / 60),
                tz::format_offset(expected / 60)
            ));
        }
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "The browser says {zone_name} but its clocks disagree with that zone or each other: {}.",
            wrong.join("; ")
        )
    })
}

/// The Worker's zone, offset or first language differs from the page's.
/// (The Intl locale is not compared: browsers may localize a page without
/// localizing its workers.)
fn worker_mismatch(claims: &Claims, worker: &meridian_protocol::ScopeClaims) -> Option<String> {
    let mut differences = Vec::new();
    // A privacy browser may withhold the zone differently in each scope
    // (Firefox: `UTC` in the page, `Atlantic/Reykjavik` in a worker).
    let both_withheld = [worker.zone.as_str(), claims.time_zone.zone.as_str()]
        .iter()
        .all(|zone| WITHHELD_ZONES.contains(zone))
        && worker.offset_now_min == 0;
    if worker.zone != claims.time_zone.zone && !both_withheld {
        differences
            .push(format!("zone {} in the worker, {} in the page", worker.zone, claims.time_zone.zone));
    }
    if worker.offset_now_min != claims.time_zone.offset_now_min {
        differences.push(format!(
            "offset UTC{} in the worker, UTC{} in the page",
            tz::format_offset(worker.offset_now_min),
            tz::format_offset(claims.time_zone.offset_now_min)
        ));
    }
    let first = |languages: &[String]| languages.first().and_then(|l| primary_language(l));
    if first(&worker.languages) != first(&claims.locale.languages) {
        differences.push(format!(
            "languages [{}] in the worker, [{}] in the page",
            worker.languages.join(", "),
            claims.locale.languages.join(", ")
        ));
    }
    (!differences.is_empty())
        .then(|| format!("A worker sees a different environment than the page: {}.", differences.join("; ")))
}

/// The zone points into a restricted region, and the locale's region or
/// the browser's main language agrees, while the IP is elsewhere.
fn restricted_claim(
    claims: &Claims,
    zone_name: &str,
    ip_country: Option<Country>,
    restricted: &[Country],
) -> Option<String> {
    let region = tables::zone_countries(zone_name)
        .iter()
        .filter_map(|c| Country::parse(c))
        .find(|c| restricted.contains(c))?;
    let locale_region = locale_region(&claims.locale.locale).and_then(Country::parse);
    let region_languages = tables::country_languages(region.as_str());
    let main_language = language::browser_languages(claims).into_iter().find(|l| {
        region_languages.iter().any(|s| s.code == *l && s.official && s.population_percent >= 25.0)
    });
    let support = match (locale_region == Some(region), main_language) {
        (true, _) => format!("its locale {}", claims.locale.locale),
        (false, Some(language)) => format!("its language ({language})"),
        (false, None) => return None,
    };
    let elsewhere = match ip_country {
        Some(country) => format!("its IP is in {country}"),
        None => "its IP's country is unknown".to_owned(),
    };
    Some(format!(
        "The browser's time zone {zone_name} and {support} point to {region}, a restricted region, while {elsewhere}."
    ))
}

/// Why nobody can say where `ip` is.
fn unknown_country(ip: IpAddr) -> String {
    let ip = canonical_ip(ip);
    let special = match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64
                || v4.octets()[0] >= 240
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.segments()[0] & 0xfe00 == 0xfc00
                || v6.segments()[0] & 0xffc0 == 0xfe80
                || v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8
        }
    };
    if special {
        format!(
            "The IP {ip} is a private or reserved address, so no country can be known: a proxy in front of the service may not be passing the client address on."
        )
    } else {
        format!("No country database places the IP {ip}, so the network cannot speak for this login.")
    }
}

#[cfg(test)]
mod tests;
