//! Why a token is not acceptable, and the stable codes clients see.

use serde::Serialize;

use crate::challenge::ChallengeError;

/// The stable error codes of `POST /v1/verify` (`error_codes`). Clients
/// match on these strings; they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum ErrorCode {
    /// No token was sent.
    MissingInputToken,
    /// The token is not a well-formed compact JWS with Meridian claims.
    MalformedToken,
    /// The token's `alg` is not `EdDSA`.
    UnsupportedAlgorithm,
    /// The token's `kid` is not a currently valid collector key.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// The challenge inside the token was not issued by this verifier.
    BadChallenge,
    /// The challenge's lifetime is over.
    Expired,
    /// The challenge was already spent by another token.
    Replayed,
    /// The token was collected on another origin than expected.
    OriginMismatch,
    /// The token was collected for another action than expected.
    ActionMismatch,
    /// The request lacks a valid verify secret.
    Unauthorized,
    /// The request itself is not valid (content type, JSON, `remote_ip`).
    BadRequest,
    /// The verifier could not decide (e.g. its replay store is unreachable).
    InternalError,
    /// Too many challenge requests from one address.
    RateLimited,
    /// The page's collector could not run (challenge unreachable, no
    /// WebAssembly) and submitted a marker instead of a token.
    CollectorError,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: &'static [ErrorCode] = &[
        Self::MissingInputToken,
        Self::MalformedToken,
        Self::UnsupportedAlgorithm,
        Self::UnknownKey,
        Self::BadSignature,
        Self::BadChallenge,
        Self::Expired,
        Self::Replayed,
        Self::OriginMismatch,
        Self::ActionMismatch,
        Self::Unauthorized,
        Self::BadRequest,
        Self::InternalError,
        Self::RateLimited,
        Self::CollectorError,
    ];

    /// The code named `name` on the wire.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|code| code.as_str() == name)
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingInputToken => "missing-input-token",
            Self::MalformedToken => "malformed-token",
            Self::UnsupportedAlgorithm => "unsupported-algorithm",
            Self::UnknownKey => "unknown-key",
            Self::BadSignature => "bad-signature",
            Self::BadChallenge => "bad-challenge",
            Self::Expired => "expired",
            Self::Replayed => "replayed",
            Self::OriginMismatch => "origin-mismatch",
            Self::ActionMismatch => "action-mismatch",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad-request",
            Self::InternalError => "internal-error",
            Self::RateLimited => "rate-limited",
            Self::CollectorError => "collector-error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token was rejected, with the context to explain it in a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token (absent or empty).
    #[error("no token was sent")]
    Missing,
    /// Longer than the verifier accepts.
    #[error("token is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a compact JWS, or its payload is not Meridian claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` other than `EdDSA`.
    #[error("unsupported algorithm {alg:?}")]
    UnsupportedAlgorithm {
        /// The algorithm the header named.
        alg: String,
    },
    /// No valid collector key has this `kid`.
    #[error("no valid collector key with kid {kid:?}")]
    UnknownKey {
        /// The header's key id, if any.
        kid: Option<String>,
    },
    /// The signature does not verify under the key named by `kid`.
    #[error("signature does not verify")]
    BadSignature,
    /// The challenge is not one this verifier issued.
    #[error("bad challenge: {0}")]
    BadChallenge(ChallengeError),
    /// The challenge expired before `now`.
    #[error("challenge expired at {expires_at_ms} ms, now is {now_ms} ms")]
    Expired {
        /// Verification time, Unix ms.
        now_ms: i64,
        /// Challenge expiry, Unix ms.
        expires_at_ms: i64,
    },
    /// The challenge's nonce was already spent.
    #[error("challenge already used")]
    Replayed,
    /// The page origin is not the expected or an allowed one.
    #[error("origin {found:?} is not accepted")]
    OriginMismatch {
        /// The origin the claims state.
        found: String,
    },
    /// The action is not the expected or an allowed one.
    #[error("action {found:?} is not accepted")]
    ActionMismatch {
        /// The action the claims state.
        found: String,
    },
    /// The collector failed in the browser and sent this marker instead of
    /// a token (`meridian-error:<kind>`).
    #[error("the collector could not run in the browser: {kind}")]
    CollectorFailed {
        /// What failed, as the drop-in reported it (sanitized).
        kind: String,
    },
    /// The replay store could not answer, so single use cannot be enforced.
    #[error("replay store unavailable: {0}")]
    StoreUnavailable(String),
    /// The clock sample cannot come from a collector that answered within
    /// the challenge's lifetime: a round trip longer than the lifetime, or
    /// the challenge "received" after the token was signed or long before.
    #[error(
        "implausible clock sample: round trip {round_trip_ms} ms, signed {signed_after_receipt_ms} ms after receipt, lifetime {lifetime_ms} ms"
    )]
    ImplausibleClock {
        /// The claimed round trip.
        round_trip_ms: u32,
        /// Signing time minus receipt time, by the browser's clock.
        signed_after_receipt_ms: i64,
        /// The challenge's lifetime.
        lifetime_ms: i64,
    },
}

impl TokenError {
    /// The stable code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Missing => ErrorCode::MissingInputToken,
            Self::TooLarge { .. } | Self::Malformed(_) | Self::ImplausibleClock { .. } => {
                ErrorCode::MalformedToken
            }
            Self::UnsupportedAlgorithm { .. } => ErrorCode::UnsupportedAlgorithm,
            Self::UnknownKey { .. } => ErrorCode::UnknownKey,
            Self::BadSignature => ErrorCode::BadSignature,
            Self::BadChallenge(_) => ErrorCode::BadChallenge,
            Self::Expired { .. } => ErrorCode::Expired,
            Self::Replayed => ErrorCode::Replayed,
            Self::OriginMismatch { .. } => ErrorCode::OriginMismatch,
            Self::ActionMismatch { .. } => ErrorCode::ActionMismatch,
            Self::StoreUnavailable(_) => ErrorCode::InternalError,
            Self::CollectorFailed { .. } => ErrorCode::CollectorError,
        }
    }
}
