//! What the history says about an account, an organisation or everyone:
//! counts, places, and a risk level with the reasons for it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Event, OrganizationShare, Subject};
use crate::verdict::{ReasonCode, Verdict};

/// How much an account or organisation deserves a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Nothing in the window points anywhere it should not.
    Low,
    /// Some sign-ins were refused or held, or some devices pointed into a
    /// restricted region.
    Medium,
    /// A pattern: most sign-ins from devices pointing into a restricted
    /// region, impossible travel, or an organisation-wide share.
    High,
}

impl Risk {
    /// `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// Reasons that tie a sign-in to a restricted region or to a relay hop.
pub const REGION_EVIDENCE: [ReasonCode; 5] = [
    ReasonCode::RestrictedRegionClaim,
    ReasonCode::RestrictedRegionIp,
    ReasonCode::AccountRegionHistory,
    ReasonCode::OrganizationRegionShare,
    ReasonCode::ImpossibleTravel,
];

/// One account's or organisation's history over the window.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectReport {
    /// The stored (keyed-hash) form of the id.
    pub subject: Subject,
    /// The window, days.
    pub window_days: u32,
    /// Verifications in the window.
    pub logins: u32,
    /// Of those, from a device whose zone points into a restricted region.
    pub restricted_device_logins: u32,
    /// Verifications by verdict.
    pub verdicts: BTreeMap<&'static str, u32>,
    /// How often each reason fired.
    pub reasons: BTreeMap<&'static str, u32>,
    /// Network countries seen (`??` when unknown).
    pub countries: BTreeMap<String, u32>,
    /// Device zones seen.
    pub zones: BTreeMap<String, u32>,
    /// For an organisation: its accounts and how many mostly sign in from
    /// devices pointing into a restricted region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<OrganizationShare>,
    /// The risk level.
    pub risk: Risk,
    /// Why, in sentences.
    pub risk_reasons: Vec<String>,
    /// The most recent verifications, newest first.
    pub recent: Vec<Event>,
}

/// Counts over a set of events.
#[derive(Debug, Clone, Default)]
struct Tally {
    logins: u32,
    accepted: u32,
    restricted_device: u32,
    verdicts: BTreeMap<&'static str, u32>,
    reasons: BTreeMap<&'static str, u32>,
    countries: BTreeMap<String, u32>,
    zones: BTreeMap<String, u32>,
}

impl Tally {
    fn add(&mut self, event: &Event) {
        self.logins += 1;
        self.accepted += u32::from(event.error.is_none());
        self.restricted_device += u32::from(event.restricted_device);
        *self.verdicts.entry(event.verdict.as_str()).or_default() += 1;
        for code in &event.reasons {
            *self.reasons.entry(code.as_str()).or_default() += 1;
        }
        let country = event.country.map_or_else(|| "??".to_owned(), |c| c.as_str().to_owned());
        *self.countries.entry(country).or_default() += 1;
        if let Some(zone) = &event.zone {
            *self.zones.entry(zone.clone()).or_default() += 1;
        }
    }

    fn count(&self, code: ReasonCode) -> u32 {
        self.reasons.get(code.as_str()).copied().unwrap_or(0)
    }

    /// What the risk is judged on.
    fn evidence(&self) -> Evidence {
        Evidence {
            logins: self.logins,
            accepted: self.accepted,
            restricted_device: self.restricted_device,
            held: self.verdicts.get(Verdict::Deny.as_str()).copied().unwrap_or(0)
                + self.verdicts.get(Verdict::Review.as_str()).copied().unwrap_or(0),
            region: REGION_EVIDENCE.map(|code| self.count(code)),
        }
    }
}

/// What an account's or organisation's risk is judged on: counts over its
/// sign-ins, from events ([`subject_report`]) or kept by the store
/// ([`Summary`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Verifications.
    pub logins: u32,
    /// Of those, with an accepted token: what the device share is over
    /// (a refused attempt has no device to speak of, and costs nothing to
    /// send, so it must not water the share down).
    pub accepted: u32,
    /// Of those, from a device whose zone points into a restricted region.
    pub restricted_device: u32,
    /// Denied or held for review.
    pub held: u32,
    /// How often each of [`REGION_EVIDENCE`] fired, in its order.
    pub region: [u32; 5],
}

