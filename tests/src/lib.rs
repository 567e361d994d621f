//! Harness for Meridian's end-to-end tests: the demo on a loopback port,
//! headless browsers through WebDriver (Chromium through chromedriver,
//! Firefox ESR through geckodriver, WebKitGTK through WebKitWebDriver under
//! xvfb-run: see [`Engine`]), and small helpers.
//!
//! Needs what `scripts/test` installs: Debian's `chromium`,
//! `chromium-driver`, `firefox-esr`, `webkit2gtk-driver`, `xvfb`, `xauth` and
//! `locales`, geckodriver (`cargo install`), a built collector in
//! `.meridian/pkg`, and for the interop test a Python with PyJWT
//! (`MERIDIAN_PYTHON`).

#![allow(clippy::panic, reason = "a test harness reports failure by panicking")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use meridian_verifier::clock::{Clock, ShiftedClock};
use meridian_verifier::config::ServeConfig;

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
#[derive(Debug)]
pub struct DemoServer {
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    /// The server's clock; tests move it forward instead of sleeping.
    pub clock: Arc<ShiftedClock>,
    task: tokio::task::JoinHandle<()>,
    /// Its history database, removed with it.
    data: PathBuf,
}

impl DemoServer {
    /// Its history's SQLite file.
    pub fn history_db(&self) -> PathBuf {
        self.data.join("history.sqlite")
    }
}

/// The development collector key the suite builds the collector with
/// (`.meridian/keys/collector.jwk`), for tests that sign what a browser
/// could not.
///
/// # Panics
/// When set-up has not made it.
pub fn collector_key() -> ed25519_dalek::SigningKey {
    let path = meridian_home().join("keys/collector.jwk");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup)", path.display()));
    let jwk: meridian_protocol::jwk::Jwk =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jwk.signing_key().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Serves `app` on `listener` through the accept loop `meridian serve` and
/// the demo use (connection cap, header timeout, `TCP_NODELAY`, the peer's
/// address for handlers) until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let limits = meridian_verifier::http::ServeLimits::default();
    let _ = meridian_verifier::http::serve(listener, app, limits, std::future::pending()).await;
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
    pub trusted_proxies: Vec<String>,
    /// Open the UDP origin's port (`udp_listen` on a free loopback port).
    pub udp_origin: bool,
    /// Serve the operator console with this secret.
    pub console_secret: Option<String>,
}

/// Starts the demo as `options` say, through the same configuration and
/// composition root as `scripts/demo`.
///
/// # Panics
/// When the demo cannot start.
pub async fn start_demo_configured(options: DemoOptions) -> DemoServer {
    let DemoOptions { intel, policy, trusted_proxies, udp_origin, console_secret } = options;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}"));
    let clock = Arc::new(ShiftedClock::default());
    let mut defaults =
        meridian_demo::demo_defaults(&meridian_home(), address).unwrap_or_else(|e| panic!("demo: {e}"));
    if let Some(policy) = policy {
        let policy = toml::Value::try_from(policy).unwrap_or_else(|e| panic!("policy: {e}"));
        defaults.insert("policy".into(), policy);
    }
    let proxies: Vec<toml::Value> = trusted_proxies.iter().map(|p| toml::Value::String(p.clone())).collect();
    defaults.insert("trusted_proxies".into(), toml::Value::Array(proxies));
    if udp_origin {
        defaults.insert("udp_listen".into(), toml::Value::String("127.0.0.1:0".into()));
    }
    if let Some(secret) = console_secret {
        defaults.insert("console_secret".into(), toml::Value::String(secret));
    }
    defaults.insert("verify_secret".into(), toml::Value::Array(vec![VERIFY_SECRET.into()]));
    // Each demo keeps its own history, so tests never see each other's.
    let data = scratch_dir("demo");
    let history = data.join("history.sqlite");
    defaults.insert("history_db".into(), toml::Value::String(history.display().to_string()));
    let serve = ServeConfig::load_over(defaults, None, std::iter::empty())
        .unwrap_or_else(|e| panic!("demo configuration: {e}"));
    let mut config = meridian_demo::DemoConfig::new(serve).unwrap_or_else(|e| panic!("demo: {e}"));
    config.clock = clock.clone() as Arc<dyn Clock>;
    config.intel = Some(intel);
    config.simulated_origins = vec![
        meridian_demo::SimulatedOrigin { label: "Singapore (test range)".into(), ip: [192, 0, 2, 10].into() },
        meridian_demo::SimulatedOrigin { label: "Japan (test range)".into(), ip: [192, 0, 2, 70].into() },
    ];
    let demo = meridian_demo::Demo::build(config).await.unwrap_or_else(|e| panic!("demo: {e}"));
    let task = tokio::spawn(async move {
        let _ = demo.serve(listener, std::future::pending()).await;
    });
    DemoServer { origin: format!("http://{address}"), clock, task, data }
}

