//! The evaluation's world: countries with the zones and locales their
//! people use, and the IP databases the cases are observed through.
//!
//! The lists are written by hand from common knowledge of each country, not
//! derived from the verifier's own tables, so the evaluation does not grade
//! the tables against themselves.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use meridian_verifier::geo::{IpIntel, RelayListError, RelayLists, WARP_ASN};
use meridian_verifier::policy::TrustedNetwork;
use serde::{Deserialize, Serialize};

/// A country as its residents' browsers present it.
#[derive(Debug)]
pub struct Country {
    /// ISO 3166-1 alpha-2.
    pub code: &'static str,
    /// IANA zones in use there; the first is the most populous.
    pub zones: &'static [&'static str],
    /// Locales residents' browsers use; the first is the most common.
    pub locales: &'static [&'static str],
}

macro_rules! countries {
    ($($code:literal: [$($zone:literal),+] [$($locale:literal),+];)+) => {
        /// Every country the corpus draws from.
        pub const COUNTRIES: &[Country] = &[
            $(Country { code: $code, zones: &[$($zone),+], locales: &[$($locale),+] },)+
        ];
    };
}

countries! {
    "US": ["America/New_York", "America/Chicago", "America/Los_Angeles", "America/Denver", "America/Phoenix", "America/Anchorage", "Pacific/Honolulu"] ["en-US", "es-US"];
    "CA": ["America/Toronto", "America/Vancouver", "America/Edmonton", "America/Winnipeg", "America/Halifax", "America/St_Johns"] ["en-CA", "fr-CA"];
    "MX": ["America/Mexico_City", "America/Tijuana", "America/Cancun"] ["es-MX"];
    "BR": ["America/Sao_Paulo", "America/Manaus", "America/Recife"] ["pt-BR"];
    "AR": ["America/Argentina/Buenos_Aires"] ["es-AR"];
    "CL": ["America/Santiago"] ["es-CL"];
    "CO": ["America/Bogota"] ["es-CO"];
    "GB": ["Europe/London"] ["en-GB"];
    "IE": ["Europe/Dublin"] ["en-IE", "ga-IE"];
    "FR": ["Europe/Paris"] ["fr-FR"];
    "DE": ["Europe/Berlin"] ["de-DE"];
    "NL": ["Europe/Amsterdam"] ["nl-NL"];
    "BE": ["Europe/Brussels"] ["nl-BE", "fr-BE", "de-BE"];
    "CH": ["Europe/Zurich"] ["de-CH", "fr-CH", "it-CH"];
    "LU": ["Europe/Luxembourg"] ["fr-LU", "de-LU", "lb-LU"];
    "AT": ["Europe/Vienna"] ["de-AT"];
    "IT": ["Europe/Rome"] ["it-IT"];
    "ES": ["Europe/Madrid", "Atlantic/Canary"] ["es-ES", "ca-ES"];
    "PT": ["Europe/Lisbon", "Atlantic/Azores"] ["pt-PT"];
    "PL": ["Europe/Warsaw"] ["pl-PL"];
    "SE": ["Europe/Stockholm"] ["sv-SE"];
    "NO": ["Europe/Oslo"] ["nb-NO"];
    "FI": ["Europe/Helsinki"] ["fi-FI", "sv-FI"];
    "GR": ["Europe/Athens"] ["el-GR"];
    "TR": ["Europe/Istanbul"] ["tr-TR"];
    "RU": ["Europe/Moscow", "Asia/Yekaterinburg", "Asia/Novosibirsk", "Asia/Vladivostok"] ["ru-RU"];
    "UA": ["Europe/Kyiv"] ["uk-UA"];
    "IL": ["Asia/Jerusalem"] ["he-IL"];
    "EG": ["Africa/Cairo"] ["ar-EG"];
    "ZA": ["Africa/Johannesburg"] ["en-ZA", "af-ZA", "zu-ZA"];
    "NG": ["Africa/Lagos"] ["en-NG"];
    "KE": ["Africa/Nairobi"] ["en-KE", "sw-KE"];
    "AE": ["Asia/Dubai"] ["ar-AE", "en-AE"];
    "SA": ["Asia/Riyadh"] ["ar-SA"];
    "IR": ["Asia/Tehran"] ["fa-IR"];
    "AF": ["Asia/Kabul"] ["fa-AF", "ps-AF"];
    "PK": ["Asia/Karachi"] ["ur-PK", "en-PK"];
    "IN": ["Asia/Kolkata"] ["hi-IN", "en-IN", "ta-IN", "bn-IN", "te-IN"];
    "NP": ["Asia/Kathmandu"] ["ne-NP"];
    "LK": ["Asia/Colombo"] ["si-LK", "ta-LK"];
    "MM": ["Asia/Yangon"] ["my-MM"];
    "TH": ["Asia/Bangkok"] ["th-TH"];
    "LA": ["Asia/Vientiane"] ["lo-LA"];
    "VN": ["Asia/Ho_Chi_Minh"] ["vi-VN"];
    "MY": ["Asia/Kuala_Lumpur"] ["ms-MY", "en-MY", "zh-MY"];
    "SG": ["Asia/Singapore"] ["en-SG", "zh-SG", "ms-SG", "ta-SG"];
    "ID": ["Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura"] ["id-ID"];
    "PH": ["Asia/Manila"] ["en-PH", "fil-PH"];
    "HK": ["Asia/Hong_Kong"] ["zh-HK", "en-HK"];
    "MO": ["Asia/Macau"] ["zh-MO", "pt-MO"];
    "TW": ["Asia/Taipei"] ["zh-TW"];
    "CN": ["Asia/Shanghai", "Asia/Urumqi"] ["zh-CN"];
    "JP": ["Asia/Tokyo"] ["ja-JP"];
    "KR": ["Asia/Seoul"] ["ko-KR"];
    "MN": ["Asia/Ulaanbaatar"] ["mn-MN"];
    "KZ": ["Asia/Almaty"] ["kk-KZ", "ru-KZ"];
    "AU": ["Australia/Sydney", "Australia/Melbourne", "Australia/Brisbane", "Australia/Perth", "Australia/Adelaide", "Australia/Darwin", "Australia/Eucla"] ["en-AU"];
    "NZ": ["Pacific/Auckland", "Pacific/Chatham"] ["en-NZ", "mi-NZ"];
    "PF": ["Pacific/Tahiti", "Pacific/Marquesas"] ["fr-PF"];
}

