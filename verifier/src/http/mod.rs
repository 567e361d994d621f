//! The HTTP API (feature `http`).
//!
//! Public (pages and browsers): `GET /v1/challenge`, `GET /v1/echo` (the
//! same challenge with the round trips the verifier measured; `POST
//! /v1/echo` the same over plain requests), `GET /pkg/…` (the
//! built collector, when configured), `GET /.well-known/jwks.json`,
//! `GET /healthz`, `GET /openapi.json`. The backend's side, on the internal
//! listener when one is configured: `POST /v1/verify`, `GET /readyz`,
//! `GET /metrics`.
//!
//! [`router`] is a plain function of its state, so a backend can mount it in
//! its own axum app and tests can drive it with `tower::ServiceExt::oneshot`;
//! [`crate::deployment::Deployment`] builds that state from a configuration.
//! Refusals are one type, [`ApiError`] (status, stable code, message), made
//! by the extractors ([`Authorized`], [`ApiJson`], [`ClientIp`]) and the
//! handlers alike. A backend that embeds the verifier takes [`Checked`] in
//! its login handler instead: its own form plus the verdict.

mod client_ip;
mod echo;
mod error;
mod extract;
mod metrics;
mod routes;
mod secret;
mod serve;
mod tcp;

use std::sync::Arc;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::Verifier;
use crate::clock::Clock;
use crate::net::TrustedProxies;

pub use client_ip::{ClientIp, NoClientAddress};
pub use error::{ApiError, ApiJson, Authorized};
pub use extract::{
    CheckRejection, Checked, CheckedHeader, LoginCheck, MAX_FORM_BYTES, TOKEN_FIELD, TOKEN_HEADER, Unchecked,
};
pub use metrics::Metrics;

pub use secret::VerifySecret;
pub use serve::{ServeLimits, serve, shutdown_signal};
pub use tcp::{ProbedStream, TcpProbe, TcpRtt};

/// The most header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The largest request body `/v1/verify` reads. A token is at most 4 KiB;
/// the rest of the request is a few short strings.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Shared state of the HTTP API.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
    proxies: Arc<TrustedProxies>,
    limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    ipv6_prefix: u8,
    budget: Option<Arc<governor::DefaultDirectRateLimiter>>,
    cors_origins: Arc<Vec<HeaderValue>>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    ready: Arc<dyn Fn() -> Option<String> + Send + Sync>,
    collector_dir: Option<Arc<std::path::PathBuf>>,
    /// `host:port` of the UDP origin's port, once bound.
    udp_address: Arc<std::sync::OnceLock<String>>,
    /// The operator console, when configured.
    console: Option<Arc<crate::console::Console>>,
}

struct Inner {
    verifier: Arc<Verifier>,
    secrets: Vec<VerifySecret>,
    clock: Arc<dyn Clock>,
    jwks_json: String,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("verifier", &self.inner.verifier)
            .field("secrets", &self.inner.secrets.len())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State for a verifier; `secrets` are the bearer secrets `/v1/verify`
    /// accepts (several, so they can rotate).
    pub fn new(verifier: Verifier, secrets: Vec<VerifySecret>, clock: Arc<dyn Clock>) -> Self {
        Self::from_shared(Arc::new(verifier), secrets, clock)
    }

    /// [`Self::new`] with a verifier the app shares with others (its own
    /// [`LoginCheck`], a test).
    pub fn from_shared(verifier: Arc<Verifier>, secrets: Vec<VerifySecret>, clock: Arc<dyn Clock>) -> Self {
        let jwks_json = serde_json::to_string(verifier.keys().collector.jwks()).unwrap_or_default();
        let metrics = Arc::new(Metrics::new(verifier.history()));
        Self {
            inner: Arc::new(Inner { verifier, secrets, clock, jwks_json }),
            proxies: Arc::new(TrustedProxies::none()),
            limiter: None,
            ipv6_prefix: 64,
            budget: None,
            cors_origins: Arc::new(Vec::new()),
            timeout: Duration::from_secs(10),
            metrics,
            ready: Arc::new(|| None),
            collector_dir: None,
            udp_address: Arc::new(std::sync::OnceLock::new()),
            console: None,
        }
    }

    /// Serves the operator console under `/console` (beside `/v1/verify`:
    /// on the internal listener when there is one). Needs the verifier's
    /// history.
    pub fn with_console(mut self, console: crate::console::Console) -> Self {
        self.console = Some(Arc::new(console));
        self
    }

    /// The console, when configured.
    pub fn console(&self) -> Option<&crate::console::Console> {
        self.console.as_deref()
    }

    /// Whether `peer` is one of the trusted proxies.
    pub fn trusts_proxy(&self, peer: std::net::IpAddr) -> bool {
        self.proxies.contains(peer)
    }

    /// Tells pages, in every challenge answer (`udp`), where to send the
    /// UDP probe of the second origin. Set once, when the port is bound.
    pub fn set_udp_address(&self, address: String) {
        let _ = self.udp_address.set(address);
    }

