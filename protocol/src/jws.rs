//! JWS compact serialization with `alg: "EdDSA"` (RFC 7515, RFC 8037).
//!
//! Signing is always available; parsing needs the `serde` feature. Parsing is
//! strict: exactly three canonical base64url parts, a JSON header whose `alg`
//! is `EdDSA`, no `crit` extensions, a 64-byte signature, and verification
//! with [`VerifyingKey::verify_strict`] (no small-order keys, no malleable
//! signatures).

use alloc::string::String;

use ed25519_dalek::{Signer, SigningKey};

use crate::b64;
use crate::json::JsonWriter;

/// The only JWS algorithm Meridian accepts.
pub const ALG: &str = "EdDSA";
/// The media type Meridian writes into the header's `typ`.
pub const TYP: &str = "JWT";

/// Signs `payload` with `key` and returns the compact JWS
/// `header.payload.signature`, with `kid` in the protected header.
pub fn sign(payload: &[u8], key: &SigningKey, kid: &str) -> String {
    signed(signing_input(payload, kid), key)
}

/// The JWS signing input `header.payload` for `payload` under `kid`: what
/// [`sign`] signs, for a signer outside this crate (the browser's own
/// Ed25519). The token is this, a dot and the base64url signature.
pub fn signing_input(payload: &[u8], kid: &str) -> String {
    let mut header = JsonWriter::new();
    header.begin_object();
    header.member_str("alg", ALG);
    header.member_str("kid", kid);
    header.member_str("typ", TYP);
    header.end_object();
    encode_input(header.finish().as_bytes(), payload)
}

/// Signs with a caller-made protected header, for test vectors (RFC 8037
/// Appendix A.4 uses `{"alg":"EdDSA"}` alone).
pub fn sign_with_header(header: &[u8], payload: &[u8], key: &SigningKey) -> String {
    signed(encode_input(header, payload), key)
}

/// `input.signature`, signed with `key`.
fn signed(mut input: String, key: &SigningKey) -> String {
    let signature = key.sign(input.as_bytes());
    input.push('.');
    input.push_str(&b64::encode_public(&signature.to_bytes()));
    input
}

/// `base64url(header).base64url(payload)`.
fn encode_input(header: &[u8], payload: &[u8]) -> String {
    // Everything encoded here is public: no need for the constant-time encoder.
    let mut input = b64::encode_public(header);
    input.push('.');
    input.push_str(&b64::encode_public(payload));
    input
}

#[cfg(feature = "serde")]
pub use parse::{CompactJws, Header, JwsError};

#[cfg(feature = "serde")]
mod parse {
    use ed25519_dalek::{Signature, VerifyingKey};

    use crate::b64;

    /// The protected header fields Meridian reads.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
    pub struct Header {
        /// Signature algorithm; only `EdDSA` is accepted.
        pub alg: String,
        /// Key id: the RFC 7638 thumbprint of the signing key.
        #[serde(default)]
        pub kid: Option<String>,
        /// Media type, informational.
        #[serde(default)]
        pub typ: Option<String>,
        /// Critical extensions. Meridian understands none, so any is fatal.
        #[serde(default)]
        pub crit: Option<serde_json::Value>,
    }

    /// Why a string is not an acceptable compact JWS.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[non_exhaustive]
    pub enum JwsError {
        /// Not three base64url parts, a header that is not JSON, a signature
        /// of the wrong length or a `crit` header.
        #[error("malformed JWS: {0}")]
        Malformed(&'static str),
        /// The header names an algorithm other than `EdDSA`.
        #[error("unsupported JWS algorithm {0:?}")]
        UnsupportedAlgorithm(String),
        /// The signature does not verify under the given key.
        #[error("signature does not verify")]
        BadSignature,
    }

    /// A parsed, not yet verified compact JWS.
    #[derive(Debug, Clone)]
    pub struct CompactJws<'a> {
        header: Header,
        signing_input: &'a str,
        payload: Vec<u8>,
        signature: Signature,
    }

