//! What only a memory can see: each function compares this verification
//! with the account's earlier ones or its organisation's accounts and
//! returns a reason with a sentence, or nothing.

use serde::{Deserialize, Serialize};

use super::{OrganizationShare, Sighting};
use crate::geo::Country;
use crate::policy::Policy;
use crate::verdict::{Reason, ReasonCode};

/// The history's thresholds (the policy's `[history]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryRules {
    /// How far back the account and organisation checks look, days.
    /// Default 30.
    pub window_days: u32,
    /// Faster than this between two logins' countries is impossible
    /// travel, km/h. Default 1 000 (a jet airliner cruises at about 900).
    pub max_travel_kmh: u32,
    /// Countries nearer than this are never impossible travel, km: the
    /// distances are between sampled borders, and neighbours, border towns
    /// and roaming phones cross them in minutes. Default 500.
    pub min_travel_km: u32,
    /// `account_region_history` fires when at least this share of the
    /// account's logins in the window came from a device pointing into a
    /// restricted region, percent. Default 50.
    pub account_region_share_percent: u32,
    /// … and the account has at least this many logins there. Default 3.
    pub account_min_logins: u32,
    /// `organization_region_share` fires when at least this share of the
    /// organisation's accounts mostly log in from devices pointing into a
    /// restricted region, percent. Default 30.
    pub organization_region_share_percent: u32,
    /// … and the organisation has at least this many accounts. Default 3.
    pub organization_min_accounts: u32,
    /// `zone_flip` compares with the account's logins from the same network
    /// in the last this many hours. Default 168 (a week).
    pub zone_flip_hours: u32,
}

impl Default for HistoryRules {
    fn default() -> Self {
        Self {
            window_days: 30,
            max_travel_kmh: 1_000,
            min_travel_km: 500,
            account_region_share_percent: 50,
            account_min_logins: 3,
            organization_region_share_percent: 30,
            organization_min_accounts: 3,
            zone_flip_hours: 168,
        }
    }
}

impl HistoryRules {
    /// The start of the window before `now_ms`.
    pub fn since_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(i64::from(self.window_days).saturating_mul(86_400_000))
    }
}

/// The history's reasons for `current` given the account's `earlier`
/// events (newest first) and its organisation's share.
pub fn reasons(
    current: &Sighting,
    earlier: &[Sighting],
    organization: Option<OrganizationShare>,
    policy: &Policy,
) -> Vec<Reason> {
    let rules = &policy.history;
    let reason = |code: ReasonCode, detail: String| Reason::new(code, policy.weights.of(code), detail);
    let mut reasons = Vec::new();
    if let Some(detail) = impossible_travel(current, earlier, rules) {
        reasons.push(reason(ReasonCode::ImpossibleTravel, detail));
    }
    if let Some(detail) = account_region_history(current, earlier, rules) {
        reasons.push(reason(ReasonCode::AccountRegionHistory, detail));
    }
    if let Some(detail) = zone_flip(current, earlier, rules) {
        reasons.push(reason(ReasonCode::ZoneFlip, detail));
    }
    if let Some(detail) = organization.and_then(|share| organization_region_share(share, rules)) {
        reasons.push(reason(ReasonCode::OrganizationRegionShare, detail));
    }
    reasons
}

/// How long ago, for a sentence.
fn ago(ms: i64) -> String {
    let minutes = ms / 60_000;
    match minutes {
        ..=1 => "a minute".to_owned(),
        2..=119 => format!("{minutes} minutes"),
        120..=2_879 => format!("{} hours", minutes / 60),
        _ => format!("{} days", minutes / 1_440),
    }
}

/// The last accepted login from another country, too far away to have
/// flown from in the time between.
fn impossible_travel(current: &Sighting, earlier: &[Sighting], rules: &HistoryRules) -> Option<String> {
    let here = current.country?;
    let last = earlier.iter().find(|e| e.accepted && e.country.is_some())?;
    let there = last.country?;
    if there == here {
        return None;
    }
    let km = country_distance_km(there, here)?;
    if km < f64::from(rules.min_travel_km) {
        return None;
    }
    let elapsed_ms = current.at_ms.saturating_sub(last.at_ms).max(1);
    let hours = elapsed_ms as f64 / 3_600_000.0;
    let speed = km / hours;
    (speed > f64::from(rules.max_travel_kmh)).then(|| {
        format!(
            "The account signed in from {there} {} ago and now from {here}: at least {km:.0} km apart, {speed:.0} km/h, faster than a plane.",
            ago(elapsed_ms)
        )
    })
}

/// The least distance between two countries, km, never more than the
/// boundaries' own: the kept points' distance less both sampling gaps.
fn country_distance_km(a: Country, b: Country) -> Option<f64> {
    use crate::geo::distance::{country_distance_km, sampling_gap_km};
    let (a, b) = (a.as_str(), b.as_str());
    let gaps = sampling_gap_km(a).unwrap_or(0.0) + sampling_gap_km(b).unwrap_or(0.0);
    country_distance_km(a, b).map(|km| (km - gaps).max(0.0))
}

/// Most of the account's recent logins came from devices pointing into a
/// restricted region.
fn account_region_history(current: &Sighting, earlier: &[Sighting], rules: &HistoryRules) -> Option<String> {
    let logins: Vec<&Sighting> =
        std::iter::once(current).chain(earlier.iter()).filter(|e| e.accepted).collect();
    let total = u32::try_from(logins.len()).unwrap_or(u32::MAX);
    let restricted = u32::try_from(logins.iter().filter(|e| e.restricted_device).count()).unwrap_or(u32::MAX);
    let enough = total >= rules.account_min_logins.max(1)
        && restricted.saturating_mul(100) >= rules.account_region_share_percent.saturating_mul(total);
    (enough && restricted > 0).then(|| {
        format!(
            "{restricted} of the account's {total} most recent sign-ins in the last {} days came from a device whose time zone points into a restricted region.",
            rules.window_days
        )
    })
}

/// The device's zone or locale changed while the network stayed the same.
fn zone_flip(current: &Sighting, earlier: &[Sighting], rules: &HistoryRules) -> Option<String> {
    let (zone, locale) = (current.zone.as_deref()?, current.locale.as_deref()?);
    let since = current.at_ms.saturating_sub(i64::from(rules.zone_flip_hours).saturating_mul(3_600_000));
    let before = earlier
        .iter()
        .filter(|e| e.at_ms >= since && e.accepted && e.network == current.network)
        .find(|e| {
            e.zone.as_deref().is_some_and(|z| z != zone) || e.locale.as_deref().is_some_and(|l| l != locale)
        })?;
    let (old_zone, old_locale) =
        (before.zone.as_deref().unwrap_or("?"), before.locale.as_deref().unwrap_or("?"));
    Some(format!(
        "From the same network ({}), the device reported {old_zone} and {old_locale} {} ago and now {zone} and {locale}.",
        current.network,
        ago(current.at_ms.saturating_sub(before.at_ms))
    ))
}

/// Enough of the organisation's accounts mostly sign in from devices
/// pointing into a restricted region.
fn organization_region_share(share: OrganizationShare, rules: &HistoryRules) -> Option<String> {
    let enough = share.accounts >= rules.organization_min_accounts.max(1)
        && share.restricted_accounts.saturating_mul(100)
            >= rules.organization_region_share_percent.saturating_mul(share.accounts);
    (enough && share.restricted_accounts > 0).then(|| {
        format!(
            "{} of the organisation's {} accounts seen in the last {} days mostly sign in from devices whose time zone points into a restricted region.",
            share.restricted_accounts, share.accounts, rules.window_days
        )
    })
}
