//! The policy: how much each reason weighs, where the verdict thresholds
//! lie, which regions are restricted, and what tokens must be bound to.
//!
//! Written in TOML; every key is optional and defaults to the neutral value
//! documented on its field. No region is restricted unless configured.
//!
//! ```toml
//! restricted_regions = ["CN"]
//! clock_skew_tolerance_s = 300
//! allowed_origins = ["https://shop.example"]
//!
//! [thresholds]
//! review = 50
//! deny = 80
//!
//! [weights]
//! hosting_ip = 30
//! ```

use serde::{Deserialize, Serialize};

use crate::geo::Country;
use crate::token::VerifyRules;
use crate::verdict::{Reason, ReasonCode, Verdict};

/// Points each reason adds to the risk score (which is capped at 100).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    /// Claimed UTC offset is used nowhere in the IP country. Default 20:
    /// travellers with a home clock trip it, together with the zone and
    /// language mismatches they also trip (20 + 10 + 10), so the three
    /// together still allow (docs/EVALUATION.md).
    pub tz_offset_mismatch: u32,
    /// Claimed zone is not one of the IP country's zones. Default 10.
    pub tz_country_mismatch: u32,
    /// Zone name and reported offsets disagree per the tz database. Default
    /// 50: an honest browser cannot produce it.
    pub tz_internal_inconsistent: u32,
    /// Locale language is not spoken in the IP country. Default 10.
    pub locale_country_mismatch: u32,
    /// `Accept-Language` disagrees with `navigator.languages`. Default 25.
    pub accept_language_mismatch: u32,
    /// A time or language API was replaced in the page. Default 60.
    pub tampered_api: u32,
    /// A worker sees a different zone or language than the page. Default 50.
    pub worker_scope_mismatch: u32,
    /// Browser clock off by more than the tolerance. Default 10.
    pub clock_skew: u32,
    /// IP in a restricted region. Default 100 (deny on its own).
    pub restricted_region_ip: u32,
    /// Zone plus locale or language point into a restricted region while
    /// the IP is elsewhere. Default 75 (deny together with the zone
    /// mismatch that always comes with it).
    pub restricted_region_claim: u32,
    /// IP of a hosting, cloud or VPN network. Default 25.
    pub hosting_ip: u32,
    /// IP changed between challenge and verification. Default 10.
    pub ip_changed: u32,
    /// Browser driven by automation (`navigator.webdriver`). Default 40.
    pub automation: u32,
    /// Single use could not be checked (store down, failing open). Default 50.
    pub replay_unchecked: u32,
    /// The zone is withheld by a privacy browser. Default 10: many careful
    /// people use one; under restricted regions `withheld_zone` decides.
    pub privacy_browser: u32,
    /// The IP is a privacy relay's egress (iCloud Private Relay, WARP).
    /// Default 10: ordinary phones use it, and it keeps the user's region.
    pub privacy_relay: u32,
    /// The IP is a Tor exit. Default 50 (review on its own): the network
    /// then says nothing about where the user is.
    pub tor_exit: u32,
    /// The IP's country is unknown (private, reserved or unlocated). Default
    /// 15: a misconfigured proxy or a fresh range is not an attack, but no
    /// network check can speak for the login; with restricted-region
    /// claims it is at least `review` whatever the weights.
    pub ip_country_unknown: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            tz_offset_mismatch: 20,
            tz_country_mismatch: 10,
            tz_internal_inconsistent: 50,
            locale_country_mismatch: 10,
            accept_language_mismatch: 25,
            tampered_api: 60,
            worker_scope_mismatch: 50,
            clock_skew: 10,
            restricted_region_ip: 100,
            restricted_region_claim: 75,
            hosting_ip: 25,
            ip_changed: 10,
            automation: 40,
            replay_unchecked: 50,
            privacy_browser: 10,
            privacy_relay: 10,
            tor_exit: 50,
            ip_country_unknown: 15,
        }
    }
}

