//! The network timing of a case: what the verifier's echo would measure.
//!
//! The corpus says where the login comes from; this model adds where the
//! browser really is and how its traffic reaches the verifier, and turns
//! both into the two round trips the echo seals into the challenge
//! (`tcp_rtt_us`, `echo_rtt_us`). It is deterministic: every case draws
//! from its own stream, seeded from its id, so the committed corpus stays
//! as it is and a case's timing never changes when others are added.
//!
//! The model (docs/EVALUATION.md, "The latency model"):
//!
//! - **Places.** The verifier runs in Singapore ([`SERVER`]). A person is
//!   in the largest city of their country ([`city`]); a person in CN in one
//!   of five large cities, drawn per case. Exits stand in their country's
//!   largest city.
//! - **Round trip between places** = great-circle distance × path
//!   inflation ÷ 102 km per ms of round trip (light in fibre, 204 km/ms
//!   each way) + 0.5 ms of routers. Inflation is drawn from 1.3–2.0 (routes
//!   are not great circles; published measurements put the median around
//!   1.5); a path that crosses CN's border also crosses its international
//!   gateways: 5–30 ms more (an assumption of this model).
//! - **Access** (the browser's last mile): Wi-Fi for 70 % of cases, 1–8 ms;
//!   mobile for 30 %, 10–40 ms.
//! - **Direct, full tunnels** (WireGuard, OpenVPN, IPsec, WARP, home-routed
//!   roaming, satellite): the verifier's TCP connection reaches the browser
//!   itself, so the kernel's round trip includes every leg; the echo adds
//!   only the page's own answer time and radio jitter: 0.3–8.5 ms
//!   (published direct measurements), up to 10 ms more on mobile.
//! - **Proxies** (Shadowsocks, V2Ray, Trojan, SOCKS/HTTP proxies, Tor,
//!   company gateways, Private Relay): the TCP connection ends at the exit;
//!   the kernel times server ↔ exit (+0.2–1 ms of the exit's own network);
//!   the echo adds the hidden leg: browser ↔ exit, the access network and
//!   1–5 ms of relay processing (Private Relay's two hops: 5–20 ms). An
//!   exit that holds back its acknowledgements (`stretched-exit-*`) makes
//!   the kernel's round trip read 1–8 ms under the echo (never less than
//!   it is), and its users send no UDP around it.
//! - **The echo over plain requests** (`POST /v1/echo`, where a network
//!   lets no WebSocket through): the same paths, and each round trip also
//!   waits for the browser to turn one request's answer into the next
//!   request: 2–12 ms (headless Chromium on the development machine, the
//!   least of eight: 3.4–4.0 ms against a bare server, 6.4 ms through the
//!   demo; slower devices are assumed up to 12 ms).
//! - **UDP** (the drop-in's probe of the second origin, [`udp_country`]):
//!   around a proxy, half the browsers send WebRTC's UDP straight out from
//!   where they are (drawn per case; the other half have leak protection,
//!   a TUN mode or a firewall that stops it — an assumption of this
//!   model). Tor Browser and the hardened privacy browsers send none.
//!   Direct and full-tunnel paths send it where their TCP goes, which
//!   shows nothing, so they are not drawn.

use meridian_verifier::challenge::Latency;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::corpus::{Case, Class};

/// Where the evaluation's verifier runs: Singapore.
pub const SERVER: (f64, f64) = (1.29, 103.85);

/// How a browser's traffic reaches the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Straight there (home, office, mobile, satellite networks).
    Direct,
    /// An IP tunnel to the exit: the TCP connection still ends at the browser.
    FullTunnel,
    /// A proxy or relay that ends the TCP connection at its exit.
    Proxy,
    /// A proxy whose exit holds back its TCP acknowledgements: the
    /// verifier's round trip reads almost as long as the echo.
    StretchedProxy,
    /// iCloud Private Relay: two proxy hops inside the user's region.
    PrivateRelay,
    /// Straight there, with the echo over plain requests: the network
    /// lets no WebSocket through.
    DirectOverRequests,
    /// No echo reaches the verifier: a filter rule on `/v1/echo` drops it,
    /// WebSocket and plain requests alike; the page fetches a plain
    /// challenge.
    Blocked,
}