    /// Where pages send the UDP probe, once the port is bound.
    pub fn udp_address(&self) -> Option<&str> {
        self.udp_address.get().map(String::as_str)
    }

    /// The clock, shared.
    pub fn clock_handle(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// Serves the built collector (`meridian.js`, the wasm and its glue)
    /// from this folder under `/pkg/`, with CORS for `cors_origins`, so
    /// pages on other origins can load the drop-in from the verifier.
    pub fn with_collector_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.collector_dir = Some(Arc::new(dir));
        self
    }

    /// Limits `GET /v1/challenge` to `per_minute` requests per client IP
    /// (bursts up to the same number). Call [`Self::housekeeping`] now and
    /// then to forget idle IPs.
    pub fn with_challenge_rate_limit(mut self, per_minute: u32) -> Self {
        self.limiter = NonZeroU32::new(per_minute)
            .map(|n| Arc::new(DefaultKeyedRateLimiter::dashmap(Quota::per_minute(n))));
        self
    }

    /// Pages on these origins may fetch challenges from another origin (CORS).
    /// Entries that are not valid header values are skipped.
    pub fn with_cors_origins(mut self, origins: &[String]) -> Self {
        self.cors_origins = Arc::new(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect());
        self
    }

    /// Every request is answered within `timeout` (408 otherwise).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A readiness probe beyond the replay store's: returns why the service
    /// is not ready (e.g. a configured database failed to load), if so.
    pub fn with_readiness(mut self, probe: impl Fn() -> Option<String> + Send + Sync + 'static) -> Self {
        self.ready = Arc::new(probe);
        self
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Forgets rate-limit state of IPs that have been quiet, so memory
    /// stays bounded by the IPs active in the last minute.
    pub fn housekeeping(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(console) = &self.console {
            console.housekeeping();
        }
    }

    /// Counts IPv6 clients per `/prefix` network for the challenge limit
    /// (default 64: one subscriber usually holds a whole /64).
    pub fn with_ipv6_rate_limit_prefix(mut self, prefix: u8) -> Self {
        self.ipv6_prefix = prefix.min(128);
        self
    }

    /// Issues at most `capacity` challenges in any `lifetime`, whoever asks:
    /// every issued challenge may come back as a token whose nonce the
    /// replay store must hold for `lifetime`, so a flood of valid tokens
    /// can never fill the store and make it refuse everyone (fail closed).
    /// Half the budget may go at once, the rest refills evenly.
    pub fn with_challenge_budget(mut self, capacity: usize, lifetime: Duration) -> Self {
        let half = u32::try_from(capacity / 2).unwrap_or(u32::MAX);
        self.budget = NonZeroU32::new(half).and_then(|burst| {
            let period = lifetime.checked_div(half)?;
            let quota = Quota::with_period(period.max(Duration::from_nanos(1)))?.allow_burst(burst);
            Some(Arc::new(governor::RateLimiter::direct(quota)))
        });
        self
    }

    /// Lets `ip` have another challenge now (`GET /v1/challenge` and the
    /// echo alike), or refuses with 429 `rate-limited`, counted.
    fn admit_challenge(&self, ip: ClientIp) -> Result<(), ApiError> {
        self.allow_challenge(ip).map_err(|why| {
            self.metrics.challenges_limited.inc();
            ApiError::rate_limited(why)
        })
    }

    /// Whether `ip` may have another challenge now.
    fn allow_challenge(&self, ip: ClientIp) -> Result<(), &'static str> {
        let key = crate::net::rate_key(ip.0, self.ipv6_prefix);
        if self.limiter.as_ref().is_some_and(|limiter| limiter.check_key(&key).is_err()) {
            return Err("too many challenges from this address; retry later");
        }
        if self.budget.as_ref().is_some_and(|budget| budget.check().is_err()) {
            return Err("the verifier is issuing all the challenges it can keep track of; retry later");
        }
        Ok(())
    }

    /// Believes `Forwarded`/`X-Forwarded-For` from these proxies when
    /// finding the client IP a challenge is issued to.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = Arc::new(proxies);
        self
    }

    /// The client IP of a request from `peer` with `headers` (what the
    /// [`ClientIp`] extractor gives handlers).
    pub fn client_ip(&self, peer: std::net::IpAddr, headers: &axum::http::HeaderMap) -> ClientIp {
        ClientIp::resolve(&self.proxies, peer, headers)
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    /// A login check ([`Checked`]) with this state's verifier, clock and
    /// trusted proxies: an app that embeds the verifier builds it from its
    /// configuration ([`crate::deployment::Deployment`]) and takes this.
    pub fn login_check(&self) -> LoginCheck {
        LoginCheck::new(self.inner.verifier.clone())
            .with_clock(self.inner.clock.clone())
            .with_shared_proxies(self.proxies.clone())
    }
}

/// Refuses requests whose headers exceed [`MAX_HEADER_BYTES`] with 431.
async fn limit_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let size: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if size > MAX_HEADER_BYTES {
        return (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large\n").into_response();
    }
    next.run(request).await
}