impl Weights {
    /// The weight of one reason.
    pub fn of(&self, code: ReasonCode) -> u32 {
        match code {
            ReasonCode::TzOffsetMismatch => self.tz_offset_mismatch,
            ReasonCode::TzCountryMismatch => self.tz_country_mismatch,
            ReasonCode::TzInternalInconsistent => self.tz_internal_inconsistent,
            ReasonCode::LocaleCountryMismatch => self.locale_country_mismatch,
            ReasonCode::AcceptLanguageMismatch => self.accept_language_mismatch,
            ReasonCode::TamperedApi => self.tampered_api,
            ReasonCode::WorkerScopeMismatch => self.worker_scope_mismatch,
            ReasonCode::ClockSkew => self.clock_skew,
            ReasonCode::RestrictedRegionIp => self.restricted_region_ip,
            ReasonCode::RestrictedRegionClaim => self.restricted_region_claim,
            ReasonCode::HostingIp => self.hosting_ip,
            ReasonCode::IpChanged => self.ip_changed,
            ReasonCode::Automation => self.automation,
            ReasonCode::ReplayUnchecked => self.replay_unchecked,
            ReasonCode::PrivacyBrowser => self.privacy_browser,
            ReasonCode::PrivacyRelay => self.privacy_relay,
            ReasonCode::TorExit => self.tor_exit,
            ReasonCode::IpCountryUnknown => self.ip_country_unknown,
        }
    }
}

/// Score thresholds of the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Scores at or above this are `review`. Default 50.
    pub review: u32,
    /// Scores at or above this are `deny`. Default 80.
    pub deny: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { review: 50, deny: 80 }
    }
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Reason weights.
    pub weights: Weights,
    /// Verdict thresholds.
    pub thresholds: Thresholds,
    /// ISO 3166-1 alpha-2 codes of restricted regions. Default: none.
    pub restricted_regions: Vec<String>,
    /// Clock skew tolerated before `clock_skew` is reported, seconds.
    /// Default 300: many honest clocks are a minute or two off.
    pub clock_skew_tolerance_s: u32,
    /// Origins tokens may come from; empty accepts any (then each request
    /// should name `expected_origin`). Default: empty.
    pub allowed_origins: Vec<String>,
    /// Actions tokens may be collected for; empty accepts any. Default: empty.
    pub allowed_actions: Vec<String>,
    /// What to do when the replay store cannot answer. Default `closed`:
    /// reject with `internal-error`. `open` accepts the token with the
    /// reason `replay_unchecked`.
    pub store_failure: StoreFailure,
    /// The least verdict for a browser that withholds its zone
    /// (`privacy_browser`) while regions are restricted: such a browser
    /// cannot show it is outside them. Default `review`; `allow` trusts
    /// the network alone, `deny` refuses privacy browsers outright. Without
    /// restricted regions it has no effect.
    pub withheld_zone: Verdict,
    /// The verdict for the drop-in's `meridian-error:<kind>` marker (the
    /// collector could not run). Anyone can submit the marker, so it is
    /// never a free pass: default `review`. `allow` lets users whose
    /// browsers block WebAssembly in without a step-up; `deny` refuses them.
    pub collector_error: Verdict,
    /// Networks whose users may be in other countries than the network's
    /// own, such as a company's egress or a satellite operator: the zone
    /// and language checks accept the countries listed. Default: none.
    pub trusted_networks: Vec<TrustedNetwork>,
}

/// A network the operator knows, and the countries its users may be in.
///
/// ```toml
/// [[trusted_networks]]
/// name = "Example Corp Singapore egress"
/// networks = ["198.51.100.0/24", "AS64500"]
/// countries = ["SG", "MY", "ID"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedNetwork {
    /// A label, shown in the reason sentences and logs.
    pub name: String,
    /// CIDR blocks, single addresses or ASNs (`AS64500`), parsed when the
    /// policy is read.
    pub networks: Vec<NetworkEntry>,
    /// ISO 3166-1 alpha-2 codes of where its users may be.
    pub countries: Vec<String>,
}

impl TrustedNetwork {
    /// Whether `ip` (or its AS) is one of this network's.
    pub fn contains(&self, ip: std::net::IpAddr, asn: Option<u32>) -> bool {
        let ip = crate::net::canonical_ip(ip);
        self.networks.iter().any(|entry| match entry {
            NetworkEntry::Block(net) => net.contains(&ip),
            NetworkEntry::Asn(number) => asn == Some(*number),
        })
    }

