//! Meridian's demo site: a login page that uses the drop-in collector, a
//! `POST /login` that verifies the token through the library, and the
//! verifier API on the same origin under `/v1`.

mod pages;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use meridian_verifier::clock::{Clock, SystemClock};
use meridian_verifier::config::{Secret, ServeConfig};
use meridian_verifier::deployment::Deployment;
use meridian_verifier::geo::{Country, IpIntel};
use meridian_verifier::http::{ApiState, VerifySecret};
use meridian_verifier::verdict::ReasonCode;
use meridian_verifier::{Policy, VerifyInput};
use serde::Deserialize;
use tower_http::set_header::SetResponseHeaderLayer;

/// The demo's settings: a [`ServeConfig`] read like `meridian serve`'s
/// (the same `MERIDIAN_<KEY>` variables and formats) over the demo's own
/// defaults, plus what only a demo has.
pub struct DemoConfig {
    /// The verifier's configuration.
    pub serve: ServeConfig,
    /// Set when the verify secret was generated because none was configured.
    pub generated_secret: Option<String>,
    /// The operator console's secret, when it was generated (none was
    /// configured): printed at start so the console can be opened.
    pub generated_console_secret: Option<String>,
    /// The clock (tests shift it).
    pub clock: Arc<dyn Clock>,
    /// IP databases to use instead of the files in `data_dir` (tests).
    pub intel: Option<IpIntel>,
    /// Sample network origins a visitor can pretend to come from (demo
    /// only: `meridian serve` has no such thing).
    pub simulated_origins: Vec<SimulatedOrigin>,
}

/// A sample IP the demo lets a visitor on localhost pretend to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedOrigin {
    /// What the selector shows.
    pub label: String,
    /// The IP used as the login's remote IP.
    pub ip: IpAddr,
}

/// The demo's default policy: neutral weights, `CN` restricted, a page that
/// skipped the echo held for review.
pub fn demo_policy() -> Policy {
    Policy {
        restricted_regions: Country::parse("CN").into_iter().collect(),
        // Its page runs the drop-in, which takes the echo: a login whose
        // page skipped it is held for review.
        withheld_echo: meridian_verifier::verdict::Verdict::Review,
        ..Policy::default()
    }
}

/// The demo's defaults, under whatever `MERIDIAN_<KEY>` variables say: the
/// keys, collector and data in `home`, tokens only from the demo's own
/// origins, `CN` restricted, no per-IP challenge limit (one person clicking
/// around, and the browser tests, fetch many).
///
/// # Errors
/// When the default policy cannot be written as TOML (never).
pub fn demo_defaults(home: &Path, listen: SocketAddr) -> Result<toml::Table, String> {
    let path = |p: PathBuf| toml::Value::String(p.display().to_string());
    let mut table = toml::Table::new();
    table.insert("listen".into(), listen.to_string().into());
    table.insert("jwks".into(), path(home.join("keys/jwks.json")));
    table.insert("collector_dir".into(), path(home.join("pkg")));
    table.insert("data_dir".into(), path(home.join("data")));
    table.insert("replay_capacity".into(), 100_000.into());
    table.insert("challenge_rate_limit".into(), 0.into());
    table.insert(
        "allowed_origins".into(),
        toml::Value::Array(local_origins(listen).into_iter().map(toml::Value::String).collect()),
    );
    let policy = toml::Value::try_from(demo_policy()).map_err(|e| format!("demo policy: {e}"))?;
    table.insert("policy".into(), policy);
    Ok(table)
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

impl std::fmt::Debug for DemoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoConfig")
            .field("serve", &self.serve)
            .field("simulated_origins", &self.simulated_origins)
            .finish_non_exhaustive()
    }
}

impl DemoConfig {
    /// Reads `MERIDIAN_HOME` (default `.meridian`) and every `MERIDIAN_<KEY>`
    /// variable `meridian serve` reads, over [`demo_defaults`]; generates a
    /// verify secret when none is set.
    ///
    /// # Errors
    /// A sentence naming the variable that is wrong.
    pub fn from_env(listen: SocketAddr) -> Result<Self, String> {
        let home = PathBuf::from(std::env::var("MERIDIAN_HOME").unwrap_or_else(|_| ".meridian".into()));
        let serve = ServeConfig::load_over(demo_defaults(&home, listen)?, None, std::env::vars())
            .map_err(|e| e.to_string())?;
        Self::new(serve)
    }