/// Countries added after the corpus was first committed. They are kept out
/// of [`COUNTRIES`] (which older families draw from by index, so growing it
/// would change committed cases) and only named by the families that need
/// them; the IP databases cover them all the same.
pub const EXTRA_COUNTRIES: &[Country] =
    &[Country { code: "IS", zones: &["Atlantic/Reykjavik"], locales: &["is-IS"] }];

/// Every country the IP databases cover: [`COUNTRIES`], then [`EXTRA_COUNTRIES`].
pub fn all_countries() -> impl Iterator<Item = &'static Country> {
    COUNTRIES.iter().chain(EXTRA_COUNTRIES)
}

/// A country of the world by code.
///
/// # Panics
/// On a code not in [`COUNTRIES`] or [`EXTRA_COUNTRIES`]: the corpus
/// generator only names listed ones.
pub fn country(code: &str) -> &'static Country {
    all_countries()
        .find(|c| c.code == code)
        .unwrap_or_else(|| unreachable!("country {code} is not in the evaluation's world"))
}

/// What kind of network an IP belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkKind {
    /// A home, office or mobile access network.
    Residential,
    /// A cloud, hosting or VPN network on Meridian's hosting list.
    Hosting,
    /// An iCloud Private Relay egress, listed in the Private Relay egress
    /// list with the user's own country (the origin's country).
    PrivateRelay,
    /// A Cloudflare WARP egress (AS13335) in the user's own country.
    Warp,
    /// A Tor exit relay, on the Tor exit list, in the origin's country.
    Tor,
    /// The Singapore egress of a company's network ([`CORPORATE_EGRESS`]),
    /// a trusted network of the `restrict-cn-corporate` policy; the
    /// origin's country is always SG.
    CorporateEgress,
}

/// Where a request comes from: a country and a kind of network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// Residential, hosting, a relay or a corporate egress.
    pub network: NetworkKind,
}

/// Hosting networks the test ASN database assigns, by turns, to each
/// country's hosting range. All are on the built-in hosting list.
const HOSTING: &[(u32, &str)] = &[
    (16509, "Amazon.com, Inc."),
    (14061, "DigitalOcean, LLC"),
    (24940, "Hetzner Online GmbH"),
    (9009, "M247 Europe SRL"),
    (20473, "The Constant Company, LLC"),
    (212238, "Datacamp Limited"),
    (16276, "OVH SAS"),
    (63949, "Akamai Connected Cloud"),
];

/// The test network of a country: `10.<first letter>.<second letter>.0/24`
/// (ASCII codes), residential in the lower half, hosting in the upper.
fn network_of(code: &str) -> [u8; 2] {
    let bytes = code.as_bytes();
    [bytes.first().copied().unwrap_or(b'X'), bytes.get(1).copied().unwrap_or(b'X')]
}

/// Where Tor exits stand: each country gets a `/27` of 198.51.100.0/24
/// (TEST-NET-2), in this order.
pub const TOR_EXIT_COUNTRIES: &[&str] = &["DE", "NL", "US", "FR", "SE", "CH", "LU", "GB"];