    /// The countries, parsed (validation refused any that do not parse).
    pub fn countries(&self) -> impl Iterator<Item = Country> + '_ {
        self.countries.iter().filter_map(|c| Country::parse(c))
    }
}

/// One entry of [`TrustedNetwork::networks`]: written `198.51.100.0/24`,
/// `198.51.100.7` or `AS64500`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NetworkEntry {
    /// A CIDR block (a single address is a /32 or /128).
    Block(ipnet::IpNet),
    /// An autonomous system.
    Asn(u32),
}

impl std::str::FromStr for NetworkEntry {
    type Err = String;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let entry = entry.trim();
        let parsed = match entry.strip_prefix("AS").or_else(|| entry.strip_prefix("as")) {
            Some(number) => number.parse().ok().map(Self::Asn),
            None => entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .ok()
                .map(Self::Block),
        };
        parsed.ok_or_else(|| format!("{entry:?} is not a CIDR block, an IP address or an ASN like AS64500"))
    }
}

impl TryFrom<String> for NetworkEntry {
    type Error = String;

    fn try_from(entry: String) -> Result<Self, Self::Error> {
        entry.parse()
    }
}

impl From<NetworkEntry> for String {
    fn from(entry: NetworkEntry) -> Self {
        match entry {
            NetworkEntry::Block(net) => net.to_string(),
            NetworkEntry::Asn(number) => format!("AS{number}"),
        }
    }
}

/// What a verification does when single use cannot be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreFailure {
    /// Reject (`success: false`, `internal-error`). The default.
    #[default]
    Closed,
    /// Accept, with the reason `replay_unchecked`.
    Open,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            weights: Weights::default(),
            thresholds: Thresholds::default(),
            restricted_regions: Vec::new(),
            clock_skew_tolerance_s: 300,
            allowed_origins: Vec::new(),
            allowed_actions: Vec::new(),
            store_failure: StoreFailure::Closed,
            withheld_zone: Verdict::Review,
            collector_error: Verdict::Review,
            trusted_networks: Vec::new(),
        }
    }
}

/// Why a policy is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not TOML of the policy's shape; the message names the key.
    #[error("policy: {0}")]
    Invalid(String),
    /// A restricted region is not a two-letter country code.
    #[error("policy: restricted_regions: {0:?} is not an ISO 3166-1 alpha-2 code")]
    BadRegion(String),
    /// A trusted network's country does not parse (its network entries are
    /// checked as the policy is read).
    #[error("policy: trusted_networks {name:?}: {entry:?} is not {expected}")]
    BadTrustedNetwork {
        /// The network's name.
        name: String,
        /// The entry.
        entry: String,
        /// What it should be.
        expected: &'static str,
    },
    /// `review` must not exceed `deny`.
    #[error("policy: thresholds.review ({review}) is above thresholds.deny ({deny})")]
    Thresholds {
        /// The review threshold.
        review: u32,
        /// The deny threshold.
        deny: u32,
    },
}

impl Policy {
    /// Parses and validates a TOML policy.
    ///
    /// # Errors
    /// See [`PolicyError`].
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Checks values serde cannot.
    ///
    /// # Errors
    /// See [`PolicyError`].
    pub fn validate(&self) -> Result<(), PolicyError> {
        for region in &self.restricted_regions {
            Country::parse(region).ok_or_else(|| PolicyError::BadRegion(region.clone()))?;
        }
        for network in &self.trusted_networks {
            if let Some(entry) = network.countries.iter().find(|c| Country::parse(c).is_none()) {
                return Err(PolicyError::BadTrustedNetwork {
                    name: network.name.clone(),
                    entry: entry.clone(),
                    expected: "an ISO 3166-1 alpha-2 code",
                });
            }
        }
        if self.thresholds.review > self.thresholds.deny {
            return Err(PolicyError::Thresholds {
                review: self.thresholds.review,
                deny: self.thresholds.deny,
            });
        }
        Ok(())
    }

    /// The restricted regions, parsed.
    pub fn restricted(&self) -> Vec<Country> {
        self.restricted_regions.iter().filter_map(|r| Country::parse(r)).collect()
    }

    /// The token rules this policy implies.
    pub fn verify_rules(&self) -> VerifyRules {
        VerifyRules {
            allowed_origins: self.allowed_origins.clone(),
            allowed_actions: self.allowed_actions.clone(),
            ..VerifyRules::default()
        }
    }

