//! Meridian's demo site: a login page that uses the drop-in collector, a
//! `POST /login` that verifies the token through the library, and the
//! verifier API on the same origin under `/v1`.

mod pages;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use meridian_verifier::clock::{Clock, SystemClock};
use meridian_verifier::geo::IpIntel;
use meridian_verifier::http::{ApiState, VerifySecret, router};
use meridian_verifier::net::TrustedProxies;
use meridian_verifier::replay::MemoryReplayStore;
use meridian_verifier::verdict::ReasonCode;
use meridian_verifier::{ChallengeKey, ChallengeKeys, CollectorKeys, Keys, Policy, Verifier, VerifyInput};
use serde::Deserialize;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// Everything the demo needs to run.
pub struct DemoConfig {
    /// Folder with `keys/jwks.json` and `pkg/` (the built collector).
    pub home: PathBuf,
    /// Origins the login page is served from; tokens from others are refused.
    pub origins: Vec<String>,
    /// Verify secret for the `/v1/verify` API.
    pub verify_secret: VerifySecret,
    /// Set when the secret was generated because none was configured.
    pub generated_secret: Option<String>,
    /// Challenge MAC key, random per run unless configured.
    pub challenge_key: ChallengeKey,
    /// The clock (tests shift it).
    pub clock: Arc<dyn Clock>,
    /// The policy; the demo's restricts `CN`, as in the motivating case.
    pub policy: Policy,
    /// IP databases.
    pub intel: Arc<IpIntel>,
    /// Sample network origins a visitor can pretend to come from (demo
    /// only: `meridian serve` has no such thing).
    pub simulated_origins: Vec<SimulatedOrigin>,
    /// Reverse proxies whose `Forwarded`/`X-Forwarded-For` the demo
    /// believes (none by default).
    pub trusted_proxies: TrustedProxies,
}

/// A sample IP the demo lets a visitor on localhost pretend to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedOrigin {
    /// What the selector shows.
    pub label: String,
    /// The IP used as the login's remote IP.
    pub ip: IpAddr,
}

/// The demo's default policy: neutral weights, `CN` restricted.
pub fn demo_policy() -> Policy {
    Policy { restricted_regions: vec!["CN".into()], ..Policy::default() }
}

/// Sample origins in the default country database (ip-location-db,
/// geo-whois-asn-country): addresses of well-known networks in each country.
pub fn default_simulated_origins() -> Vec<SimulatedOrigin> {
    [
        ("Singapore (SingTel)", "165.21.83.88"),
        ("Japan (NTT OCN)", "153.150.0.1"),
        ("Germany (Deutsche Telekom)", "193.159.232.1"),
        ("United States (Comcast)", "73.162.0.1"),
        ("China (China Telecom)", "202.96.128.86"),
        ("India (BSNL)", "117.239.0.1"),
        ("Cloud: AWS Frankfurt", "3.120.0.1"),
    ]
    .into_iter()
    .filter_map(|(label, ip)| ip.parse().ok().map(|ip| SimulatedOrigin { label: label.into(), ip }))
    .collect()
}

impl DemoConfig {
    /// Reads `MERIDIAN_HOME` (default `.meridian`), `MERIDIAN_VERIFY_SECRET`
    /// (generated when unset) and `MERIDIAN_CHALLENGE_KEY` (random when unset).
    ///
    /// # Errors
    /// A sentence naming the variable that is wrong.
    pub fn from_env(listen: SocketAddr) -> Result<Self, String> {
        let home = PathBuf::from(std::env::var("MERIDIAN_HOME").unwrap_or_else(|_| ".meridian".into()));
        let (verify_secret, generated_secret) = match std::env::var("MERIDIAN_VERIFY_SECRET") {
            Ok(secret) if !secret.is_empty() => {
                (VerifySecret::new(&secret).map_err(|e| format!("MERIDIAN_VERIFY_SECRET: {e}"))?, None)
            }
            _ => {
                let (text, secret) =
                    VerifySecret::generate().map_err(|e| format!("no secure randomness: {e}"))?;
                (secret, Some(text))
            }
        };
        let challenge_key = match std::env::var("MERIDIAN_CHALLENGE_KEY") {
            Ok(key) if !key.is_empty() => ChallengeKey::from_base64url(1, &key)
                .map_err(|_| "MERIDIAN_CHALLENGE_KEY: not 32 bytes of base64url".to_owned())?,
            _ => ChallengeKey::random(1).map_err(|e| format!("no secure randomness: {e}"))?,
        };
        let data = home.join("data");
        let files = meridian_verifier::geo::DataFiles::in_dir(&data);
        if files.country_db.is_none() {
            tracing::warn!(
                "no country database in {}: countries are unknown (run scripts/setup)",
                data.display()
            );
        }
        let intel = files.open().map_err(|e| e.to_string())?;
        let proxies = std::env::var("MERIDIAN_TRUSTED_PROXIES").unwrap_or_default();
        let trusted_proxies =
            TrustedProxies::parse(proxies.split(',').map(str::trim).filter(|p| !p.is_empty()))
                .map_err(|e| format!("MERIDIAN_TRUSTED_PROXIES: {e}"))?;
        let trusted_proxies = match std::env::var("MERIDIAN_CLIENT_IP_HEADER") {
            Ok(name) if !name.trim().is_empty() => {
                trusted_proxies
                    .with_header(meridian_verifier::net::ClientIpHeader::parse(&name).ok_or_else(|| {
                    format!(
                        "MERIDIAN_CLIENT_IP_HEADER: {name:?} is not x-forwarded-for, forwarded or x-real-ip"
                    )
                })?)
            }
            _ => trusted_proxies,
        };
        Ok(Self {
            home,
            origins: local_origins(listen),
            verify_secret,
            generated_secret,
            challenge_key,
            clock: Arc::new(SystemClock),
            policy: demo_policy(),
            intel: Arc::new(intel),
            simulated_origins: default_simulated_origins(),
            trusted_proxies,
        })
    }
}