/// How each family's traffic travels, and where from.
pub fn via(case: &Case) -> Via {
    match case.family.as_str() {
        "restricted-neighbour-exit"
        | "restricted-far-exit"
        | "restricted-hosting-exit"
        | "spoofed-zone"
        | "engine-spoof"
        | "privacy-browser-hiding"
        | "tor"
        | "corporate-egress-honest"
        | "corporate-egress-restricted"
        | "corporate-gateway-untrusted" => Via::Proxy,
        "roaming" | "warp" | "full-tunnel-exit" | "full-tunnel-engine-spoof" => Via::FullTunnel,
        "private-relay" => Via::PrivateRelay,
        "stretched-exit-engine-spoof" => Via::StretchedProxy,
        "echo-blocked-engine-spoof" => Via::Blocked,
        "echo-blocked-honest" => Via::DirectOverRequests,
        // The relay family's echo runs where its challenge was fetched:
        // directly from there.
        _ => Via::Direct,
    }
}

/// The country the browser is really in: CN for every evasion case, the
/// network's country for honest ones (where the challenge was fetched, for
/// relays; the staff's country behind a company gateway).
fn browser_country(case: &Case) -> String {
    if case.family == "relay" {
        // The echo ran in the browser that fetched the challenge: in CN,
        // or a clean remote browser in a data centre.
        return case.challenge_from.as_ref().unwrap_or(&case.login_from).country.clone();
    }
    if case.class == Class::Evasion {
        return "CN".into();
    }
    if case.family.starts_with("corporate-") {
        // The story names the staff's country: "Staff in MY (…)".
        if let Some(code) = case.story.strip_prefix("Staff in ").and_then(|rest| rest.get(..2)) {
            return code.to_owned();
        }
    }
    case.challenge_from.as_ref().unwrap_or(&case.login_from).country.clone()
}

/// Where the browser's UDP probe comes from, when it leaves around a
/// proxy (see the module documentation): the country the browser is in.
pub fn udp_country(case: &Case) -> Option<String> {
    if via(case) != Via::Proxy || matches!(case.family.as_str(), "tor" | "privacy-browser-hiding") {
        return None;
    }
    // A stream of its own, so the round trips' draws stay as they are.
    let salt = case.id.bytes().fold(0x7564_7020_6f72_6967_u64, |h, b| h.rotate_left(9) ^ u64::from(b));
    ChaCha8Rng::seed_from_u64(salt).random_bool(0.5).then(|| browser_country(case))
}

/// The round trips the echo would seal for `case`; none when its echo is
/// blocked.
pub fn latency(case: &Case) -> Option<Latency> {
    let salt = case.id.bytes().fold(0x6c61_7465_6e63_7921_u64, |h, b| h.rotate_left(9) ^ u64::from(b));
    let mut rng = ChaCha8Rng::seed_from_u64(salt);
    let browser_in = browser_country(case);
    let exit_in = case.challenge_from.as_ref().unwrap_or(&case.login_from).country.clone();
    let browser = if browser_in == "CN" { *pick(&mut rng, CN_CITIES) } else { city(&browser_in) };
    let exit = city(&exit_in);
    let mobile = rng.random_bool(0.3);
    let access = if mobile { rng.random_range(10.0..40.0) } else { rng.random_range(1.0..8.0) };
    let jitter = rng.random_range(0.3..8.5) + if mobile { rng.random_range(0.0..10.0) } else { 0.0 };
    let (tcp_ms, echo_ms) = match via(case) {
        Via::Direct => {
            let tcp = round_trip(&mut rng, browser, SERVER, browser_in == "CN") + access;
            (tcp, tcp + jitter)
        }
        Via::DirectOverRequests => {
            let tcp = round_trip(&mut rng, browser, SERVER, browser_in == "CN") + access;
            (tcp, tcp + jitter + rng.random_range(2.0..12.0))
        }
        Via::FullTunnel => {
            let tcp = round_trip(&mut rng, browser, exit, browser_in != exit_in && browser_in == "CN")
                + round_trip(&mut rng, exit, SERVER, false)
                + access
                + rng.random_range(1.0..3.0);
            (tcp, tcp + jitter)
        }
        Via::Proxy | Via::StretchedProxy => {
            let tcp = round_trip(&mut rng, exit, SERVER, false) + rng.random_range(0.2..1.0);
            let hidden = round_trip(&mut rng, browser, exit, browser_in != exit_in && browser_in == "CN")
                + access
                + rng.random_range(1.0..5.0);
            let echo = tcp + hidden;
            if via(case) == Via::StretchedProxy {
                // Stretched to a few ms under the echo, as a direct
                // browser's would be; never shorter than it really is.
                (tcp.max(echo - rng.random_range(1.0..8.0)), echo)
            } else {
                (tcp, echo)
            }
        }
        Via::PrivateRelay => {
            let tcp = round_trip(&mut rng, exit, SERVER, false) + rng.random_range(0.2..1.0);
            (tcp, tcp + access + rng.random_range(5.0..20.0))
        }
        Via::Blocked => return None,
    };
    let us = |ms: f64| (ms * 1000.0).round().clamp(0.0, f64::from(u32::MAX - 1)) as u32;
    Some(Latency { tcp_rtt_us: Some(us(tcp_ms)), echo_rtt_us: us(echo_ms) })
}

