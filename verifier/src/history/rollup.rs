//! Running counts kept beside the events, so the console answers from a
//! few thousand rows instead of reading every event: verifications per
//! hour by network country, verdict and reason, and per account and
//! organisation the counts its risk is judged on. They change in the same
//! transaction as the events they count (recorded, erased or purged), so
//! they always agree with the events table.

use std::collections::HashMap;

use super::Event;
use super::report::REGION_EVIDENCE;

/// One hour, Unix ms divided by this.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// The key of an hourly count: hour, network country (`None` unknown),
/// verdict, and reason (empty: the verifications themselves).
pub(crate) type TallyKey = (i64, Option<crate::geo::Country>, &'static str, &'static str);

/// `account` or `organization`, as the summary table names them.
pub(crate) const ACCOUNT: &str = "account";
/// See [`ACCOUNT`].
pub(crate) const ORGANIZATION: &str = "organization";
/// An account within an organisation (subject `organisation:account`),
/// what an organisation's share is counted from.
pub(crate) const MEMBER: &str = "member";

/// Which row of the summaries: the kind, the subject, and for a member
/// the account within the organisation (the subject).
pub(crate) type SummaryKey<'a> = (&'static str, &'a str, Option<&'a str>);

/// The stored subject of a summary row (`organisation:account` for a
/// member).
pub(crate) fn stored_subject(key: &SummaryKey<'_>) -> String {
    match key.2 {
        Some(account) => format!("{}:{account}", key.1),
        None => key.1.to_owned(),
    }
}

/// Changes to one account's or organisation's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SubjectDelta<'a> {
    /// For an account: the organisation of its latest sign-in here; for a
    /// member, its organisation.
    pub(crate) organization: Option<&'a str>,
    pub(crate) logins: i64,
    pub(crate) accepted: i64,
    pub(crate) restricted: i64,
    pub(crate) held: i64,
    /// In the order of [`REGION_EVIDENCE`].
    pub(crate) region: [i64; 5],
    pub(crate) last_ms: i64,
}

/// What a set of events adds to (or, erased, takes from) the counts,
/// borrowing their ids.
#[derive(Debug, Default)]
pub(crate) struct Rollup<'a> {
    pub(crate) tallies: HashMap<TallyKey, i64>,
    pub(crate) subjects: HashMap<SummaryKey<'a>, SubjectDelta<'a>>,
}

impl<'a> Rollup<'a> {
    /// Counts `event` once, `sign` +1 (recorded) or −1 (erased, purged).
    pub(crate) fn add(&mut self, event: &'a Event, sign: i64) {
        let hour = event.at_ms.div_euclid(HOUR_MS);
        let verdict = event.verdict.as_str();
        *self.tallies.entry((hour, event.country, verdict, "")).or_default() += sign;
        for code in &event.reasons {
            *self.tallies.entry((hour, event.country, verdict, code.as_str())).or_default() += sign;
        }
        let held = i64::from(matches!(
            event.verdict,
            crate::verdict::Verdict::Deny | crate::verdict::Verdict::Review
        ));
        let mut count = |key: SummaryKey<'a>, organization: Option<&'a str>| {
            let kind = key.0;
            let delta = self.subjects.entry(key).or_default();
            delta.logins += sign;
            delta.accepted += sign * i64::from(event.error.is_none());
            // An organisation's share counts its members' accepted
            // sign-ins only.
            let counted = event.restricted_device && (kind != MEMBER || event.error.is_none());
            delta.restricted += sign * i64::from(counted);
            delta.held += sign * held;
            for (slot, code) in delta.region.iter_mut().zip(REGION_EVIDENCE) {
                *slot += sign * i64::from(event.reasons.contains(&code));
            }
            // Only a recorded sign-in moves the latest one (and the
            // account's organisation with it).
            if sign > 0 && event.at_ms >= delta.last_ms {
                delta.last_ms = event.at_ms;
                if organization.is_some() {
                    delta.organization = organization;
                }
            }
        };
        let account = event.account.as_ref().map(super::Subject::as_str);
        let organization = event.organization.as_ref().map(super::Subject::as_str);
        if let Some(account) = account {
            count((ACCOUNT, account, None), organization);
        }
        if let Some(organization) = organization {
            count((ORGANIZATION, organization, None), None);
            if let Some(account) = account {
                count((MEMBER, organization, Some(account)), Some(organization));
            }
        }
    }

    /// The rollup of `events`, each counted with `sign`.
    pub(crate) fn of(events: &'a [Event], sign: i64) -> Self {
        let mut rollup = Self::default();
        events.iter().for_each(|event| rollup.add(event, sign));
        rollup
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;
    use crate::geo::Country;
    use crate::history::SubjectKey;
    use crate::verdict::{ReasonCode, Verdict};

    #[test]
    fn an_event_and_its_erasure_cancel_out() {
        let key = SubjectKey::new([3; 32]);
        let event = Event {
            at_ms: 7 * HOUR_MS + 5,
            account: key.account("ada").ok(),
            organization: key.organization("acme").ok(),
            network: "198.51.100.0/24".into(),
            country: Country::parse("SG"),
            asn: None,
            zone: Some("Asia/Shanghai".into()),
            locale: Some("zh-CN".into()),
            restricted_device: true,
            verdict: Verdict::Deny,
            score: 100,
            reasons: vec![ReasonCode::RestrictedRegionClaim, ReasonCode::TzCountryMismatch],
            error: None,
        };
        let mut rollup = Rollup::of(std::slice::from_ref(&event), 1);
        assert_eq!(rollup.tallies[&(7, Country::parse("SG"), "deny", "")], 1);
        assert_eq!(rollup.tallies[&(7, Country::parse("SG"), "deny", "restricted_region_claim")], 1);
        assert_eq!(rollup.tallies.len(), 3);
        let account = &rollup.subjects[&(ACCOUNT, event.account.as_ref().unwrap().as_str(), None)];
        assert_eq!((account.logins, account.accepted, account.restricted, account.held), (1, 1, 1, 1));
        assert_eq!(account.region, [1, 0, 0, 0, 0]);
        assert_eq!(account.organization, event.organization.as_ref().map(|o| o.as_str()));
        let member = (
            MEMBER,
            event.organization.as_ref().unwrap().as_str(),
            Some(event.account.as_ref().unwrap().as_str()),
        );
        assert_eq!(stored_subject(&member).len(), 43 * 2 + 1);
        rollup.add(&event, -1);
        assert!(rollup.tallies.values().all(|n| *n == 0));
        assert!(rollup.subjects.values().all(|d| d.logins == 0 && d.region == [0; 5]));
    }
}