/// The company's Singapore egress: 203.0.113.0/24 (TEST-NET-3), in a cloud.
pub const CORPORATE_EGRESS: &str = "203.0.113.0/24";
/// Where the company's staff work (and may log in from through the egress).
pub const CORPORATE_COUNTRIES: &[&str] = &["SG", "MY", "ID", "TH", "VN", "PH", "IN", "JP", "AU"];

/// The `restrict-cn-corporate` policy's trusted network.
pub fn corporate_network() -> TrustedNetwork {
    TrustedNetwork {
        name: "Example Corp Singapore egress".into(),
        networks: vec![CORPORATE_EGRESS.parse().unwrap_or_else(|e| unreachable!("literal network: {e}"))],
        countries: CORPORATE_COUNTRIES
            .iter()
            .filter_map(|c| meridian_verifier::geo::Country::parse(c))
            .collect(),
    }
}

/// The 16 bits of a country's relay `/64` (`2001:db8:1:XXXX::/64` Private
/// Relay, `2001:db8:2:XXXX::/64` WARP, in the documentation prefix).
fn relay_group(code: &str) -> u16 {
    let [a, b] = network_of(code);
    (u16::from(a) << 8) | u16::from(b)
}

fn tor_slot(code: &str) -> u8 {
    let slot = TOR_EXIT_COUNTRIES.iter().position(|c| *c == code).unwrap_or(0);
    u8::try_from(slot).unwrap_or(0)
}

/// An address in `origin`'s test network; `n` spreads cases over it.
pub fn ip(origin: &Origin, n: usize) -> IpAddr {
    let [a, b] = network_of(&origin.country);
    let spread = u16::try_from(n % 120).unwrap_or(0);
    let host = u8::try_from(n % 120).unwrap_or(0);
    match origin.network {
        NetworkKind::Residential => IpAddr::V4(Ipv4Addr::new(10, a, b, 1 + host)),
        NetworkKind::Hosting => IpAddr::V4(Ipv4Addr::new(10, a, b, 129 + host)),
        NetworkKind::PrivateRelay => {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, relay_group(&origin.country), 0, 0, 0, 1 + spread))
        }
        NetworkKind::Warp => {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, relay_group(&origin.country), 0, 0, 0, 1 + spread))
        }
        NetworkKind::Tor => {
            let host = u8::try_from(n % 30).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, tor_slot(&origin.country) * 32 + 1 + host))
        }
        NetworkKind::CorporateEgress => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1 + host)),
    }
}

/// Apple's Private Relay egress list (`prefix,country,region,city,`) for
/// every country of the world: one `/64` each.
pub fn private_relay_csv() -> String {
    all_countries().map(|c| format!("2001:db8:1:{:x}::/64,{},,,\n", relay_group(c.code), c.code)).collect()
}

/// The Tor Project's `exit-addresses` document listing every address
/// [`ip`] hands out for [`NetworkKind::Tor`].
pub fn tor_exit_addresses() -> String {
    let mut out = String::new();
    for (slot, code) in TOR_EXIT_COUNTRIES.iter().enumerate() {
        for host in 0..30 {
            let origin = Origin { country: (*code).to_owned(), network: NetworkKind::Tor };
            let address = ip(&origin, host);
            let fingerprint = slot * 32 + host;
            out.push_str(&format!(
                "ExitNode {fingerprint:040X}\nPublished 2027-01-01 00:00:00\nLastStatus 2027-01-01 01:00:00\n\
                 ExitAddress {address} 2027-01-01 01:05:00\n"
            ));
        }
    }
    out
}

/// The relay lists of the evaluation's world.
///
/// # Errors
/// When a list is not in its published format (a defect in the evaluation).
pub fn relay_lists() -> Result<RelayLists, RelayListError> {
    RelayLists::none().with_private_relay_csv(&private_relay_csv())?.with_tor_exits(&tor_exit_addresses())
}

