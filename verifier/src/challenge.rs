//! Stateless challenges.
//!
//! A challenge is 50 bytes sealed with a 128-bit HMAC-SHA256 tag and sent as
//! base64url:
//!
//! ```text
//! version (1) | key id (1) | nonce (16) | issued at ms (8, BE) | expires at ms (8, BE) | client IP (16) | tag (16)
//! ```
//!
//! A challenge issued at the end of the echo (`GET /v1/echo`) is version 2:
//! the same fields, then the round trips the verifier measured itself,
//! before the tag:
//!
//! ```text
//! … client IP (16) | TCP round trip µs (4, BE; all ones: unknown) | echo round trip µs (4, BE) | tag (16)
//! ```
//!
//! Any instance holding the MAC key can open it, so challenges work across
//! instances without shared state; the replay store then makes each nonce
//! single-use. The IP is stored as IPv6 (IPv4 mapped). The timing is sealed
//! by the same tag as the nonce and the IP: a client can drop it (by
//! fetching a plain challenge) but not change it.

use std::net::{IpAddr, Ipv6Addr};

use hmac::{Hmac, KeyInit, Mac};
use meridian_protocol::{base64url_decode, base64url_encode};
use sha2::Sha256;

use crate::net::canonical_ip;

const VERSION: u8 = 1;
const TIMED_VERSION: u8 = 2;
const BODY_LEN: usize = 1 + 1 + 16 + 8 + 8 + 16;
const TIMED_BODY_LEN: usize = BODY_LEN + 4 + 4;
/// A TCP round trip the verifier could not read.
const UNKNOWN_RTT: u32 = u32::MAX;
const TAG_LEN: usize = 16;
/// Separates Meridian's challenge MACs from any other use of the key.
const DOMAIN: &[u8] = b"meridian/challenge/v1";
#[cfg(feature = "http")]
/// Separates the steps of the echo over HTTP (`POST /v1/echo`) from
/// challenges: a step can never be passed off as a challenge.
const STEP_DOMAIN: &[u8] = b"meridian/echo-step/v1";
/// The largest step body [`ChallengeKeys::seal_step`] takes.
#[cfg(feature = "http")]
pub(crate) const MAX_STEP_BODY: usize = 64;

/// One MAC key for challenges, with the id that names it inside a challenge.
#[derive(Clone)]
pub struct ChallengeKey {
    id: u8,
    secret: [u8; 32],
}

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ChallengeKey {
    /// A key from 32 secret bytes.
    pub fn new(id: u8, secret: [u8; 32]) -> Self {
        Self { id, secret }
    }

    /// The id that names this key inside challenges.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// A fresh random key.
    ///
    /// # Errors
    /// When the OS has no secure random source.
    pub fn random(id: u8) -> Result<Self, getrandom::Error> {
        let mut secret = [0; 32];
        crate::random_bytes(&mut secret)?;
        Ok(Self { id, secret })
    }

    /// A key from base64url text (32 bytes), as kept in config or env.
    ///
    /// # Errors
    /// When the text is not 32 bytes of base64url.
    pub fn from_base64url(id: u8, text: &str) -> Result<Self, ChallengeError> {
        let secret: [u8; 32] =
            base64url_decode(text.trim()).and_then(|b| b.try_into().ok()).ok_or(ChallengeError::Malformed)?;
        Ok(Self { id, secret })
    }

    fn tag(&self, body: &[u8]) -> Hmac<Sha256> {
        self.tag_in(DOMAIN, body)
    }

    fn tag_in(&self, domain: &[u8], body: &[u8]) -> Hmac<Sha256> {
        #[allow(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(domain);
        mac.update(body);
        mac
    }
}

/// The MAC keys a verifier accepts; the first one issues new challenges.
#[derive(Debug, Clone)]
pub struct ChallengeKeys {
    keys: Vec<ChallengeKey>,
    lifetime_ms: i64,
}

