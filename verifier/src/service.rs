//! The whole verification of one request: token, binding, single use, and
//! the response `POST /v1/verify` returns.

use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;
use meridian_protocol::Claims;
use serde::Serialize;

use crate::checks::{self, Evidence};
use crate::error::{ErrorCode, TokenError};
use crate::geo::{Country, IpFacts, IpIntel};
use crate::keys::Keys;
use crate::net::canonical_ip;
use crate::policy::{Policy, StoreFailure};
use crate::replay::{ReplayStore, Spend};
use crate::token::{ClockSkew, UntrustedToken, VerifiedClaims, VerifyRules};
use crate::verdict::{Reason, ReasonCode, Verdict};

/// Verifies tokens, spends their challenges and weighs the claims against
/// the network; share one per process.
pub struct Verifier {
    keys: Keys,
    rules: VerifyRules,
    policy: Policy,
    restricted: Vec<Country>,
    /// Swapped whole when the data files are reloaded (SIGHUP).
    intel: arc_swap::ArcSwap<IpIntel>,
    store: Arc<dyn ReplayStore>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("collector_keys", &self.keys.collector.len())
            .field("rules", &self.rules)
            .field("restricted", &self.restricted)
            .field("intel", &self.intel)
            .field("store", &self.store.kind())
            .finish()
    }
}

/// One verification request, as a backend sends it.
#[derive(Debug, Clone, Copy)]
pub struct VerifyInput<'a> {
    /// The token from the form field.
    pub token: &'a str,
    /// The IP the backend saw the login come from.
    pub remote_ip: IpAddr,
    /// The login request's `Accept-Language` header, if forwarded.
    pub accept_language: Option<&'a str>,
    /// The action the backend expects (`login`); checked when given.
    pub expected_action: Option<&'a str>,
    /// The origin the backend expects (`https://shop.example`); checked when given.
    pub expected_origin: Option<&'a str>,
}

/// The network side of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Network {
    /// The observed client IP, canonical.
    #[cfg_attr(feature = "http", schema(value_type = String, example = "203.0.113.7"))]
    pub ip: IpAddr,
    /// ISO 3166-1 alpha-2 country of the IP, when known.
    pub country: Option<String>,
    /// Autonomous system number, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Organisation of the AS, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Whether the AS is a hosting or VPN network, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosting: Option<bool>,
    /// The privacy relay or Tor exit the IP belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<crate::geo::RelayKind>,
}

impl Network {
    /// The network side of a response from what is known about `ip`.
    pub fn new(ip: IpAddr, facts: IpFacts) -> Self {
        Self {
            ip: canonical_ip(ip),
            country: facts.country.map(|c| c.as_str().to_owned()),
            asn: facts.asn,
            org: facts.org,
            hosting: facts.hosting,
            relay: facts.relay.map(|relay| relay.kind),
        }
    }
}

/// The answer to one verification, serialized as `POST /v1/verify`'s body.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct VerifyOutcome {
    /// Whether the token itself is acceptable.
    pub success: bool,
    /// What to do with the login.
    pub verdict: Verdict,
    /// Risk score 0–100 (higher is riskier).
    pub score: u8,
    /// Why, one entry per thing that is off.
    pub reasons: Vec<Reason>,
    /// Why the token is not acceptable; empty on success.
    pub error_codes: Vec<ErrorCode>,
    /// Network facts; absent only when the request itself was invalid.
    pub network: Option<Network>,
    /// What the browser stated (only for a verified token); the token
    /// payload, see docs/PROTOCOL.md.
    #[cfg_attr(feature = "http", schema(value_type = Option<Object>))]
    pub claims: Option<Claims>,
    /// Browser clock skew (only for a verified token).
    pub clock: Option<ClockSkew>,
    /// A sentence for a developer when the request itself was invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The error for logs; clients see only `error_codes`.
    #[serde(skip)]
    #[cfg_attr(feature = "http", schema(ignore))]
    pub error: Option<TokenError>,
}

