//! The attestation claims a collector signs.
//!
//! Field names on the wire are short and stable (see `docs/PROTOCOL.md`);
//! offsets are minutes east of UTC (the negation of JavaScript's
//! `getTimezoneOffset()`), times are Unix milliseconds.

use alloc::{string::String, vec, vec::Vec};

use crate::json::JsonWriter;

/// The claims layout version this crate writes and accepts.
pub const CLAIMS_VERSION: u32 = 1;

/// Everything the browser states, bound to one server challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Claims {
    /// Layout version, [`CLAIMS_VERSION`]. Wire name `v`.
    #[cfg_attr(feature = "serde", serde(rename = "v"))]
    pub version: u32,
    /// The challenge string exactly as `/v1/challenge` returned it. Wire name `chl`.
    #[cfg_attr(feature = "serde", serde(rename = "chl"))]
    pub challenge: String,
    /// `location.origin` of the page that collected the claims.
    pub origin: String,
    /// What the user is doing (`login`, `signup`, …), chosen by the page.
    pub action: String,
    /// The browser's wall clock when it signed. Wire name `iat_ms`.
    #[cfg_attr(feature = "serde", serde(rename = "iat_ms"))]
    pub signed_at_ms: i64,
    /// The clock sample taken while fetching the challenge.
    pub clock: ClockSample,
    /// Time-zone signals. Wire name `tz`.
    #[cfg_attr(feature = "serde", serde(rename = "tz"))]
    pub time_zone: TimeZoneClaims,
    /// Locale and language signals.
    pub locale: LocaleClaims,
    /// Signs of tampering with the page's time and language APIs; absent
    /// from collectors that predate them.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub integrity: Option<IntegrityClaims>,
    /// The same signals read again inside a dedicated Worker; absent when no
    /// Worker could run (CSP, old browser). Wire name `worker`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub worker: Option<ScopeClaims>,
}

/// Cross-checks a naive spoofer gets wrong.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct IntegrityClaims {
    /// `navigator.webdriver`.
    pub webdriver: bool,
    /// The time and language APIs that are not the browser's own: replaced,
    /// wrapped in a Proxy, or shadowed by an own property. Names like
    /// `Date.prototype.getTimezoneOffset`. Wire name `non_native`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub non_native: Vec<String>,
    /// UTC offset of local midnight, 1 January 1880, by `Date`, in seconds
    /// east: local mean time differs per zone, so it fingerprints the zone
    /// `Date` really uses. Wire name `hist_off_s`.
    #[cfg_attr(feature = "serde", serde(rename = "hist_off_s"))]
    pub historical_offset_s: i32,
    /// UTC offset now as `Intl` formats the current instant (wall time minus
    /// UTC), minutes east. Wire name `intl_off`.
    #[cfg_attr(feature = "serde", serde(rename = "intl_off"))]
    pub intl_offset_min: i32,
    /// UTC offset now as `Date.prototype.toString()` prints it (`GMT+0800`),
    /// minutes east; absent when it cannot be read. Wire name `str_off`.
    #[cfg_attr(feature = "serde", serde(rename = "str_off", default))]
    pub string_offset_min: Option<i32>,
}

/// Zone and language as seen from one JavaScript scope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ScopeClaims {
    /// IANA zone from Intl.
    pub zone: String,
    /// UTC offset now, minutes east, from `Date`.
    #[cfg_attr(feature = "serde", serde(rename = "off_now"))]
    pub offset_now_min: i32,
    /// Intl's resolved locale.
    pub locale: String,
    /// `navigator.languages`.
    pub languages: Vec<String>,
}

/// The browser's wall clock next to the challenge round trip, from which the
/// verifier derives clock skew as an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ClockSample {
    /// `Date.now()` when the challenge response arrived. Wire name `recv_ms`.
    #[cfg_attr(feature = "serde", serde(rename = "recv_ms"))]
    pub received_at_ms: i64,
    /// Round trip of the challenge request by `performance.now()`, rounded up
    /// to whole milliseconds. Wire name `rtt_ms`.
    #[cfg_attr(feature = "serde", serde(rename = "rtt_ms"))]
    pub round_trip_ms: u32,
}

