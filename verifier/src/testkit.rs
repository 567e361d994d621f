//! Test-only token minting. Compiled only for this crate's tests or with the
//! `testkit` feature, which production builds never enable: a minter holds a
//! collector private key in plain memory and signs whatever it is told.

use std::net::IpAddr;

use ed25519_dalek::SigningKey;
use meridian_protocol::jwk::{Jwk, Jwks};
use meridian_protocol::{Claims, jws};

use crate::challenge::{ChallengeKey, ChallengeKeys, DEFAULT_LIFETIME_S};
use crate::geo::IpIntel;
use crate::keys::{CollectorKeys, Keys};

/// Mints challenges and signed tokens for a fixed test deployment.
#[derive(Debug, Clone)]
pub struct Minter {
    /// The collector's signing key.
    pub signing_key: SigningKey,
    /// The verifier's view of the deployment.
    pub keys: Keys,
}

impl Minter {
    /// A deployment from a seed: same seed, same keys.
    pub fn new(seed: u8) -> Self {
        Self::with_challenge_lifetime(seed, DEFAULT_LIFETIME_S)
    }

    /// [`Self::new`] whose challenges live `lifetime_s` seconds (at least 1).
    pub fn with_challenge_lifetime(seed: u8, lifetime_s: u32) -> Self {
        let signing_key = SigningKey::from_bytes(&[seed; 32]);
        let jwks = Jwks { keys: vec![Jwk::public(&signing_key.verifying_key())] };
        let keys = Keys {
            collector: CollectorKeys::from_jwks(jwks).unwrap_or_default(),
            challenge: ChallengeKeys::new(vec![ChallengeKey::new(1, [seed ^ 0x5a; 32])], lifetime_s.max(1))
                .unwrap_or_else(|_| unreachable!("one key, non-zero lifetime")),
        };
        Self { signing_key, keys }
    }

    /// The challenge MAC key as configured for `meridian serve`: `1:<base64url>`.
    pub fn challenge_key_config(&self, seed: u8) -> String {
        format!("1:{}", meridian_protocol::base64url_encode(&[seed ^ 0x5a; 32]))
    }

    /// The public JWKS, as a verifier's `jwks` file holds it.
    pub fn jwks_json(&self) -> String {
        serde_json::to_string(self.keys.collector.jwks()).unwrap_or_default()
    }

    /// The collector key id.
    pub fn kid(&self) -> String {
        meridian_protocol::jwk::thumbprint(&self.signing_key.verifying_key())
    }

    /// Claims like a browser in Berlin would send, bound to a fresh
    /// challenge issued to `ip` at `now_ms` with nonce `nonce`.
    pub fn claims(&self, ip: IpAddr, now_ms: i64, nonce: [u8; 16]) -> Claims {
        let issued = self.keys.challenge.issue_with_nonce(ip, now_ms, nonce);
        let mut claims = Claims::example();
        claims.challenge = issued.challenge;
        claims.signed_at_ms = now_ms + 20;
        claims.clock.received_at_ms = now_ms + 3;
        claims.clock.round_trip_ms = 6;
        claims
    }

    /// Signs claims with the collector key.
    pub fn sign(&self, claims: &Claims) -> String {
        jws::sign(claims.to_json().as_bytes(), &self.signing_key, &self.kid())
    }

    /// A valid token for `ip` at `now_ms`.
    pub fn token(&self, ip: IpAddr, now_ms: i64, nonce: [u8; 16]) -> String {
        self.sign(&self.claims(ip, now_ms, nonce))
    }

    /// The claims an honest browser in `zone`, with Intl locale `locale`
    /// and `navigator.languages` `languages`, makes from a challenge issued
    /// to `ip` at `now_ms` with nonce `nonce` (see [`report_honestly`]).
    ///
    /// # Errors
    /// When the tz database does not know `zone`.
    pub fn honest_claims(
        &self,
        ip: IpAddr,
        now_ms: i64,
        nonce: [u8; 16],
        zone: &str,
        locale: &str,
        languages: &[&str],
    ) -> Result<Claims, jiff::Error> {
        let mut claims = self.claims(ip, now_ms, nonce);
        report_honestly(&mut claims, zone, locale, languages)?;
        Ok(claims)
    }