impl Evidence {
    /// The risk and its reasons; `share` for an organisation.
    pub fn risk(&self, share: Option<OrganizationShare>) -> (Risk, Vec<String>) {
        let mut risk = Risk::Low;
        let mut why = Vec::new();
        let mut raise = |level: Risk, sentence: String| {
            risk = risk.max(level);
            why.push(sentence);
        };
        if self.accepted >= 3 && self.restricted_device.saturating_mul(2) >= self.accepted {
            raise(
                Risk::High,
                format!(
                    "{} of {} accepted sign-ins came from devices whose zone points into a restricted region",
                    self.restricted_device, self.accepted
                ),
            );
        } else if self.restricted_device > 0 {
            raise(
                Risk::Medium,
                format!(
                    "{} sign-in(s) came from a device whose zone points into a restricted region",
                    self.restricted_device
                ),
            );
        }
        for (code, count) in REGION_EVIDENCE.into_iter().zip(self.region) {
            if count > 0 {
                let level = if code == ReasonCode::RestrictedRegionIp { Risk::Medium } else { Risk::High };
                raise(level, format!("{} ({}): {count} time(s)", code.title(), code.as_str()));
            }
        }
        if let Some(share) = share
            && share.restricted_accounts > 0
        {
            let level = if share.restricted_accounts.saturating_mul(10) >= share.accounts.saturating_mul(3) {
                Risk::High
            } else {
                Risk::Medium
            };
            raise(
                level,
                format!(
                    "{} of its {} accounts mostly sign in from devices pointing into a restricted region",
                    share.restricted_accounts, share.accounts
                ),
            );
        }
        if self.held > 0 {
            raise(Risk::Medium, format!("{} sign-in(s) were denied or held for review", self.held));
        }
        (risk, why)
    }
}

/// An account or organisation as the store keeps it summed over everything
/// retained: what the console's riskiest lists read without going through
/// every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The stored (keyed-hash) form of the id.
    pub subject: Subject,
    /// For an account: the organisation of its latest sign-in.
    pub organization: Option<Subject>,
    /// The counts.
    pub evidence: Evidence,
    /// The latest sign-in, Unix ms.
    pub last_ms: i64,
    /// For an organisation: its accounts' share.
    pub share: Option<OrganizationShare>,
}

/// The columns a store keeps (SQLite) or sums (PostgreSQL) for a summary:
/// sign-ins, accepted ones, restricted-device sign-ins, denied or held,
/// then how often each of [`REGION_EVIDENCE`] fired, in its order.
#[cfg(feature = "history")]
pub(crate) const SUMMARY_COLUMNS: [&str; 9] = [
    "logins",
    "accepted",
    "restricted",
    "held",
    "claim",
    "ip",
    "account_history",
    "organization_share",
    "travel",
];

/// Where [`REGION_EVIDENCE`]'s columns begin in [`SUMMARY_COLUMNS`]: they
/// come last.
#[cfg(feature = "history")]
pub(crate) const REGION_COLUMNS_FROM: usize = SUMMARY_COLUMNS.len() - REGION_EVIDENCE.len();

/// Whether a summary row has anything against it (SQL over
/// [`SUMMARY_COLUMNS`]).
#[cfg(feature = "history")]
pub(crate) const FLAGGED_SQL: &str =
    "(restricted > 0 OR held > 0 OR claim + ip + account_history + organization_share + travel > 0)";

/// Summary rows with the strongest evidence first (SQL over
/// [`SUMMARY_COLUMNS`]): what the risk levels rank on.
#[cfg(feature = "history")]
pub(crate) const STRONGEST_FIRST_SQL: &str = "(claim + account_history + organization_share + travel > 0
    OR (accepted >= 3 AND restricted * 2 >= accepted)) DESC, restricted DESC, held DESC, last_ms DESC";