    impl<'a> CompactJws<'a> {
        /// Splits and decodes a compact JWS. The algorithm is checked before
        /// anything else past the header, so `alg: none` tokens (whose
        /// signature part is empty) report the algorithm, not their shape.
        ///
        /// # Errors
        /// [`JwsError::Malformed`] or [`JwsError::UnsupportedAlgorithm`].
        pub fn parse(token: &'a str) -> Result<Self, JwsError> {
            let mut parts = token.split('.');
            let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(JwsError::Malformed("expected three dot-separated parts"));
            };
            let header_json =
                b64::decode_public(header_b64).ok_or(JwsError::Malformed("header is not base64url"))?;
            let header: Header = serde_json::from_slice(&header_json)
                .map_err(|_| JwsError::Malformed("header is not a JSON object with alg"))?;
            if header.alg != super::ALG {
                return Err(JwsError::UnsupportedAlgorithm(header.alg));
            }
            if header.crit.is_some() {
                return Err(JwsError::Malformed("critical header extensions are not supported"));
            }
            let payload =
                b64::decode_public(payload_b64).ok_or(JwsError::Malformed("payload is not base64url"))?;
            let signature_bytes =
                b64::decode_public(signature_b64).ok_or(JwsError::Malformed("signature is not base64url"))?;
            let signature_bytes: [u8; 64] =
                signature_bytes.try_into().map_err(|_| JwsError::Malformed("signature is not 64 bytes"))?;
            let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
            Ok(Self { header, signing_input, payload, signature: Signature::from_bytes(&signature_bytes) })
        }

        /// The protected header.
        pub fn header(&self) -> &Header {
            &self.header
        }

        /// The decoded payload. Not authenticated until [`Self::verify`] succeeds.
        pub fn payload(&self) -> &[u8] {
            &self.payload
        }

        /// Verifies the signature with `verify_strict`.
        ///
        /// # Errors
        /// [`JwsError::BadSignature`] when it does not verify under `key`.
        pub fn verify(&self, key: &VerifyingKey) -> Result<(), JwsError> {
            key.verify_strict(self.signing_input.as_bytes(), &self.signature)
                .map_err(|_| JwsError::BadSignature)
        }
    }
}

#[cfg(all(test, feature = "serde"))]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;
    use crate::jwk::Jwk;

    /// RFC 8037 Appendix A.1 private key.
    const RFC8037_PRIVATE: &str = r#"{"kty":"OKP","crv":"Ed25519",
        "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
        "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    /// RFC 8037 Appendix A.4 JWS.
    const RFC8037_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    fn rfc_key() -> SigningKey {
        let jwk: Jwk = serde_json::from_str(RFC8037_PRIVATE).unwrap();
        jwk.signing_key().unwrap()
    }

    #[test]
    fn rfc8037_a4_signature() {
        let key = rfc_key();
        let token = sign_with_header(br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing", &key);
        assert_eq!(token, RFC8037_JWS);
    }

    #[test]
    fn rfc8037_a5_verification() {
        let key = rfc_key();
        let jws = CompactJws::parse(RFC8037_JWS).unwrap();
        assert_eq!(jws.payload(), b"Example of Ed25519 signing");
        assert_eq!(jws.verify(&key.verifying_key()), Ok(()));
    }

    #[test]
    fn any_changed_character_fails() {
        let key = rfc_key();
        let token = sign(b"{\"hello\":1}", &key, "k");
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let Ok(edited) = String::from_utf8(bytes) else { continue };
            if edited == token {
                continue;
            }
            let verified = CompactJws::parse(&edited).and_then(|j| j.verify(&key.verifying_key()));
            assert!(verified.is_err(), "edit at {i} verified: {edited}");
        }
    }

    #[test]
    fn rejects_other_algorithms_before_shape() {
        let none = format!("{}.{}.", crate::b64::encode(br#"{"alg":"none"}"#), crate::b64::encode(b"{}"));
        assert_eq!(CompactJws::parse(&none).err(), Some(JwsError::UnsupportedAlgorithm("none".into())));
        let hs = format!("{}.e30.c2ln", crate::b64::encode(br#"{"alg":"HS256","typ":"JWT"}"#));
        assert_eq!(CompactJws::parse(&hs).err(), Some(JwsError::UnsupportedAlgorithm("HS256".into())));
    }

    #[test]
    fn rejects_bad_shapes() {
        for token in ["", "a", "a.b", "a.b.c.d", "!!.e30.", "e30.e30.AAAA"] {
            assert!(matches!(CompactJws::parse(token), Err(JwsError::Malformed(_))), "{token}");
        }
        let crit =
            format!("{}.e30.{}", crate::b64::encode(br#"{"alg":"EdDSA","crit":["exp"]}"#), "A".repeat(86));
        assert!(matches!(CompactJws::parse(&crit), Err(JwsError::Malformed(_))));
    }
}
