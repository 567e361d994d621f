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
use crate::verdict::{Reason, ReasonCode, Verdict};

/// Points each reason adds to the risk score (which is capped at 100).
///
/// Written as a table of reason codes (`[weights] hosting_ip = 30`); a
/// reason left out weighs its default ([`ReasonCode::spec`]), and an
/// unknown name is an error that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weights {
    /// Indexed by the reason's position in [`ReasonCode::ALL`].
    by_code: Vec<i32>,
}

impl Default for Weights {
    fn default() -> Self {
        Self { by_code: ReasonCode::ALL.iter().map(|code| code.spec().default_weight).collect() }
    }
}

impl Weights {
    /// The weight of one reason.
    pub fn of(&self, code: ReasonCode) -> i32 {
        self.by_code.get(Self::index(code)).copied().unwrap_or(code.spec().default_weight)
    }

    /// Sets the weight of one reason.
    pub fn set(&mut self, code: ReasonCode, weight: i32) {
        if let Some(slot) = self.by_code.get_mut(Self::index(code)) {
            *slot = weight;
        }
    }

    fn index(code: ReasonCode) -> usize {
        // The enum has no data and `ALL` lists it in declaration order.
        code as usize
    }
}

impl Serialize for Weights {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(ReasonCode::ALL.len()))?;
        for code in ReasonCode::ALL {
            map.serialize_entry(code.as_str(), &self.of(*code))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Weights {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Table;
        impl<'de> serde::de::Visitor<'de> for Table {
            type Value = Weights;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of reason codes and their weights")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Weights, A::Error> {
                let mut weights = Weights::default();
                while let Some(name) = map.next_key::<String>()? {
                    let Some(code) = ReasonCode::from_name(&name) else {
                        let known: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
                        return Err(serde::de::Error::custom(format!(
                            "unknown reason `{name}` in [weights], expected one of {}",
                            known.join(", ")
                        )));
                    };
                    let weight: i32 = map.next_value()?;
                    // Never the reverse: only the exonerating reason takes
                    // points away, and it never adds any.
                    let exonerating = code == ReasonCode::OutsideRegionByLatency;
                    if exonerating && weight > 0 || !exonerating && weight < 0 {
                        return Err(serde::de::Error::custom(format!(
                            "[weights] {name} = {weight}: only outside_region_by_latency weighs less than 0, and it never more"
                        )));
                    }
                    weights.set(code, weight);
                }
                Ok(weights)
            }
        }
        deserializer.deserialize_map(Table)
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
    pub restricted_regions: Vec<Country>,
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
    /// The least verdict for a token whose challenge was not taken through
    /// the echo (`echo_withheld`) while regions are restricted. Skipping
    /// the echo is the client's choice, and it hides the relay's distance,
    /// so `review` is what a deployment whose clients run the drop-in or
    /// `meridian collect` should set (the example configuration and the
    /// demo do). Default `allow`, which raises nothing: pages that use
    /// `collect({echo: false})`, apps that fetch `GET /v1/challenge`
    /// themselves, and front proxies that cannot pass WebSocket upgrades
    /// never take the echo. Trusted networks and listed relays are never
    /// held to it.
    pub withheld_echo: Verdict,
    /// The verdict for the drop-in's `meridian-error:<kind>` marker (the
    /// collector could not run). Anyone can submit the marker, so it is
    /// never a free pass: default `review`. `allow` lets users whose
    /// browsers block WebAssembly in without a step-up; `deny` refuses them.
    pub collector_error: Verdict,
    /// Networks whose users may be in other countries than the network's
    /// own, such as a company's egress or a satellite operator: the zone
    /// and language checks accept the countries listed. Default: none.
    pub trusted_networks: Vec<TrustedNetwork>,
    /// The account and organisation history's thresholds (`[history]`).
    pub history: crate::history::signals::HistoryRules,
    /// The hidden leg (echo round trip − TCP round trip, ms) above which
    /// `relay_latency` fires. Default 25: direct connections show 0.3–8.5
    /// ms, a browser behind a relay its whole distance to the exit. 0
    /// turns the check off.
    pub relay_latency_ms: u32,
    /// Where this verifier runs, `[latitude, longitude]` in degrees: with
    /// it, an echo fast enough to put the browser nearer than every
    /// restricted region gives `outside_region_by_latency`. Several
    /// instances in different places each set their own. Default: none.
    pub server_location: Option<Location>,
}