/// A fresh folder under the system's temporary directory, for one server's
/// data (its history database and key).
///
/// # Panics
/// When it cannot be made.
pub fn scratch_dir(what: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("meridian-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// A `meridian` HTTP API (the library's router, no demo pages) on a free
/// loopback port, with the workspace's collector keys.
#[derive(Debug)]
pub struct VerifierServer {
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    task: tokio::task::JoinHandle<()>,
    /// Its data folder (history database and key), removed with it.
    data: PathBuf,
}

impl Drop for VerifierServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Starts a verifier that accepts tokens from pages on `page_origins`
/// (CORS and allowed origins) and serves the built collector under `/pkg/`,
/// built from a configuration as `meridian serve` builds it.
///
/// # Panics
/// When set-up has not built the keys or the collector.
pub async fn start_verifier(page_origins: &[String]) -> VerifierServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}"));
    let home = meridian_home();
    let data = scratch_dir("verifier");
    let origins = page_origins.join(",");
    let env = [
        ("MERIDIAN_LISTEN", address.to_string()),
        ("MERIDIAN_JWKS", home.join("keys/jwks.json").display().to_string()),
        ("MERIDIAN_COLLECTOR_DIR", home.join("pkg").display().to_string()),
        ("MERIDIAN_DATA_DIR", data.display().to_string()),
        ("MERIDIAN_VERIFY_SECRET", VERIFY_SECRET.to_owned()),
        ("MERIDIAN_ALLOWED_ORIGINS", origins.clone()),
        ("MERIDIAN_CORS_ORIGINS", origins),
        ("MERIDIAN_CHALLENGE_RATE_LIMIT", "0".to_owned()),
        ("MERIDIAN_REPLAY_CAPACITY", "1000".to_owned()),
    ];
    let config = ServeConfig::load(None, env.map(|(k, v)| (k.to_owned(), v)))
        .unwrap_or_else(|e| panic!("verifier configuration: {e}"));
    let deployment = meridian_verifier::deployment::Deployment::builder(config)
        .build()
        .await
        .unwrap_or_else(|e| panic!("verifier: {e} (run scripts/setup)"));
    let task = tokio::spawn(async move {
        let _ = deployment.serve(listener, None, |api| api, std::future::pending()).await;
    });
    VerifierServer { origin: format!("http://{address}"), task, data }
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

/// A browser engine the end-to-end tests can drive, each through its own
/// WebDriver server (all Debian packages but geckodriver, which
/// `scripts/test` installs with `cargo install`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Debian's `chromium` through `chromedriver`, headless. The only
    /// engine with the Chrome DevTools Protocol ([`Browser::cdp`]).
    #[default]
    Chromium,
    /// Debian's `firefox-esr` through `geckodriver`, headless.
    Firefox,
    /// Debian's WebKitGTK `MiniBrowser` through `WebKitWebDriver`, on a
    /// virtual X server (`xvfb-run`).
    WebKit,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Self; 3] = [Self::Chromium, Self::Firefox, Self::WebKit];

    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Chromium => "Chromium",
            Self::Firefox => "Firefox",
            Self::WebKit => "WebKit",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A headless browser driven through its own WebDriver server.
#[derive(Debug)]
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    engine: Engine,
    driver: Child,
    profile: PathBuf,
    driver_url: String,
    port: u16,
}