impl VerifyOutcome {
    /// An outcome that rejects the token with `error`.
    pub fn rejected(error: TokenError, network: Network) -> Self {
        Self {
            success: false,
            verdict: Verdict::Deny,
            score: 100,
            reasons: Vec::new(),
            error_codes: vec![error.code()],
            network: Some(network),
            claims: None,
            clock: None,
            message: None,
            error: Some(error),
        }
    }

    /// An outcome for a request that could not be evaluated at all.
    pub fn invalid_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            success: false,
            verdict: Verdict::Deny,
            score: 100,
            reasons: Vec::new(),
            error_codes: vec![code],
            network: None,
            claims: None,
            clock: None,
            message: Some(message.into()),
            error: None,
        }
    }
}

impl Verifier {
    /// A verifier trusting `keys`, applying `policy`, spending nonces in
    /// `store`. Without [`Self::with_intel`] no IP database is consulted.
    pub fn new(keys: Keys, policy: Policy, store: Arc<dyn ReplayStore>) -> Self {
        checks::tz::preload();
        Self {
            keys,
            rules: policy.verify_rules(),
            restricted: policy.restricted(),
            policy,
            intel: arc_swap::ArcSwap::from_pointee(IpIntel::none()),
            store,
        }
    }

    /// Uses these IP databases.
    pub fn with_intel(self, intel: Arc<IpIntel>) -> Self {
        self.intel.store(intel);
        self
    }

    /// Replaces the IP databases of a running verifier: verifications in
    /// flight finish with the old ones, the next use the new.
    pub fn replace_intel(&self, intel: Arc<IpIntel>) {
        self.intel.store(intel);
    }

