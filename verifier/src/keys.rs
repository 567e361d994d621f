//! The keys a verifier trusts: collector public keys (a JWKS, so builds can
//! rotate keys) and the challenge MAC keys.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use meridian_protocol::jwk::{Jwk, JwkError, Jwks};

use crate::challenge::{ChallengeKey, ChallengeKeys};

/// One collector public key with its optional validity window.
#[derive(Debug, Clone)]
struct CollectorKey {
    key: VerifyingKey,
    not_before_ms: Option<i64>,
    not_after_ms: Option<i64>,
}

/// Collector public keys by `kid`.
#[derive(Debug, Clone, Default)]
pub struct CollectorKeys {
    by_kid: HashMap<String, CollectorKey>,
    jwks: Jwks,
}

/// Why a key set cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The JWKS is not JSON of the JWKS shape.
    #[error("JWKS is not valid JSON: {0}")]
    NotJson(String),
    /// A key in the set is unusable.
    #[error("key {index} of the JWKS: {error}")]
    BadKey {
        /// Position in `keys`.
        index: usize,
        /// What is wrong.
        error: JwkError,
    },
    /// A key carries a private part; a JWKS given to a verifier must not.
    #[error("key {index} of the JWKS contains a private key (`d`); publish only public keys")]
    PrivateKeyInSet {
        /// Position in `keys`.
        index: usize,
    },
    /// No key at all.
    #[error("the JWKS has no keys")]
    Empty,
}

impl CollectorKeys {
    /// Loads a JWKS document. Every key must be a public Ed25519 JWK; `kid`
    /// defaults to (and if present must equal) the RFC 7638 thumbprint.
    /// `nbf`/`exp` (Unix seconds) bound when a key is accepted.
    ///
    /// # Errors
    /// See [`KeysError`].
    pub fn from_jwks_json(text: &str) -> Result<Self, KeysError> {
        let jwks: Jwks = serde_json::from_str(text).map_err(|e| KeysError::NotJson(e.to_string()))?;
        Self::from_jwks(jwks)
    }

    /// Same as [`Self::from_jwks_json`] from a parsed set.
    ///
    /// # Errors
    /// See [`KeysError`].
    pub fn from_jwks(jwks: Jwks) -> Result<Self, KeysError> {
        if jwks.keys.is_empty() {
            return Err(KeysError::Empty);
        }
        let mut by_kid = HashMap::new();
        let mut published = Vec::with_capacity(jwks.keys.len());
        for (index, jwk) in jwks.keys.into_iter().enumerate() {
            if jwk.d.is_some() {
                return Err(KeysError::PrivateKeyInSet { index });
            }
            let key = jwk.verifying_key().map_err(|error| KeysError::BadKey { index, error })?;
            let kid = meridian_protocol::jwk::thumbprint(&key);
            by_kid.insert(
                kid.clone(),
                CollectorKey {
                    key,
                    not_before_ms: jwk.nbf.map(|s| s.saturating_mul(1000)),
                    not_after_ms: jwk.exp.map(|s| s.saturating_mul(1000)),
                },
            );
            published.push(Jwk { kid: Some(kid), ..jwk });
        }
        Ok(Self { by_kid, jwks: Jwks { keys: published } })
    }

    /// The key named `kid` if it is valid at `now_ms`.
    pub fn get(&self, kid: &str, now_ms: i64) -> Option<&VerifyingKey> {
        let entry = self.by_kid.get(kid)?;
        let started = entry.not_before_ms.is_none_or(|nbf| now_ms >= nbf);
        let ended = entry.not_after_ms.is_some_and(|exp| now_ms >= exp);
        (started && !ended).then_some(&entry.key)
    }

    /// The public JWKS, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }
}

/// Everything a token is checked against: who may sign (collector keys) and
/// which challenges are ours (challenge MAC keys).
#[derive(Debug, Clone)]
pub struct Keys {
    /// Collector public keys.
    pub collector: CollectorKeys,
    /// Challenge MAC keys.
    pub challenge: ChallengeKeys,
}

impl Keys {
    /// A fixed, well-known key set for doc tests and unit tests. Never use
    /// it in a deployment: its private keys are in this source file.
    #[doc(hidden)]
    pub fn for_tests() -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
        let jwks = Jwks { keys: vec![Jwk::public(&signing.verifying_key())] };
        Self {
            collector: CollectorKeys::from_jwks(jwks).unwrap_or_default(),
            challenge: ChallengeKeys::new(
                vec![ChallengeKey::new(1, [0x17; 32])],
                crate::challenge::DEFAULT_LIFETIME_S,
            )
            .unwrap_or_else(|_| unreachable!("one key and a non-zero lifetime")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn validity_window() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let mut jwk = Jwk::public(&signing.verifying_key());
        jwk.nbf = Some(100);
        jwk.exp = Some(200);
        let kid = jwk.kid.clone().unwrap_or_default();
        let keys = CollectorKeys::from_jwks(Jwks { keys: vec![jwk] }).unwrap_or_default();
        assert!(keys.get(&kid, 99_999).is_none());
        assert!(keys.get(&kid, 100_000).is_some());
        assert!(keys.get(&kid, 200_000).is_none());
    }

    #[test]
    fn refuses_private_keys_and_empty_sets() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let set = Jwks { keys: vec![Jwk::private(&signing)] };
        assert_eq!(CollectorKeys::from_jwks(set).err(), Some(KeysError::PrivateKeyInSet { index: 0 }));
        assert_eq!(CollectorKeys::from_jwks_json(r#"{"keys":[]}"#).err(), Some(KeysError::Empty));
        assert!(matches!(CollectorKeys::from_jwks_json("[]"), Err(KeysError::NotJson(_))));
    }
}
