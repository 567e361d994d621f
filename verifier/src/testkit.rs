//! Test-only token minting. Compiled only for this crate's tests or with the
//! `testkit` feature, which production builds never enable: a minter holds a
//! collector private key in plain memory and signs whatever it is told.

use std::net::IpAddr;

use ed25519_dalek::SigningKey;
use meridian_protocol::jwk::{Jwk, Jwks};
use meridian_protocol::{Claims, jws};

use crate::challenge::{ChallengeKey, ChallengeKeys, DEFAULT_LIFETIME_S};
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
        let signing_key = SigningKey::from_bytes(&[seed; 32]);
        let jwks = Jwks { keys: vec![Jwk::public(&signing_key.verifying_key())] };
        let keys = Keys {
            collector: CollectorKeys::from_jwks(jwks).unwrap_or_default(),
            challenge: ChallengeKeys::new(vec![ChallengeKey::new(1, [seed ^ 0x5a; 32])], DEFAULT_LIFETIME_S)
                .unwrap_or_else(|| unreachable!("one key, non-zero lifetime")),
        };
        Self { signing_key, keys }
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
}