impl Summary {
    /// The risk and its reasons.
    pub fn risk(&self) -> (Risk, Vec<String>) {
        self.evidence.risk(self.share)
    }

    /// A summary from a store's row: `count` reads a column of
    /// [`SUMMARY_COLUMNS`] (and, `with_share`, `member_accounts` and
    /// `member_restricted`); counts below zero read as zero.
    #[cfg(feature = "history")]
    pub(crate) fn from_row<E>(
        subject: String,
        organization: Option<String>,
        last_ms: i64,
        with_share: bool,
        count: impl Fn(&str) -> Result<i64, E>,
    ) -> Result<Self, E> {
        let count = |name: &str| count(name).map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
        let mut counts = [0u32; SUMMARY_COLUMNS.len()];
        for (slot, name) in counts.iter_mut().zip(SUMMARY_COLUMNS) {
            *slot = count(name)?;
        }
        let [logins, accepted, restricted_device, held, region @ ..] = counts;
        let share = if with_share {
            Some(OrganizationShare {
                accounts: count("member_accounts")?,
                restricted_accounts: count("member_restricted")?,
                ..OrganizationShare::default()
            })
        } else {
            None
        };
        Ok(Self {
            subject: Subject::from_stored(subject),
            organization: organization.map(Subject::from_stored),
            evidence: Evidence { logins, accepted, restricted_device, held, region },
            last_ms,
            share,
        })
    }
}

/// The report on one account or organisation from its events (newest
/// first) and, for an organisation, its accounts' share.
pub fn subject_report(
    subject: Subject,
    window_days: u32,
    events: Vec<Event>,
    accounts: Option<OrganizationShare>,
    recent: usize,
) -> SubjectReport {
    let mut tally = Tally::default();
    events.iter().for_each(|event| tally.add(event));
    let (risk, risk_reasons) = tally.evidence().risk(accounts);
    let mut recent_events = events;
    recent_events.truncate(recent);
    SubjectReport {
        subject,
        window_days,
        logins: tally.logins,
        restricted_device_logins: tally.restricted_device,
        verdicts: tally.verdicts,
        reasons: tally.reasons,
        countries: tally.countries,
        zones: tally.zones,
        accounts,
        risk,
        risk_reasons,
        recent: recent_events,
    }
}

/// One line of the riskiest list.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    /// The stored (keyed-hash) form of the id.
    pub subject: Subject,
    /// The risk level.
    pub risk: Risk,
    /// Verifications in the window.
    pub logins: u32,
    /// Of those, from a device pointing into a restricted region.
    pub restricted_device_logins: u32,
    /// Denied or held for review.
    pub held: u32,
    /// Why.
    pub risk_reasons: Vec<String>,
}

/// The whole history over a window: the riskiest accounts and
/// organisations, and verdicts by country and reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overview {
    /// Events read.
    pub events: u64,
    /// Verdicts by network country (`??` when unknown).
    pub verdicts_by_country: BTreeMap<String, BTreeMap<&'static str, u32>>,
    /// How often each reason fired, by verdict.
    pub reasons: BTreeMap<&'static str, BTreeMap<&'static str, u32>>,
    /// The riskiest accounts, riskiest first.
    pub accounts: Vec<Ranked>,
    /// The riskiest organisations, riskiest first.
    pub organizations: Vec<Ranked>,
    /// The networks that relayed the most accepted sign-ins, most first.
    pub relaying_networks: Vec<RelayingNetwork>,
}

/// Reasons that show a sign-in came through a relay: the hidden leg, or
/// the browser's UDP leaving from somewhere else.
pub const RELAY_EVIDENCE: [ReasonCode; 2] = [ReasonCode::RelayLatency, ReasonCode::UdpOriginMismatch];

/// Distinct accounts or organisations counted per network, at most.
const DISTINCT_CAP: usize = 10_000;