/// Default challenge (and so token) lifetime: long enough to type a
/// password, short enough that a token cannot be stockpiled.
pub const DEFAULT_LIFETIME_S: u32 = 120;

/// A freshly issued challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedChallenge {
    /// The opaque string the collector signs.
    pub challenge: String,
    /// Issue time, Unix ms (the `server_time_ms` of the response).
    pub issued_at_ms: i64,
    /// Seconds until it expires.
    pub expires_in_s: u32,
}

/// Round trips the verifier measured itself while issuing a challenge
/// through the echo: what physics lets no client shorten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// The kernel's round trip of the echo's connection (`tcpi_min_rtt`),
    /// or a trusted front proxy's figure for its client connection; `None`
    /// when neither was available (behind a proxy that does not pass it).
    pub tcp_rtt_us: Option<u32>,
    /// The least round trip of the echoes through the page.
    pub echo_rtt_us: u32,
}

impl Latency {
    /// The hidden leg: how much longer the page took to answer than the
    /// connection's own round trip, i.e. the path beyond the connection's
    /// far end (a relay's exit). `None` without a TCP round trip.
    pub fn hidden_leg_us(&self) -> Option<u32> {
        self.tcp_rtt_us.map(|tcp| self.echo_rtt_us.saturating_sub(tcp))
    }
}

/// A challenge whose MAC checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedChallenge {
    /// The single-use nonce.
    pub nonce: [u8; 16],
    /// Issue time, Unix ms.
    pub issued_at_ms: i64,
    /// Expiry, Unix ms.
    pub expires_at_ms: i64,
    /// The IP the challenge was issued to.
    pub ip: IpAddr,
    /// The round trips measured while issuing it (version 2 only).
    pub latency: Option<Latency>,
}

/// Why a challenge does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// Not base64url of the right length, or an unknown version.
    #[error("challenge is not in Meridian's format")]
    Malformed,
    /// Sealed with a key id this verifier does not hold.
    #[error("challenge key {0} is not configured")]
    UnknownKey(u8),
    /// The MAC does not match: forged or altered.
    #[error("challenge MAC does not verify")]
    BadMac,
    /// Issued later than `now` allows: a clock problem or a forgery.
    #[error("challenge is issued in the future")]
    NotYetValid,
}

/// Why a challenge key ring cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// No key to issue with.
    #[error("at least one challenge key is needed")]
    NoKeys,
    /// Challenges that expire at once.
    #[error("challenge_lifetime_s must be at least 1")]
    ZeroLifetime,
}

impl ChallengeKeys {
    /// A key ring that issues with `keys[0]` and accepts all of them.
    ///
    /// # Errors
    /// Without keys, or with a lifetime of 0.
    pub fn new(keys: Vec<ChallengeKey>, lifetime_s: u32) -> Result<Self, KeyRingError> {
        if keys.is_empty() {
            return Err(KeyRingError::NoKeys);
        }
        if lifetime_s == 0 {
            return Err(KeyRingError::ZeroLifetime);
        }
        Ok(Self { keys, lifetime_ms: i64::from(lifetime_s) * 1000 })
    }

    /// Lifetime of issued challenges in seconds.
    pub fn lifetime_s(&self) -> u32 {
        u32::try_from(self.lifetime_ms / 1000).unwrap_or(u32::MAX)
    }

    /// Issues a challenge for `ip` at `now_ms`.
    ///
    /// # Errors
    /// When the OS has no secure random source for the nonce.
    pub fn issue(&self, ip: IpAddr, now_ms: i64) -> Result<IssuedChallenge, getrandom::Error> {
        let mut nonce = [0; 16];
        crate::random_bytes(&mut nonce)?;
        Ok(self.issue_with_nonce(ip, now_ms, nonce))
    }

    /// Issues with a given nonce (tests and benchmarks need determinism).
    pub fn issue_with_nonce(&self, ip: IpAddr, now_ms: i64, nonce: [u8; 16]) -> IssuedChallenge {
        self.seal(ip, now_ms, nonce, None)
    }

