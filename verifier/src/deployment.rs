//! The composition root: a running verifier built once from a
//! [`ServeConfig`] — keys, databases, replay store, policy, limits — and
//! served with the one accept loop and shutdown path. `meridian serve`,
//! the demo and the test harness all start here.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use meridian_verifier::config::ServeConfig;
//! use meridian_verifier::deployment::Deployment;
//!
//! let config = ServeConfig::load(None, std::env::vars())?;
//! let deployment = Deployment::builder(config).build().await?;
//! deployment.run(meridian_verifier::http::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, ServeConfig};
use crate::geo::{DataFiles, IpIntel};
use crate::http::{ApiState, ServeLimits, VerifySecret, routers};
use crate::net::TrustedProxies;
use crate::replay::{MemoryReplayStore, RedisReplayStore, ReplayStore};
use crate::{ChallengeKey, ChallengeKeys, CollectorKeys, Keys, Verifier};

/// A verifier assembled from its configuration, ready to serve.
#[derive(Debug)]
pub struct Deployment {
    state: ApiState,
    notes: Vec<String>,
    data: DataFiles,
    listen: SocketAddr,
    internal_listen: Option<SocketAddr>,
    limits: ServeLimits,
    /// The UDP port of the second origin, and the address browsers use.
    udp: Option<(SocketAddr, Option<String>)>,
    /// The history and its retention in days, purged hourly while serving.
    #[cfg(feature = "history")]
    history: Option<(crate::history::History, u32)>,
}

