//! The evaluation's world: countries with the zones and locales their
//! people use, and the IP databases the cases are observed through.
//!
//! The lists are written by hand from common knowledge of each country, not
//! derived from the verifier's own tables, so the evaluation does not grade
//! the tables against themselves.

use std::net::{IpAddr, Ipv4Addr};

use meridian_verifier::geo::IpIntel;
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

/// A country of the world by code.
///
/// # Panics
/// On a code not in [`COUNTRIES`]: the corpus generator only names listed ones.
pub fn country(code: &str) -> &'static Country {
    COUNTRIES
        .iter()
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
}

/// Where a request comes from: a country and a kind of network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// Residential or hosting.
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

/// An address in `origin`'s test network; `n` spreads cases over it.
pub fn ip(origin: &Origin, n: usize) -> IpAddr {
    let [a, b] = network_of(&origin.country);
    let host = u8::try_from(n % 120).unwrap_or(0);
    let host = match origin.network {
        NetworkKind::Residential => 1 + host,
        NetworkKind::Hosting => 129 + host,
    };
    IpAddr::V4(Ipv4Addr::new(10, a, b, host))
}

/// Country and ASN databases, written in memory, covering every country of
/// [`COUNTRIES`]: residential ranges carry a private-use ASN, hosting ranges
/// a network from the built-in hosting list.
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
    for (index, country) in COUNTRIES.iter().enumerate() {
        let [a, b] = network_of(country.code);
        let net = |text: String| text.parse::<ipnet::IpNet>().ok();
        if let Some(block) = net(format!("10.{a}.{b}.0/24")) {
            let _ = country_db.insert_value(block, Value::map([("country_code", Value::from(country.code))]));
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
    }
    IpIntel::from_bytes(country_db.to_bytes().ok(), asn_db.to_bytes().ok()).unwrap_or_default()
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
