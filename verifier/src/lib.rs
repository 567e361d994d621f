//! Meridian's verifier.
//!
//! A token from the browser collector is checked in two stages:
//!
//! 1. [`UntrustedToken::parse`] splits the compact JWS and rejects anything
//!    that is not `alg: EdDSA` before touching keys.
//! 2. [`UntrustedToken::verify`] checks the Ed25519 signature against the
//!    collector keys, the challenge's MAC, its lifetime and the allowed
//!    origins and actions, at a `now` the caller passes in. Only this
//!    produces [`VerifiedClaims`].
//!
//! [`Verifier`] runs both, checks the per-request expectations and spends the
//! challenge's nonce in a [`replay::ReplayStore`] so each token is accepted
//! once.
//!
//! ```
//! use meridian_verifier::{Keys, VerifyRules, UntrustedToken, TokenError};
//! # let keys = Keys::for_tests();
//! let now = jiff::Timestamp::from_second(1_800_000_000)?;
//! let result = UntrustedToken::parse("not a token").and_then(|t| t.verify(&keys, &VerifyRules::default(), now));
//! assert_eq!(result.err().map(|e| e.code()), Some(meridian_verifier::ErrorCode::MalformedToken));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod challenge;
pub mod checks;
pub mod clock;
#[cfg(feature = "http")]
pub mod config;
#[cfg(feature = "http")]
pub mod console;
#[cfg(feature = "http")]
pub mod deployment;
mod error;
pub mod fs;
pub mod geo;
pub mod history;
pub mod keys;
pub mod net;
pub mod policy;
pub mod replay;
mod service;
pub mod tables;
mod token;
pub mod udp;
#[cfg(feature = "cli")]
pub mod update;
pub mod verdict;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

#[cfg(feature = "http")]
pub mod http;

pub use challenge::{
    ChallengeError, ChallengeKey, ChallengeKeys, IssuedChallenge, KeyRingError, OpenedChallenge,
};
pub use error::{ErrorCode, TokenError};
pub use keys::{CollectorKeys, Keys, KeysError};
pub use policy::Policy;
pub use service::{LatencyFigures, Network, UdpOrigin, Verifier, VerifyInput, VerifyOutcome};
pub use token::{ClockSkew, UntrustedToken, VerifiedClaims, VerifyRules};

/// Fills `out` from the operating system's secure random source.
///
/// # Errors
/// When the operating system has no random source to offer.
pub fn random_bytes(out: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::fill(out)
}