/// A network (a /24 or /48) that accepted sign-ins came through by way of
/// a relay: a company's gateway, a VPN or proxy exit, a relay service. The
/// security team decides which it is; [`RelayingNetwork::looks_like`] says
/// what the history shows.
#[derive(Debug, Clone, Serialize)]
pub struct RelayingNetwork {
    /// The network, as `trusted_networks` takes it.
    pub network: String,
    /// Its country (`??` when unknown).
    pub country: String,
    /// Its AS, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Accepted sign-ins through it that showed a relay.
    pub relayed: u32,
    /// Of those, from devices whose zone points into a restricted region.
    pub restricted_device: u32,
    /// Of those, held for review or denied.
    pub held: u32,
    /// Distinct accounts among them (up to 10 000).
    pub accounts: u32,
    /// Distinct organisations among them (up to 10 000).
    pub organizations: u32,
    /// The organisation, when there is exactly one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<Subject>,
    /// Of the accounts, how many came with no organisation.
    pub accounts_without_organization: u32,
    /// What the history shows it to be.
    pub looks_like: NetworkLook,
}

/// What the history shows a relaying network to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkLook {
    /// Devices pointing into a restricted region came through it.
    CarriesRestrictedDevices,
    /// Three or more accounts, all of one organisation: the pattern of a
    /// company's own gateway, and also of a subsidiary's staff relayed
    /// through head office.
    OneOrganization,
    /// Accounts of several organisations, or of one and of none: the
    /// pattern of a VPN or proxy exit, or a relay service.
    Shared,
    /// Too few accounts, or no organisation named (a company's gateway and
    /// a VPN exit then look alike).
    Unclear,
}

impl Serialize for NetworkLook {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl NetworkLook {
    /// Its name, as the JSON report spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CarriesRestrictedDevices => "carries_restricted_devices",
            Self::OneOrganization => "one_organization",
            Self::Shared => "shared",
            Self::Unclear => "unclear",
        }
    }

    /// A sentence for the report.
    pub fn sentence(self) -> &'static str {
        match self {
            Self::CarriesRestrictedDevices => {
                "devices pointing into a restricted region came through it: never list it"
            }
            Self::OneOrganization => {
                "one organisation's accounts only: if it is that company's gateway, listing it in trusted_networks stops these reviews"
            }
            Self::Shared => "accounts of several organisations, or of none: a VPN, proxy or relay service",
            Self::Unclear => "too few accounts, or no organisation named, to tell a gateway from a VPN exit",
        }
    }
}

/// Counts over one network's relayed sign-ins.
#[derive(Debug, Default)]
struct NetworkTally {
    country: Option<String>,
    asn: Option<u32>,
    relayed: u32,
    restricted_device: u32,
    held: u32,
    accounts: std::collections::HashSet<Subject>,
    organizations: std::collections::HashSet<Subject>,
    accounts_without_organization: std::collections::HashSet<Subject>,
}

impl NetworkTally {
    fn add(&mut self, event: &Event) {
        self.country = event.country.map(|c| c.as_str().to_owned()).or(self.country.take());
        self.asn = event.asn.or(self.asn);
        self.relayed += 1;
        self.restricted_device += u32::from(event.restricted_device);
        self.held += u32::from(event.verdict != Verdict::Allow);
        let note = |set: &mut std::collections::HashSet<Subject>, subject: &Option<Subject>| {
            if let Some(subject) = subject
                && set.len() < DISTINCT_CAP
            {
                set.insert(subject.clone());
            }
        };
        note(&mut self.accounts, &event.account);
        note(&mut self.organizations, &event.organization);
        if event.organization.is_none() {
            note(&mut self.accounts_without_organization, &event.account);
        }
    }