    /// The demo with this configuration, the system clock and the sample
    /// origins; a verify secret is generated when none is configured.
    ///
    /// # Errors
    /// When the system has no secure randomness.
    pub fn new(mut serve: ServeConfig) -> Result<Self, String> {
        let mut generated_secret = None;
        if serve.verify_secret.is_empty() {
            let (text, _) = VerifySecret::generate().map_err(|e| format!("no secure randomness: {e}"))?;
            serve.verify_secret.push(Secret::new(text.clone()));
            generated_secret = Some(text);
        }
        // The demo shows its own verifications in the operator console.
        let mut generated_console_secret = None;
        if serve.console_secret.is_none() && serve.history {
            let (text, _) = VerifySecret::generate().map_err(|e| format!("no secure randomness: {e}"))?;
            serve.console_secret = Some(Secret::new(text.clone()));
            generated_console_secret = Some(text);
        }
        Ok(Self {
            serve,
            generated_secret,
            generated_console_secret,
            clock: Arc::new(SystemClock),
            intel: None,
            simulated_origins: default_simulated_origins(),
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

/// The demo, assembled: the verifier (through the same composition root as
/// `meridian serve`) and the pages.
#[derive(Debug)]
pub struct Demo {
    deployment: Deployment,
    simulated: Vec<SimulatedOrigin>,
}

impl Demo {
    /// Builds the verifier and checks the demo's files are in place. Call
    /// inside a Tokio runtime.
    ///
    /// # Errors
    /// When the collector keys or the built collector are missing, or a
    /// setting is wrong.
    pub async fn build(config: DemoConfig) -> Result<Self, String> {
        let DemoConfig { serve, clock, intel, simulated_origins, .. } = config;
        if !serve.jwks.exists() {
            return Err(format!("cannot read {}; run scripts/setup first", serve.jwks.display()));
        }
        if let Some(pkg) = &serve.collector_dir
            && !pkg.join("meridian.js").exists()
        {
            return Err(format!("the collector is not built in {}; run scripts/setup first", pkg.display()));
        }
        let mut builder = Deployment::builder(serve).clock(clock);
        if let Some(intel) = intel {
            builder = builder.intel(intel);
        }
        let deployment = builder.build().await.map_err(|e| e.to_string())?;
        Ok(Self { deployment, simulated: simulated_origins })
    }

    /// The demo's pages around the verifier's routes.
    fn pages(state: DemoState, api: Router) -> Router {
        let header = |name: &'static str, value: &'static str| {
            SetResponseHeaderLayer::overriding(HeaderName::from_static(name), HeaderValue::from_static(value))
        };
        Router::new()
            .route("/", get(login_page))
            .route("/login", get(login_page).post(login))
            .route(pages::STYLESHEET_PATH, get(stylesheet))
            .layer(header("content-security-policy", PAGE_POLICY))
            .layer(header("x-frame-options", "DENY"))
            .layer(header("x-content-type-options", "nosniff"))
            .layer(header("referrer-policy", "same-origin"))
            .with_state(state)
            .merge(api)
    }

    /// Serves the demo on `listener` until `shutdown` resolves.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let state = DemoState { api: self.deployment.state().clone(), simulated: Arc::new(self.simulated) };
        self.deployment.serve(listener, None, |api| Self::pages(state, api), shutdown).await
    }
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

/// The sign-in page's query: `?signer=wasm` makes the collector sign with
/// its wasm Ed25519 even where the browser has its own.
#[derive(Debug, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    signer: String,
}

async fn login_page(
    State(state): State<DemoState>,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Html<String> {
    // A query that does not parse is not a reason to refuse the page.
    let wasm_signer = query.is_ok_and(|Query(query)| query.signer == "wasm");
    Html(pages::login(&state.simulated, wasm_signer))
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
        // The e-mail names the account, so the history can weigh its past.
        // The demo asks for no password; a real login names the account
        // only once its password has checked out (docs/INTEGRATION.md).
        account: Some(form.email.trim()).filter(|email| !email.is_empty() && email.len() <= 256),
        organization: None,
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