/// A place on Earth, written `[latitude, longitude]` in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "[f64; 2]", into = "[f64; 2]")]
pub struct Location {
    /// Degrees north, −90 to 90.
    pub lat: f64,
    /// Degrees east, −180 to 180.
    pub lon: f64,
}

// Finite by construction (`TryFrom` refuses NaN), so equality is total.
impl Eq for Location {}

impl TryFrom<[f64; 2]> for Location {
    type Error = String;

    fn try_from([lat, lon]: [f64; 2]) -> Result<Self, Self::Error> {
        if !(lat.is_finite()
            && lon.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&lon))
        {
            return Err(format!(
                "[{lat}, {lon}] is not [latitude, longitude] in degrees (latitude −90…90, longitude −180…180)"
            ));
        }
        Ok(Self { lat, lon })
    }
}

impl From<Location> for [f64; 2] {
    fn from(location: Location) -> Self {
        [location.lat, location.lon]
    }
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
    pub countries: Vec<Country>,
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
            withheld_echo: Verdict::Allow,
            collector_error: Verdict::Review,
            trusted_networks: Vec::new(),
            history: crate::history::signals::HistoryRules::default(),
            relay_latency_ms: 25,
            server_location: None,
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
        if self.thresholds.review > self.thresholds.deny {
            return Err(PolicyError::Thresholds {
                review: self.thresholds.review,
                deny: self.thresholds.deny,
            });
        }
        Ok(())
    }

    /// The trusted network `ip` (with AS `asn`) belongs to, if any.
    pub fn trusted_network(&self, ip: std::net::IpAddr, asn: Option<u32>) -> Option<&TrustedNetwork> {
        self.trusted_networks.iter().find(|n| n.contains(ip, asn))
    }

    /// The risk score (sum of weights, capped at 100) and the verdict: the
    /// thresholds applied to the uncapped sum, raised to the policy's floor
    /// for what the reasons show under restricted regions (a withheld zone or
    /// echo; a restricted-region claim from an IP of unknown country), and held
    /// at `review` when a relay's distance explains everything else.
    pub fn score(&self, reasons: &[Reason]) -> (u8, Verdict) {
        let total = reasons.iter().fold(0i64, |sum, r| sum.saturating_add(i64::from(r.weight)));
        let total = u32::try_from(total.max(0)).unwrap_or(u32::MAX);
        let mut verdict = self.verdict(total);
        let has = |code: ReasonCode| reasons.iter().any(|r| r.code == code);
        // Physics put the browser outside every restricted region: what
        // only its settings could not show no longer needs a floor.
        if !self.restricted_regions.is_empty() && !has(ReasonCode::OutsideRegionByLatency) {
            if has(ReasonCode::PrivacyBrowser) {
                verdict = verdict.max(self.withheld_zone);
            }
            if has(ReasonCode::EchoWithheld) {
                verdict = verdict.max(self.withheld_echo);
            }
            // Unknown is not innocent: a device pointing into a restricted
            // region from an address no database places.
            if has(ReasonCode::IpCountryUnknown) && has(ReasonCode::RestrictedRegionClaim) {
                verdict = verdict.max(Verdict::Review);
            }
        }
        // A browser far behind a relay whose zone and language point to
        // where it says it is (not into a restricted region: that weighs
        // the deny threshold by itself) is what an honest person behind a
        // company gateway or a VPN looks like: the distance explains the
        // mismatches, so together they are `review` at most. UDP sent
        // around the relay from another country shows the relay as well
        // (from a restricted one it comes with `restricted_region_ip`,
        // which no relay explains).
        let explained = [
            ReasonCode::RelayLatency,
            ReasonCode::HostingIp,
            ReasonCode::TzOffsetMismatch,
            ReasonCode::TzCountryMismatch,
            ReasonCode::LocaleCountryMismatch,
            ReasonCode::UdpOriginMismatch,
        ];
        let mut relays = reasons
            .iter()
            .filter(|r| matches!(r.code, ReasonCode::RelayLatency | ReasonCode::UdpOriginMismatch))
            .peekable();
        if relays.peek().is_some()
            && relays.all(|r| u32::try_from(r.weight).unwrap_or(0) < self.thresholds.deny)
            && reasons.iter().all(|r| r.weight <= 0 || explained.contains(&r.code))
        {
            verdict = verdict.min(Verdict::Review);
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
        assert_eq!(policy.weights.of(ReasonCode::HostingIp), 30);
        assert_eq!(policy.weights.of(ReasonCode::IpChanged), 10);
        assert_eq!(policy.restricted_regions, vec![Country::parse("CN").unwrap()]);
        assert_eq!(Policy::from_toml("").unwrap(), Policy::default());
    }

    #[test]
    fn explains_errors_with_the_key() {
        let error = Policy::from_toml("[weights]\nhostingip = 3\n").unwrap_err().to_string();
        assert!(error.contains("hostingip"), "{error}");
        let error = Policy::from_toml("restricted_regions = [\"China\"]").unwrap_err().to_string();
        assert!(error.contains("China") && error.contains("ISO 3166-1"), "{error}");
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
        let error = Policy::from_toml(&text.replace("\"SG\"", "\"Singapore\"")).unwrap_err().to_string();
        assert!(error.contains("Singapore"), "{error}");
    }

    #[test]
    fn only_the_exoneration_weighs_below_zero_and_locations_are_places() {
        let policy = Policy::from_toml(
            "server_location = [1.29, 103.85]\n[weights]\noutside_region_by_latency = -30\n",
        )
        .unwrap();
        assert_eq!(policy.weights.of(ReasonCode::OutsideRegionByLatency), -30);
        assert_eq!(policy.server_location, Some(Location { lat: 1.29, lon: 103.85 }));
        for bad in ["[weights]\nhosting_ip = -5\n", "[weights]\noutside_region_by_latency = 5\n"] {
            let error = Policy::from_toml(bad).unwrap_err().to_string();
            assert!(error.contains("less than 0"), "{error}");
        }
        for bad in ["server_location = [91, 0]", "server_location = [0, 200]", "server_location = [1]"] {
            assert!(Policy::from_toml(bad).is_err(), "{bad}");
        }
        // Written back as it was read.
        let text = toml::to_string(&policy).unwrap();
        assert_eq!(Policy::from_toml(&text).unwrap(), policy);
    }

    #[test]
    fn a_relays_distance_explains_the_mismatches_it_comes_with() {
        let policy = Policy::default();
        let reason = |code: ReasonCode| Reason::new(code, policy.weights.of(code), String::new());
        let far = vec![
            reason(ReasonCode::RelayLatency),
            reason(ReasonCode::HostingIp),
            reason(ReasonCode::TzOffsetMismatch),
            reason(ReasonCode::TzCountryMismatch),
        ];
        assert_eq!(policy.score(&far), (100, Verdict::Review));
        // Staff abroad behind their company's gateway whose UDP goes out at
        // home: the same story, told twice.
        let mut home = far.clone();
        home.push(reason(ReasonCode::UdpOriginMismatch));
        assert_eq!(policy.score(&home).1, Verdict::Review);
        // Near enough for no hidden leg to show, the UDP alone shows the
        // relay: still `review`.
        home.remove(0);
        assert_eq!(policy.score(&home).1, Verdict::Review);
        // From a restricted region it is not.
        home.push(reason(ReasonCode::RestrictedRegionIp));
        assert_eq!(policy.score(&home).1, Verdict::Deny);
        // Anything else on top is not explained by distance.
        let mut tampered = far.clone();
        tampered.push(reason(ReasonCode::TamperedApi));
        assert_eq!(policy.score(&tampered).1, Verdict::Deny);
        // Nor is a zone in a restricted region (the relay then weighs the
        // deny threshold).
        let mut pointed = far;
        pointed[0].weight = 80;
        assert_eq!(policy.score(&pointed).1, Verdict::Deny);
    }

    #[test]
    fn verdict_thresholds() {
        let policy = Policy::default();
        assert_eq!(policy.verdict(49), Verdict::Allow);
        assert_eq!(policy.verdict(50), Verdict::Review);
        assert_eq!(policy.verdict(80), Verdict::Deny);
    }
}
