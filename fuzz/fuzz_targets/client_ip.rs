//! Any forwarding-header bytes from a trusted proxy: the client-IP rule
//! never panics, and when the hop the proxy appended last is a readable
//! address that is not a trusted proxy, that address is the client —
//! whatever the client wrote to its left.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use meridian_verifier::net::{ClientIpHeader, TrustedProxies};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    let header = match choice % 3 {
        0 => ClientIpHeader::XForwardedFor,
        1 => ClientIpHeader::Forwarded,
        _ => ClientIpHeader::XRealIp,
    };
    let Ok(proxies) = TrustedProxies::parse(["127.0.0.0/8", "10.0.0.0/8", "2001:db8:ffff::/48"]) else { return };
    let proxies = proxies.with_header(header);
    let peer: IpAddr = [127, 0, 0, 1].into();
    // The input as several header lines, split at NUL bytes.
    let lines: Vec<&[u8]> = rest.split(|b| *b == 0).collect();
    let client = proxies.client_ip(peer, lines.iter().copied());
    // What the proxy appended: the last hop of the last line.
    if header == ClientIpHeader::XForwardedFor
        && let Some(last) = lines.last().and_then(|line| line.rsplit(|b| *b == b',').next())
        // Readable as the rule reads it: ASCII whitespace around it (HTTP's
        // spaces and tabs, and CR, LF, FF), not Unicode's (a vertical tab).
        && let Some(appended) = std::str::from_utf8(last.trim_ascii()).ok().and_then(|t| t.parse::<IpAddr>().ok())
    {
        let appended = meridian_verifier::net::canonical_ip(appended);
        if !proxies.contains(appended) {
            assert_eq!(client, appended, "the proxy's hop was not the client");
        }
    }
});
