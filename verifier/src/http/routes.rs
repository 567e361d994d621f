//! Handlers and the one mapping from outcomes to HTTP responses.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ApiJson, Authorized, Refused, outcome_response};
use super::metrics::OutcomeLabels;
use crate::error::ErrorCode;
use crate::{VerifyInput, VerifyOutcome};

/// Body of `GET /v1/challenge`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChallengeResponse {
    /// The opaque, MAC'd challenge the collector signs.
    challenge: String,
    /// The verifier's clock when it issued the challenge, Unix ms.
    server_time_ms: i64,
    /// Seconds until the challenge (and any token bound to it) expires.
    expires_in_s: u32,
    /// `host:port` to send the UDP probe of the second origin to (a TURN
    /// allocation with the challenge as user name); absent when off.
    #[serde(skip_serializing_if = "Option::is_none")]
    udp: Option<String>,
}

impl ChallengeResponse {
    /// The answer for `issued`, with the UDP probe's address when `state`
    /// has one.
    pub(crate) fn new(issued: crate::challenge::IssuedChallenge, state: &ApiState) -> Self {
        Self {
            challenge: issued.challenge,
            server_time_ms: issued.issued_at_ms,
            expires_in_s: issued.expires_in_s,
            udp: state.udp_address().map(str::to_owned),
        }
    }
}

/// The API's OpenAPI document, generated from the handlers below.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Meridian verifier", description = "Checks collector tokens and compares the browser's clock, time zone and languages with where its traffic comes from."),
    paths(challenge, super::echo::echo, super::echo::echo_http, verify, jwks, healthz, readyz, metrics, openapi, account, organization, erase_account),
    components(schemas(
        ChallengeResponse,
        super::echo::EchoStep,
        VerifyRequest,
        crate::VerifyOutcome,
        crate::Network,
        crate::LatencyFigures,
        crate::UdpOrigin,
        crate::verdict::Reason,
        crate::verdict::ReasonCode,
        crate::verdict::Verdict,
        crate::ErrorCode,
        crate::ClockSkew
    )),
    modifiers(&BearerAuth)
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "verify_secret",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi() -> Response {
    use utoipa::OpenApi as _;
    match ApiDoc::openapi().to_json() {
        Ok(json) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Issues a challenge bound to the client IP.
#[utoipa::path(get, path = "/v1/challenge", responses(
    (status = 200, description = "A fresh challenge", body = ChallengeResponse),
    (status = 429, description = "Too many challenges from this address (`rate-limited`)", body = crate::VerifyOutcome),
))]
pub(crate) async fn challenge(
    State(state): State<ApiState>,
    client: super::ClientIp,
) -> Result<Response, ApiError> {
    state.admit_challenge(client)?;
    let now_ms = state.clock().now().as_millisecond();
    let issued = state.verifier().keys().challenge.issue(client.0, now_ms).map_err(|error| {
        tracing::error!(%error, "no randomness for a challenge nonce");
        ApiError::internal("could not issue a challenge")
    })?;
    state.metrics.challenges.inc();
    let body = ChallengeResponse::new(issued, &state);
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

/// Body of `POST /v1/verify`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct VerifyRequest {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    remote_ip: Option<String>,
    #[serde(default)]
    accept_language: Option<String>,
    #[serde(default)]
    expected_action: Option<String>,
    #[serde(default)]
    expected_origin: Option<String>,
    /// The account signing in (history; stored only as a keyed hash).
    #[serde(default)]
    account: Option<String>,
    /// The account's organisation (history; stored only as a keyed hash).
    #[serde(default)]
    organization: Option<String>,
}

