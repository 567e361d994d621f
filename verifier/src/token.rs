//! Tokens: untrusted until [`UntrustedToken::verify`] says otherwise.

use jiff::Timestamp;
use meridian_protocol::jws::{CompactJws, JwsError};
use meridian_protocol::{Claims, ClaimsError};
use serde::Serialize;

use crate::challenge::{ChallengeKeys, OpenedChallenge};
use crate::error::TokenError;
use crate::keys::{CollectorKeys, Keys};

/// What the drop-in puts into the token field when the collector cannot
/// run, followed by the kind of failure.
pub(crate) const COLLECTOR_ERROR_PREFIX: &str = "meridian-error:";

/// The largest token accepted, in bytes. A genuine token is about 1 KiB.
pub(crate) const MAX_TOKEN_BYTES: usize = 4096;

/// How far a challenge's issue time may lie ahead of `now`: verifier
/// instances' clocks disagree slightly.
pub(crate) const LEEWAY_MS: i64 = 5_000;

/// What makes a token acceptable beyond its signature, for
/// [`UntrustedToken::verify`] used on its own ([`crate::Verifier`] reads
/// the same lists from its [`crate::Policy`]). The defaults are the safe
/// choice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyRules {
    /// Page origins a token may come from (`https://shop.example`). Empty
    /// means any origin — only sensible when each verify request names its
    /// `expected_origin`. Default: empty.
    pub allowed_origins: Vec<String>,
    /// Actions a token may be collected for. Empty means any. Default: empty.
    pub allowed_actions: Vec<String>,
}

/// The origin prefix of tokens from native clients (`meridian collect`).
pub(crate) const NATIVE_ORIGIN_PREFIX: &str = "native:";

/// What one verification requires of the claims' origin and action: the
/// configured lists (empty: any) and the request's own expectations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub(crate) allowed_origins: &'a [String],
    pub(crate) allowed_actions: &'a [String],
    pub(crate) expected_origin: Option<&'a str>,
    pub(crate) expected_action: Option<&'a str>,
}

impl Binding<'_> {
    /// Checks the claims' origin, then their action. A native client's
    /// origin (`native:…`) passes only where it is named, in the list or as
    /// the expected origin: an empty list accepts any page, not a command
    /// line tool, whose token has no page to check.
    pub(crate) fn check(&self, claims: &Claims) -> Result<(), TokenError> {
        let listed = self.allowed_origins.contains(&claims.origin);
        let expected = self.expected_origin.is_none_or(|origin| origin == claims.origin);
        let origin_ok = if claims.origin.starts_with(NATIVE_ORIGIN_PREFIX) {
            expected && (listed || self.expected_origin.is_some())
        } else {
            expected && (self.allowed_origins.is_empty() || listed)
        };
        if !origin_ok {
            return Err(TokenError::OriginMismatch { found: claims.origin.clone() });
        }
        let action_ok = (self.allowed_actions.is_empty() || self.allowed_actions.contains(&claims.action))
            && self.expected_action.is_none_or(|action| action == claims.action);
        if !action_ok {
            return Err(TokenError::ActionMismatch { found: claims.action.clone() });
        }
        Ok(())
    }
}

/// A token that has been split and whose algorithm is `EdDSA`, but whose
/// signature and claims are not checked yet.
#[derive(Debug, Clone)]
pub struct UntrustedToken<'a> {
    jws: CompactJws<'a>,
}

impl<'a> UntrustedToken<'a> {
    /// Parses a compact JWS. Checks the size limit, the shape and the
    /// algorithm; nothing here is trusted yet.
    ///
    /// # Errors
    /// [`TokenError::Missing`], [`TokenError::TooLarge`],
    /// [`TokenError::Malformed`] or [`TokenError::UnsupportedAlgorithm`].
    pub fn parse(token: &'a str) -> Result<Self, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge { len: token.len(), max: MAX_TOKEN_BYTES });
        }
        if let Some(kind) = token.strip_prefix(COLLECTOR_ERROR_PREFIX) {
            let kind: String =
                kind.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
            return Err(TokenError::CollectorFailed { kind });
        }
        let jws = CompactJws::parse(token).map_err(|e| match e {
            JwsError::UnsupportedAlgorithm(alg) => TokenError::UnsupportedAlgorithm { alg },
            other => TokenError::Malformed(other.to_string()),
        })?;
        Ok(Self { jws })
    }

    /// The key id the token names.
    pub fn kid(&self) -> Option<&str> {
        self.jws.header().kid.as_deref()
    }

    /// The claims as stated, without any check. For `meridian inspect` and
    /// logs only: never base a decision on them.
    ///
    /// # Errors
    /// When the payload is not claims.
    pub fn unverified_claims(&self) -> Result<Claims, TokenError> {
        Claims::from_json(self.jws.payload()).map_err(claims_error)
    }

    /// Verifies the token at `now`: key, signature, claims, challenge MAC
    /// and lifetime, allowed origins and actions. Does not spend the nonce:
    /// [`crate::Verifier`] does that, after this succeeds.
    ///
    /// # Errors
    /// The first [`TokenError`] found, in the order above.
    pub fn verify(
        &self,
        keys: &Keys,
        rules: &VerifyRules,
        now: Timestamp,
    ) -> Result<VerifiedClaims, TokenError> {
        let verified = self.check_signature(&keys.collector, now)?.open_challenge(&keys.challenge, now)?;
        Binding {
            allowed_origins: &rules.allowed_origins,
            allowed_actions: &rules.allowed_actions,
            expected_origin: None,
            expected_action: None,
        }
        .check(verified.claims())?;
        Ok(verified)
    }

    /// The first step of verification: the key the token names is a valid
    /// collector key at `now`, its signature verifies, and the payload is
    /// claims.
    ///
    /// # Errors
    /// [`TokenError::UnknownKey`], [`TokenError::BadSignature`] or
    /// [`TokenError::Malformed`].
    pub fn check_signature(&self, keys: &CollectorKeys, now: Timestamp) -> Result<SignedClaims, TokenError> {
        let kid = self.kid().ok_or(TokenError::UnknownKey { kid: None })?;
        let key = keys
            .get(kid, now.as_millisecond())
            .ok_or_else(|| TokenError::UnknownKey { kid: Some(kid.to_owned()) })?;
        self.jws.verify(key).map_err(|_| TokenError::BadSignature)?;
        let claims = Claims::from_json(self.jws.payload()).map_err(claims_error)?;
        Ok(SignedClaims { claims, kid: kid.to_owned() })
    }
}