    /// Issues a challenge that carries the round trips the verifier just
    /// measured (the end of `GET /v1/echo`).
    ///
    /// # Errors
    /// When the OS has no secure random source for the nonce.
    pub fn issue_timed(
        &self,
        ip: IpAddr,
        now_ms: i64,
        latency: Latency,
    ) -> Result<IssuedChallenge, getrandom::Error> {
        let mut nonce = [0; 16];
        crate::random_bytes(&mut nonce)?;
        Ok(self.seal(ip, now_ms, nonce, Some(latency)))
    }

    /// [`Self::issue_timed`] with a given nonce.
    pub fn issue_timed_with_nonce(
        &self,
        ip: IpAddr,
        now_ms: i64,
        nonce: [u8; 16],
        latency: Latency,
    ) -> IssuedChallenge {
        self.seal(ip, now_ms, nonce, Some(latency))
    }

    fn seal(&self, ip: IpAddr, now_ms: i64, nonce: [u8; 16], latency: Option<Latency>) -> IssuedChallenge {
        let key = &self.keys[0];
        let expires_at_ms = now_ms.saturating_add(self.lifetime_ms);
        let mut sealed = [0u8; TIMED_BODY_LEN + TAG_LEN];
        sealed[0] = if latency.is_some() { TIMED_VERSION } else { VERSION };
        sealed[1] = key.id;
        sealed[2..18].copy_from_slice(&nonce);
        sealed[18..26].copy_from_slice(&now_ms.to_be_bytes());
        sealed[26..34].copy_from_slice(&expires_at_ms.to_be_bytes());
        sealed[34..50].copy_from_slice(&ipv6_bytes(ip));
        let body_len = match latency {
            None => BODY_LEN,
            Some(latency) => {
                let tcp = latency.tcp_rtt_us.unwrap_or(UNKNOWN_RTT);
                sealed[50..54].copy_from_slice(&tcp.to_be_bytes());
                sealed[54..58].copy_from_slice(&latency.echo_rtt_us.to_be_bytes());
                TIMED_BODY_LEN
            }
        };
        let tag = key.tag(&sealed[..body_len]).finalize().into_bytes();
        sealed[body_len..body_len + TAG_LEN].copy_from_slice(&tag[..TAG_LEN]);
        IssuedChallenge {
            challenge: base64url_encode(&sealed[..body_len + TAG_LEN]),
            issued_at_ms: now_ms,
            expires_in_s: self.lifetime_s(),
        }
    }

    #[cfg(feature = "http")]
    /// Seals one step of the echo over HTTP (`POST /v1/echo`) with the
    /// issuing key, as base64url: key id (1), `body`, tag (16). The body is
    /// the echo's business; at most [`MAX_STEP_BODY`] bytes.
    pub(crate) fn seal_step(&self, body: &[u8]) -> String {
        let key = &self.keys[0];
        let body = &body[..body.len().min(MAX_STEP_BODY)];
        let mut sealed = Vec::with_capacity(1 + body.len() + TAG_LEN);
        sealed.push(key.id);
        sealed.extend_from_slice(body);
        let tag = key.tag_in(STEP_DOMAIN, &sealed).finalize().into_bytes();
        sealed.extend_from_slice(&tag[..TAG_LEN]);
        base64url_encode(&sealed)
    }

    #[cfg(feature = "http")]
    /// Opens a step sealed by [`Self::seal_step`] under any accepted key:
    /// its body, or `None` when it is not one (altered, foreign, too long).
    pub(crate) fn open_step(&self, step: &str) -> Option<Vec<u8>> {
        if step.len() > (1 + MAX_STEP_BODY + TAG_LEN).div_ceil(3) * 4 {
            return None;
        }
        let sealed = base64url_decode(step)?;
        let split = sealed.len().checked_sub(TAG_LEN).filter(|&at| at >= 1)?;
        let key = self.keys.iter().find(|k| k.id == sealed[0])?;
        key.tag_in(STEP_DOMAIN, &sealed[..split]).verify_truncated_left(&sealed[split..]).ok()?;
        Some(sealed[1..split].to_vec())
    }

