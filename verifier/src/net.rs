//! The observed origin of a request: which IP the client really has.
//!
//! The socket's peer is the client unless the peer is one of the operator's
//! own proxies. Only then is ONE forwarding header believed — the one the
//! operator's proxy writes ([`ClientIpHeader`], `X-Forwarded-For` by
//! default), never another the client could have planted beside it — and
//! read from the right, the hops nearest to us, skipping trusted proxies.
//! Each hop is read on its own, from raw bytes: garbage or non-ASCII hops
//! to the left of the first untrusted hop are never looked at, so a client
//! cannot blank the header by prefixing junk.

use std::net::IpAddr;

use ipnet::IpNet;

/// Which header the operator's proxies write the client address into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    /// `X-Forwarded-For`, appended to by nginx, HAProxy, AWS ALB, most
    /// ingress controllers. The default.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239), for proxies that append to it. Choose it only
    /// when yours does: most pass a client's `Forwarded` through untouched.
    Forwarded,
    /// `X-Real-IP`, one address set (not appended) by the proxy.
    XRealIp,
}

impl ClientIpHeader {
    /// The header's name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
            Self::XRealIp => "x-real-ip",
        }
    }

    /// Parses `x-forwarded-for`, `forwarded` or `x-real-ip` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        [Self::XForwardedFor, Self::Forwarded, Self::XRealIp]
            .into_iter()
            .find(|header| header.name().eq_ignore_ascii_case(text.trim()))
    }
}

/// Canonical form of an IP: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes the
/// IPv4 address, so lookups, comparisons and logs see one spelling.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The operator's proxies, as CIDR blocks, and the header they write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ClientIpHeader,
    rtt_header: Option<String>,
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
        Ok(Self { networks, header: ClientIpHeader::default(), rtt_header: None })
    }

    /// Believes the client connection's TCP round trip, in microseconds,
    /// from this header of the proxies (`tcp_rtt_header`).
    ///
    /// # Errors
    /// When `name` is not a valid header name.
    pub fn with_rtt_header(mut self, name: Option<&str>) -> Result<Self, String> {
        self.rtt_header = match name.map(str::trim).filter(|n| !n.is_empty()) {
            None => None,
            Some(name) => {
                // RFC 9110 token characters.
                let valid =
                    name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid {
                    return Err(format!("{name:?} is not a header name"));
                }
                Some(name.to_ascii_lowercase())
            }
        };
        Ok(self)
    }

    /// The header the proxies write the client connection's TCP round trip
    /// into, lower case.
    pub fn rtt_header(&self) -> Option<&str> {
        self.rtt_header.as_deref()
    }

    /// The client connection's TCP round trip, µs, from a request that came
    /// from `peer` with `value` in [`Self::rtt_header`]: `None` when `peer`
    /// is not a trusted proxy (then the verifier's own socket is the
    /// client's connection), `Some(None)` when it is but the header is
    /// missing or not a number, `Some(Some(µs))` otherwise.
    pub fn forwarded_rtt_us(&self, peer: IpAddr, value: Option<&[u8]>) -> Option<Option<u32>> {
        if !self.contains(peer) {
            return None;
        }
        let text = value.and_then(|v| std::str::from_utf8(v).ok());
        Some(text.and_then(|v| v.trim().parse::<u32>().ok()).filter(|&us| us < u32::MAX))
    }

    /// Reads the client address from `header` instead of `X-Forwarded-For`.
    pub fn with_header(mut self, header: ClientIpHeader) -> Self {
        self.header = header;
        self
    }

    /// The header believed from the proxies.
    pub fn header(&self) -> ClientIpHeader {
        self.header
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

    /// The client IP of a request that arrived from `peer`, whose
    /// [`Self::header`] lines are `values` (raw bytes, in order).
    ///
    /// Walks the hops from the right: the first hop that is not a trusted
    /// proxy is the client. A hop that cannot be read stops the walk at the
    /// nearest trusted proxy (we cannot see past it). When every hop is a
    /// trusted proxy, the leftmost is the best we know.
    pub fn client_ip<'a, I>(&self, peer: IpAddr, values: I) -> IpAddr
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: DoubleEndedIterator,
    {
        let mut client = canonical_ip(peer);
        if !self.contains(client) {
            return client;
        }
        let mut lines = values.into_iter().rev();
        if self.header == ClientIpHeader::XRealIp {
            // Set, not appended: only the last line is the proxy's.
            return lines.next().and_then(parse_node).map_or(client, canonical_ip);
        }
        for line in lines {
            for hop in line.rsplit(|b| *b == b',') {
                let parsed = match self.header {
                    ClientIpHeader::Forwarded => forwarded_for(hop),
                    _ => parse_node(hop),
                };
                let Some(ip) = parsed else { return client };
                client = canonical_ip(ip);
                if !self.contains(client) {
                    return client;
                }
            }
        }
        client
    }
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    element.split(|b| *b == b';').find_map(|pair| {
        let at = pair.iter().position(|b| *b == b'=')?;
        let (name, value) = (pair.get(..at)?, pair.get(at + 1..)?);
        name.trim_ascii().eq_ignore_ascii_case(b"for").then(|| {
            let value = value.trim_ascii();
            let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
            parse_node(value)
        })?
    })
}

