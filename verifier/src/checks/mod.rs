//! The checks: each compares one thing the browser claims with the tz
//! database, the country tables or the network, and reports a [`Reason`]
//! with its weight and a sentence a person can read.

mod language;
pub mod tz;

use std::net::IpAddr;

use jiff::Timestamp;
use meridian_protocol::Claims;

use crate::geo::{Country, IpFacts};
use crate::net::canonical_ip;
use crate::policy::Policy;
use crate::tables;
use crate::token::ClockSkew;
use crate::verdict::{Reason, ReasonCode};

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
    /// The IP the backend saw the login from.
    pub remote_ip: IpAddr,
    /// What is known about `remote_ip`.
    pub network: &'a IpFacts,
    /// The login request's `Accept-Language`, if the backend forwarded it.
    pub accept_language: Option<&'a str>,
}

/// Runs every check and returns the reasons found, strongest first.
pub fn run(evidence: &Evidence<'_>, policy: &Policy, restricted: &[Country]) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let mut add = |code: ReasonCode, detail: String| {
        reasons.push(Reason { code, weight: policy.weights.of(code), detail });
    };
    let claims = evidence.claims;
    let zone_name = claims.time_zone.zone.as_str();
    let zone = tz::zone(zone_name);
    let country = evidence.network.country;

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

    if let Some(country) = country {
        let code = country.as_str();
        // The claimed offset against every offset in use in the IP country.
        let offsets = tz::country_offsets(code, evidence.at);
        let claimed = claims.time_zone.offset_now_min;
        if !offsets.is_empty() && !offsets.contains(&claimed) {
            add(
                ReasonCode::TzOffsetMismatch,
                format!(
                    "The browser's clock is at UTC{}, an offset not in use in {code} right now (there: {}).",
                    tz::format_offset(claimed),
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
        if zone.is_some() && !zone_countries.contains(&code) {
            let whose = if zone_countries.is_empty() {
                "a zone of no country".to_owned()
            } else {
                format!("a zone of {}", zone_countries.join(", "))
            };
            add(
                ReasonCode::TzCountryMismatch,
                format!("The browser's time zone {zone_name} is {whose}, but its IP is in {code}."),
            );
        }
        // The browser's languages against the IP country's.
        let spoken = tables::country_languages(code);
        let mine = language::browser_languages(claims);
        if !spoken.is_empty() && !mine.is_empty() && !mine.iter().any(|l| spoken.iter().any(|s| s.code == *l))
        {
            add(
                ReasonCode::LocaleCountryMismatch,
                format!(
                    "The browser's language ({}) is not among the languages of {code} ({}).",
                    mine.join(", "),
                    spoken.iter().take(4).map(|l| l.code).collect::<Vec<_>>().join(", ")
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

    if let Some(country) = country {
        if restricted.contains(&country) {
            add(ReasonCode::RestrictedRegionIp, format!("The IP is in {country}, a restricted region."));
        } else if let Some(detail) = restricted_claim(claims, zone_name, country, restricted) {
            add(ReasonCode::RestrictedRegionClaim, detail);
        }
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

    if evidence.network.hosting == Some(true) {
        let org = evidence.network.org.as_deref().unwrap_or("unknown organisation");
        let asn = evidence.network.asn.unwrap_or_default();
        add(
            ReasonCode::HostingIp,
            format!("The IP belongs to AS{asn} ({org}), a hosting, cloud or VPN network."),
        );
    }

    let challenge_ip = canonical_ip(evidence.challenge_ip);
    let remote_ip = canonical_ip(evidence.remote_ip);
    if challenge_ip != remote_ip {
        add(
            ReasonCode::IpChanged,
            format!("The challenge was fetched from {challenge_ip} but the login came from {remote_ip}."),
        );
    }

    reasons.sort_by_key(|r| std::cmp::Reverse(r.weight));
    reasons
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
    if worker.zone != claims.time_zone.zone {
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
    ip_country: Country,
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
    Some(format!(
        "The browser's time zone {zone_name} and {support} point to {region}, a restricted region, while its IP is in {ip_country}."
    ))
}

#[cfg(test)]
mod tests;
