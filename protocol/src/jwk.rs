//! Ed25519 keys as JWK and JWKS (RFC 7517, RFC 8037), with RFC 7638
//! thumbprints as key ids.

use alloc::string::String;

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::b64;

/// The RFC 7638 thumbprint of an Ed25519 public key: base64url of the SHA-256
/// of `{"crv":"Ed25519","kty":"OKP","x":"…"}`. Meridian uses it as `kid`.
pub fn thumbprint(key: &VerifyingKey) -> String {
    let canonical = [r#"{"crv":"Ed25519","kty":"OKP","x":""#, &b64::encode(key.as_bytes()), r#""}"#].concat();
    b64::encode(&Sha256::digest(canonical.as_bytes()))
}

#[cfg(feature = "serde")]
pub use serde_types::{Jwk, JwkError, Jwks};

#[cfg(feature = "serde")]
mod serde_types {
    use ed25519_dalek::{SigningKey, VerifyingKey};
    use serde::{Deserialize, Serialize};

    use crate::b64;

    /// A JSON Web Key for Ed25519 (`kty: OKP`, `crv: Ed25519`).
    ///
    /// `d` holds the private seed and is present only in key files, never in
    /// a published JWKS.
    #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Jwk {
        /// Key type, `OKP`.
        pub kty: String,
        /// Curve, `Ed25519`.
        pub crv: String,
        /// Public key, base64url.
        pub x: String,
        /// Private seed, base64url; only in private key files.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub d: Option<String>,
        /// Key id, the RFC 7638 thumbprint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub kid: Option<String>,
        /// Algorithm, `EdDSA`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub alg: Option<String>,
        /// Intended use, `sig`.
        #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
        pub use_: Option<String>,
        /// Not valid before this Unix time in seconds (Meridian extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub nbf: Option<i64>,
        /// Not valid from this Unix time in seconds on (Meridian extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub exp: Option<i64>,
    }

    impl std::fmt::Debug for Jwk {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // Never print the private seed.
            f.debug_struct("Jwk")
                .field("kty", &self.kty)
                .field("crv", &self.crv)
                .field("x", &self.x)
                .field("d", &self.d.as_ref().map(|_| "<redacted>"))
                .field("kid", &self.kid)
                .finish_non_exhaustive()
        }
    }

    /// A JWK Set: `{"keys": [...]}`.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    pub struct Jwks {
        /// The keys.
        pub keys: Vec<Jwk>,
    }

    /// Why a JWK is not a usable Ed25519 key.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[non_exhaustive]
    pub enum JwkError {
        /// `kty` is not `OKP` or `crv` is not `Ed25519`.
        #[error("not an Ed25519 key (kty {kty:?}, crv {crv:?})")]
        NotEd25519 {
            /// The key's `kty`.
            kty: String,
            /// The key's `crv`.
            crv: String,
        },
        /// `x` is not 32 bytes of base64url or not a valid curve point.
        #[error("public key `x` is not a valid Ed25519 key")]
        BadPublicKey,
        /// `d` is missing, not 32 bytes of base64url, or does not match `x`.
        #[error("private key `d` is missing, invalid or does not match `x`")]
        BadPrivateKey,
        /// `kid` is present but is not the key's RFC 7638 thumbprint.
        #[error("kid {found:?} is not the key's thumbprint {expected:?}")]
        KidMismatch {
            /// The `kid` in the key.
            found: String,
            /// The thumbprint of `x`.
            expected: String,
        },
    }

    impl Jwk {
        /// The public JWK of a key, with its thumbprint as `kid`.
        pub fn public(key: &VerifyingKey) -> Self {
            Self {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: b64::encode(key.as_bytes()),
                d: None,
                kid: Some(super::thumbprint(key)),
                alg: Some(crate::jws::ALG.into()),
                use_: Some("sig".into()),
                nbf: None,
                exp: None,
            }
        }

        /// The private JWK of a key (includes `d`).
        pub fn private(key: &SigningKey) -> Self {
            Self { d: Some(b64::encode(key.as_bytes())), ..Self::public(&key.verifying_key()) }
        }

        /// The same key without its private part.
        pub fn to_public(&self) -> Self {
            Self { d: None, ..self.clone() }
        }

        /// The public key, checking type, curve, encoding and `kid`.
        ///
        /// # Errors
        /// See [`JwkError`].
        pub fn verifying_key(&self) -> Result<VerifyingKey, JwkError> {
            if self.kty != "OKP" || self.crv != "Ed25519" {
                return Err(JwkError::NotEd25519 { kty: self.kty.clone(), crv: self.crv.clone() });
            }
            let bytes: [u8; 32] =
                b64::decode(&self.x).and_then(|b| b.try_into().ok()).ok_or(JwkError::BadPublicKey)?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| JwkError::BadPublicKey)?;
            if key.is_weak() {
                return Err(JwkError::BadPublicKey);
            }
            if let Some(kid) = &self.kid {
                let expected = super::thumbprint(&key);
                if *kid != expected {
                    return Err(JwkError::KidMismatch { found: kid.clone(), expected });
                }
            }
            Ok(key)
        }

        /// The private key, checking that `d` matches `x`.
        ///
        /// # Errors
        /// See [`JwkError`].
        pub fn signing_key(&self) -> Result<SigningKey, JwkError> {
            let public = self.verifying_key()?;
            let seed: [u8; 32] = self
                .d
                .as_deref()
                .and_then(b64::decode)
                .and_then(|b| b.try_into().ok())
                .ok_or(JwkError::BadPrivateKey)?;
            let key = SigningKey::from_bytes(&seed);
            if key.verifying_key() != public {
                return Err(JwkError::BadPrivateKey);
            }
            Ok(key)
        }
    }
}

#[cfg(all(test, feature = "serde"))]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn rfc8037_a2_public_key_and_a3_thumbprint() {
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        )
        .unwrap();
        let key = jwk.signing_key().unwrap();
        assert_eq!(
            b64::encode(key.verifying_key().as_bytes()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(thumbprint(&key.verifying_key()), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn rejects_bad_keys() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let mut jwk = Jwk::public(&key.verifying_key());
        assert_eq!(jwk.verifying_key(), Ok(key.verifying_key()));
        jwk.kid = Some("other".into());
        assert!(matches!(jwk.verifying_key(), Err(JwkError::KidMismatch { .. })));
        jwk.kid = None;
        jwk.crv = "P-256".into();
        assert!(matches!(jwk.verifying_key(), Err(JwkError::NotEd25519 { .. })));
        jwk.crv = "Ed25519".into();
        jwk.x = "AAAA".into();
        assert_eq!(jwk.verifying_key(), Err(JwkError::BadPublicKey));
        // The identity point is a weak (small-order) key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        jwk.x = b64::encode(&identity);
        assert_eq!(jwk.verifying_key(), Err(JwkError::BadPublicKey));
        let mut private = Jwk::private(&key);
        private.d = Some(b64::encode(&[1; 32]));
        assert_eq!(private.signing_key().err(), Some(JwkError::BadPrivateKey));
        assert!(format!("{:?}", Jwk::private(&key)).contains("<redacted>"));
    }
}
