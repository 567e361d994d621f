//! What a case's browser would sign: the claims the collector makes in a
//! browser with the case's zone, locale, languages, clock and page spoof.
//!
//! This is a model of the collector (`collector-wasm/src/signals`); the
//! browser sample (`crate::browser`) runs the real collector in Chromium on
//! the same cases and reports where the two disagree.

use std::net::IpAddr;

use jiff::Timestamp;
use jiff::civil::date;
use jiff::tz::TimeZone;
use meridian_protocol::{Claims, IntegrityClaims};
use meridian_verifier::testkit::{self, Minter};

use crate::corpus::{Case, Engine, Spoof};
use crate::world;

/// One login as the verifier receives it.
#[derive(Debug, Clone)]
pub struct Login {
    /// The signed token.
    pub token: String,
    /// The IP the backend saw.
    pub remote_ip: IpAddr,
    /// The login's `Accept-Language` header.
    pub accept_language: String,
    /// When the backend verifies.
    pub now: Timestamp,
}

/// The case's login IP and the IP its challenge was fetched from.
pub fn ips(case: &Case, index: usize) -> (IpAddr, IpAddr) {
    let remote = world::ip(&case.login_from, index);
    let challenge = case.challenge_from.as_ref().map_or(remote, |origin| world::ip(origin, index));
    (remote, challenge)
}

fn offset_min(tz: &TimeZone, at: Timestamp) -> i32 {
    tz.to_offset(at).seconds() / 60
}

/// The instant of local midnight on `month`/1 of `year` in `tz`, as
/// `new Date(year, month - 1, 1)` makes it.
fn local_midnight(tz: &TimeZone, year: i16, month: i8) -> Option<Timestamp> {
    date(year, month, 1).to_zoned_datetime(tz.clone()).ok().map(|z| z.timestamp())
}

/// ICU's canonical (legacy) names of zones the tz database has renamed:
/// what Chromium and WebKit report. Firefox reports the modern name.
const LEGACY_NAMES: &[(&str, &str)] = &[
    ("Asia/Kolkata", "Asia/Calcutta"),
    ("Asia/Kathmandu", "Asia/Katmandu"),
    ("Asia/Yangon", "Asia/Rangoon"),
    ("Asia/Ho_Chi_Minh", "Asia/Saigon"),
    ("Europe/Kyiv", "Europe/Kiev"),
    ("America/Argentina/Buenos_Aires", "America/Buenos_Aires"),
    ("Atlantic/Faroe", "Atlantic/Faeroe"),
    ("America/Nuuk", "America/Godthab"),
    ("Pacific/Chuuk", "Pacific/Truk"),
    ("Pacific/Pohnpei", "Pacific/Ponape"),
    ("Pacific/Kanton", "Pacific/Enderbury"),
];

/// The name `engine` reports for the zone it runs in.
pub fn reported_zone(engine: Engine, zone: &str) -> String {
    let legacy = match engine {
        Engine::Chromium | Engine::Webkit => {
            LEGACY_NAMES.iter().find(|(modern, _)| *modern == zone).map(|(_, legacy)| *legacy)
        }
        Engine::Firefox => None,
    };
    legacy.unwrap_or(zone).to_owned()
}

/// The collector's `historical_offset_s` for a zone whose local mean time
/// in 1880 was `offset_s` east of UTC: `-getTimezoneOffset() * 60`, which
/// Chromium and Firefox return in fractional minutes (Paris −9.35, so
/// +561 s) and WebKit truncates to whole minutes (−9, so +540 s).
pub fn historical_offset_s(engine: Engine, offset_s: i32) -> i32 {
    match engine {
        Engine::Chromium | Engine::Firefox => offset_s,
        Engine::Webkit => offset_s / 60 * 60,
    }
}

/// `navigator.languages` as the engine reports it: WebKit's holds the
/// locale alone.
pub fn reported_languages(case: &Case) -> Vec<String> {
    match case.engine {
        Engine::Chromium | Engine::Firefox => case.languages.clone(),
        Engine::Webkit => vec![case.locale.clone()],
    }
}

/// The IP, issue time and nonce of the case's challenge.
fn challenge(case: &Case, index: usize, at: Timestamp) -> (IpAddr, i64, [u8; 16]) {
    let (_, challenge_ip) = ips(case, index);
    let issued_ms = at.as_millisecond() - 1_500;
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&(index as u64).to_le_bytes());
    nonce[8..].copy_from_slice(&at.as_millisecond().to_le_bytes());
    (challenge_ip, issued_ms, nonce)
}

/// The challenge nonce of case number `index` at `at`, and the address its
/// UDP probe came from, when it left around a proxy
/// ([`crate::latency::udp_country`]).
pub fn udp_probe(case: &Case, index: usize, at: Timestamp) -> Option<([u8; 16], IpAddr)> {
    let country = crate::latency::udp_country(case)?;
    let (_, _, nonce) = challenge(case, index, at);
    let origin = world::Origin { country, network: world::NetworkKind::Residential };
    Some((nonce, world::ip(&origin, index)))
}