    /// Opens a challenge: format, key id and MAC. Lifetime is the caller's
    /// business (it needs `now`), except that a challenge issued more than
    /// `leeway_ms` after `now_ms` is refused.
    ///
    /// # Errors
    /// See [`ChallengeError`].
    pub fn open(
        &self,
        challenge: &str,
        now_ms: i64,
        leeway_ms: i64,
    ) -> Result<OpenedChallenge, ChallengeError> {
        if challenge.len() > 128 {
            return Err(ChallengeError::Malformed);
        }
        let sealed = base64url_decode(challenge).ok_or(ChallengeError::Malformed)?;
        let body_len = match (sealed.first(), sealed.len()) {
            (Some(&VERSION), len) if len == BODY_LEN + TAG_LEN => BODY_LEN,
            (Some(&TIMED_VERSION), len) if len == TIMED_BODY_LEN + TAG_LEN => TIMED_BODY_LEN,
            _ => return Err(ChallengeError::Malformed),
        };
        let key =
            self.keys.iter().find(|k| k.id == sealed[1]).ok_or(ChallengeError::UnknownKey(sealed[1]))?;
        key.tag(&sealed[..body_len])
            .verify_truncated_left(&sealed[body_len..])
            .map_err(|_| ChallengeError::BadMac)?;
        let nonce = field::<16>(&sealed, 2);
        let issued_at_ms = i64::from_be_bytes(field::<8>(&sealed, 18));
        let expires_at_ms = i64::from_be_bytes(field::<8>(&sealed, 26));
        let ip = canonical_ip(IpAddr::V6(Ipv6Addr::from(field::<16>(&sealed, 34))));
        let latency = (body_len == TIMED_BODY_LEN).then(|| {
            let tcp = u32::from_be_bytes(field::<4>(&sealed, 50));
            Latency {
                tcp_rtt_us: (tcp != UNKNOWN_RTT).then_some(tcp),
                echo_rtt_us: u32::from_be_bytes(field::<4>(&sealed, 54)),
            }
        });
        if issued_at_ms > now_ms.saturating_add(leeway_ms) {
            return Err(ChallengeError::NotYetValid);
        }
        Ok(OpenedChallenge { nonce, issued_at_ms, expires_at_ms, ip, latency })
    }
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

fn ipv6_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    fn ring() -> ChallengeKeys {
        ChallengeKeys::new(vec![ChallengeKey::new(1, [3; 32])], 120).unwrap()
    }

    #[test]
    fn round_trip_v4_and_v6() {
        for ip in ["192.0.2.7", "2001:db8::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let issued = ring().issue_with_nonce(ip, 1_000, [9; 16]);
            let opened = ring().open(&issued.challenge, 1_000, 0);
            assert_eq!(
                opened,
                Ok(OpenedChallenge {
                    nonce: [9; 16],
                    issued_at_ms: 1_000,
                    expires_at_ms: 121_000,
                    ip,
                    latency: None
                })
            );
        }
    }

    #[cfg(feature = "http")]
    #[test]
    fn echo_steps_open_only_unaltered_and_never_as_challenges() {
        let step = ring().seal_step(b"round three");
        assert_eq!(ring().open_step(&step).as_deref(), Some(&b"round three"[..]));
        // Another key, one flipped bit, a truncated tag, junk: refused.
        let other = ChallengeKeys::new(vec![ChallengeKey::new(1, [4; 32])], 120).unwrap();
        assert_eq!(other.open_step(&step), None);
        let mut bytes = base64url_decode(&step).unwrap();
        bytes[3] ^= 1;
        assert_eq!(ring().open_step(&base64url_encode(&bytes)), None);
        assert_eq!(ring().open_step(&step[..step.len() - 2]), None);
        for junk in ["", "A", "!!!!", &"A".repeat(10_000)] {
            assert_eq!(ring().open_step(junk), None, "{junk:.20}");
        }
        // Domains apart: a step is not a challenge, a challenge not a step.
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let challenge = ring().issue_with_nonce(ip, 1_000, [9; 16]).challenge;
        assert_eq!(ring().open_step(&challenge), None);
        let body = base64url_decode(&challenge).unwrap();
        let as_step = ring().seal_step(&body[1..body.len() - TAG_LEN]);
        assert!(ring().open(&as_step, 1_000, 0).is_err());
    }