/// Builds a [`Deployment`]; what a test or an embedding app supplies
/// itself instead of the configuration's files.
#[must_use = "call build()"]
pub struct Builder {
    config: ServeConfig,
    clock: Arc<dyn Clock>,
    intel: Option<IpIntel>,
    reads_history: bool,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Builder {
    /// Another clock (tests move it instead of sleeping).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// These IP databases instead of the configured files (which are then
    /// not reloaded on SIGHUP).
    pub fn intel(mut self, intel: IpIntel) -> Self {
        self.intel = Some(intel);
        self
    }

    /// Opens the history to read it only (`meridian report` beside a
    /// running `meridian serve`): no journal, so the running server's stays
    /// its own; this deployment must not verify.
    pub fn history_reader(mut self) -> Self {
        self.reads_history = true;
        self
    }

    /// Reads the keys and databases, connects the replay store and the
    /// history and applies the limits.
    ///
    /// # Errors
    /// A message naming the setting that is wrong or the file that cannot
    /// be read.
    pub async fn build(self) -> Result<Deployment, ConfigError> {
        let Self { config, clock, intel, reads_history } = self;
        let fail = |message: String| ConfigError(message);
        let mut notes = Vec::new();
        let jwks_text = std::fs::read_to_string(&config.jwks)
            .map_err(|e| fail(format!("jwks: cannot read {}: {e}", config.jwks.display())))?;
        let collector = CollectorKeys::from_jwks_json(&jwks_text)
            .map_err(|e| fail(format!("jwks {}: {e}", config.jwks.display())))?;
        notes.push(format!("collector keys: {} from {}", collector.len(), config.jwks.display()));
        let challenge = match config.challenge_keys()? {
            Some(keys) => keys,
            None => {
                notes.push("challenge_key unset: a random key per process; other instances will not accept its challenges".into());
                let key = ChallengeKey::random(1).map_err(|e| fail(format!("no secure randomness: {e}")))?;
                ChallengeKeys::new(vec![key], config.challenge_lifetime_s).map_err(|e| fail(e.to_string()))?
            }
        };
        let secrets = config
            .verify_secret
            .iter()
            .map(|s| VerifySecret::new(s.expose()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("verify_secret: {e}")))?;
        if secrets.is_empty() {
            return Err(fail("verify_secret: at least one verify secret is required (MERIDIAN_VERIFY_SECRET or verify_secret_file)".into()));
        }
        notes.push(format!("verify secrets: {}", secrets.len()));
        let policy = config.policy()?;
        if policy.allowed_origins.is_empty() {
            notes.push("allowed_origins empty: tokens from any origin are accepted unless a request names expected_origin".into());
        }
        let regions: Vec<&str> = policy.restricted_regions.iter().map(|c| c.as_str()).collect();
        notes.push(format!(
            "policy: review ≥ {}, deny ≥ {}, restricted regions [{}], store failure {:?}",
            policy.thresholds.review,
            policy.thresholds.deny,
            regions.join(", "),
            policy.store_failure
        ));
        if !regions.is_empty() && policy.withheld_echo == crate::verdict::Verdict::Allow {
            notes.push(
                "withheld_echo = allow: a page that skips the echo hides a relay's distance at no cost; set \"review\" once your pages take it (docs/INTEGRATION.md)"
                    .into(),
            );
        }
        let proxies = TrustedProxies::parse(&config.trusted_proxies)
            .map_err(|e| fail(format!("trusted_proxies: {e}")))?
            .with_header(config.client_ip_header)
            .with_rtt_header(config.tcp_rtt_header.as_deref())
            .map_err(|e| fail(format!("tcp_rtt_header: {e}")))?;
        if !proxies.is_empty() {
            notes.push(format!(
                "client IP: the first untrusted hop from the right of {} when the peer is a trusted proxy",
                config.client_ip_header.name()
            ));
        }
        if config.ipv6_rate_limit_prefix > 128 {
            return Err(fail("ipv6_rate_limit_prefix: at most 128".into()));
        }
        // Injected databases are not the files': a reload must not replace them.
        let data = if intel.is_some() { DataFiles::default() } else { config.data_files() };
        let intel = match intel {
            Some(intel) => intel,
            None => {
                if data.country_db.is_none() {
                    tracing::warn!(
                        "no country database: countries are unknown and the country checks stay silent"
                    );
                }
                if data.asn_db.is_none() {
                    tracing::warn!("no ASN database: hosting networks cannot be recognised");
                }
                data.open().map_err(|e| fail(e.to_string()))?
            }
        };
        notes.push(describe_data(&intel));
        let budget = config.challenge_budget.or(config.redis_url.is_none().then_some(config.replay_capacity));
        match budget {
            Some(budget) => notes.push(format!(
                "challenge budget: {budget} per {} s lifetime (the replay store can hold them all)",
                challenge.lifetime_s()
            )),
            None => notes.push("challenge budget: none (bound the Redis store with maxmemory)".into()),
        }
        let (store, shared) = replay_store(&config, &mut notes)?;
        let mut verifier =
            Verifier::new(Keys { collector, challenge }, policy, store).with_intel(Arc::new(intel));
        if let Some(address) = config.udp_listen {
            if address.ip().is_unspecified() && config.udp_public.is_none() {
                return Err(fail(format!(
                    "udp_public: browsers cannot send to {address}; name the host:port they reach"
                )));
            }
            // One entry per challenge that sent a probe, as many as the
            // replay store may hold.
            let capacity = budget.unwrap_or(config.replay_capacity);
            let mut origins = crate::udp::UdpOrigins::new(capacity);
            if let Some(shared) = shared {
                origins = origins.with_shared(shared);
            }
            notes.push(format!(
                "UDP origin: TURN probes on {address}{}",
                if origins.shared().is_some() {
                    ", sightings shared through Redis"
                } else {
                    " (sightings kept by this instance)"
                }
            ));
            verifier = verifier.with_udp_origins(Arc::new(origins));
        }
        // Checked before the history is opened.
        let console = config.console_secret.as_ref().map(|secret| console_of(&config, secret)).transpose()?;
        #[cfg(feature = "history")]
        let history = if config.history {
            let history = open_history(&config, &mut notes, !reads_history)
                .await?
                .with_refused_budget(config.history_refused_per_second);
            verifier = verifier.with_history(history.clone());
            Some(history)
        } else {
            notes.push("history: off (history = false)".into());
            None
        };
        let collector_dir = config
            .collector_dir
            .clone()
            .or_else(|| Some(PathBuf::from(".meridian/pkg")).filter(|dir| dir.join("meridian.js").exists()));
        match &collector_dir {
            Some(dir) if dir.join("meridian.js").exists() => {
                notes.push(format!("collector served from {} at /pkg/", dir.display()))
            }
            Some(dir) => {
                return Err(fail(format!(
                    "collector_dir: {} has no meridian.js (run scripts/build-collector)",
                    dir.display()
                )));
            }
            None => {
                notes.push("collector not served (no collector_dir; pages load it from elsewhere)".into())
            }
        }
        let proxies_for_limits = proxies.clone();
        let mut state = ApiState::new(verifier, secrets, clock)
            .with_trusted_proxies(proxies)
            .with_cors_origins(&config.cors_origins)
            .with_challenge_rate_limit(config.challenge_rate_limit)
            .with_ipv6_rate_limit_prefix(config.ipv6_rate_limit_prefix)
            .with_timeout(Duration::from_millis(config.request_timeout_ms));
        if let Some(dir) = collector_dir {
            state = state.with_collector_dir(dir);
        }
        if let Some(console) = console {
            state = state.with_console(console);
            notes.push(format!(
                "console: /console on {} (sessions end after {} idle minutes)",
                config.internal_listen.unwrap_or(config.listen),
                config.console_idle_minutes
            ));
        }
        if let Some(budget) = budget {
            let lifetime = Duration::from_secs(u64::from(state.verifier().keys().challenge.lifetime_s()));
            state = state.with_challenge_budget(budget, lifetime);
        }
        let limits = ServeLimits {
            max_connections: config.max_connections,
            max_connections_per_client: config.max_connections_per_client,
            uncounted: Arc::new(proxies_for_limits),
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms.max(1)),
            ..ServeLimits::default()
        };
        Ok(Deployment {
            state,
            notes,
            data,
            listen: config.listen,
            internal_listen: config.internal_listen,
            limits,
            udp: config.udp_listen.map(|address| (address, config.udp_public.clone())),
            #[cfg(feature = "history")]
            history: history.map(|history| (history, config.retention_days)),
        })
    }
}

