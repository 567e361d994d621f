//! The observed origin of a request: which IP the client really has.
//!
//! The socket's peer is the client unless the peer is one of the operator's
//! own proxies. Only then are `Forwarded` (RFC 7239) or `X-Forwarded-For`
//! believed, read from the right — the hops nearest to us — skipping trusted
//! proxies, so a client cannot plant an address by sending the header itself.

use std::net::IpAddr;

use ipnet::IpNet;

/// Canonical form of an IP: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes the
/// IPv4 address, so lookups, comparisons and logs see one spelling.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The operator's proxies, as CIDR blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

/// A trusted-proxy entry that is not a CIDR block or an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR block")]
pub struct BadCidr(pub String);

impl TrustedProxies {
    /// No trusted proxies: the peer is always the client. The default.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses CIDR blocks or single addresses (`10.0.0.0/8`, `::1`).
    ///
    /// # Errors
    /// The first entry that does not parse.
    pub fn parse<I: IntoIterator<Item = S>, S: AsRef<str>>(entries: I) -> Result<Self, BadCidr> {
        let mut networks = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let network = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| BadCidr(entry.to_owned()))?;
            networks.push(network);
        }
        Ok(Self { networks })
    }

    /// Whether `ip` is one of the proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// Whether any proxy is configured.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// The client IP of a request that arrived from `peer` with these
    /// forwarding headers (all lines of each, joined with commas).
    /// `Forwarded` wins over `X-Forwarded-For` when both are present.
    pub fn client_ip(&self, peer: IpAddr, forwarded: Option<&str>, x_forwarded_for: Option<&str>) -> IpAddr {
        let mut client = canonical_ip(peer);
        if !self.contains(client) {
            return client;
        }
        let hops: Vec<Option<IpAddr>> = match (forwarded, x_forwarded_for) {
            (Some(header), _) if !header.trim().is_empty() => forwarded_for(header),
            (_, Some(header)) => header.split(',').map(|hop| parse_node(hop.trim())).collect(),
            _ => return client,
        };
        for hop in hops.into_iter().rev() {
            match hop {
                // An unknown or obfuscated hop: we cannot see past it, so
                // the last proxy we trust is the best we know.
                None => return client,
                Some(ip) => {
                    client = canonical_ip(ip);
                    if !self.contains(client) {
                        return client;
                    }
                }
            }
        }
        client
    }
}

/// The `for=` node of every element of a `Forwarded` header, in order.
fn forwarded_for(header: &str) -> Vec<Option<IpAddr>> {
    header
        .split(',')
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| parse_node(value.trim().trim_matches('"')))
        })
        .collect()
}

/// A node: `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`, `[2001:db8::1]:443`
/// or a bare IPv6 address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn maps_v4_in_v6() {
        assert_eq!(canonical_ip(ip("::ffff:192.0.2.1")).to_string(), "192.0.2.1");
        assert_eq!(canonical_ip(ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        assert_eq!(proxies.client_ip(ip("198.51.100.7"), None, Some("203.0.113.9")), ip("198.51.100.7"));
        let none = TrustedProxies::none();
        assert_eq!(none.client_ip(ip("::ffff:198.51.100.7"), Some("for=1.2.3.4"), None), ip("198.51.100.7"));
    }

    #[test]
    fn reads_from_the_right_skipping_trusted_hops() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8", "2001:db8:ffff::/48"]).unwrap();
        // The client planted 1.1.1.1; the first untrusted hop from the right is the truth.
        let xff = "1.1.1.1, 203.0.113.9, 10.0.0.2";
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), None, Some(xff)), ip("203.0.113.9"));
        let forwarded = r#"for=1.1.1.1, for="[2001:db8:1::7]:4711";proto=https, for=10.1.2.3"#;
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), Some(forwarded), Some(xff)), ip("2001:db8:1::7"));
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), Some("for=\"192.0.2.60:8080\""), None),
            ip("192.0.2.60")
        );
        // Obfuscated hop: stop at the nearest trusted proxy.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), Some("for=_hidden, for=10.0.0.3"), None),
            ip("10.0.0.3")
        );
        // Every hop trusted: the leftmost one.
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), None, Some("10.0.0.5,10.0.0.4")), ip("10.0.0.5"));
        // No header.
        assert_eq!(proxies.client_ip(ip("::ffff:10.0.0.1"), None, None), ip("10.0.0.1"));
    }

    #[test]
    fn rejects_bad_cidrs() {
        assert_eq!(TrustedProxies::parse(["10.0.0.0/33"]), Err(BadCidr("10.0.0.0/33".into())));
        assert!(TrustedProxies::parse(["192.0.2.1", " ", "::1"]).unwrap().contains(ip("::ffff:192.0.2.1")));
    }
}