    /// What a privacy browser (Firefox with `privacy.resistFingerprinting`,
    /// Tor Browser, Mullvad Browser, LibreWolf) reports from a challenge
    /// issued to `ip` at `now_ms`: `page_zone` (`UTC` or
    /// `Atlantic/Reykjavik`) in the page, `Atlantic/Reykjavik` in a worker,
    /// offset 0 all year and Intl locale `en-US`, while the person's own
    /// `languages` stay in `navigator.languages`.
    pub fn privacy_browser_claims(
        &self,
        ip: IpAddr,
        now_ms: i64,
        nonce: [u8; 16],
        page_zone: &str,
        languages: &[&str],
    ) -> Claims {
        let mut claims = self.claims(ip, now_ms, nonce);
        report_honestly(&mut claims, "UTC", "en-US", languages)
            .unwrap_or_else(|e| unreachable!("UTC is in every tz database: {e}"));
        claims.time_zone.zone = page_zone.into();
        if let Some(worker) = claims.worker.as_mut() {
            worker.zone = "Atlantic/Reykjavik".into();
        }
        if let Some(integrity) = claims.integrity.as_mut() {
            // Reykjavik links to Abidjan: local mean time −0:16:08 in 1880.
            integrity.historical_offset_s = -968;
        }
        claims
    }
}

/// Fills `claims` with what an honest browser in `zone` reports at the
/// instant it signs (`claims.signed_at_ms`, on its own clock): the zone
/// and its offsets now and at local midnight on 1 January and 1 July of
/// that year, as `Date` computes them; Intl locale `locale`; `languages`
/// as `navigator.languages` (the first is `navigator.language`, or
/// `locale` when there is none); untampered integrity readings (the 1880
/// local mean time to the second, as Chromium and Firefox report it); and
/// a Worker that sees the same.
///
/// # Errors
/// When the tz database does not know `zone`.
pub fn report_honestly(
    claims: &mut Claims,
    zone: &str,
    locale: &str,
    languages: &[impl AsRef<str>],
) -> Result<(), jiff::Error> {
    use jiff::{Timestamp, civil::date, tz::TimeZone};
    let tz = TimeZone::get(zone)?;
    let offset_min = |at: Timestamp| tz.to_offset(at).seconds() / 60;
    let now = Timestamp::from_millisecond(claims.signed_at_ms)?;
    let year = now.to_zoned_datetime(tz.clone()).year();
    // `new Date(year, month - 1, 1)`: local midnight, wherever it falls.
    let midnight = |year: i16, month: i8| date(year, month, 1).to_zoned_datetime(tz.clone());
    let offset_now_min = offset_min(now);
    let languages: Vec<String> = languages.iter().map(|l| l.as_ref().to_owned()).collect();

    claims.time_zone.zone = zone.into();
    claims.time_zone.offset_now_min = offset_now_min;
    claims.time_zone.offset_jan_min = offset_min(midnight(year, 1)?.timestamp());
    claims.time_zone.offset_jul_min = offset_min(midnight(year, 7)?.timestamp());
    claims.locale.locale = locale.into();
    claims.locale.language = languages.first().cloned().unwrap_or_else(|| locale.into());
    claims.locale.languages = languages.clone();
    claims.integrity = Some(meridian_protocol::IntegrityClaims {
        webdriver: false,
        non_native: Vec::new(),
        historical_offset_s: midnight(1880, 1)?.offset().seconds(),
        intl_offset_min: offset_now_min,
        string_offset_min: Some(offset_now_min),
    });
    claims.worker = Some(meridian_protocol::ScopeClaims {
        zone: zone.into(),
        offset_now_min,
        locale: locale.into(),
        languages,
    });
    Ok(())
}