    #[test]
    fn rejects_forgeries() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let issued = ring().issue_with_nonce(ip, 1_000, [9; 16]);
        let other = ChallengeKeys::new(vec![ChallengeKey::new(1, [4; 32])], 120).unwrap();
        assert_eq!(other.open(&issued.challenge, 1_000, 0), Err(ChallengeError::BadMac));
        let rotated = ChallengeKeys::new(vec![ChallengeKey::new(2, [3; 32])], 120).unwrap();
        assert_eq!(rotated.open(&issued.challenge, 1_000, 0), Err(ChallengeError::UnknownKey(1)));
        assert_eq!(ring().open("AAAA", 1_000, 0), Err(ChallengeError::Malformed));
        assert_eq!(ring().open(&issued.challenge, 0, 500), Err(ChallengeError::NotYetValid));
        let mut bytes = base64url_decode(&issued.challenge).unwrap_or_default();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            assert!(ring().open(&base64url_encode(&bytes), 1_000, 0).is_err(), "flip at {i}");
            bytes[i] ^= 1;
        }
    }

    #[test]
    fn timed_challenges_carry_the_sealed_round_trips() {
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        for tcp_rtt_us in [Some(0), Some(1_234), None] {
            let latency = Latency { tcp_rtt_us, echo_rtt_us: 51_234 };
            let issued = ring().issue_timed_with_nonce(ip, 1_000, [9; 16], latency);
            assert!(issued.challenge.len() <= 128);
            let opened = ring().open(&issued.challenge, 1_000, 0).unwrap();
            assert_eq!(opened.latency, Some(latency));
            assert_eq!(opened.nonce, [9; 16]);
            assert_eq!(opened.ip, ip);
        }
        let latency = Latency { tcp_rtt_us: Some(1_000), echo_rtt_us: 61_000 };
        assert_eq!(latency.hidden_leg_us(), Some(60_000));
        assert_eq!(Latency { tcp_rtt_us: Some(9_000), echo_rtt_us: 8_000 }.hidden_leg_us(), Some(0));
        assert_eq!(Latency { tcp_rtt_us: None, echo_rtt_us: 8_000 }.hidden_leg_us(), None);
        // A client that edits the figures (every bit of them) breaks the
        // tag; one that cuts them off and calls it version 1 does too.
        let issued = ring().issue_timed_with_nonce(ip, 1_000, [9; 16], latency);
        let mut bytes = base64url_decode(&issued.challenge).unwrap_or_default();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            assert!(ring().open(&base64url_encode(&bytes), 1_000, 0).is_err(), "flip at {i}");
            bytes[i] ^= 1;
        }
        let mut plain = bytes[..BODY_LEN].to_vec();
        plain[0] = VERSION;
        plain.extend_from_slice(&bytes[TIMED_BODY_LEN..]);
        assert_eq!(ring().open(&base64url_encode(&plain), 1_000, 0), Err(ChallengeError::BadMac));
    }

    #[test]
    fn older_keys_still_open_after_rotation() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let issued = ring().issue_with_nonce(ip, 1_000, [9; 16]);
        let rotated =
            ChallengeKeys::new(vec![ChallengeKey::new(2, [5; 32]), ChallengeKey::new(1, [3; 32])], 120)
                .unwrap();
        assert!(rotated.open(&issued.challenge, 1_000, 0).is_ok());
    }
}