/// What the browser says about its time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TimeZoneClaims {
    /// IANA zone from `Intl.DateTimeFormat().resolvedOptions().timeZone`.
    pub zone: String,
    /// UTC offset in minutes east at signing time. Wire name `off_now`.
    #[cfg_attr(feature = "serde", serde(rename = "off_now"))]
    pub offset_now_min: i32,
    /// UTC offset on 1 January of the current year. Wire name `off_jan`.
    #[cfg_attr(feature = "serde", serde(rename = "off_jan"))]
    pub offset_jan_min: i32,
    /// UTC offset on 1 July of the current year. Wire name `off_jul`.
    #[cfg_attr(feature = "serde", serde(rename = "off_jul"))]
    pub offset_jul_min: i32,
}

/// What the browser says about its locale and languages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LocaleClaims {
    /// Intl's resolved locale (BCP 47), e.g. `zh-CN`.
    pub locale: String,
    /// Intl's calendar, e.g. `gregory`.
    pub calendar: String,
    /// Intl's numbering system, e.g. `latn`.
    pub numbering: String,
    /// Intl's hour cycle (`h11`, `h12`, `h23`, `h24`); empty when unknown.
    pub hour_cycle: String,
    /// `navigator.language`.
    pub language: String,
    /// `navigator.languages`, in the browser's order of preference.
    pub languages: Vec<String>,
}

impl Claims {
    /// Writes the claims as the JSON payload of a token.
    pub fn to_json(&self) -> String {
        let mut w = JsonWriter::new();
        w.begin_object();
        w.member_int("v", i64::from(self.version));
        w.member_str("chl", &self.challenge);
        w.member_str("origin", &self.origin);
        w.member_str("action", &self.action);
        w.member_int("iat_ms", self.signed_at_ms);
        w.key("clock");
        w.begin_object();
        w.member_int("recv_ms", self.clock.received_at_ms);
        w.member_int("rtt_ms", i64::from(self.clock.round_trip_ms));
        w.end_object();
        w.key("tz");
        w.begin_object();
        w.member_str("zone", &self.time_zone.zone);
        w.member_int("off_now", i64::from(self.time_zone.offset_now_min));
        w.member_int("off_jan", i64::from(self.time_zone.offset_jan_min));
        w.member_int("off_jul", i64::from(self.time_zone.offset_jul_min));
        w.end_object();
        w.key("locale");
        w.begin_object();
        w.member_str("locale", &self.locale.locale);
        w.member_str("calendar", &self.locale.calendar);
        w.member_str("numbering", &self.locale.numbering);
        w.member_str("hour_cycle", &self.locale.hour_cycle);
        w.member_str("language", &self.locale.language);
        w.key("languages");
        w.begin_array();
        for language in &self.locale.languages {
            w.string(language);
        }
        w.end_array();
        w.end_object();
        if let Some(integrity) = &self.integrity {
            w.key("integrity");
            w.begin_object();
            w.member_bool("webdriver", integrity.webdriver);
            w.key("non_native");
            w.begin_array();
            for name in &integrity.non_native {
                w.string(name);
            }
            w.end_array();
            w.member_int("hist_off_s", i64::from(integrity.historical_offset_s));
            w.member_int("intl_off", i64::from(integrity.intl_offset_min));
            if let Some(offset) = integrity.string_offset_min {
                w.member_int("str_off", i64::from(offset));
            }
            w.end_object();
        }
        if let Some(worker) = &self.worker {
            w.key("worker");
            w.begin_object();
            w.member_str("zone", &worker.zone);
            w.member_int("off_now", i64::from(worker.offset_now_min));
            w.member_str("locale", &worker.locale);
            w.key("languages");
            w.begin_array();
            for language in &worker.languages {
                w.string(language);
            }
            w.end_array();
            w.end_object();
        }
        w.end_object();
        w.finish()
    }