/// A round trip between two places, ms (see the module documentation).
fn round_trip(rng: &mut ChaCha8Rng, a: (f64, f64), b: (f64, f64), crosses_cn_border: bool) -> f64 {
    let inflation = rng.random_range(1.3..2.0);
    let border = if crosses_cn_border { rng.random_range(5.0..30.0) } else { 0.0 };
    great_circle_km(a, b) * inflation / 102.0 + 0.5 + border
}

fn great_circle_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Beijing, Shanghai, Guangzhou, Shenzhen, Chengdu.
const CN_CITIES: &[(f64, f64)] = &[(39.9, 116.4), (31.2, 121.5), (23.1, 113.3), (22.5, 114.1), (30.7, 104.1)];

/// The largest city (or capital) of each country the corpus names,
/// `(lat, lon)` to a tenth of a degree.
fn city(code: &str) -> (f64, f64) {
    match code {
        "US" => (40.7, -74.0),
        "CA" => (43.7, -79.4),
        "MX" => (19.4, -99.1),
        "BR" => (-23.5, -46.6),
        "AR" => (-34.6, -58.4),
        "CL" => (-33.4, -70.6),
        "CO" => (4.7, -74.1),
        "GB" => (51.5, -0.1),
        "IE" => (53.3, -6.3),
        "FR" => (48.9, 2.4),
        "DE" => (52.5, 13.4),
        "NL" => (52.4, 4.9),
        "BE" => (50.8, 4.4),
        "CH" => (47.4, 8.5),
        "LU" => (49.6, 6.1),
        "AT" => (48.2, 16.4),
        "IT" => (41.9, 12.5),
        "ES" => (40.4, -3.7),
        "PT" => (38.7, -9.1),
        "PL" => (52.2, 21.0),
        "SE" => (59.3, 18.1),
        "NO" => (59.9, 10.8),
        "FI" => (60.2, 24.9),
        "GR" => (38.0, 23.7),
        "TR" => (41.0, 29.0),
        "RU" => (55.8, 37.6),
        "UA" => (50.5, 30.5),
        "IL" => (32.1, 34.8),
        "EG" => (30.0, 31.2),
        "ZA" => (-26.2, 28.0),
        "NG" => (6.5, 3.4),
        "KE" => (-1.3, 36.8),
        "AE" => (25.2, 55.3),
        "SA" => (24.7, 46.7),
        "IR" => (35.7, 51.4),
        "AF" => (34.5, 69.2),
        "PK" => (24.9, 67.0),
        "IN" => (28.6, 77.2),
        "NP" => (27.7, 85.3),
        "LK" => (6.9, 79.9),
        "MM" => (16.8, 96.2),
        "TH" => (13.8, 100.5),
        "LA" => (18.0, 102.6),
        "VN" => (10.8, 106.7),
        "MY" => (3.1, 101.7),
        "SG" => (1.3, 103.8),
        "ID" => (-6.2, 106.8),
        "PH" => (14.6, 121.0),
        "HK" => (22.3, 114.2),
        "MO" => (22.2, 113.5),
        "TW" => (25.0, 121.6),
        "CN" => (31.2, 121.5),
        "JP" => (35.7, 139.7),
        "KR" => (37.6, 127.0),
        "MN" => (47.9, 106.9),
        "KZ" => (43.2, 76.9),
        "AU" => (-33.9, 151.2),
        "NZ" => (-36.8, 174.8),
        "PF" => (-17.5, -149.6),
        "IS" => (64.1, -21.9),
        // Not in the corpus's world: the verifier's own city, so a new
        // country shows up as near, never as an invented distance.
        _ => SERVER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_the_usual_ones() {
        let km = great_circle_km(city("SG"), city("HK"));
        assert!((2_500.0..2_650.0).contains(&km), "{km}");
        let km = great_circle_km(city("GB"), city("US"));
        assert!((5_500.0..5_650.0).contains(&km), "{km}");
    }
}