/// The operator console, when its secret is acceptable.
fn console_of(
    config: &ServeConfig,
    secret: &crate::config::Secret,
) -> Result<crate::console::Console, ConfigError> {
    let fail = |message: String| ConfigError(message);
    if !config.history {
        return Err(fail(
            "console_secret: the console shows the history, which is off (history = false)".into(),
        ));
    }
    if config.verify_secret.iter().any(|v| v.expose() == secret.expose()) {
        return Err(fail("console_secret: must differ from every verify_secret".into()));
    }
    if config.console_idle_minutes == 0 {
        return Err(fail("console_idle_minutes: at least 1".into()));
    }
    let idle = Duration::from_secs(u64::from(config.console_idle_minutes) * 60);
    crate::console::Console::new(secret.expose(), idle, config.retention_days).map_err(fail)
}

/// The configured history: the SQLite file and the id key, each made on
/// first run when not configured.
#[cfg(feature = "history")]
async fn open_history(
    config: &ServeConfig,
    notes: &mut Vec<String>,
    journal: bool,
) -> Result<crate::history::History, ConfigError> {
    use crate::history::{History, HistoryStore, PostgresHistory, SqliteHistory, SubjectKey};
    let fail = |message: String| ConfigError(message);
    let path = config.history_db.clone().unwrap_or_else(|| config.data_dir.join("history.sqlite"));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(format!("history_db: cannot create {}: {e}", parent.display())))?;
    }
    let key = match &config.history_key {
        Some(key) => SubjectKey::from_base64url(key.expose()).map_err(|e| fail(e.to_string()))?,
        None if config.database_url.is_some() => {
            return Err(fail(
                "history_key: a shared history (database_url) needs the key every instance shares; make one with `openssl rand -base64 32 | tr '+/' '-_' | tr -d '='`".into(),
            ));
        }
        None => {
            let key_path = config.data_dir.join("history.key");
            match std::fs::read_to_string(&key_path) {
                Ok(text) => SubjectKey::from_base64url(&text)
                    .map_err(|e| fail(format!("{}: {e}", key_path.display())))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let (text, key) = SubjectKey::generate().map_err(|e| fail(e.to_string()))?;
                    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                        fail(format!("history key: cannot create {}: {e}", config.data_dir.display()))
                    })?;
                    crate::fs::write_private(&key_path, &text)
                        .map_err(|e| fail(format!("history key: {e}")))?;
                    notes.push(format!(
                        "history key: made {} (keep it: without it past ids cannot be matched)",
                        key_path.display()
                    ));
                    key
                }
                Err(e) => return Err(fail(format!("history key: cannot read {}: {e}", key_path.display()))),
            }
        }
    };
    // Answered events are journaled here until the database has them.
    let journal_dir = match (&config.history_journal, &config.history_db) {
        (Some(dir), _) => dir.clone(),
        (None, Some(db)) => beside(db, ".pending"),
        (None, None) => config.data_dir.join("history-journal"),
    };
    if config.database_url.is_none() && config.history_journal.is_none() {
        move_misnamed_journal(&path, &journal_dir, journal, notes).map_err(fail)?;
    }
    let store: Arc<dyn HistoryStore> = match &config.database_url {
        Some(url) => {
            let timeout = Duration::from_millis(config.store_timeout_ms.max(1_000));
            let store =
                PostgresHistory::connect(url.expose(), timeout).await.map_err(|e| fail(e.to_string()))?;
            notes.push(format!(
                "history: postgres (shared by every instance using it; retention {} days)",
                config.retention_days
            ));
            Arc::new(store)
        }
        None => {
            let store = SqliteHistory::open(&path).map_err(|e| fail(e.to_string()))?;
            notes.push(format!(
                "history: sqlite {} (retention {} days)",
                path.display(),
                config.retention_days
            ));
            Arc::new(store)
        }
    };
    if !journal {
        return Ok(History::new(store, key));
    }
    adopt_old_spool(&config.data_dir, &journal_dir).map_err(fail)?;
    History::with_journal(store, key, &journal_dir).map_err(|e| fail(e.to_string()))
}