    /// A plausible set of claims, for examples and tests.
    pub fn example() -> Self {
        Claims {
            version: CLAIMS_VERSION,
            challenge: "AQ.example".into(),
            origin: "http://127.0.0.1:8080".into(),
            action: "login".into(),
            signed_at_ms: 1_795_000_000_000,
            clock: ClockSample { received_at_ms: 1_794_999_999_990, round_trip_ms: 4 },
            time_zone: TimeZoneClaims {
                zone: "Europe/Berlin".into(),
                offset_now_min: 60,
                offset_jan_min: 60,
                offset_jul_min: 120,
            },
            locale: LocaleClaims {
                locale: "de-DE".into(),
                calendar: "gregory".into(),
                numbering: "latn".into(),
                hour_cycle: "h23".into(),
                language: "de-DE".into(),
                languages: vec!["de-DE".into(), "de".into(), "en".into()],
            },
            integrity: Some(IntegrityClaims {
                webdriver: false,
                non_native: Vec::new(),
                historical_offset_s: 3208,
                intl_offset_min: 60,
                string_offset_min: Some(60),
            }),
            worker: Some(ScopeClaims {
                zone: "Europe/Berlin".into(),
                offset_now_min: 60,
                locale: "de-DE".into(),
                languages: vec!["de-DE".into(), "de".into(), "en".into()],
            }),
        }
    }
}

/// Why a payload is not acceptable claims.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// The payload is not JSON of the claims' shape.
    #[error("claims are not valid: {0}")]
    Invalid(String),
    /// The claims declare a layout version this build does not know.
    #[error("claims version {found} is not supported (expected {CLAIMS_VERSION})")]
    UnsupportedVersion {
        /// The version the payload declared.
        found: u32,
    },
}

#[cfg(feature = "serde")]
impl Claims {
    /// Parses a token payload, rejecting unknown layout versions.
    ///
    /// # Errors
    /// [`ClaimsError::Invalid`] when the JSON does not have the claims' shape,
    /// [`ClaimsError::UnsupportedVersion`] for another layout version.
    pub fn from_json(payload: &[u8]) -> Result<Self, ClaimsError> {
        let claims: Claims =
            serde_json::from_slice(payload).map_err(|e| ClaimsError::Invalid(e.to_string()))?;
        if claims.version != CLAIMS_VERSION {
            return Err(ClaimsError::UnsupportedVersion { found: claims.version });
        }
        Ok(claims)
    }
}

#[cfg(all(test, feature = "serde"))]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn example_round_trips() {
        let claims = Claims::example();
        assert_eq!(Claims::from_json(claims.to_json().as_bytes()), Ok(claims));
    }

    #[test]
    fn escapes_hostile_strings() {
        let mut claims = Claims::example();
        claims.locale.languages = vec!["\"}]\\\u{0}\u{1f}é😀".into()];
        claims.action = "a\"b".into();
        assert_eq!(Claims::from_json(claims.to_json().as_bytes()), Ok(claims));
    }

    #[test]
    fn optional_parts_round_trip_absent_and_hostile() {
        let mut claims = Claims::example();
        claims.integrity = None;
        claims.worker = None;
        assert_eq!(Claims::from_json(claims.to_json().as_bytes()), Ok(claims.clone()));
        claims.integrity = Some(IntegrityClaims {
            webdriver: true,
            non_native: vec!["Date.prototype.getTimezoneOffset".into(), "\"x\"".into()],
            historical_offset_s: -17_762,
            intl_offset_min: 480,
            string_offset_min: None,
        });
        assert_eq!(Claims::from_json(claims.to_json().as_bytes()), Ok(claims));
    }

    #[test]
    fn rejects_other_versions() {
        let mut claims = Claims::example();
        claims.version = 2;
        assert_eq!(
            Claims::from_json(claims.to_json().as_bytes()),
            Err(ClaimsError::UnsupportedVersion { found: 2 })
        );
    }

    #[test]
    fn rejects_wrong_shape() {
        assert!(matches!(Claims::from_json(b"{\"v\":1}"), Err(ClaimsError::Invalid(_))));
        assert!(matches!(Claims::from_json(b"\xff"), Err(ClaimsError::Invalid(_))));
    }
}