impl Drop for Browser {
    /// Ends the WebDriver server and every browser process of this session:
    /// killing the driver alone leaves the browser running. The driver leads
    /// its own process group (for WebKit, `xvfb-run` leads it, with `Xvfb`,
    /// `WebKitWebDriver`, `MiniBrowser` and WebKit's helper processes), which
    /// is ended whole; stragglers are found by the session's unique profile
    /// folder (Chromium's `--user-data-dir`, Firefox's `-profile`, Xvfb's
    /// `-auth` file) or driver port.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        if self.engine == Engine::WebKit {
            // SIGTERM first, so that Xvfb removes its display lock and socket
            // (`/tmp/.X*-lock`) instead of leaving them behind.
            signal_group("-TERM", &group);
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while std::time::Instant::now() < deadline {
                let _ = self.driver.try_wait();
                if !signal_group("-0", &group) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        signal_group("-KILL", &group);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f"])
            .arg(self.profile.as_os_str())
            .stderr(Stdio::null())
            .status();
        if self.engine != Engine::Chromium {
            let driver = match self.engine {
                Engine::Firefox => format!("geckodriver --port {}( |$)", self.port),
                _ => format!("WebKitWebDriver --port={}( |$)", self.port),
            };
            let _ = Command::new("pkill").args(["-KILL", "-f", &driver]).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Sends `signal` (`-TERM`, `-KILL`, `-0`) to the process group `group`
/// (`-PGID`); true when some process received it.
fn signal_group(signal: &str, group: &str) -> bool {
    Command::new("kill")
        .args([signal, "--", group])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// How to start the browser.
#[derive(Debug, Clone, Default)]
pub struct BrowserOptions {
    /// Which browser; Chromium by default.
    pub engine: Engine,
    /// IANA zone for the browser process (`TZ`), e.g. `Asia/Shanghai`.
    pub time_zone: Option<String>,
    /// `navigator.languages` and the `Accept-Language` header, e.g.
    /// `zh-CN,zh`. Chromium: `--accept-lang`. Firefox: pref
    /// `intl.accept_languages`. WebKit follows `LANG` alone and so reports
    /// only the first language (see [`BrowserOptions::locale`]).
    pub accept_language: Option<String>,
    /// Intl locale, e.g. `zh-CN`. Chromium: CDP `Emulation.setLocaleOverride`.
    /// Firefox: prefs `intl.locale.requested` and
    /// `intl.regional_prefs.use_os_locales` with `LANG` (e.g. `zh_CN.UTF-8`).
    /// WebKit: `LANG` with the glibc locale built for it (see
    /// [`glibc_locale_path`]); it also sets WebKit's only language, so it
    /// must agree with the first of `accept_language`.
    pub locale: Option<String>,
    /// A script run before any page script, in the page's main world
    /// (CDP `Page.addScriptToEvaluateOnNewDocument`): how spoofing
    /// extensions inject their overrides. Chromium only.
    pub init_script: Option<String>,
    /// Leave `navigator.webdriver` true, as WebDriver sets it. By default
    /// Chromium is started like one a person uses
    /// (`--disable-blink-features=AutomationControlled`), so that tests of
    /// other signals are not confounded by the `automation` reason. Firefox
    /// and WebKit have no such switch (Firefox 153 ignores the old pref
    /// `dom.webdriver.enabled`): there `navigator.webdriver` is always true
    /// and tokens carry `automation`.
    pub reveal_automation: bool,
    /// Firefox's `privacy.resistFingerprinting` (Tor Browser's and
    /// LibreWolf's defence): pages, iframes and workers then report
    /// `Atlantic/Reykjavik` at UTC+0 whatever `TZ` says. Firefox only.
    pub resist_fingerprinting: bool,
    /// A host name the browser resolves to 127.0.0.1 (`--host-resolver-rules`),
    /// e.g. `login.test`: a page loaded from it over HTTP is not a secure
    /// context, so it has no `crypto.subtle`. Chromium only.
    pub loopback_alias: Option<String>,
    /// Every request through this proxy, loopback included
    /// (`--proxy-server`, `--proxy-bypass-list=<-loopback>`), e.g.
    /// `socks5://127.0.0.1:1080`. Chromium only.
    pub proxy_server: Option<String>,
    /// The profile preference `webrtc.ip_handling_policy`, e.g.
    /// `disable_non_proxied_udp` (WebRTC's UDP only through the proxy, so
    /// none at all through a SOCKS or HTTP proxy). Chromium only.
    pub webrtc_ip_handling_policy: Option<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Starts a WebDriver server and a headless browser session of
/// `options.engine`.
///
/// # Panics
/// When the engine or its driver is missing (install them with
/// `scripts/test`), or when `options` asks for what the engine cannot do
/// (`init_script`, `loopback_alias` or `proxy_server` outside Chromium,
/// `resist_fingerprinting` outside Firefox).
pub async fn start_browser(options: BrowserOptions) -> Browser {
    let engine = options.engine;
    if engine != Engine::Chromium {
        assert!(
            options.init_script.is_none(),
            "BrowserOptions::init_script needs the Chrome DevTools Protocol: Chromium only, not {engine}"
        );
        assert!(
            options.loopback_alias.is_none(),
            "BrowserOptions::loopback_alias is a Chromium switch: Chromium only, not {engine}"
        );
        assert!(
            options.proxy_server.is_none() && options.webrtc_ip_handling_policy.is_none(),
            "BrowserOptions::proxy_server and webrtc_ip_handling_policy are Chromium settings: Chromium only, not {engine}"
        );
    }
    if engine != Engine::Firefox {
        assert!(
            !options.resist_fingerprinting,
            "BrowserOptions::resist_fingerprinting is a Firefox pref: Firefox only, not {engine}"
        );
    }
    match engine {
        Engine::Chromium => start_chromium(options).await,
        Engine::Firefox => start_firefox(options).await,
        Engine::WebKit => start_webkit(options).await,
    }
}

/// Starts `command` (a WebDriver server) in its own process group, output
/// discarded, with `TZ` and `LANG` when given (then without `LC_ALL` and
/// `LANGUAGE`, which would override it).
fn spawn_driver(mut command: Command, engine: Engine, time_zone: Option<&str>, lang: Option<&str>) -> Child {
    command.stdout(Stdio::null()).stderr(Stdio::null());
    // Its own process group, so that dropping the browser can end it whole.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    if let Some(zone) = time_zone {
        command.env("TZ", zone);
    }
    if let Some(lang) = lang {
        command.env("LANG", lang).env_remove("LC_ALL").env_remove("LANGUAGE");
    }
    let program = command.get_program().to_string_lossy().into_owned();
    command.spawn().unwrap_or_else(|e| {
        panic!("cannot start {program} for {engine}: {e} (run scripts/test, which installs the browsers and drivers)")
    })
}

/// Fails the test at once, naming the fix, when `path` does not exist.
fn require(engine: Engine, path: &str) {
    assert!(
        std::path::Path::new(path).exists(),
        "{engine} is not installed: {path} is missing (run scripts/test, which installs the browsers and drivers)"
    );
}

/// Opens the WebDriver session, retrying while the driver starts.
async fn connect(
    engine: Engine,
    url: &str,
    capabilities: &serde_json::Map<String, serde_json::Value>,
) -> Client {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last_error = String::new();
    while std::time::Instant::now() < deadline {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(url)
            .await
        {
            Ok(client) => return client,
            Err(e) => {
                last_error = e.to_string();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!(
        "cannot start a {engine} session through {url}: {last_error} (run scripts/test, which installs the browsers and drivers)"
    );
}

/// `fr-FR` → `fr_FR`: the glibc name of a BCP 47 tag with a region.
fn glibc_name(tag: &str) -> Option<String> {
    let mut parts = tag.split(['-', '_']);
    let language = parts.next().filter(|l| (2..=3).contains(&l.len()))?;
    let region = parts.find(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_alphabetic()))?;
    Some(format!("{}_{}", language.to_ascii_lowercase(), region.to_ascii_uppercase()))
}

/// A folder for `LOCPATH` holding the glibc locale `name.UTF-8` (e.g.
/// `fr_FR`), built once with `localedef` into `target/glibc-locales`:
/// WebKitGTK ignores `LANG` unless its locale exists, and Debian generates
/// none but `C.UTF-8` by default. Nothing outside `target/` is touched.
///
/// # Panics
/// When `localedef` (Debian `locales`) is missing or knows no such locale.
pub fn glibc_locale_path(name: &str) -> PathBuf {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/glibc-locales");
    let locale = dir.join(format!("{name}.UTF-8"));
    let _guard = BUILDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if locale.join("LC_CTYPE").exists() {
        return dir;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let partial = dir.join(format!("{name}.UTF-8.part-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let status = Command::new("localedef")
        .args(["-i", name, "-f", "UTF-8"])
        .arg(&partial)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("localedef: {e} (install Debian's locales; scripts/test does)"));
    assert!(
        status.success() || partial.join("LC_CTYPE").exists(),
        "localedef -i {name} -f UTF-8 failed: {status}"
    );
    if std::fs::rename(&partial, &locale).is_err() {
        // Another test process built it meanwhile.
        let _ = std::fs::remove_dir_all(&partial);
    }
    dir
}

async fn start_chromium(options: BrowserOptions) -> Browser {
    let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let port = free_port();
    let mut command = Command::new(&chromedriver);
    command.arg(format!("--port={port}"));
    let driver = spawn_driver(command, Engine::Chromium, options.time_zone.as_deref(), None);
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
    if let Some(alias) = &options.loopback_alias {
        args.push(format!("--host-resolver-rules=MAP {alias} 127.0.0.1"));
    }
    if let Some(proxy) = &options.proxy_server {
        args.push(format!("--proxy-server={proxy}"));
        // Chromium never proxies loopback unless told to.
        args.push("--proxy-bypass-list=<-loopback>".to_owned());
    }
    if let Some(languages) = &options.accept_language {
        args.push(format!("--accept-lang={languages}"));
        args.push(format!("--lang={}", languages.split(',').next().unwrap_or("en-US")));
    }
    let mut capabilities = serde_json::Map::new();
    let mut chrome_options = serde_json::json!({ "binary": chromium, "args": args });
    if let Some(policy) = &options.webrtc_ip_handling_policy {
        chrome_options["prefs"] = serde_json::json!({ "webrtc.ip_handling_policy": policy });
    }
    capabilities.insert("goog:chromeOptions".into(), chrome_options);
    let url = format!("http://127.0.0.1:{port}");
    let client = connect(Engine::Chromium, &url, &capabilities).await;
    let browser = Browser { client, engine: Engine::Chromium, driver, profile, driver_url: url, port };
    if let Some(locale) = &options.locale {
        browser.cdp("Emulation.setLocaleOverride", serde_json::json!({ "locale": locale })).await;
    }
    if let Some(script) = &options.init_script {
        browser.cdp("Page.addScriptToEvaluateOnNewDocument", serde_json::json!({ "source": script })).await;
    }
    browser
}

async fn start_firefox(options: BrowserOptions) -> Browser {
    let geckodriver = std::env::var("GECKODRIVER").unwrap_or_else(|_| {
        let home = std::env::var("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
        home.join("bin/geckodriver").to_string_lossy().into_owned()
    });
    let firefox = std::env::var("FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into());
    require(Engine::Firefox, &geckodriver);
    require(Engine::Firefox, &firefox);
    let port = free_port();
    let profile = std::env::temp_dir().join(format!("meridian-firefox-{port}-{}", std::process::id()));
    std::fs::create_dir_all(&profile).unwrap_or_else(|e| panic!("{}: {e}", profile.display()));
    let mut prefs = serde_json::Map::new();
    if let Some(languages) = &options.accept_language {
        prefs.insert("intl.accept_languages".into(), languages.as_str().into());
    }
    let lang = options.locale.as_deref().map(|locale| {
        prefs.insert("intl.locale.requested".into(), locale.into());
        // Firefox's Intl locale follows the app locale (English only without
        // a language pack) unless it may take the OS's regional locale,
        // read from LANG (no glibc locale needed).
        prefs.insert("intl.regional_prefs.use_os_locales".into(), true.into());
        let name = glibc_name(locale)
            .unwrap_or_else(|| panic!("Firefox needs a locale with a region, like fr-FR, not {locale}"));
        format!("{name}.UTF-8")
    });
    if options.resist_fingerprinting {
        prefs.insert("privacy.resistFingerprinting".into(), true.into());
    }
    let mut command = Command::new(&geckodriver);
    command.args(["--port", &port.to_string()]);
    let driver = spawn_driver(command, Engine::Firefox, options.time_zone.as_deref(), lang.as_deref());
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), "firefox".into());
    capabilities.insert(
        "moz:firefoxOptions".into(),
        serde_json::json!({
            "binary": firefox,
            "args": ["-headless", "-profile", profile],
            "prefs": prefs,
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = connect(Engine::Firefox, &url, &capabilities).await;
    Browser { client, engine: Engine::Firefox, driver, profile, driver_url: url, port }
}

async fn start_webkit(options: BrowserOptions) -> Browser {
    // `xvfb-run -a` picks the first free display: two sessions starting at
    // once could pick the same one, so this process starts them in turn.
    static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let webdriver = std::env::var("WEBKIT_WEBDRIVER").unwrap_or_else(|_| "/usr/bin/WebKitWebDriver".into());
    let minibrowser = std::env::var("WEBKIT_MINIBROWSER")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser".into());
    require(Engine::WebKit, &webdriver);
    require(Engine::WebKit, &minibrowser);
    require(Engine::WebKit, "/usr/bin/xvfb-run");
    let first_language = options.accept_language.as_deref().and_then(|l| l.split(',').next()).map(str::trim);
    let language = match (options.locale.as_deref(), first_language) {
        (Some(locale), Some(first)) => {
            assert!(
                glibc_name(locale) == glibc_name(first),
                "WebKit takes its Intl locale and its only language from LANG: locale {locale} and first \
                 language {first} must agree"
            );
            Some(locale)
        }
        (locale, first) => locale.or(first),
    };
    let name = language.map(|tag| {
        glibc_name(tag)
            .unwrap_or_else(|| panic!("WebKit needs a language with a region, like fr-FR, not {tag}"))
    });
    let port = free_port();
    let profile = std::env::temp_dir().join(format!("meridian-webkit-{port}-{}", std::process::id()));
    std::fs::create_dir_all(&profile).unwrap_or_else(|e| panic!("{}: {e}", profile.display()));
    let mut command = Command::new("xvfb-run");
    // The X authority file in the profile (not a temporary folder of
    // xvfb-run's, which a killed xvfb-run leaves behind) also marks this
    // session's Xvfb for Drop.
    command.arg("-a").arg("-f").arg(profile.join("Xauthority")).arg(&webdriver).arg(format!("--port={port}"));
    if let Some(name) = &name {
        command.env("LOCPATH", glibc_locale_path(name));
    }
    let lang = name.map(|name| format!("{name}.UTF-8"));
    let _starting = STARTING.lock().await;
    let driver = spawn_driver(command, Engine::WebKit, options.time_zone.as_deref(), lang.as_deref());
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), "MiniBrowser".into());
    capabilities.insert(
        "webkitgtk:browserOptions".into(),
        serde_json::json!({ "binary": minibrowser, "args": ["--automation"] }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = connect(Engine::WebKit, &url, &capabilities).await;
    Browser { client, engine: Engine::WebKit, driver, profile, driver_url: url, port }
}

impl Browser {
    /// The engine of this browser.
    pub const fn engine(&self) -> Engine {
        self.engine
    }

    /// Runs a Chrome DevTools Protocol command through chromedriver.
    ///
    /// # Panics
    /// When chromedriver refuses the command, and on engines other than
    /// Chromium, which have no CDP.
    pub async fn cdp(&self, command: &str, params: serde_json::Value) -> serde_json::Value {
        assert!(
            self.engine == Engine::Chromium,
            "Browser::cdp({command}) needs the Chrome DevTools Protocol: Chromium only, not {}",
            self.engine
        );
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

    /// Loads the demo's login page and collects a token in it, in the page's
    /// own realm: Chromium and WebKit run WebDriver scripts in the page's
    /// main world, where the drop-in's `collect()` is imported and called.
    /// Firefox runs them in a sandbox with its own `Intl` and `Date` (see
    /// [`Browser::eval`]), and a module imported from there would read those,
    /// while the page's CSP forbids injecting a page script: there the form
    /// is submitted, the drop-in attached to it collects and submits it again
    /// with the token, and that submission is caught and cancelled, so
    /// nothing is posted.
    ///
    /// # Panics
    /// When the page or the collector fails.
    pub async fn collect_token(&self, origin: &str, action: &str) -> String {
        self.collect_token_on(&format!("{origin}/"), action).await
    }

    /// [`Browser::collect_token`] on the sign-in page at `page` (e.g. the
    /// demo's `/?signer=wasm`).
    ///
    /// # Panics
    /// When the page or the collector fails.
    pub async fn collect_token_on(&self, page: &str, action: &str) -> String {
        self.collect_token_after(page, action, "").await
    }

    /// [`Browser::collect_token_on`] after running `prelude` in the page
    /// first (e.g. to break its `WebSocket`, as a network that lets none
    /// through would). In Firefox, WebDriver scripts run in a sandbox over
    /// the page: what `prelude` changes there is not what page scripts see.
    ///
    /// # Panics
    /// When the page or the collector fails.
    pub async fn collect_token_after(&self, page: &str, action: &str, prelude: &str) -> String {
        self.client.goto(page).await.unwrap_or_else(|e| panic!("goto: {e}"));
        let collect = match self.engine {
            Engine::Chromium | Engine::WebKit => {
                "const [action, done] = arguments;
                 import('/pkg/meridian.js')
                   .then(m => m.collect({ action }))
                   .then(token => done({ token }), error => done({ error: String(error) }));"
            }
            Engine::Firefox => {
                "const [action, done] = arguments;
                 const form = document.querySelector('form[data-meridian]');
                 if (!form) return done({ error: 'no form[data-meridian] on the page' });
                 form.dataset.meridian = action;
                 let finished = false;
                 const finish = () => {
                   if (finished) return;
                   finished = true;
                   const value = form.querySelector('input[name=\"meridian-token\"]')?.value || '';
                   done(value && !value.startsWith('meridian-error:') ? { token: value } : { error: value || 'no token' });
                 };
                 // The drop-in cancels the first submission, collects, fills the
                 // token field, marks the form filled and submits it again: that
                 // second submission is caught here, first of all, and cancelled.
                 window.addEventListener('submit', event => {
                   if (event.target === form && form.dataset.meridianFilled === 'true') {
                     event.preventDefault();
                     event.stopImmediatePropagation();
                     finish();
                   }
                 }, true);
                 form.submit = finish;
                 const start = () => form.dataset.meridianAttached === 'true' ? form.requestSubmit() : setTimeout(start, 20);
                 start();"
            }
        };
        let script = format!("{prelude}\n{collect}");
        let value = self
            .client
            .execute_async(&script, vec![serde_json::json!(action)])
            .await
            .unwrap_or_else(|e| panic!("collect in {}: {e}", self.engine));
        match value.get("token").and_then(|t| t.as_str()) {
            Some(token) => token.to_owned(),
            None => panic!("collector failed in {}: {value}", self.engine),
        }
    }

    /// Makes every request of the browser carry `X-Forwarded-For: ip`, so a
    /// demo trusting loopback as its proxy sees the browser as `ip`.
    ///
    /// # Panics
    /// When chromedriver refuses the CDP commands; on engines other than
    /// Chromium (CDP only).
    pub async fn forward_for(&self, ip: std::net::IpAddr) {
        self.cdp("Network.enable", serde_json::json!({})).await;
        self.cdp(
            "Network.setExtraHTTPHeaders",
            serde_json::json!({ "headers": { "X-Forwarded-For": ip.to_string() } }),
        )
        .await;
    }

    /// A full-page PNG of the current page (Chromium, through CDP), saved
    /// as `target/screenshots/<name>`; returns its width in pixels.
    ///
    /// # Panics
    /// When the browser gives no PNG or the file cannot be written.
    pub async fn screenshot(&self, name: &str) -> u32 {
        use base64ct::Encoding as _;
        let answer = self
            .cdp(
                "Page.captureScreenshot",
                serde_json::json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let data = answer["value"]["data"].as_str().unwrap_or_else(|| panic!("no screenshot: {answer}"));
        let png = base64ct::Base64::decode_vec(data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
        let path = screenshot_dir().join(name);
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // IHDR: width and height are the first two big-endian u32s of its data.
        png.get(16..20).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes)
    }

    /// Fails unless the page is no wider than the viewport.
    ///
    /// # Panics
    /// When it is wider.
    pub async fn assert_fits_viewport(&self, page: &str) {
        let overflow = self.eval("document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(
            overflow.as_i64().is_some_and(|o| o <= 0),
            "{page}: wider than the viewport by {overflow} px"
        );
    }

    /// Evaluates a JavaScript expression in the page.
    ///
    /// In Firefox, WebDriver scripts run in a sandbox with its own `Date`,
    /// `Intl` and `Function` over the page's window: the DOM is the page's,
    /// but `Intl`/`Date` answers are not what page scripts see (with
    /// `resist_fingerprinting` the page says `Atlantic/Reykjavik`, the
    /// sandbox the real zone). Read those through page scripts instead.
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