/// The origins a browser uses for a loopback address: the IP and `localhost`.
pub fn local_origins(listen: SocketAddr) -> Vec<String> {
    let port = listen.port();
    let mut origins = vec![format!("http://{listen}")];
    if listen.ip().is_loopback() {
        origins.push(format!("http://localhost:{port}"));
    }
    origins
}

#[derive(Clone)]
struct DemoState {
    api: ApiState,
    simulated: Arc<Vec<SimulatedOrigin>>,
}

/// The demo's router: pages, the collector's files and the verifier API.
///
/// # Errors
/// When the collector keys or the built collector are missing.
pub fn app(config: DemoConfig) -> Result<Router, String> {
    let jwks_path = config.home.join("keys/jwks.json");
    let jwks = std::fs::read_to_string(&jwks_path)
        .map_err(|e| format!("cannot read {} ({e}); run scripts/setup first", jwks_path.display()))?;
    let collector =
        CollectorKeys::from_jwks_json(&jwks).map_err(|e| format!("{}: {e}", jwks_path.display()))?;
    let pkg = config.home.join("pkg");
    if !pkg.join("meridian.js").exists() {
        return Err(format!("the collector is not built in {}; run scripts/setup first", pkg.display()));
    }
    let challenge =
        ChallengeKeys::new(vec![config.challenge_key], meridian_verifier::challenge::DEFAULT_LIFETIME_S)
            .ok_or("challenge lifetime must be positive")?;
    let policy = Policy { allowed_origins: config.origins, ..config.policy };
    let verifier =
        Verifier::new(Keys { collector, challenge }, policy, Arc::new(MemoryReplayStore::new(100_000)))
            .with_intel(config.intel);
    let api = ApiState::new(verifier, vec![config.verify_secret], config.clock)
        .with_trusted_proxies(config.trusted_proxies);
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::overriding(HeaderName::from_static(name), HeaderValue::from_static(value))
    };
    let collector_files = tower::ServiceBuilder::new()
        .layer(header("content-security-policy", "default-src 'none'; frame-ancestors 'none'"))
        .layer(header("x-content-type-options", "nosniff"))
        .service(ServeDir::new(pkg));
    let pages = Router::new()
        .route("/", get(login_page))
        .route("/login", get(login_page).post(login))
        .route(pages::STYLESHEET_PATH, get(stylesheet))
        .layer(header("content-security-policy", PAGE_POLICY))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("referrer-policy", "same-origin"))
        .nest_service("/pkg", collector_files)
        .with_state(DemoState { api: api.clone(), simulated: Arc::new(config.simulated_origins) });
    Ok(pages.merge(router(api)))
}

/// The pages' Content-Security-Policy: scripts only from this origin (the
/// drop-in), WebAssembly compiled from them, the collector's Worker from a
/// `blob:` URL, the style sheet from this origin (no inline styles), and no
/// framing by anyone.
pub const PAGE_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; worker-src blob:; img-src 'self' data:; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The pages' style sheet, from the copy built into the binary. It carries
/// its own headers, so it is served the same wherever it is mounted.
async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        pages::STYLESHEET,
    )
}

async fn login_page(State(state): State<DemoState>) -> Html<String> {
    Html(pages::login(&state.simulated))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(rename = "meridian-token", default)]
    token: String,
    #[serde(default)]
    simulate: String,
}

async fn login(
    State(state): State<DemoState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Html<String> {
    let accept_language = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    // Only the listed samples can be simulated; anything else is the real peer.
    let simulated = state.simulated.iter().find(|o| o.ip.to_string() == form.simulate);
    let input = VerifyInput {
        token: &form.token,
        remote_ip: simulated.map_or_else(|| state.api.client_ip(peer.ip(), &headers).0, |o| o.ip),
        accept_language,
        expected_action: Some("login"),
        expected_origin: None,
    };
    let mut outcome = state.api.verifier().verify(&input, state.api.clock().now()).await;
    if simulated.is_some() && outcome.success {
        // The challenge really came from this visitor's address; the change
        // to the simulated one is the simulation's own doing.
        outcome.reasons.retain(|r| r.code != ReasonCode::IpChanged);
        (outcome.score, outcome.verdict) = state.api.verifier().policy().score(&outcome.reasons);
    }
    Html(pages::result(&form.email, &outcome, simulated))
}
