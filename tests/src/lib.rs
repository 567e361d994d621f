//! Harness for Meridian's end-to-end tests: the demo on a loopback port,
//! headless Chromium through chromedriver, and small helpers.
//!
//! Needs what `scripts/test` installs: Debian's `chromium` and
//! `chromium-driver`, a built collector in `.meridian/pkg`, and for the
//! interop test a Python with PyJWT (`MERIDIAN_PYTHON`).

#![allow(clippy::panic, reason = "a test harness reports failure by panicking")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use meridian_verifier::ChallengeKey;
use meridian_verifier::clock::{Clock, ShiftedClock};
use meridian_verifier::http::VerifySecret;

/// The verify secret every test server uses.
pub const VERIFY_SECRET: &str = "test-verify-secret-0123456789";

/// The workspace's `.meridian` folder (keys, built collector, tools).
pub fn meridian_home() -> PathBuf {
    std::env::var_os("MERIDIAN_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.meridian"))
}

/// Where end-to-end tests leave screenshots: `target/screenshots`.
///
/// # Panics
/// When the folder cannot be made.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// A demo server on a free loopback port.
pub struct DemoServer {
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    /// The server's clock; tests move it forward instead of sleeping.
    pub clock: Arc<ShiftedClock>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` on `listener` as `meridian serve` does (`TCP_NODELAY`,
/// the peer's address available to handlers) until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let _ = axum::serve(
        meridian_verifier::http::no_delay(listener),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await;
}

/// Starts the demo in this process.
///
/// # Panics
/// When the demo cannot start (set-up not run): tests should fail loudly.
pub async fn start_demo() -> DemoServer {
    start_demo_with(meridian_verifier::geo::IpIntel::none()).await
}

/// Starts the demo with these IP databases (e.g. `testkit::test_intel()`).
///
/// # Panics
/// When the demo cannot start.
pub async fn start_demo_with(intel: meridian_verifier::geo::IpIntel) -> DemoServer {
    start_demo_configured(DemoOptions { intel, ..DemoOptions::default() }).await
}

/// How to start the demo.
#[derive(Debug, Default)]
pub struct DemoOptions {
    /// IP databases (none by default).
    pub intel: meridian_verifier::geo::IpIntel,
    /// The policy; the demo's own (`CN` restricted) when `None`.
    pub policy: Option<meridian_verifier::Policy>,
    /// Proxies whose `X-Forwarded-For` is believed, e.g. `127.0.0.1/32`, so
    /// a browser can present any client IP through [`Browser::forward_for`].
    pub trusted_proxies: meridian_verifier::net::TrustedProxies,
}

/// Starts the demo as `options` say.
///
/// # Panics
/// When the demo cannot start.
pub async fn start_demo_configured(options: DemoOptions) -> DemoServer {
    let DemoOptions { intel, policy, trusted_proxies } = options;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}"));
    let clock = Arc::new(ShiftedClock::default());
    let config = meridian_demo::DemoConfig {
        home: meridian_home(),
        origins: meridian_demo::local_origins(address),
        verify_secret: VerifySecret::new(VERIFY_SECRET).unwrap_or_else(|e| panic!("{e}")),
        generated_secret: None,
        challenge_key: ChallengeKey::random(1).unwrap_or_else(|e| panic!("{e}")),
        clock: clock.clone() as Arc<dyn Clock>,
        policy: policy.unwrap_or_else(meridian_demo::demo_policy),
        intel: Arc::new(intel),
        simulated_origins: vec![
            meridian_demo::SimulatedOrigin {
                label: "Singapore (test range)".into(),
                ip: [192, 0, 2, 10].into(),
            },
            meridian_demo::SimulatedOrigin { label: "Japan (test range)".into(), ip: [192, 0, 2, 70].into() },
        ],
        trusted_proxies,
    };
    let app = meridian_demo::app(config).unwrap_or_else(|e| panic!("demo: {e}"));
    let task = tokio::spawn(serve(listener, app));
    DemoServer { origin: format!("http://{address}"), clock, task }
}

/// A `meridian` HTTP API (the library's router, no demo pages) on a free
/// loopback port, with the workspace's collector keys.
pub struct VerifierServer {
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for VerifierServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a verifier that accepts tokens from pages on `page_origins`
/// (CORS and allowed origins) and serves the built collector under `/pkg/`.
///
/// # Panics
/// When set-up has not built the keys or the collector.
pub async fn start_verifier(page_origins: &[String]) -> VerifierServer {
    use meridian_verifier::{ChallengeKeys, CollectorKeys, Keys, Policy, Verifier};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}"));
    let home = meridian_home();
    let jwks = std::fs::read_to_string(home.join("keys/jwks.json"))
        .unwrap_or_else(|e| panic!("keys/jwks.json: {e} (run scripts/setup)"));
    let keys = Keys {
        collector: CollectorKeys::from_jwks_json(&jwks).unwrap_or_else(|e| panic!("jwks: {e}")),
        challenge: ChallengeKeys::new(vec![ChallengeKey::random(1).unwrap_or_else(|e| panic!("{e}"))], 120)
            .unwrap_or_else(|| panic!("challenge keys")),
    };
    let policy = Policy { allowed_origins: page_origins.to_vec(), ..Policy::default() };
    let verifier =
        Verifier::new(keys, policy, Arc::new(meridian_verifier::replay::MemoryReplayStore::new(1000)));
    let api = meridian_verifier::http::ApiState::new(
        verifier,
        vec![VerifySecret::new(VERIFY_SECRET).unwrap_or_else(|e| panic!("{e}"))],
        Arc::new(meridian_verifier::clock::SystemClock),
    )
    .with_cors_origins(page_origins)
    .with_collector_dir(home.join("pkg"));
    let app = meridian_verifier::http::router(api);
    let task = tokio::spawn(serve(listener, app));
    VerifierServer { origin: format!("http://{address}"), task }
}

/// A loopback listener for a test's own site, and its origin.
///
/// # Panics
/// When no port is free.
pub async fn site_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let origin = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}")));
    (listener, origin)
}

/// A headless Chromium driven through its own chromedriver.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    profile: PathBuf,
    driver_url: String,
}

impl Drop for Browser {
    /// Ends chromedriver and every Chromium process of this session: killing
    /// chromedriver alone leaves the browser running. Chromium's processes
    /// are found by their unique profile folder, and the whole process group
    /// chromedriver leads is ended too.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f"])
            .arg(self.profile.as_os_str())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// How to start the browser.
#[derive(Debug, Clone, Default)]
pub struct BrowserOptions {
    /// IANA zone for the browser process (`TZ`), e.g. `Asia/Shanghai`.
    pub time_zone: Option<String>,
    /// `--accept-lang` value, e.g. `zh-CN,zh`: `navigator.languages` and
    /// the `Accept-Language` header.
    pub accept_language: Option<String>,
    /// Intl locale, set through CDP `Emulation.setLocaleOverride`.
    pub locale: Option<String>,
    /// A script run before any page script, in the page's main world
    /// (CDP `Page.addScriptToEvaluateOnNewDocument`): how spoofing
    /// extensions inject their overrides.
    pub init_script: Option<String>,
    /// Leave `navigator.webdriver` true, as WebDriver sets it. By default
    /// the browser is started like one a person uses
    /// (`--disable-blink-features=AutomationControlled`), so that tests of
    /// other signals are not confounded by the `automation` reason.
    pub reveal_automation: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Starts chromedriver and a headless Chromium session.
///
/// # Panics
/// When chromedriver or Chromium is missing: install them with `scripts/test`.
pub async fn start_browser(options: BrowserOptions) -> Browser {
    let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let port = free_port();
    let mut command = Command::new(&chromedriver);
    command.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null());
    // Its own process group, so that dropping the browser can end it whole.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    if let Some(zone) = &options.time_zone {
        command.env("TZ", zone);
    }
    let driver = command.spawn().unwrap_or_else(|e| {
        panic!("cannot start {chromedriver}: {e} (install chromium-driver; scripts/test does)")
    });
    let profile = std::env::temp_dir().join(format!("meridian-chromium-{port}-{}", std::process::id()));
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if !options.reveal_automation {
        args.push("--disable-blink-features=AutomationControlled".to_owned());
    }
    if let Some(languages) = &options.accept_language {
        args.push(format!("--accept-lang={languages}"));
        args.push(format!("--lang={}", languages.split(',').next().unwrap_or("en-US")));
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), serde_json::json!({ "binary": chromium, "args": args }));
    let url = format!("http://127.0.0.1:{port}");
    let mut last_error = String::new();
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                let browser = Browser { client, driver, profile, driver_url: url };
                if let Some(locale) = &options.locale {
                    browser.cdp("Emulation.setLocaleOverride", serde_json::json!({ "locale": locale })).await;
                }
                if let Some(script) = &options.init_script {
                    browser
                        .cdp("Page.addScriptToEvaluateOnNewDocument", serde_json::json!({ "source": script }))
                        .await;
                }
                return browser;
            }
            Err(e) => {
                last_error = e.to_string();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("cannot start a Chromium session through {chromedriver}: {last_error}");
}

impl Browser {
    /// Runs a Chrome DevTools Protocol command through chromedriver.
    ///
    /// # Panics
    /// When chromedriver refuses the command.
    pub async fn cdp(&self, command: &str, params: serde_json::Value) -> serde_json::Value {
        let session =
            self.client.session_id().await.ok().flatten().unwrap_or_else(|| panic!("no WebDriver session"));
        let response = reqwest::Client::new()
            .post(format!("{}/session/{session}/goog/cdp/execute", self.driver_url))
            .json(&serde_json::json!({ "cmd": command, "params": params }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CDP {command}: {e}"));
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(status.is_success(), "CDP {command} failed: {body}");
        body
    }

    /// Loads the demo's login page and collects a token in it through the
    /// drop-in's `collect()`.
    ///
    /// # Panics
    /// When the page or the collector fails.
    pub async fn collect_token(&self, origin: &str, action: &str) -> String {
        self.client.goto(&format!("{origin}/")).await.unwrap_or_else(|e| panic!("goto: {e}"));
        let value = self
            .client
            .execute_async(
                "const [action, done] = arguments;
                 import('/pkg/meridian.js')
                   .then(m => m.collect({ action }))
                   .then(token => done({ token }), error => done({ error: String(error) }));",
                vec![serde_json::json!(action)],
            )
            .await
            .unwrap_or_else(|e| panic!("collect: {e}"));
        match value.get("token").and_then(|t| t.as_str()) {
            Some(token) => token.to_owned(),
            None => panic!("collector failed: {value}"),
        }
    }

    /// Makes every request of the browser carry `X-Forwarded-For: ip`, so a
    /// demo trusting loopback as its proxy sees the browser as `ip`.
    ///
    /// # Panics
    /// When chromedriver refuses the CDP commands.
    pub async fn forward_for(&self, ip: std::net::IpAddr) {
        self.cdp("Network.enable", serde_json::json!({})).await;
        self.cdp(
            "Network.setExtraHTTPHeaders",
            serde_json::json!({ "headers": { "X-Forwarded-For": ip.to_string() } }),
        )
        .await;
    }

    /// Evaluates a JavaScript expression in the page.
    ///
    /// # Panics
    /// When the script throws.
    pub async fn eval(&self, expression: &str) -> serde_json::Value {
        self.client
            .execute(&format!("return {expression};"), vec![])
            .await
            .unwrap_or_else(|e| panic!("eval {expression}: {e}"))
    }
}

/// Posts to `/v1/verify` with the test secret and returns status and body.
///
/// # Panics
/// When the server does not answer.
pub async fn verify(origin: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{origin}/v1/verify"))
        .bearer_auth(VERIFY_SECRET)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("verify request: {e}"));
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or_else(|e| panic!("verify body: {e}"));
    (status, body)
}

/// The `error_codes` of a verify response, as strings.
pub fn error_codes(body: &serde_json::Value) -> Vec<String> {
    body["error_codes"]
        .as_array()
        .map(|codes| codes.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Page scripts that spoof the time zone or languages the way extensions
/// and anti-detect tools do, injected before any page script through
/// [`BrowserOptions::init_script`].
pub mod spoof {
    /// `resolvedOptions().timeZone` reports `zone`.
    pub fn zone_name(zone: &str) -> String {
        format!(
            "const realResolved = Intl.DateTimeFormat.prototype.resolvedOptions;
             Intl.DateTimeFormat.prototype.resolvedOptions = {{
               resolvedOptions() {{ const o = realResolved.call(this); o.timeZone = {zone:?}; return o; }}
             }}.resolvedOptions;\n"
        )
    }

    /// `getTimezoneOffset` returns `minutes_west` for every date.
    pub fn offset(minutes_west: i32) -> String {
        format!(
            "Date.prototype.getTimezoneOffset = {{ getTimezoneOffset() {{ return {minutes_west}; }} }}.getTimezoneOffset;\n"
        )
    }

    /// Zone name and `getTimezoneOffset` both follow `zone`, with offsets
    /// computed honestly by Intl for each date, so the lie is consistent.
    pub fn consistent(zone: &str) -> String {
        format!(
            "const spoofParts = new Intl.DateTimeFormat('en-US', {{ timeZone: {zone:?}, hourCycle: 'h23',
               year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' }});
             const realFormatToParts = Intl.DateTimeFormat.prototype.formatToParts;
             function spoofOffset(date) {{
               const p = Object.fromEntries(realFormatToParts.call(spoofParts, date).map(x => [x.type, x.value]));
               const wall = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute);
               return Math.round((Math.floor(date.getTime() / 60000) * 60000 - wall) / 60000);
             }}
             {}
             Date.prototype.getTimezoneOffset = {{ getTimezoneOffset() {{ return spoofOffset(this); }} }}.getTimezoneOffset;\n",
            zone_name(zone)
        )
    }

    /// [`consistent`], with `Function.prototype.toString` patched so the
    /// replaced functions print as native code.
    pub fn hidden(zone: &str) -> String {
        format!(
            "{}
             const realToString = Function.prototype.toString;
             const disguised = new Map();
             const fakeToString = {{ toString() {{ return disguised.get(this) ?? realToString.call(this); }} }}.toString;
             disguised.set(fakeToString, 'function toString() {{ [native code] }}');
             disguised.set(Intl.DateTimeFormat.prototype.resolvedOptions, 'function resolvedOptions() {{ [native code] }}');
             disguised.set(Date.prototype.getTimezoneOffset, 'function getTimezoneOffset() {{ [native code] }}');
             Function.prototype.toString = fakeToString;\n",
            consistent(zone)
        )
    }

    /// `navigator.language` and `navigator.languages` report `language`.
    pub fn languages(language: &str) -> String {
        format!(
            "Object.defineProperty(Navigator.prototype, 'languages', {{ get: () => [{language:?}], configurable: true }});
             Object.defineProperty(Navigator.prototype, 'language', {{ get: () => {language:?}, configurable: true }});\n"
        )
    }
}
