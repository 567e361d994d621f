//! Relays that are not VPNs: iCloud Private Relay, Cloudflare WARP and Tor.
//!
//! A relay's egress address is a server's, so the hosting list would call
//! it a VPN exit; but Private Relay and WARP keep the user's region (Apple
//! publishes the region each egress range serves), and millions of ordinary
//! phones use them. They get their own reasons — `privacy_relay`, with the
//! country from the relay's own list, and `tor_exit`, where the network
//! says nothing about the user's place — instead of `hosting_ip`.
//!
//! The lists are files the operator's `meridian update-data` fetches:
//! - Apple's `egress-ip-ranges.csv`: `prefix,country,region,city` a line;
//! - the Tor Project's exit list: either bare addresses a line (the bulk
//!   exit list) or the `exit-addresses` document (`ExitAddress IP date`).
//!
//! Neither is committed; without them only WARP (Cloudflare's AS) is known.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::Country;
use crate::net::canonical_ip;

/// Cloudflare's AS, which carries WARP's egress (and Cloudflare's own
/// servers, which do not log in to anything).
pub const WARP_ASN: u32 = 13_335;

/// Which kind of relay an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum RelayKind {
    /// Apple's iCloud Private Relay.
    IcloudPrivateRelay,
    /// Cloudflare WARP (1.1.1.1 with WARP).
    CloudflareWarp,
    /// A Tor exit relay.
    Tor,
}

impl RelayKind {
    /// The name people know it by.
    pub fn label(self) -> &'static str {
        match self {
            Self::IcloudPrivateRelay => "iCloud Private Relay",
            Self::CloudflareWarp => "Cloudflare WARP",
            Self::Tor => "Tor",
        }
    }
}

/// Why a relay list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{list}, line {line}: {reason}")]
pub struct RelayListError {
    /// Which list.
    pub list: &'static str,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Sorted, merged address ranges over one number line (IPv4 mapped into
/// IPv6), each with a value; a lookup is a binary search.
#[derive(Debug, Clone, Default)]
struct RangeTable<V> {
    ranges: Vec<(u128, u128, V)>,
}

impl<V: Clone> RangeTable<V> {
    fn from_blocks(mut blocks: Vec<(IpNet, V)>) -> Self {
        blocks.sort_by_key(|(net, _)| (number(net.network()), std::cmp::Reverse(net.prefix_len())));
        let mut ranges: Vec<(u128, u128, V)> = Vec::with_capacity(blocks.len());
        for (net, value) in blocks {
            let (start, end) = (number(net.network()), number(net.broadcast()));
            // Nested or repeated blocks: the first (widest) one answers.
            if ranges.last().is_some_and(|(_, last_end, _)| start <= *last_end) {
                continue;
            }
            ranges.push((start, end, value));
        }
        Self { ranges }
    }

    fn get(&self, ip: IpAddr) -> Option<&V> {
        let n = number(ip);
        let at = self.ranges.partition_point(|(start, _, _)| *start <= n).checked_sub(1)?;
        let (_, end, value) = &self.ranges[at];
        (n <= *end).then_some(value)
    }

    fn len(&self) -> usize {
        self.ranges.len()
    }
}

/// An address as a number; IPv4 as its IPv4-mapped IPv6 form.
fn number(ip: IpAddr) -> u128 {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The relay an address belongs to, and the country it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relay {
    /// Which relay.
    pub kind: RelayKind,
    /// The region the relay says its user is in (Private Relay), if known.
    pub country: Option<Country>,
}

/// The relay lists a verifier consults.
#[derive(Debug, Clone, Default)]
pub struct RelayLists {
    private_relay: RangeTable<Option<Country>>,
    tor_exits: HashSet<IpAddr>,
}

impl RelayLists {
    /// No lists: only WARP, by its AS, is recognised.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads Apple's Private Relay egress list (`prefix,country,region,city`).
    ///
    /// # Errors
    /// The first line that is not of that shape: a half-downloaded or
    /// wrong file is refused whole, so the previous list stays in force.
    pub fn with_private_relay_csv(mut self, text: &str) -> Result<Self, RelayListError> {
        let mut blocks = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason: String| RelayListError {
                list: "Private Relay egress list",
                line: index + 1,
                reason,
            };
            let mut fields = line.split(',');
            let prefix = fields.next().unwrap_or_default().trim();
            let net =
                prefix.parse::<IpNet>().map_err(|_| error(format!("{prefix:?} is not a CIDR prefix")))?;
            let country = match fields.next().map(str::trim) {
                None | Some("") => None,
                Some(code) => Some(
                    Country::parse(code).ok_or_else(|| error(format!("{code:?} is not a country code")))?,
                ),
            };
            blocks.push((net, country));
        }
        if blocks.is_empty() {
            return Err(RelayListError {
                list: "Private Relay egress list",
                line: 0,
                reason: "no prefixes".into(),
            });
        }
        self.private_relay = RangeTable::from_blocks(blocks);
        Ok(self)
    }

    /// Reads the Tor Project's exit list: bare addresses, or the
    /// `exit-addresses` document's `ExitAddress` lines.
    ///
    /// # Errors
    /// A line that is neither, or a list without any address.
    pub fn with_tor_exits(mut self, text: &str) -> Result<Self, RelayListError> {
        let mut exits = HashSet::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_ascii_whitespace();
            let address = match words.next() {
                Some("ExitAddress") => words.next().unwrap_or_default(),
                Some("ExitNode" | "Published" | "LastStatus") => continue,
                Some(word) => word,
                None => continue,
            };
            let ip = address.parse::<IpAddr>().map_err(|_| RelayListError {
                list: "Tor exit list",
                line: index + 1,
                reason: format!("{address:?} is not an IP address"),
            })?;
            exits.insert(canonical_ip(ip));
        }
        if exits.is_empty() {
            return Err(RelayListError { list: "Tor exit list", line: 0, reason: "no addresses".into() });
        }
        self.tor_exits = exits;
        Ok(self)
    }