    fn finish(self, network: String) -> RelayingNetwork {
        let count = |set: &std::collections::HashSet<Subject>| u32::try_from(set.len()).unwrap_or(u32::MAX);
        let (accounts, organizations) = (count(&self.accounts), count(&self.organizations));
        let without = count(&self.accounts_without_organization);
        let organization = if organizations == 1 { self.organizations.iter().next().cloned() } else { None };
        let looks_like = if self.restricted_device > 0 {
            NetworkLook::CarriesRestrictedDevices
        } else if organizations > 1 || (organizations == 1 && without > 0) {
            NetworkLook::Shared
        } else if organizations == 1 && accounts >= 3 {
            NetworkLook::OneOrganization
        } else {
            NetworkLook::Unclear
        };
        RelayingNetwork {
            network,
            country: self.country.unwrap_or_else(|| "??".to_owned()),
            asn: self.asn,
            relayed: self.relayed,
            restricted_device: self.restricted_device,
            held: self.held,
            accounts,
            organizations,
            organization,
            accounts_without_organization: without,
            looks_like,
        }
    }
}

/// An organisation's accounts: sign-ins, and of those from devices pointing
/// into a restricted region.
type Members = BTreeMap<Subject, (u32, u32)>;

/// Builds an [`Overview`] from events fed in any order.
#[derive(Debug, Default)]
pub struct OverviewBuilder {
    overview: Overview,
    accounts: BTreeMap<Subject, Tally>,
    organizations: BTreeMap<Subject, (Tally, Members)>,
    networks: NetworksBuilder,
}

/// Builds the list of [`RelayingNetwork`]s from events fed in any order.
#[derive(Debug, Default)]
pub struct NetworksBuilder(std::collections::HashMap<String, NetworkTally>);

impl NetworksBuilder {
    /// Counts one event, if it is an accepted sign-in that showed a relay.
    pub fn add(&mut self, event: &Event) {
        if event.error.is_none() && event.reasons.iter().any(|code| RELAY_EVIDENCE.contains(code)) {
            self.0.entry(event.network.clone()).or_default().add(event);
        }
    }

    /// The `top` networks that relayed the most sign-ins, most first.
    pub fn finish(self, top: usize) -> Vec<RelayingNetwork> {
        let mut networks: Vec<RelayingNetwork> =
            self.0.into_iter().map(|(network, tally)| tally.finish(network)).collect();
        networks
            .sort_by(|a, b| (b.relayed, b.accounts, &a.network).cmp(&(a.relayed, a.accounts, &b.network)));
        networks.truncate(top);
        networks
    }
}

impl OverviewBuilder {
    /// Counts one event.
    pub fn add(&mut self, event: &Event) {
        self.overview.events += 1;
        let country = event.country.map_or_else(|| "??".to_owned(), |c| c.as_str().to_owned());
        *self
            .overview
            .verdicts_by_country
            .entry(country)
            .or_default()
            .entry(event.verdict.as_str())
            .or_default() += 1;
        for code in &event.reasons {
            *self
                .overview
                .reasons
                .entry(code.as_str())
                .or_default()
                .entry(event.verdict.as_str())
                .or_default() += 1;
        }
        if let Some(account) = &event.account {
            self.accounts.entry(account.clone()).or_default().add(event);
        }
        self.networks.add(event);
        if let Some(organization) = &event.organization {
            let (tally, members) = self.organizations.entry(organization.clone()).or_default();
            tally.add(event);
            if let Some(account) = &event.account
                && event.error.is_none()
            {
                let (logins, restricted) = members.entry(account.clone()).or_default();
                *logins += 1;
                *restricted += u32::from(event.restricted_device);
            }
        }
    }