/// Verifies a token and weighs its claims against the network.
#[utoipa::path(post, path = "/v1/verify", request_body = VerifyRequest, security(("verify_secret" = [])), responses(
    (status = 200, description = "The verdict; `success` is false when the token itself is not acceptable", body = crate::VerifyOutcome),
    (status = 400, description = "The request is invalid (`bad-request`)", body = crate::VerifyOutcome),
    (status = 401, description = "Missing or wrong verify secret (`unauthorized`)", body = crate::VerifyOutcome),
    (status = 413, description = "Body larger than 16 KiB (`bad-request`)", body = crate::VerifyOutcome),
    (status = 415, description = "Content-Type is not application/json (`bad-request`)", body = crate::VerifyOutcome),
    (status = 503, description = "The replay store cannot answer and the verifier fails closed (`internal-error`)", body = crate::VerifyOutcome),
))]
pub(crate) async fn verify(
    State(state): State<ApiState>,
    _: Authorized,
    ApiJson(request): ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let remote_ip = request
        .remote_ip
        .as_deref()
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
        .ok_or_else(|| ApiError::bad_request("`remote_ip` must be the client's IPv4 or IPv6 address"))?;
    let input = VerifyInput {
        token: request.token.as_deref().unwrap_or(""),
        remote_ip,
        accept_language: request.accept_language.as_deref(),
        expected_action: request.expected_action.as_deref(),
        expected_origin: request.expected_origin.as_deref(),
        account: request.account.as_deref(),
        organization: request.organization.as_deref(),
    };
    for (name, id) in [("account", input.account), ("organization", input.organization)] {
        if let Some(id) = id {
            check_subject(name, id)?;
        }
    }
    let outcome = state.verifier().verify(&input, state.clock().now()).await;
    match &outcome.error {
        None => tracing::info!(verdict = outcome.verdict.as_str(), score = outcome.score, "token verified"),
        Some(error) => tracing::info!(code = %error.code(), %error, "token rejected"),
    }
    if matches!(outcome.error, Some(crate::TokenError::StoreUnavailable(_)))
        || outcome.reasons.iter().any(|r| r.code == crate::verdict::ReasonCode::ReplayUnchecked)
    {
        state.metrics.store_errors.inc();
    }
    if outcome.reasons.iter().any(|r| r.code == crate::verdict::ReasonCode::HistoryUnavailable) {
        state.metrics.history_unavailable.inc();
    }
    state.metrics.verifications.get_or_create(&labels(&outcome)).inc();
    let status = if outcome.error_codes.contains(&ErrorCode::InternalError) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    // Let the other requests that are already ready be verified before this
    // response is written. Under load the responses then leave in bursts,
    // and a client on the same host (a backend beside its verifier) is woken
    // once per burst instead of once per response: on loopback that wake-up
    // is paid on the verifier's core: 12 % of its time in a profile
    // (docs/BENCHMARKS.md). With nothing else ready it resumes at once.
    tokio::task::yield_now().await;
    state.metrics.verify_seconds.observe(started.elapsed().as_secs_f64());
    Ok(outcome_response(status, outcome))
}

/// Counts the `/v1/verify` requests refused before verification (auth,
/// shape), whichever extractor refused them.
pub(crate) async fn count_refusals(
    State(state): State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(Refused(code)) = response.extensions().get::<Refused>() {
        let labels = OutcomeLabels {
            outcome: "rejected".to_owned(),
            code: code.as_str().to_owned(),
            verdict: crate::verdict::Verdict::Deny.as_str().to_owned(),
        };
        state.metrics.rejected_requests.get_or_create(&labels).inc();
    }
    response
}

/// The collector public keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", responses((status = 200, description = "JWK Set of the collector keys", content_type = "application/jwk-set+json")))]
pub(crate) async fn jwks(State(state): State<ApiState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("max-age=300")),
        ],
        state.inner.jwks_json.clone(),
    )
        .into_response()
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

fn labels(outcome: &VerifyOutcome) -> OutcomeLabels {
    OutcomeLabels {
        outcome: if outcome.success { "success" } else { "rejected" }.to_owned(),
        code: outcome.error_codes.first().map(|c| c.as_str()).unwrap_or("").to_owned(),
        verdict: outcome.verdict.as_str().to_owned(),
    }
}

/// Readiness: configured databases loaded and the replay store reachable.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Ready", content_type = "text/plain"),
    (status = 503, description = "Not ready, with the reasons", content_type = "text/plain"),
))]
pub(crate) async fn readyz(State(state): State<ApiState>) -> Response {
    let mut problems = Vec::new();
    if let Some(problem) = (state.ready)() {
        problems.push(problem);
    }
    let store = state.verifier().store();
    if let Err(e) = store.check().await {
        // The error text (hosts, ports, driver messages) goes to the log,
        // not to whoever asks.
        tracing::warn!(store = store.kind(), "readiness: replay store unavailable: {e}");
        problems.push(format!("replay store ({}) unavailable", store.kind()));
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", problems.join("; "))).into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Refuses an account or organisation id the history would not keep.
fn check_subject(name: &str, id: &str) -> Result<(), ApiError> {
    crate::history::check_subject(id).map_err(|e| ApiError::bad_request(format!("`{name}` {e}")))
}

/// The history, the stored form of the id in the path, and the window's start.
#[cfg(feature = "history")]
fn subject_of<'a>(
    state: &'a ApiState,
    name: &str,
    id: &str,
    hash: fn(
        &crate::history::SubjectKey,
        &str,
    ) -> Result<crate::history::Subject, crate::history::SubjectError>,
) -> Result<(&'a crate::history::History, crate::history::Subject, i64), ApiError> {
    let history = history(state)?;
    let subject = hash(history.key(), id).map_err(|e| ApiError::bad_request(format!("`{name}` {e}")))?;
    let since = state.verifier().policy().history.since_ms(state.clock().now().as_millisecond());
    Ok((history, subject, since))
}

/// The history, or a 404 saying it is off.
#[cfg(feature = "history")]
fn history(state: &ApiState) -> Result<&crate::history::History, ApiError> {
    state.verifier().history().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::BadRequest, "the history is off (history = false)")
    })
}