/// Country and ASN databases over documentation ranges (RFC 5737, RFC 3849),
/// written in memory. Both country record shapes appear.
///
/// | network | country | ASN |
/// |---|---|---|
/// | 192.0.2.0/26 | SG (flat) | |
/// | 192.0.2.64/26 | JP (GeoIP2) | |
/// | 192.0.2.128/26 | US | |
/// | 192.0.2.192/26 | DE | AS3320 Deutsche Telekom AG |
/// | 198.51.100.0/26 | CN | |
/// | 198.51.100.64/26 | US | AS16509 Amazon.com, Inc. (hosting) |
/// | 198.51.100.128/26 | IN (GeoIP2) | |
/// | 203.0.113.0/24 | CH | |
/// | 2001:db8:1::/48 | DE | |
/// | 2001:db8:2::/48 | SG | |
/// | 2001:db8:3::/48 | FR | |
/// | 2001:db8:4::/48 | IS | |
/// | 2001:db8:5::/48 | NL | AS13335 Cloudflare, Inc. (WARP) |
/// | 2001:db8:6::/48 | US, Private Relay egress serving JP | |
/// | 2001:db8:7::/48 | DE, `2001:db8:7::1` a Tor exit | |
pub fn test_intel() -> IpIntel {
    use mmdb_writer::{Value, Writer};
    let net = |text: &str| text.parse::<ipnet::IpNet>().unwrap_or_else(|_| unreachable!("literal network"));
    let flat = |code: &str| Value::map([("country_code", Value::from(code))]);
    let geoip2 = |code: &str| Value::map([("country", Value::map([("iso_code", Value::from(code))]))]);
    let mut country = Writer::new("Meridian-Test-Country");
    for (network, value) in [
        ("192.0.2.0/26", flat("SG")),
        ("192.0.2.64/26", geoip2("JP")),
        ("192.0.2.128/26", flat("US")),
        ("192.0.2.192/26", flat("DE")),
        ("198.51.100.0/26", flat("CN")),
        ("198.51.100.64/26", flat("US")),
        ("198.51.100.128/26", geoip2("IN")),
        ("203.0.113.0/24", flat("CH")),
        ("2001:db8:1::/48", flat("DE")),
        ("2001:db8:2::/48", flat("SG")),
        ("2001:db8:3::/48", flat("FR")),
        ("2001:db8:4::/48", flat("IS")),
        ("2001:db8:5::/48", flat("NL")),
        ("2001:db8:6::/48", flat("US")),
        ("2001:db8:7::/48", flat("DE")),
    ] {
        let _ = country.insert_value(net(network), value);
    }
    let record = |number: u32, org: &str| {
        Value::map([
            ("autonomous_system_number", Value::from(number)),
            ("autonomous_system_organization", Value::from(org)),
        ])
    };
    let mut asn = Writer::new("Meridian-Test-ASN");
    let _ = asn.insert_value(net("198.51.100.64/26"), record(16509, "Amazon.com, Inc."));
    let _ = asn.insert_value(net("192.0.2.192/26"), record(3320, "Deutsche Telekom AG"));
    let _ = asn.insert_value(net("2001:db8:5::/48"), record(13335, "Cloudflare, Inc."));
    IpIntel::from_bytes(country.to_bytes().ok(), asn.to_bytes().ok())
        .unwrap_or_default()
        .with_relays(test_relays())
}

/// IP databases that place each of `networks` (`"127.0.0.0/8"`) in its
/// country (`"SG"`), and know nothing else: for tests whose clients connect
/// from loopback but must be somewhere. A network that does not parse is
/// left out.
pub fn intel_placing(networks: &[(&str, &str)]) -> IpIntel {
    use mmdb_writer::{Value, Writer};
    let mut country = Writer::new("Meridian-Test-Country");
    for (network, code) in networks {
        let Ok(network) = network.parse::<ipnet::IpNet>() else { continue };
        let _ = country.insert_value(network, Value::map([("country_code", Value::from(*code))]));
    }
    IpIntel::from_bytes(country.to_bytes().ok(), None).unwrap_or_default()
}

/// Relay lists in the published formats, over documentation ranges:
/// `2001:db8:6::/48` is a Private Relay egress for JP, `2001:db8:7::1` a
/// Tor exit.
pub fn test_relays() -> crate::geo::RelayLists {
    crate::geo::RelayLists::none()
        .with_private_relay_csv("2001:db8:6::/48,JP,JP-13,Tokyo,\n")
        .and_then(|lists| lists.with_tor_exits("ExitAddress 2001:db8:7::1 2026-11-30 11:05:00\n"))
        .unwrap_or_else(|e| unreachable!("literal lists: {e}"))
}

#[cfg(feature = "http")]
pub mod relay;
