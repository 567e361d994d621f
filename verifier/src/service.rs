//! The whole verification of one request: token, binding, single use, and
//! the response `POST /v1/verify` returns.

use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;
use meridian_protocol::Claims;
use serde::Serialize;

use crate::checks::{self, Evidence};
use crate::error::{ErrorCode, TokenError};
use crate::geo::{IpFacts, IpIntel};
use crate::keys::Keys;
use crate::net::canonical_ip;
use crate::policy::{Policy, StoreFailure};
use crate::replay::{ReplayStore, Spend};
use crate::token::{Binding, ClockSkew, UntrustedToken, VerifiedClaims};
use crate::verdict::{Reason, ReasonCode, Verdict};

/// Verifies tokens, spends their challenges and weighs the claims against
/// the network; share one per process.
pub struct Verifier {
    keys: Keys,
    policy: Policy,
    /// Swapped whole when the data files are reloaded (SIGHUP).
    intel: arc_swap::ArcSwap<IpIntel>,
    store: Arc<dyn ReplayStore>,
    #[cfg(feature = "history")]
    history: Option<crate::history::History>,
    udp_origins: Option<Arc<crate::udp::UdpOrigins>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("collector_keys", &self.keys.collector.len())
            .field("restricted", &self.policy.restricted_regions)
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
    /// The account signing in, for the history (stored only as a keyed hash).
    pub account: Option<&'a str>,
    /// The account's organisation, for the history (stored only as a keyed hash).
    pub organization: Option<&'a str>,
}

/// The network side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// The round trips the verifier measured itself while issuing the
    /// challenge (`GET /v1/echo`); absent when the page fetched a plain one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyFigures>,
    /// Where the browser's UDP came from, as the verifier's UDP port saw
    /// it for this challenge; absent when no probe arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_origin: Option<UdpOrigin>,
}

/// The source of the browser's UDP probe (`network.udp_origin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct UdpOrigin {
    /// The address the datagrams came from.
    #[cfg_attr(feature = "http", schema(value_type = String, example = "198.51.100.7"))]
    pub ip: IpAddr,
    /// Its ISO 3166-1 alpha-2 country, when known.
    pub country: Option<String>,
}

/// Round trips in milliseconds, as `network.latency` of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct LatencyFigures {
    /// The TCP round trip of the connection the echo ran on (the kernel's,
    /// or a trusted proxy's); `null` when unknown.
    pub tcp_rtt_ms: Option<f64>,
    /// The least round trip of the echoes through the page.
    pub echo_rtt_ms: f64,
    /// `echo_rtt_ms − tcp_rtt_ms` (at least 0): the path beyond the
    /// connection's far end; `null` without a TCP round trip.
    pub hidden_leg_ms: Option<f64>,
}

impl From<crate::challenge::Latency> for LatencyFigures {
    fn from(latency: crate::challenge::Latency) -> Self {
        // Microseconds to milliseconds, to the hundredth.
        let ms = |us: u32| f64::from(us / 10) / 100.0;
        Self {
            tcp_rtt_ms: latency.tcp_rtt_us.map(ms),
            echo_rtt_ms: ms(latency.echo_rtt_us),
            hidden_leg_ms: latency.hidden_leg_us().map(ms),
        }
    }
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
            latency: None,
            udp_origin: None,
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

/// A token that passed every check of its own and whose nonce is spent (or,
/// failing open, could not be): what the claims checks consume.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) verified: VerifiedClaims,
    single_use: SingleUse,
    /// Where the challenge's UDP probe came from, if any instance saw it.
    udp_seen: Vec<IpAddr>,
}

/// Whether single use was enforced.
#[derive(Debug)]
enum SingleUse {
    /// The nonce was fresh and is now spent.
    Enforced,
    /// The store could not answer and the policy fails open.
    Unchecked(String),
}

impl Verifier {
    /// A verifier trusting `keys`, applying `policy`, spending nonces in
    /// `store`. Without [`Self::with_intel`] no IP database is consulted.
    pub fn new(keys: Keys, policy: Policy, store: Arc<dyn ReplayStore>) -> Self {
        checks::tz::preload();
        Self {
            keys,
            policy,
            intel: arc_swap::ArcSwap::from_pointee(IpIntel::none()),
            store,
            #[cfg(feature = "history")]
            history: None,
            udp_origins: None,
        }
    }

    /// Reads the UDP sources the verifier's UDP port saw for each challenge
    /// (`udp_listen`) into `network.udp_origin` and the checks.
    pub fn with_udp_origins(mut self, origins: Arc<crate::udp::UdpOrigins>) -> Self {
        self.udp_origins = Some(origins);
        self
    }

    /// The UDP sources seen per challenge, when the UDP port is on.
    pub fn udp_origins(&self) -> Option<&Arc<crate::udp::UdpOrigins>> {
        self.udp_origins.as_ref()
    }

    /// Records every verification in `history` and weighs accounts' and
    /// organisations' past.
    #[cfg(feature = "history")]
    pub fn with_history(mut self, history: crate::history::History) -> Self {
        self.history = Some(history);
        self
    }