    /// The overview with the `top` riskiest accounts and organisations,
    /// and the `top` networks that relayed the most sign-ins.
    pub fn finish(mut self, top: usize) -> Overview {
        let rank = |subject: Subject, tally: &Tally, share: Option<OrganizationShare>| {
            let evidence = tally.evidence();
            let (risk, risk_reasons) = evidence.risk(share);
            Ranked {
                subject,
                risk,
                logins: tally.logins,
                restricted_device_logins: tally.restricted_device,
                held: evidence.held,
                risk_reasons,
            }
        };
        let order = |list: &mut Vec<Ranked>| {
            list.sort_by(|a, b| {
                (b.risk, b.restricted_device_logins, b.held).cmp(&(
                    a.risk,
                    a.restricted_device_logins,
                    a.held,
                ))
            });
            list.truncate(top);
        };
        let mut accounts: Vec<Ranked> =
            self.accounts.iter().map(|(subject, tally)| rank(subject.clone(), tally, None)).collect();
        order(&mut accounts);
        let mut organizations: Vec<Ranked> = self
            .organizations
            .iter()
            .map(|(subject, (tally, members))| {
                let share = OrganizationShare {
                    accounts: u32::try_from(members.len()).unwrap_or(u32::MAX),
                    restricted_accounts: u32::try_from(
                        members.values().filter(|(logins, restricted)| restricted * 2 > *logins).count(),
                    )
                    .unwrap_or(u32::MAX),
                    ..OrganizationShare::default()
                };
                rank(subject.clone(), tally, Some(share))
            })
            .collect();
        order(&mut organizations);
        self.overview.accounts = accounts;
        self.overview.organizations = organizations;
        self.overview.relaying_networks = self.networks.finish(top);
        self.overview
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;
    use crate::history::SubjectKey;

    fn sign_in(network: &str, account: &str, organization: Option<&str>, reasons: &[ReasonCode]) -> Event {
        let key = SubjectKey::new([3; 32]);
        Event {
            at_ms: 1_800_000_000_000,
            account: Some(key.account(account).unwrap()),
            organization: organization.map(|o| key.organization(o).unwrap()),
            network: network.into(),
            country: crate::geo::Country::parse("SG"),
            asn: Some(64_500),
            zone: Some("Asia/Tokyo".into()),
            locale: Some("ja-JP".into()),
            restricted_device: false,
            verdict: if reasons.is_empty() { Verdict::Allow } else { Verdict::Review },
            score: 50,
            reasons: reasons.to_vec(),
            error: None,
        }
    }

    #[test]
    fn relaying_networks_are_told_apart_by_whose_accounts_come_through() {
        let relayed = [ReasonCode::RelayLatency];
        let mut builder = OverviewBuilder::default();
        for account in ["a1", "a2", "a3", "a4"] {
            builder.add(&sign_in("198.51.100.0/24", account, Some("acme"), &relayed));
        }
        builder.add(&sign_in("203.0.113.0/24", "b1", Some("acme"), &relayed));
        builder.add(&sign_in("203.0.113.0/24", "b2", Some("globex"), &[ReasonCode::UdpOriginMismatch]));
        let mut restricted = sign_in("192.0.2.0/24", "c1", Some("acme"), &relayed);
        restricted.restricted_device = true;
        builder.add(&restricted);
        builder.add(&sign_in("100.64.0.0/24", "f1", None, &relayed));
        builder.add(&sign_in("100.64.0.0/24", "f2", None, &relayed));
        // Neither a direct sign-in nor a refused one names a relay.
        builder.add(&sign_in("100.64.1.0/24", "d1", Some("acme"), &[]));
        let mut refused = sign_in("100.64.2.0/24", "e1", Some("acme"), &relayed);
        refused.error = Some(crate::ErrorCode::Replayed);
        builder.add(&refused);

        let networks = builder.finish(10).relaying_networks;
        let seen: Vec<(&str, u32, u32, NetworkLook)> =
            networks.iter().map(|n| (n.network.as_str(), n.relayed, n.accounts, n.looks_like)).collect();
        assert_eq!(
            seen,
            [
                ("198.51.100.0/24", 4, 4, NetworkLook::OneOrganization),
                ("100.64.0.0/24", 2, 2, NetworkLook::Unclear),
                ("203.0.113.0/24", 2, 2, NetworkLook::Shared),
                ("192.0.2.0/24", 1, 1, NetworkLook::CarriesRestrictedDevices),
            ]
        );
        assert_eq!(
            (networks[0].country.as_str(), networks[0].asn, networks[0].held),
            ("SG", Some(64_500), 4)
        );
        for network in &networks {
            let spelled = serde_json::to_value(network.looks_like).unwrap();
            assert_eq!(spelled, network.looks_like.as_str(), "as the JSON report spells it");
        }
    }
}