/// How many recent verifications an account or organisation answer lists.
#[cfg(feature = "history")]
const RECENT: u32 = 50;

/// An account's history: recent sign-ins, counts by verdict and reason,
/// countries and zones seen, and a risk level with its reasons.
#[cfg(feature = "history")]
#[utoipa::path(get, path = "/v1/accounts/{account}", security(("verify_secret" = [])), params(("account" = String, Path, description = "The account id as the backend sends it in /v1/verify")), responses(
    (status = 200, description = "The account's history over the policy's window", content_type = "application/json"),
    (status = 401, description = "Missing or wrong verify secret (`unauthorized`)", body = crate::VerifyOutcome),
    (status = 404, description = "The history is off (`bad-request`)", body = crate::VerifyOutcome),
))]
pub(crate) async fn account(
    State(state): State<ApiState>,
    _: Authorized,
    axum::extract::Path(account): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let (history, subject, since) =
        subject_of(&state, "account", &account, crate::history::SubjectKey::account)?;
    history.flush().await.map_err(history_error)?;
    let events = history.store().recent(&subject, since, 10_000).await.map_err(history_error)?;
    let window = state.verifier().policy().history.window_days;
    let report = crate::history::report::subject_report(subject, window, events, None, RECENT as usize);
    Ok(outcome_json(&report))
}

/// An organisation's history: its accounts, how many mostly sign in from
/// devices pointing into a restricted region, recent sign-ins, counts, and
/// a risk level with its reasons.
#[cfg(feature = "history")]
#[utoipa::path(get, path = "/v1/organizations/{organization}", security(("verify_secret" = [])), params(("organization" = String, Path, description = "The organisation id as the backend sends it in /v1/verify")), responses(
    (status = 200, description = "The organisation's history over the policy's window", content_type = "application/json"),
    (status = 401, description = "Missing or wrong verify secret (`unauthorized`)", body = crate::VerifyOutcome),
    (status = 404, description = "The history is off (`bad-request`)", body = crate::VerifyOutcome),
))]
pub(crate) async fn organization(
    State(state): State<ApiState>,
    _: Authorized,
    axum::extract::Path(organization): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let (history, subject, since) =
        subject_of(&state, "organization", &organization, crate::history::SubjectKey::organization)?;
    let window = state.verifier().policy().history.window_days;
    history.flush().await.map_err(history_error)?;
    let store = history.store();
    let share = store.organization(&subject, since).await.map_err(history_error)?;
    let events = store.organization_recent(&subject, since, 10_000).await.map_err(history_error)?;
    let report =
        crate::history::report::subject_report(subject, window, events, Some(share), RECENT as usize);
    Ok(outcome_json(&report))
}

/// Erases an account's whole history (a data-protection request).
#[cfg(feature = "history")]
#[utoipa::path(delete, path = "/v1/accounts/{account}", security(("verify_secret" = [])), params(("account" = String, Path, description = "The account id as the backend sends it in /v1/verify")), responses(
    (status = 200, description = "`{\"erased\": N}`: the events removed", content_type = "application/json"),
    (status = 401, description = "Missing or wrong verify secret (`unauthorized`)", body = crate::VerifyOutcome),
    (status = 404, description = "The history is off (`bad-request`)", body = crate::VerifyOutcome),
))]
pub(crate) async fn erase_account(
    State(state): State<ApiState>,
    _: Authorized,
    axum::extract::Path(account): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let (history, subject, _) = subject_of(&state, "account", &account, crate::history::SubjectKey::account)?;
    let erased = history.erase_account(&subject).await.map_err(history_error)?;
    tracing::info!(erased, "history: an account's events were erased on request");
    Ok(outcome_json(&serde_json::json!({ "erased": erased })))
}

#[cfg(feature = "history")]
fn history_error(error: crate::history::HistoryError) -> ApiError {
    tracing::warn!(%error, "history query failed");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::InternalError, "the history cannot answer now")
}

/// A JSON answer that is never cached.
#[cfg(feature = "history")]
fn outcome_json(body: &impl Serialize) -> Response {
    ([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response()
}