/// `path` with `suffix` added to its file name.
#[cfg(feature = "history")]
fn beside(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Earlier versions kept the journal of a configured `history_db` in the
/// folder `<history_db>-journal`: the name SQLite gives its own rollback
/// journal, so SQLite failed to open the database ("disk I/O error") once
/// that folder existed. Serving moves it to its new place; reading only
/// (`meridian report`) says what to do.
#[cfg(feature = "history")]
fn move_misnamed_journal(
    db: &std::path::Path,
    journal: &std::path::Path,
    serving: bool,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let old = beside(db, "-journal");
    if !old.is_dir() {
        return Ok(());
    }
    if !serving {
        return Err(format!(
            "{} is a folder of journaled events where SQLite expects its own journal; start `meridian serve` once (it moves the folder to {}) and read again",
            old.display(),
            journal.display()
        ));
    }
    if journal.exists() {
        return Err(format!(
            "{} and {} both exist: move the events of the first into the second, or set history_journal",
            old.display(),
            journal.display()
        ));
    }
    std::fs::rename(&old, journal).map_err(|e| {
        format!("history journal: cannot move {} to {}: {e}", old.display(), journal.display())
    })?;
    notes.push(format!("history journal: moved {} to {}", old.display(), journal.display()));
    Ok(())
}

/// Moves the events an earlier Meridian left waiting in
/// `history-pending.jsonl` (one event per line) into the journal, numbered,
/// so they are written like any journal a stopped process left.
#[cfg(feature = "history")]
fn adopt_old_spool(data_dir: &std::path::Path, journal: &std::path::Path) -> Result<(), String> {
    let spool = data_dir.join("history-pending.jsonl");
    let text = match std::fs::read(&spool) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("history: cannot read {}: {e}", spool.display())),
    };
    let mut lines = Vec::new();
    let events = text
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<crate::history::Event>(line).ok());
    for (seq, event) in (1u64..).zip(events) {
        lines.extend(serde_json::to_vec(&(seq, &event)).map_err(|e| e.to_string())?);
        lines.push(b'\n');
    }
    std::fs::create_dir_all(journal)
        .map_err(|e| format!("history: cannot create {}: {e}", journal.display()))?;
    let adopted =
        journal.join(format!("journal-spool{}-00000000.jsonl", jiff::Timestamp::now().as_millisecond()));
    std::fs::write(&adopted, lines)
        .map_err(|e| format!("history: cannot write {}: {e}", adopted.display()))?;
    std::fs::remove_file(&spool).map_err(|e| format!("history: cannot remove {}: {e}", spool.display()))?;
    tracing::info!(spool = %spool.display(), "history: events an earlier version left waiting are in the journal");
    Ok(())
}