/// `listener` with `TCP_NODELAY` on every connection it accepts; serve
/// [`router`] from this. A static file's headers and body leave in separate
/// writes, and with Nagle's algorithm the body then waits for the client's
/// delayed ACK: about 40 ms per file in Chromium on loopback for the
/// collector's scripts and wasm (docs/BENCHMARKS.md).
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(set_no_delay as fn(&mut tokio::net::TcpStream))
}

fn set_no_delay(tcp: &mut tokio::net::TcpStream) {
    set_no_delay_on(tcp);
}

fn set_no_delay_on(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
}

/// The OpenAPI document of [`router`], as JSON.
pub fn openapi_json() -> String {
    use utoipa::OpenApi as _;
    routes::ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// The API's routes with their limits: body size, request timeout, request
/// ids (`x-request-id`, made when absent, echoed back), tracing, and CORS on
/// `/v1/challenge` (and `/pkg/`, when the collector is served) for the
/// configured origins only.
pub fn router(state: ApiState) -> Router {
    let (public, internal) = routers(state);
    public.merge(internal)
}

/// [`router`] in two halves, for a deployment that keeps the backend's side
/// off the public listener (`internal_listen`): the public half has
/// `/v1/challenge`, `/pkg/`, the JWKS, `/healthz` and `/openapi.json`; the
/// internal half `/v1/verify`, `/metrics` and `/readyz`.
pub fn routers(state: ApiState) -> (Router, Router) {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(state.cors_origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST]);
    let mut challenge = Router::new()
        .route("/v1/challenge", get(routes::challenge))
        .route("/v1/echo", get(echo::echo).post(echo::echo_http));
    if let Some(dir) = &state.collector_dir {
        let files = tower::ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::overriding(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            // Scripts and wasm, never documents: nothing here may be framed
            // or load anything if opened as a page.
            .layer(SetResponseHeaderLayer::overriding(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            ))
            // Which encoding is sent depends on the request's
            // Accept-Encoding: caches must key on it.
            .layer(SetResponseHeaderLayer::if_not_present(
                header::VARY,
                HeaderValue::from_static("accept-encoding"),
            ))
            // `scripts/build-collector` writes `.br` and `.gz` beside each
            // file: sent as such to browsers that accept them.
            .service(
                tower_http::services::ServeDir::new(dir.as_ref()).precompressed_br().precompressed_gzip(),
            );
        challenge = challenge.nest_service("/pkg", files);
    }
    let public = Router::new()
        .route("/.well-known/jwks.json", get(routes::jwks))
        .route("/healthz", get(routes::healthz))
        .route("/openapi.json", get(routes::openapi))
        .merge(challenge.layer(cors));
    let mut internal = Router::new()
        .route(
            "/v1/verify",
            post(routes::verify)
                .layer(axum::middleware::from_fn_with_state(state.clone(), routes::count_refusals)),
        )
        .route("/readyz", get(routes::readyz))
        .route("/v1/accounts/{account}", get(routes::account).delete(routes::erase_account))
        .route("/v1/organizations/{organization}", get(routes::organization))
        .route("/metrics", get(routes::metrics));
    if state.console.is_some() {
        internal = internal.merge(crate::console::routes());
    }
    (with_limits(public, state.clone()), with_limits(internal, state))
}

/// Body size, header size, request timeout, request ids (`x-request-id`:
/// a client's own only when short and printable, else one made here,
/// echoed back), `nosniff`, and tracing.
fn with_limits(routes: Router<ApiState>, state: ApiState) -> Router {
    let timeout = state.timeout;
    routes
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(limit_headers))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %request.method(), path = request.uri().path(), request_id = id)
        }))
        .layer(SetRequestIdLayer::x_request_id(SequentialRequestId::new()))
        .layer(axum::middleware::from_fn(drop_unsafe_request_id))
        .with_state(state)
}

/// The longest client `x-request-id` kept; ids go into every log line.
const MAX_REQUEST_ID: usize = 64;

/// Removes a client's `x-request-id` unless it is short and printable
/// ASCII, so logs never carry a client's control characters or megabytes;
/// a fresh id is then made for the request.
async fn drop_unsafe_request_id(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let name = axum::http::HeaderName::from_static("x-request-id");
    let acceptable = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(|b| b.is_ascii_graphic())
    };
    let values: Vec<&HeaderValue> = request.headers().get_all(&name).iter().collect();
    if values.len() > 1 || values.first().is_some_and(|v| !acceptable(v)) {
        request.headers_mut().remove(&name);
    }
    next.run(request).await
}

/// Request ids without a system call per request: a random per-process
/// prefix and a counter (`3f9c1a7e5b2d4c60-42`). Unique, not secret.
#[derive(Clone)]
struct SequentialRequestId {
    prefix: Arc<str>,
    counter: Arc<std::sync::atomic::AtomicU64>,
}

impl SequentialRequestId {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        // Without randomness the prefix is the start time: still unique
        // enough to tell processes apart in logs.
        let prefix = match getrandom::fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos() & u128::from(u64::MAX)).unwrap_or(0)),
        };
        Self { prefix: format!("{prefix:016x}").into(), counter: Arc::default() }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix)).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests;