    /// The history, when one is configured.
    #[cfg(feature = "history")]
    pub fn history(&self) -> Option<&crate::history::History> {
        self.history.as_ref()
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

    /// The replay store.
    pub fn store(&self) -> &dyn ReplayStore {
        self.store.as_ref()
    }

    /// Verifies one request at `now` and explains the result, in one pass:
    /// parse → signature → challenge → binding → spend → checks → score.
    pub async fn verify(&self, input: &VerifyInput<'_>, now: Timestamp) -> VerifyOutcome {
        let facts = self.intel.load().lookup(input.remote_ip);
        #[cfg(feature = "history")]
        if let Some(history) = &self.history {
            return history.verify(self, input, facts, now).await;
        }
        match self.accept(input, now).await {
            Ok(accepted) => self.judge(accepted, input, facts, now, Vec::new()),
            Err(error) => self.refuse(error, Network::new(input.remote_ip, facts)),
        }
    }

    /// Checks the token and its binding to this request, and spends its
    /// nonce.
    ///
    /// # Errors
    /// The first [`TokenError`] found.
    pub(crate) async fn accept(
        &self,
        input: &VerifyInput<'_>,
        now: Timestamp,
    ) -> Result<Accepted, TokenError> {
        let verified = UntrustedToken::parse(input.token)?
            .check_signature(&self.keys.collector, now)?
            .open_challenge(&self.keys.challenge, now)?;
        Binding {
            allowed_origins: &self.policy.allowed_origins,
            allowed_actions: &self.policy.allowed_actions,
            expected_origin: input.expected_origin,
            expected_action: input.expected_action,
        }
        .check(verified.claims())?;
        let challenge = verified.challenge();
        let single_use =
            match self.store.spend(challenge.nonce, challenge.expires_at_ms, now.as_millisecond()).await {
                Ok(Spend::Fresh) => SingleUse::Enforced,
                Ok(Spend::Replayed) => return Err(TokenError::Replayed),
                Err(e) if self.policy.store_failure == StoreFailure::Open => {
                    SingleUse::Unchecked(e.to_string())
                }
                Err(e) => return Err(TokenError::StoreUnavailable(e.to_string())),
            };
        // The shared sightings live in the replay store's Redis: when the
        // spend could not reach it, neither would this (one wait is enough).
        let udp_seen = match (&self.udp_origins, &single_use) {
            (Some(origins), SingleUse::Enforced) => {
                origins.seen(&challenge.nonce, now.as_millisecond()).await
            }
            (Some(origins), SingleUse::Unchecked(_)) => {
                origins.lookup(&challenge.nonce, now.as_millisecond())
            }
            (None, _) => Vec::new(),
        };
        Ok(Accepted { verified, single_use, udp_seen })
    }

    /// Weighs accepted claims against the network and the policy, with
    /// `more` reasons from elsewhere (the history's).
    pub(crate) fn judge(
        &self,
        accepted: Accepted,
        input: &VerifyInput<'_>,
        facts: IpFacts,
        now: Timestamp,
        more: Vec<Reason>,
    ) -> VerifyOutcome {
        let Accepted { verified, single_use, udp_seen } = accepted;
        let claims = verified.claims();
        let challenge = verified.challenge();
        // The UDP source of this challenge's probe: one that differs from
        // the login's address when there is one (that is the evidence).
        let login = canonical_ip(input.remote_ip);
        let udp_origin = udp_seen
            .iter()
            .copied()
            .find(|ip| *ip != login)
            .or_else(|| udp_seen.first().copied())
            .map(|ip| (ip, self.intel.load().lookup(ip)));
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
            // Looked up only when the login came from elsewhere.
            challenge_country: (canonical_ip(challenge.ip) != login)
                .then(|| self.intel.load().lookup(challenge.ip).country)
                .flatten(),
            remote_ip: input.remote_ip,
            network: &facts,
            accept_language: input.accept_language.filter(|h| !h.trim().is_empty()),
            latency: challenge.latency,
            udp_origin: udp_origin.as_ref().map(|(ip, facts)| (*ip, facts.country)),
        };
        let mut reasons = checks::run(&evidence, &self.policy);
        if let SingleUse::Unchecked(why) = single_use {
            tracing::warn!(%why, "replay store unavailable; accepting without the single-use check");
            let code = ReasonCode::ReplayUnchecked;
            reasons.push(Reason::new(
                code,
                self.policy.weights.of(code),
                "The replay store could not be reached, so this token may have been used before.".into(),
            ));
        }
        reasons.extend(more);
        let (score, verdict) = self.policy.score(&reasons);
        let clock = verified.skew();
        let mut network = Network::new(input.remote_ip, facts);
        network.latency = challenge.latency.map(LatencyFigures::from);
        network.udp_origin = udp_origin
            .map(|(ip, facts)| UdpOrigin { ip, country: facts.country.map(|c| c.as_str().to_owned()) });
        VerifyOutcome {
            success: true,
            verdict,
            score,
            reasons,
            error_codes: Vec::new(),
            network: Some(network),
            // The claims move into the outcome: no copy on the hot path.
            claims: Some(verified.into_claims()),
            clock: Some(clock),
            message: None,
            error: None,
        }
    }

    /// The outcome for a token that is not acceptable.
    pub(crate) fn refuse(&self, error: TokenError, network: Network) -> VerifyOutcome {
        let TokenError::CollectorFailed { .. } = error else {
            return VerifyOutcome::rejected(error, network);
        };
        // Anyone can type the marker: the policy decides what it means.
        let verdict = self.policy.collector_error;
        let mut outcome = VerifyOutcome::rejected(error, network);
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
}