/// Country and ASN databases, written in memory, covering every country of
/// [`COUNTRIES`] and [`EXTRA_COUNTRIES`]: residential ranges carry a
/// private-use ASN, hosting ranges a network from the built-in hosting
/// list; with the relays of [`relay_lists`] (WARP by its AS, AS13335), the
/// Tor exits' own ranges and the corporate egress (SG, in a cloud).
pub fn intel() -> IpIntel {
    use mmdb_writer::{Value, Writer};
    let mut country_db = Writer::new("Meridian-Eval-Country");
    let mut asn_db = Writer::new("Meridian-Eval-ASN");
    let record = |number: u32, org: &str| {
        Value::map([
            ("autonomous_system_number", Value::from(number)),
            ("autonomous_system_organization", Value::from(org)),
        ])
    };
    let located = |code: &str| Value::map([("country_code", Value::from(code))]);
    let net = |text: String| text.parse::<ipnet::IpNet>().ok();
    for (index, country) in all_countries().enumerate() {
        let [a, b] = network_of(country.code);
        if let Some(block) = net(format!("10.{a}.{b}.0/24")) {
            let _ = country_db.insert_value(block, located(country.code));
        }
        let residential_asn = 64_512 + u32::try_from(index).unwrap_or(0);
        if let Some(block) = net(format!("10.{a}.{b}.0/25")) {
            let _ = asn_db
                .insert_value(block, record(residential_asn, &format!("Access ISP of {}", country.code)));
        }
        let (asn, org) = HOSTING[index % HOSTING.len()];
        if let Some(block) = net(format!("10.{a}.{b}.128/25")) {
            let _ = asn_db.insert_value(block, record(asn, org));
        }
        // Private Relay: Apple's list names the country; the egress
        // servers' own AS is a CDN's, and no country database entry.
        if let Some(block) = net(format!("2001:db8:1:{:x}::/64", relay_group(country.code))) {
            let _ = asn_db.insert_value(block, record(36_183, "Akamai Technologies, Inc."));
        }
        // WARP: Cloudflare's AS, geolocated to the user's country.
        if let Some(block) = net(format!("2001:db8:2:{:x}::/64", relay_group(country.code))) {
            let _ = country_db.insert_value(block, located(country.code));
            let _ = asn_db.insert_value(block, record(WARP_ASN, "Cloudflare, Inc."));
        }
    }
    for (slot, code) in TOR_EXIT_COUNTRIES.iter().enumerate() {
        if let Some(block) = net(format!("198.51.100.{}/27", slot * 32)) {
            let _ = country_db.insert_value(block, located(code));
            let _ = asn_db.insert_value(block, record(64_496, "Tor exit operator"));
        }
    }
    if let Some(block) = net(CORPORATE_EGRESS.to_owned()) {
        let _ = country_db.insert_value(block, located("SG"));
        let _ = asn_db.insert_value(block, record(16_509, "Amazon.com, Inc."));
    }
    let relays = relay_lists().unwrap_or_default();
    IpIntel::from_bytes(country_db.to_bytes().ok(), asn_db.to_bytes().ok())
        .unwrap_or_default()
        .with_relays(relays)
}

/// `navigator.languages` for a locale: the locale, its bare language, and
/// optionally English after them.
pub fn languages_for(locale: &str, with_english: bool) -> Vec<String> {
    let mut languages = vec![locale.to_owned()];
    if let Some((primary, _)) = locale.split_once('-') {
        languages.push(primary.to_owned());
    }
    if with_english && !locale.starts_with("en") {
        languages.push("en".to_owned());
    }
    languages
}

/// The `Accept-Language` header a browser with these languages sends.
pub fn accept_language(languages: &[String]) -> String {
    languages
        .iter()
        .enumerate()
        .map(|(i, l)| if i == 0 { l.clone() } else { format!("{l};q=0.{}", 10 - i.min(9)) })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;
    use meridian_verifier::geo::RelayKind;

    #[test]
    fn the_relay_lists_parse_and_every_network_kind_resolves() {
        let lists = relay_lists().unwrap();
        assert_eq!(lists.private_relay_len(), COUNTRIES.len() + EXTRA_COUNTRIES.len());
        assert_eq!(lists.tor_exits_len(), TOR_EXIT_COUNTRIES.len() * 30);
        let intel = intel();
        let facts = |code: &str, network: NetworkKind, n: usize| {
            intel.lookup(ip(&Origin { country: code.into(), network }, n))
        };
        let relay = facts("JP", NetworkKind::PrivateRelay, 7);
        assert_eq!(relay.relay.map(|r| r.kind), Some(RelayKind::IcloudPrivateRelay));
        assert_eq!(relay.country.map(|c| c.as_str().to_owned()), Some("JP".into()));
        let warp = facts("BR", NetworkKind::Warp, 3);
        assert_eq!(warp.relay.map(|r| r.kind), Some(RelayKind::CloudflareWarp));
        assert_eq!(warp.country.map(|c| c.as_str().to_owned()), Some("BR".into()));
        let tor = facts("SE", NetworkKind::Tor, 119);
        assert_eq!(tor.relay.map(|r| r.kind), Some(RelayKind::Tor));
        assert_eq!(tor.country.map(|c| c.as_str().to_owned()), Some("SE".into()));
        let egress = facts("SG", NetworkKind::CorporateEgress, 5);
        assert_eq!(egress.country.map(|c| c.as_str().to_owned()), Some("SG".into()));
        assert!(corporate_network().contains(
            ip(&Origin { country: "SG".into(), network: NetworkKind::CorporateEgress }, 5),
            egress.asn
        ));
        let iceland = facts("IS", NetworkKind::Residential, 1);
        assert_eq!(iceland.country.map(|c| c.as_str().to_owned()), Some("IS".into()));
        assert_eq!(iceland.relay, None);
    }
}