    /// Replaces the token rules (origins, actions, leeway, size).
    pub fn with_rules(mut self, rules: VerifyRules) -> Self {
        self.rules = rules;
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The IP databases in force now.
    pub fn intel(&self) -> Arc<IpIntel> {
        self.intel.load_full()
    }

    /// The trusted keys (the challenge issuer needs them too).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The rules in force.
    pub fn rules(&self) -> &VerifyRules {
        &self.rules
    }

    /// The replay store.
    pub fn store(&self) -> &dyn ReplayStore {
        self.store.as_ref()
    }

    /// Verifies one request at `now` and explains the result.
    pub async fn verify(&self, input: &VerifyInput<'_>, now: Timestamp) -> VerifyOutcome {
        let facts = self.intel.load().lookup(input.remote_ip);
        match self.accept(input, now).await {
            Ok(verified) => {
                // The claims move into the outcome: no copy on the hot path.
                let mut outcome = self.weigh(&verified, input, facts, now);
                outcome.claims = Some(verified.into_claims());
                outcome
            }
            Err(TokenError::StoreUnavailable(why)) if self.policy.store_failure == StoreFailure::Open => {
                // Failing open: everything but single use was checked.
                match self.check(input, now) {
                    Ok(verified) => {
                        tracing::warn!(%why, "replay store unavailable; accepting without the single-use check");
                        let mut outcome = self.assess(&verified, input, facts, now);
                        let weight = self.policy.weights.of(ReasonCode::ReplayUnchecked);
                        outcome.reasons.push(Reason::new(
                            ReasonCode::ReplayUnchecked,
                            weight,
                            "The replay store could not be reached, so this token may have been used before."
                                .into(),
                        ));
                        (outcome.score, outcome.verdict) = self.score(&outcome.reasons);
                        outcome
                    }
                    Err(error) => VerifyOutcome::rejected(error, Network::new(input.remote_ip, facts)),
                }
            }
            Err(error @ TokenError::CollectorFailed { .. }) => {
                // Anyone can type the marker: the policy decides what it means.
                let verdict = self.policy.collector_error;
                let mut outcome = VerifyOutcome::rejected(error, Network::new(input.remote_ip, facts));
                outcome.verdict = verdict;
                outcome.score = match verdict {
                    Verdict::Allow => 0,
                    Verdict::Review => u8::try_from(self.policy.thresholds.review.min(100)).unwrap_or(100),
                    Verdict::Deny => 100,
                };
                outcome.message = Some(format!(
                    "The page's collector could not run and sent its error marker instead of a token; the policy's collector_error makes that `{}`.",
                    verdict.as_str()
                ));
                outcome
            }
            Err(error) => VerifyOutcome::rejected(error, Network::new(input.remote_ip, facts)),
        }
    }

    /// Checks the token, its binding to this request, and spends its nonce.
    ///
    /// # Errors
    /// The first [`TokenError`] found.
    pub async fn accept(
        &self,
        input: &VerifyInput<'_>,
        now: Timestamp,
    ) -> Result<VerifiedClaims, TokenError> {
        let verified = self.check(input, now)?;
        let challenge = verified.challenge();
        match self.store.spend(challenge.nonce, challenge.expires_at_ms, now.as_millisecond()).await {
            Ok(Spend::Fresh) => Ok(verified),
            Ok(Spend::Replayed) => Err(TokenError::Replayed),
            Err(e) => Err(TokenError::StoreUnavailable(e.to_string())),
        }
    }

    /// Everything [`Self::accept`] checks except single use.
    fn check(&self, input: &VerifyInput<'_>, now: Timestamp) -> Result<VerifiedClaims, TokenError> {
        let token = input.token.trim();
        if token.len() > self.rules.max_token_bytes {
            return Err(TokenError::TooLarge { len: token.len(), max: self.rules.max_token_bytes });
        }
        let verified = UntrustedToken::parse(token)?.verify(&self.keys, &self.rules, now)?;
        let claims = verified.claims();
        if input.expected_origin.is_some_and(|origin| origin != claims.origin) {
            return Err(TokenError::OriginMismatch { found: claims.origin.clone() });
        }
        if input.expected_action.is_some_and(|action| action != claims.action) {
            return Err(TokenError::ActionMismatch { found: claims.action.clone() });
        }
        Ok(verified)
    }

    /// The risk score and verdict of these reasons under the policy.
    fn score(&self, reasons: &[Reason]) -> (u8, Verdict) {
        self.policy.score(reasons)
    }

    /// Weighs verified claims against the network and the policy.
    pub fn assess(
        &self,
        verified: &VerifiedClaims,
        input: &VerifyInput<'_>,
        facts: IpFacts,
        now: Timestamp,
    ) -> VerifyOutcome {
        let mut outcome = self.weigh(verified, input, facts, now);
        outcome.claims = Some(verified.claims().clone());
        outcome
    }

    /// [`Self::assess`] without the claims in the outcome.
    fn weigh(
        &self,
        verified: &VerifiedClaims,
        input: &VerifyInput<'_>,
        facts: IpFacts,
        now: Timestamp,
    ) -> VerifyOutcome {
        let claims = verified.claims();
        let challenge = verified.challenge();
        // The instant the claims describe: the browser's signing time, but
        // never outside the challenge's life as the verifier measured it.
        let at_ms = claims
            .signed_at_ms
            .clamp(challenge.issued_at_ms, now.as_millisecond().max(challenge.issued_at_ms));
        let evidence = Evidence {
            claims,
            skew: verified.skew(),
            at: Timestamp::from_millisecond(at_ms).unwrap_or(now),
            challenge_ip: challenge.ip,
            remote_ip: input.remote_ip,
            network: &facts,
            accept_language: input.accept_language.filter(|h| !h.trim().is_empty()),
        };
        let reasons = checks::run(&evidence, &self.policy, &self.restricted);
        let (score, verdict) = self.score(&reasons);
        VerifyOutcome {
            success: true,
            verdict,
            score,
            reasons,
            error_codes: Vec::new(),
            network: Some(Network::new(input.remote_ip, facts)),
            claims: None,
            clock: Some(verified.skew()),
            message: None,
            error: None,
        }
    }
}