/// The replay store, and the store that shares the UDP origin's sightings
/// between instances (the same Redis, when it is Redis).
type Stores = (Arc<dyn ReplayStore>, Option<Arc<dyn crate::udp::SharedSightings>>);

/// The configured replay store, and the sightings' shared store.
fn replay_store(config: &ServeConfig, notes: &mut Vec<String>) -> Result<Stores, ConfigError> {
    let Some(url) = &config.redis_url else {
        notes.push(format!(
            "replay store: memory, {} nonces (not shared between instances)",
            config.replay_capacity
        ));
        return Ok((Arc::new(MemoryReplayStore::new(config.replay_capacity)), None));
    };
    notes.push(format!(
        "replay store: redis{} (shared by every instance using it)",
        if url.expose().starts_with("rediss://") { " over TLS" } else { "" }
    ));
    let ca = match &config.redis_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| ConfigError(format!("redis_ca_file: cannot read {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let store =
        RedisReplayStore::with_tls_root(url.expose(), Duration::from_millis(config.store_timeout_ms), ca)
            .map_err(|e| ConfigError(format!("redis_url: {e}")))?;
    let store = Arc::new(store);
    Ok((store.clone(), Some(store)))
}

/// One line on the data in force.
pub fn describe_data(intel: &IpIntel) -> String {
    format!(
        "databases: country {}, ASN {}, {} hosting ASNs, {} Private Relay ranges, {} Tor exits",
        if intel.has_country_db() { "loaded" } else { "none (countries unknown)" },
        if intel.has_asn_db() { "loaded" } else { "none" },
        intel.hosting().len(),
        intel.relays().private_relay_len(),
        intel.relays().tor_exits_len()
    )
}

impl Deployment {
    /// Starts building from `config`.
    pub fn builder(config: ServeConfig) -> Builder {
        Builder { config, clock: Arc::new(SystemClock), intel: None, reads_history: false }
    }

    /// The API's state (the verifier, limits, metrics).
    pub fn state(&self) -> &ApiState {
        &self.state
    }

    /// What was configured, one line each, for the log and `check-config`.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The configured address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Binds the configured addresses and serves until `shutdown` resolves.
    ///
    /// # Errors
    /// When an address cannot be bound, or the server fails.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), String> {
        let bind = |address: SocketAddr, key: &'static str| async move {
            TcpListener::bind(address).await.map_err(|e| format!("{key}: cannot listen on {address}: {e}"))
        };
        let listener = bind(self.listen, "listen").await?;
        let internal = match self.internal_listen {
            Some(address) => Some(bind(address, "internal_listen").await?),
            None => None,
        };
        self.serve(listener, internal, |api| api, shutdown).await
    }

    /// Serves on listeners the caller bound: the public routes, merged with
    /// whatever `extend` adds (the demo's pages), on `public`; the backend's
    /// side on `internal` when given, else on `public` too. Refreshes the
    /// rate limiter now and then and reloads the data files on SIGHUP.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn serve(
        self,
        public: TcpListener,
        internal: Option<TcpListener>,
        extend: impl FnOnce(Router) -> Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        for note in &self.notes {
            tracing::info!("{note}");
        }
        #[cfg(feature = "history")]
        let self_history = self.history.clone();
        let Self { state, data, limits, udp, .. } = self;
        let udp_task = match udp {
            None => None,
            Some((address, public)) => {
                let socket = tokio::net::UdpSocket::bind(address)
                    .await
                    .map_err(|e| format!("udp_listen: cannot bind {address}: {e}"))?;
                let bound = socket.local_addr().map_err(|e| format!("udp_listen: {e}"))?;
                tracing::info!(address = %bound, "UDP origin: TURN probes");
                state.set_udp_address(public.unwrap_or_else(|| bound.to_string()));
                let keys = state.verifier().keys().challenge.clone();
                let origins = state.verifier().udp_origins().cloned();
                let clock = state.clock_handle();
                origins.map(|origins| tokio::spawn(crate::udp::serve(socket, keys, origins, clock)))
            }
        };
        // The bound address: with port 0 configured, the one the system chose.
        if let Ok(address) = public.local_addr() {
            tracing::info!(%address, "meridian verifier listening");
        }
        #[cfg(unix)]
        if data != DataFiles::default() {
            tokio::spawn(reload_on_hangup(state.clone(), data));
        }
        let housekeeping = state.clone();
        #[cfg(feature = "history")]
        let retention = self_history;
        let chores = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            let mut ticks: u64 = 0;
            loop {
                tick.tick().await;
                housekeeping.housekeeping();
                if let Some(origins) = housekeeping.verifier().udp_origins() {
                    origins.purge(housekeeping.clock().now().as_millisecond());
                }
                #[cfg(feature = "history")]
                if let Some((history, days)) = &retention
                    && ticks.is_multiple_of(120)
                {
                    purge(history, *days).await;
                }
                ticks = ticks.wrapping_add(1);
            }
        });
        // One signal ends every listener.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.changed().await;
        };
        #[cfg(feature = "history")]
        let history = state.verifier().history().cloned();
        let (public_routes, internal_routes) = routers(state);
        let served = match internal {
            None => {
                let app = extend(public_routes.merge(internal_routes));
                crate::http::serve(public, app, limits, until_stopped(stopped)).await
            }
            Some(internal) => {
                if let Ok(address) = internal.local_addr() {
                    tracing::info!(%address, "internal listener: /v1/verify, /metrics, /readyz");
                }
                // The internal listener's clients are the operator's own
                // backends: no cap per client there.
                let internal_limits =
                    ServeLimits { max_connections_per_client: limits.max_connections, ..limits.clone() };
                let (a, b) = tokio::join!(
                    crate::http::serve(public, extend(public_routes), limits, until_stopped(stopped.clone())),
                    crate::http::serve(internal, internal_routes, internal_limits, until_stopped(stopped)),
                );
                a.and(b)
            }
        };
        chores.abort();
        if let Some(task) = udp_task {
            task.abort();
        }
        // What was answered goes to the database now rather than from the
        // journal at the next start.
        #[cfg(feature = "history")]
        if let Some(history) = history
            && let Err(error) = history.flush().await
        {
            tracing::warn!(%error, "history: the journal is written at the next start");
        }
        served.map_err(|e| format!("server error: {e}"))
    }
}

/// Erases events older than the retention.
#[cfg(feature = "history")]
async fn purge(history: &crate::history::History, days: u32) {
    let before =
        jiff::Timestamp::now().as_millisecond().saturating_sub(i64::from(days).saturating_mul(86_400_000));
    match history.purge(before).await {
        Ok(0) => {}
        Ok(purged) => tracing::info!(purged, days, "history: events past the retention erased"),
        Err(error) => tracing::warn!(%error, "history: purge failed; tried again within the hour"),
    }
}

/// Reloads the data files on every SIGHUP; a file that fails to load
/// leaves everything as it was.
#[cfg(unix)]
async fn reload_on_hangup(state: ApiState, files: DataFiles) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: data files are not reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        let files = files.clone();
        match tokio::task::spawn_blocking(move || files.open()).await {
            Ok(Ok(intel)) => {
                tracing::info!("reloaded: {}", describe_data(&intel));
                state.verifier().replace_intel(Arc::new(intel));
            }
            Ok(Err(e)) => tracing::error!("reload failed, keeping the data in force: {e}"),
            Err(e) => tracing::error!("reload failed, keeping the data in force: {e}"),
        }
    }
}