/// Claims a collector key signed, whose challenge is not checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedClaims {
    claims: Claims,
    kid: String,
}

impl SignedClaims {
    /// The second step: the challenge is one this verifier issued (MAC),
    /// still alive at `now`, and the browser's clock sample fits inside
    /// its life.
    ///
    /// # Errors
    /// [`TokenError::BadChallenge`], [`TokenError::Expired`] or
    /// [`TokenError::ImplausibleClock`].
    pub fn open_challenge(self, keys: &ChallengeKeys, now: Timestamp) -> Result<VerifiedClaims, TokenError> {
        let Self { claims, kid } = self;
        let now_ms = now.as_millisecond();
        let challenge = keys.open(&claims.challenge, now_ms, LEEWAY_MS).map_err(TokenError::BadChallenge)?;
        if now_ms >= challenge.expires_at_ms {
            return Err(TokenError::Expired { now_ms, expires_at_ms: challenge.expires_at_ms });
        }
        // The collector measures the round trip and both instants itself;
        // none of them can span more than the challenge's life (a second of
        // slack for rounding between the two clocks the browser reads).
        let lifetime_ms = challenge.expires_at_ms.saturating_sub(challenge.issued_at_ms);
        let signed_after_receipt_ms = claims.signed_at_ms.saturating_sub(claims.clock.received_at_ms);
        if i64::from(claims.clock.round_trip_ms) > lifetime_ms
            || signed_after_receipt_ms < -1_000
            || signed_after_receipt_ms > lifetime_ms
        {
            return Err(TokenError::ImplausibleClock {
                round_trip_ms: claims.clock.round_trip_ms,
                signed_after_receipt_ms,
                lifetime_ms,
            });
        }
        let skew = ClockSkew::from_sample(&claims, &challenge);
        Ok(VerifiedClaims { claims, challenge, kid, skew })
    }
}

fn claims_error(e: ClaimsError) -> TokenError {
    TokenError::Malformed(e.to_string())
}

/// Claims whose signature, challenge and lifetime checked out. Only
/// [`UntrustedToken::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    claims: Claims,
    challenge: OpenedChallenge,
    kid: String,
    skew: ClockSkew,
}

impl VerifiedClaims {
    /// What the browser stated.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// What the browser stated, taken out.
    pub fn into_claims(self) -> Claims {
        self.claims
    }

    /// The opened challenge: nonce, times and the IP it was issued to.
    pub fn challenge(&self) -> &OpenedChallenge {
        &self.challenge
    }

    /// The collector key that signed.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The browser's clock skew against the verifier's.
    pub fn skew(&self) -> ClockSkew {
        self.skew
    }
}

/// Browser clock minus verifier clock, as an interval like NTP's: the server
/// stamped the challenge somewhere inside the round trip, so the true skew
/// lies within `skew_ms ± uncertainty_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct ClockSkew {
    /// Midpoint of the interval, ms (positive: the browser is ahead).
    pub skew_ms: i64,
    /// Half the interval's width, ms.
    pub uncertainty_ms: i64,
}

impl ClockSkew {
    /// The skew interval from the browser's sample and the challenge's
    /// issue time. The challenge was stamped after the request left and
    /// before the response arrived, so
    /// `recv − issued − rtt ≤ skew ≤ recv − issued`.
    pub fn from_sample(claims: &Claims, challenge: &OpenedChallenge) -> Self {
        let upper = claims.clock.received_at_ms.saturating_sub(challenge.issued_at_ms);
        let rtt = i64::from(claims.clock.round_trip_ms);
        let lower = upper.saturating_sub(rtt);
        let half = (rtt + 1) / 2;
        Self { skew_ms: lower.saturating_add(rtt / 2), uncertainty_ms: half }
    }

    /// The smallest |skew| consistent with the interval.
    pub fn min_abs_ms(&self) -> i64 {
        let lower = self.skew_ms.saturating_sub(self.uncertainty_ms);
        let upper = self.skew_ms.saturating_add(self.uncertainty_ms);
        if lower <= 0 && upper >= 0 { 0 } else { lower.saturating_abs().min(upper.saturating_abs()) }
    }
}

#[cfg(test)]
mod tests;