/// A node: `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`, `[2001:db8::1]:443`
/// or a bare IPv6 address, surrounded by optional whitespace. Anything not
/// ASCII is not a node.
fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let node = std::str::from_utf8(node.trim_ascii()).ok()?;
    if node.len() > 64 {
        return None;
    }
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

/// The key a per-client limit counts under: the address for IPv4, its
/// `/ipv6_prefix` network for IPv6 (one subscriber usually holds a whole
/// /64, so per-address limits there count nothing).
pub fn rate_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let prefix = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
        v4 => v4,
    }
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

    fn xff(proxies: &TrustedProxies, peer: &str, lines: &[&[u8]]) -> IpAddr {
        proxies.client_ip(ip(peer), lines.iter().copied())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        assert_eq!(xff(&proxies, "198.51.100.7", &[b"203.0.113.9"]), ip("198.51.100.7"));
        let none = TrustedProxies::none().with_header(ClientIpHeader::Forwarded);
        assert_eq!(xff(&none, "::ffff:198.51.100.7", &[b"for=1.2.3.4"]), ip("198.51.100.7"));
    }

    #[test]
    fn reads_from_the_right_skipping_trusted_hops() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8", "2001:db8:ffff::/48"]).unwrap();
        // The client planted 1.1.1.1; the first untrusted hop from the right is the truth.
        assert_eq!(xff(&proxies, "10.0.0.1", &[b"1.1.1.1, 203.0.113.9, 10.0.0.2"]), ip("203.0.113.9"));
        // Several header lines are one list.
        assert_eq!(xff(&proxies, "10.0.0.1", &[b"1.1.1.1", b"203.0.113.9, 10.0.0.2"]), ip("203.0.113.9"));
        // Every hop trusted: the leftmost one. No header: the peer.
        assert_eq!(xff(&proxies, "10.0.0.1", &[b"10.0.0.5,10.0.0.4"]), ip("10.0.0.5"));
        assert_eq!(xff(&proxies, "::ffff:10.0.0.1", &[]), ip("10.0.0.1"));
        // Ports and brackets.
        assert_eq!(xff(&proxies, "10.0.0.1", &[b"[2001:db8:1::7]:4711"]), ip("2001:db8:1::7"));
        assert_eq!(xff(&proxies, "10.0.0.1", &[b"192.0.2.60:8080"]), ip("192.0.2.60"));
    }

    #[test]
    fn junk_left_of_the_client_does_not_matter() {
        let proxies = TrustedProxies::parse(["127.0.0.1/32"]).unwrap();
        // Non-ASCII bytes the client put in front of the hop the proxy appended.
        assert_eq!(xff(&proxies, "127.0.0.1", &[b"\xff\xfe, 203.0.113.9"]), ip("203.0.113.9"));
        assert_eq!(xff(&proxies, "127.0.0.1", &[b"\xff\xfe", b"203.0.113.9"]), ip("203.0.113.9"));
        // An unreadable hop right of every address: stop at our proxy.
        assert_eq!(xff(&proxies, "127.0.0.1", &[b"203.0.113.9, _hidden"]), ip("127.0.0.1"));
        // Spaces and tabs around a hop are fine; other bytes make it unreadable
        // (found by fuzzing: a vertical tab is Unicode whitespace, not HTTP's).
        assert_eq!(xff(&proxies, "127.0.0.1", &[b"\xff, \t203.0.113.9 "]), ip("203.0.113.9"));
        assert_eq!(xff(&proxies, "127.0.0.1", &[b"203.0.113.9\x0b"]), ip("127.0.0.1"));
    }

    #[test]
    fn one_header_only_and_forwarded_when_chosen() {
        let proxies = TrustedProxies::parse(["127.0.0.1/32"]).unwrap();
        assert_eq!(proxies.header(), ClientIpHeader::XForwardedFor);
        let forwarded = proxies.clone().with_header(ClientIpHeader::Forwarded);
        let header = br#"for=1.1.1.1, for="[2001:db8:1::7]:4711";proto=https"#;
        assert_eq!(xff(&forwarded, "127.0.0.1", &[header]), ip("2001:db8:1::7"));
        assert_eq!(xff(&forwarded, "127.0.0.1", &[b"for=\"192.0.2.60:8080\""]), ip("192.0.2.60"));
        assert_eq!(xff(&forwarded, "127.0.0.1", &[b"for=_hidden, for=127.0.0.1"]), ip("127.0.0.1"));
        let real = proxies.with_header(ClientIpHeader::XRealIp);
        assert_eq!(xff(&real, "127.0.0.1", &[b"1.1.1.1", b"198.51.100.4"]), ip("198.51.100.4"));
        assert_eq!(xff(&real, "127.0.0.1", &[b"1.1.1.1, 198.51.100.4"]), ip("127.0.0.1"));
        assert_eq!(ClientIpHeader::parse("Forwarded"), Some(ClientIpHeader::Forwarded));
        assert_eq!(ClientIpHeader::parse("x-client-ip"), None);
    }

    #[test]
    fn ipv6_limits_count_per_prefix() {
        assert_eq!(rate_key(ip("2001:db8:1:2:aaaa::1"), 64), ip("2001:db8:1:2::"));
        assert_eq!(rate_key(ip("2001:db8:1:2:bbbb::9"), 64), ip("2001:db8:1:2::"));
        assert_eq!(rate_key(ip("2001:db8:1:2:bbbb::9"), 48), ip("2001:db8:1::"));
        assert_eq!(rate_key(ip("2001:db8::9"), 128), ip("2001:db8::9"));
        assert_eq!(rate_key(ip("2001:db8::9"), 0), ip("::"));
        assert_eq!(rate_key(ip("::ffff:192.0.2.1"), 64), ip("192.0.2.1"));
    }

    proptest::proptest! {
        /// Any header bytes: never a panic, and when the hop our proxy
        /// appended is a readable untrusted address, that is the client.
        #[test]
        fn any_header_bytes(junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), last in proptest::prelude::any::<u32>()) {
            let proxies = TrustedProxies::parse(["127.0.0.0/8", "10.0.0.0/8"]).unwrap();
            let appended = std::net::Ipv4Addr::from(last);
            let mut line = junk.clone();
            line.extend_from_slice(format!(", {appended}").as_bytes());
            let client = proxies.client_ip(ip("127.0.0.1"), [line.as_slice()]);
            if !proxies.contains(IpAddr::V4(appended)) {
                proptest::prop_assert_eq!(client, IpAddr::V4(appended));
            }
            let _ = proxies.clone().with_header(ClientIpHeader::Forwarded).client_ip(ip("127.0.0.1"), [junk.as_slice()]);
            let _ = proxies.clone().with_header(ClientIpHeader::XRealIp).client_ip(ip("127.0.0.1"), [junk.as_slice()]);
        }
    }

    #[test]
    fn rejects_bad_cidrs() {
        assert_eq!(TrustedProxies::parse(["10.0.0.0/33"]), Err(BadCidr("10.0.0.0/33".into())));
        assert!(TrustedProxies::parse(["192.0.2.1", " ", "::1"]).unwrap().contains(ip("::ffff:192.0.2.1")));
    }
}