    /// The trusted network `ip` (with AS `asn`) belongs to, if any.
    pub fn trusted_network(&self, ip: std::net::IpAddr, asn: Option<u32>) -> Option<&TrustedNetwork> {
        self.trusted_networks.iter().find(|n| n.contains(ip, asn))
    }

    /// The risk score (sum of weights, capped at 100) and the verdict: the
    /// thresholds applied to the uncapped sum, raised to the policy's floor
    /// for what the reasons show under restricted regions (a withheld zone;
    /// a restricted-region claim from an IP of unknown country).
    pub fn score(&self, reasons: &[Reason]) -> (u8, Verdict) {
        let total = reasons.iter().fold(0u32, |sum, r| sum.saturating_add(r.weight));
        let mut verdict = self.verdict(total);
        let has = |code: ReasonCode| reasons.iter().any(|r| r.code == code);
        if !self.restricted_regions.is_empty() {
            if has(ReasonCode::PrivacyBrowser) {
                verdict = verdict.max(self.withheld_zone);
            }
            // Unknown is not innocent: a device pointing into a restricted
            // region from an address no database places.
            if has(ReasonCode::IpCountryUnknown) && has(ReasonCode::RestrictedRegionClaim) {
                verdict = verdict.max(Verdict::Review);
            }
        }
        (u8::try_from(total.min(100)).unwrap_or(100), verdict)
    }

    /// The verdict for a score.
    pub fn verdict(&self, score: u32) -> Verdict {
        if score >= self.thresholds.deny {
            Verdict::Deny
        } else if score >= self.thresholds.review {
            Verdict::Review
        } else {
            Verdict::Allow
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn parses_partial_policies_with_defaults() {
        let policy =
            Policy::from_toml("restricted_regions = [\"cn\"]\n[weights]\nhosting_ip = 30\n").unwrap();
        assert_eq!(policy.weights.hosting_ip, 30);
        assert_eq!(policy.weights.ip_changed, 10);
        assert_eq!(policy.restricted(), vec![Country::parse("CN").unwrap()]);
        assert_eq!(Policy::from_toml("").unwrap(), Policy::default());
    }

    #[test]
    fn explains_errors_with_the_key() {
        let error = Policy::from_toml("[weights]\nhostingip = 3\n").unwrap_err().to_string();
        assert!(error.contains("hostingip"), "{error}");
        assert_eq!(
            Policy::from_toml("restricted_regions = [\"China\"]"),
            Err(PolicyError::BadRegion("China".into()))
        );
        assert_eq!(
            Policy::from_toml("[thresholds]\nreview = 90\ndeny = 80"),
            Err(PolicyError::Thresholds { review: 90, deny: 80 })
        );
    }

    #[test]
    fn trusted_networks_are_parsed_when_read() {
        let text = "[[trusted_networks]]\nname = \"egress\"\nnetworks = [\"198.51.100.0/24\", \"AS64500\", \"192.0.2.7\"]\ncountries = [\"SG\"]\n";
        let policy = Policy::from_toml(text).unwrap();
        let network = &policy.trusted_networks[0];
        assert!(network.contains("198.51.100.9".parse().unwrap(), None));
        assert!(network.contains("203.0.113.1".parse().unwrap(), Some(64_500)));
        assert!(network.contains("::ffff:192.0.2.7".parse().unwrap(), None));
        assert!(!network.contains("192.0.2.8".parse().unwrap(), Some(64_501)));
        let error = Policy::from_toml(&text.replace("AS64500", "AS-nine")).unwrap_err().to_string();
        assert!(error.contains("AS-nine"), "{error}");
        let error = Policy::from_toml(&text.replace("\"SG\"", "\"Singapore\"")).unwrap_err();
        assert!(matches!(error, PolicyError::BadTrustedNetwork { .. }), "{error}");
    }

    #[test]
    fn verdict_thresholds() {
        let policy = Policy::default();
        assert_eq!(policy.verdict(49), Verdict::Allow);
        assert_eq!(policy.verdict(50), Verdict::Review);
        assert_eq!(policy.verdict(80), Verdict::Deny);
    }
}