    /// Ranges in the Private Relay list.
    pub fn private_relay_len(&self) -> usize {
        self.private_relay.len()
    }

    /// Addresses in the Tor exit list.
    pub fn tor_exits_len(&self) -> usize {
        self.tor_exits.len()
    }

    /// The relay `ip` (in AS `asn`) belongs to, if any.
    pub fn lookup(&self, ip: IpAddr, asn: Option<u32>) -> Option<Relay> {
        let ip = canonical_ip(ip);
        if self.tor_exits.contains(&ip) {
            return Some(Relay { kind: RelayKind::Tor, country: None });
        }
        if let Some(country) = self.private_relay.get(ip) {
            return Some(Relay { kind: RelayKind::IcloudPrivateRelay, country: *country });
        }
        (asn == Some(WARP_ASN)).then_some(Relay { kind: RelayKind::CloudflareWarp, country: None })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    const APPLE: &str = "172.224.226.0/27,GB,GB-EN,London,\n\
                         172.224.226.32/27,JP,JP-13,Tokyo,\n\
                         2a02:26f7:b3c0:4000::/64,FR,FR-IDF,Paris,\n\
                         192.0.2.128/25,,,,\n";

    #[test]
    fn private_relay_ranges_with_their_regions() {
        let lists = RelayLists::none().with_private_relay_csv(APPLE).unwrap();
        let at = |ip: &str| lists.lookup(ip.parse().unwrap(), None);
        assert_eq!(
            at("172.224.226.7"),
            Some(Relay { kind: RelayKind::IcloudPrivateRelay, country: Country::parse("GB") })
        );
        assert_eq!(at("172.224.226.63").and_then(|r| r.country), Country::parse("JP"));
        assert_eq!(at("::ffff:172.224.226.40").and_then(|r| r.country), Country::parse("JP"));
        assert_eq!(at("2a02:26f7:b3c0:4000::99").and_then(|r| r.country), Country::parse("FR"));
        assert_eq!(
            at("192.0.2.200").map(|r| (r.kind, r.country)),
            Some((RelayKind::IcloudPrivateRelay, None))
        );
        assert_eq!(at("172.224.226.64"), None);
        assert_eq!(at("192.0.2.127"), None);
        assert_eq!(lists.private_relay_len(), 4);
    }

    #[test]
    fn tor_exits_in_both_formats_and_warp_by_as() {
        let bulk = RelayLists::none().with_tor_exits("198.51.100.7\n2001:db8::7\n").unwrap();
        assert_eq!(bulk.lookup("198.51.100.7".parse().unwrap(), None).map(|r| r.kind), Some(RelayKind::Tor));
        assert_eq!(bulk.lookup("2001:db8::7".parse().unwrap(), None).map(|r| r.kind), Some(RelayKind::Tor));
        let document = "ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E\n\
                        Published 2026-11-30 10:00:00\n\
                        LastStatus 2026-11-30 11:00:00\n\
                        ExitAddress 203.0.113.9 2026-11-30 11:05:00\n";
        let lists = RelayLists::none().with_tor_exits(document).unwrap();
        assert_eq!(lists.tor_exits_len(), 1);
        assert_eq!(
            lists.lookup("203.0.113.9".parse().unwrap(), Some(WARP_ASN)).map(|r| r.kind),
            Some(RelayKind::Tor)
        );
        assert_eq!(
            lists.lookup("203.0.113.10".parse().unwrap(), Some(WARP_ASN)).map(|r| r.kind),
            Some(RelayKind::CloudflareWarp)
        );
        assert_eq!(lists.lookup("203.0.113.10".parse().unwrap(), Some(64_500)), None);
    }

    #[test]
    fn broken_lists_are_refused_whole() {
        let error = RelayLists::none().with_private_relay_csv("172.224.226.0/27,GB\n<html>\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(RelayLists::none().with_private_relay_csv("172.224.226.0/27,Britain\n").is_err());
        assert!(RelayLists::none().with_private_relay_csv("\n").is_err());
        assert!(RelayLists::none().with_tor_exits("not an address\n").is_err());
        assert!(RelayLists::none().with_tor_exits("# empty\n").is_err());
    }
}