/// The claims of the case's browser, bound to a challenge issued at `at`.
///
/// # Errors
/// When the case names a zone the tz database does not know.
pub fn claims(case: &Case, minter: &Minter, index: usize, at: Timestamp) -> Result<Claims, String> {
    let (challenge_ip, issued_ms, nonce) = challenge(case, index, at);
    let skew_ms = i64::from(case.skew_s) * 1000;
    let mut claims = minter.claims(challenge_ip, issued_ms, nonce);
    claims.clock.received_at_ms = issued_ms + 3 + skew_ms;
    claims.clock.round_trip_ms = 6;
    // The browser computes "now" on its own clock.
    claims.signed_at_ms = at.as_millisecond() + skew_ms;

    // The engine's name for the zone is a tz database link to the same rules.
    testkit::report_honestly(
        &mut claims,
        &reported_zone(case.engine, &case.zone),
        &case.locale,
        &reported_languages(case),
    )
    .map_err(|e| format!("{}: zone {}: {e}", case.id, case.zone))?;
    let Some(mut integrity) = claims.integrity.take() else {
        return Err(format!("{}: an honest browser reports its integrity", case.id));
    };
    integrity.historical_offset_s = historical_offset_s(case.engine, integrity.historical_offset_s);

    // A spoof changes what the page's own functions report; the pristine
    // realm, the Intl formatter and the worker still see the real browser.
    let follow = |claims: &mut Claims, integrity: &mut IntegrityClaims, zone: &str| -> Result<(), String> {
        let real = TimeZone::get(&case.zone).map_err(|e| format!("{}: zone {}: {e}", case.id, case.zone))?;
        let target = TimeZone::get(zone).map_err(|e| format!("{}: spoof zone {zone}: {e}", case.id))?;
        let browser_now =
            Timestamp::from_millisecond(claims.signed_at_ms).map_err(|e| format!("{}: {e}", case.id))?;
        // The page still asks for `new Date(year, 0, 1)` in the real zone.
        let year = browser_now.to_zoned_datetime(real.clone()).year();
        let jan = local_midnight(&real, year, 1).ok_or("no 1 January")?;
        let jul = local_midnight(&real, year, 7).ok_or("no 1 July")?;
        let old = local_midnight(&real, 1880, 1).ok_or("no 1 January 1880")?;
        claims.time_zone.zone = zone.to_owned();
        claims.time_zone.offset_now_min = offset_min(&target, browser_now);
        claims.time_zone.offset_jan_min = offset_min(&target, jan);
        claims.time_zone.offset_jul_min = offset_min(&target, jul);
        // The spoofing script rounds to whole minutes.
        integrity.historical_offset_s = offset_min(&target, old) * 60;
        integrity.non_native = vec![
            "Intl.DateTimeFormat.prototype.resolvedOptions".into(),
            "Date.prototype.getTimezoneOffset".into(),
        ];
        Ok(())
    };
    match &case.spoof {
        None => {}
        Some(Spoof::ZoneName { zone }) => {
            claims.time_zone.zone = zone.clone();
            integrity.non_native = vec!["Intl.DateTimeFormat.prototype.resolvedOptions".into()];
        }
        Some(Spoof::Offset { minutes_west }) => {
            claims.time_zone.offset_now_min = -minutes_west;
            claims.time_zone.offset_jan_min = -minutes_west;
            claims.time_zone.offset_jul_min = -minutes_west;
            integrity.historical_offset_s = -minutes_west * 60;
            integrity.non_native = vec!["Date.prototype.getTimezoneOffset".into()];
        }
        Some(Spoof::Consistent { zone }) => follow(&mut claims, &mut integrity, zone)?,
        Some(Spoof::Hidden { zone }) => {
            follow(&mut claims, &mut integrity, zone)?;
            integrity.non_native.push("Function.prototype.toString".into());
        }
        Some(Spoof::Languages { language }) => {
            claims.locale.language = language.clone();
            claims.locale.languages = vec![language.clone()];
            integrity.non_native = vec!["navigator.language".into(), "navigator.languages".into()];
        }
    }
    claims.integrity = Some(integrity);
    Ok(claims)
}

/// The login of case number `index`, happening at `at` (the case's own
/// instant, or now for the browser sample).
///
/// # Errors
/// As [`claims`].
///
/// With `timed`, the challenge carries the round trips the verifier's echo
/// would have measured for the case ([`crate::latency`]); without, or when
/// the case's echo is blocked, it is a plain one, as from a page that
/// skipped the echo.
pub fn login(
    case: &Case,
    minter: &Minter,
    index: usize,
    at: Timestamp,
    timed: bool,
) -> Result<Login, String> {
    let mut claims = claims(case, minter, index, at)?;
    if let Some(latency) = crate::latency::latency(case).filter(|_| timed) {
        let (ip, issued_ms, nonce) = challenge(case, index, at);
        claims.challenge =
            minter.keys.challenge.issue_timed_with_nonce(ip, issued_ms, nonce, latency).challenge;
    }
    let (remote_ip, _) = ips(case, index);
    Ok(Login {
        token: minter.sign(&claims),
        remote_ip,
        accept_language: case.accept_language.clone(),
        now: at + jiff::SignedDuration::from_millis(500),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_report_their_own_names_offsets_and_languages() {
        assert_eq!(reported_zone(Engine::Chromium, "Asia/Kolkata"), "Asia/Calcutta");
        assert_eq!(reported_zone(Engine::Webkit, "Europe/Kyiv"), "Europe/Kiev");
        assert_eq!(reported_zone(Engine::Firefox, "Europe/Kyiv"), "Europe/Kyiv");
        assert_eq!(reported_zone(Engine::Chromium, "Europe/Paris"), "Europe/Paris");
        // Paris, 1880: UTC+0:09:21, getTimezoneOffset −9.35 (Chromium,
        // Firefox) or −9 (WebKit).
        assert_eq!(historical_offset_s(Engine::Firefox, 561), 561);
        assert_eq!(historical_offset_s(Engine::Webkit, 561), 540);
        // Atlantic/Reykjavik (Africa/Abidjan's LMT), getTimezoneOffset +16.13.
        assert_eq!(historical_offset_s(Engine::Firefox, -968), -968);
        assert_eq!(historical_offset_s(Engine::Webkit, -968), -960);
    }
}
