//! Meridian's wire format, shared by the collector (wasm32) and the verifier.
//!
//! A Meridian token is a JWS in compact serialization ([RFC 7515]) signed with
//! Ed25519 (`alg: "EdDSA"`, [RFC 8037]). Its payload is a JSON object of
//! [`Claims`]: what the browser says about its clock, time zone and languages,
//! bound to a server challenge, an origin and an action. Public keys travel as
//! JWKs whose `kid` is the [RFC 7638] thumbprint.
//!
//! ```
//! use meridian_protocol::{jwk, jws, Claims};
//! use ed25519_dalek::SigningKey;
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let kid = jwk::thumbprint(&key.verifying_key());
//! let claims = Claims::example();
//! let token = jws::sign(claims.to_json().as_bytes(), &key, &kid);
//!
//! let parsed = jws::CompactJws::parse(&token)?;
//! assert_eq!(parsed.header().kid.as_deref(), Some(kid.as_str()));
//! parsed.verify(&key.verifying_key())?;
//! assert_eq!(Claims::from_json(parsed.payload())?, claims);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [RFC 7515]: https://www.rfc-editor.org/rfc/rfc7515
//! [RFC 8037]: https://www.rfc-editor.org/rfc/rfc8037
//! [RFC 7638]: https://www.rfc-editor.org/rfc/rfc7638

// Without `serde` the crate needs only `alloc`, so the collector can build
// without `std` and without its panic and formatting machinery.
#![cfg_attr(not(feature = "serde"), no_std)]

extern crate alloc;

mod b64;
mod claims;
#[cfg(feature = "embed")]
pub mod embed;
mod json;
pub mod jwk;
pub mod jws;

pub use b64::{decode as base64url_decode, encode as base64url_encode};
#[cfg(feature = "serde")]
pub use claims::ClaimsError;
pub use claims::{
    CLAIMS_VERSION, Claims, ClockSample, IntegrityClaims, LocaleClaims, ScopeClaims, TimeZoneClaims,
};
pub use ed25519_dalek;
