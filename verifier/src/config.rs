//! Configuration of `meridian serve`: a TOML file whose every key can also
//! be set by an environment variable `MERIDIAN_<KEY>` (upper case), which
//! wins over the file. Lists in variables are comma-separated.
//!
//! Secrets (verify secrets, challenge keys, the Redis URL) can live in the
//! file, in variables, or in files named by `*_file` keys; they are never
//! printed — [`ServeConfig`]'s `Debug` and `meridian check-config` redact them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::{Policy, StoreFailure};

mod layers;

/// A string that must not be printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself; handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines. The default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of `meridian serve`, with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on. Default `127.0.0.1:8686`.
    pub listen: SocketAddr,
    /// A second address for the backend's side — `/v1/verify`, `/metrics`,
    /// `/readyz` — which then leave the public listener. Default: none
    /// (everything on `listen`).
    pub internal_listen: Option<SocketAddr>,
    /// Open connections per listener at most. Default 4096.
    pub max_connections: usize,
    /// Open connections of one client (an IPv4 address, an IPv6 /64) on
    /// the public listener at most; the trusted proxies are not counted.
    /// Default 512.
    pub max_connections_per_client: usize,
    /// Time a client has to send a request head, and the longest a
    /// kept-alive connection may sit idle, ms. Default 10 000.
    pub header_read_timeout_ms: u64,
    /// Challenges issued per challenge lifetime at most, whoever asks, so
    /// a flood of valid tokens cannot fill the replay store. Default: the
    /// in-memory store's `replay_capacity`; none with Redis (bound its
    /// memory there with `maxmemory`).
    pub challenge_budget: Option<usize>,
    /// JWKS file with the collector public keys. Default `.meridian/keys/jwks.json`.
    pub jwks: PathBuf,
    /// Bearer secrets for `/v1/verify` (several, to rotate). Required, here or in `verify_secret_file`.
    pub verify_secret: Vec<Secret>,
    /// File with one verify secret per line.
    pub verify_secret_file: Option<PathBuf>,
    /// Challenge MAC keys, base64url of 32 bytes, optionally `ID:KEY`
    /// (ID 1–255; default: position). The first issues; all are accepted.
    /// Instances that should accept each other's challenges share them.
    /// Default: one random key per process (a warning says so).
    pub challenge_key: Vec<Secret>,
    /// File with one challenge key per line, same format.
    pub challenge_key_file: Option<PathBuf>,
    /// Challenge (and token) lifetime, seconds. Default 120.
    pub challenge_lifetime_s: u32,
    /// Challenges per minute per client IP (bursts of the same size);
    /// 0 disables the limit. Default 60.
    pub challenge_rate_limit: u32,
    /// Origins whose pages may fetch challenges cross-origin (CORS). Default: none.
    pub cors_origins: Vec<String>,
    /// Proxies whose forwarding header is believed (CIDRs). Default: none.
    pub trusted_proxies: Vec<String>,
    /// The one header those proxies write the client address into:
    /// `x-forwarded-for` (the default), `forwarded` or `x-real-ip`. Only
    /// this header is read; a client's copy of another is ignored.
    pub client_ip_header: crate::net::ClientIpHeader,
    /// The header those proxies write the client connection's TCP round
    /// trip into, in microseconds (nginx `$tcpinfo_rtt`, HAProxy
    /// `%[fc_rtt(us)]`), e.g. `x-client-rtt-us`. Behind a proxy the
    /// verifier's own socket times only the proxy, so without it the echo
    /// (`GET /v1/echo`) has no hidden leg to report. Default: none.
    pub tcp_rtt_header: Option<String>,
    /// IPv6 clients are rate-limited per network of this prefix length.
    /// Default 64.
    pub ipv6_rate_limit_prefix: u8,
    /// Folder of the data files (`country.mmdb`, `asn.mmdb`,
    /// `private-relay.csv`, `tor-exits.txt`), each used when present
    /// unless its own key names another file. Default `.meridian/data`.
    pub data_dir: PathBuf,
    /// Country database (.mmdb). Default `country.mmdb` in `data_dir` when present.
    pub country_db: Option<PathBuf>,
    /// ASN database (.mmdb). Default `.meridian/data/asn.mmdb` when present.
    pub asn_db: Option<PathBuf>,
    /// iCloud Private Relay egress list (Apple's CSV). Default
    /// `.meridian/data/private-relay.csv` when present.
    pub private_relay_list: Option<PathBuf>,
    /// Tor exit list. Default `.meridian/data/tor-exits.txt` when present.
    pub tor_exit_list: Option<PathBuf>,
    /// Policy file (TOML, see `policy.rs`); `[policy]` in this file is the
    /// alternative. Default: the neutral policy.
    pub policy_file: Option<PathBuf>,
    /// Inline policy.
    pub policy: Option<Policy>,
    /// Page origins tokens may come from, added to the policy's. Default: none (any).
    pub allowed_origins: Vec<String>,
    /// Actions tokens may be collected for, added to the policy's. Default: none (any).
    pub allowed_actions: Vec<String>,
    /// Redis URL for a replay store shared by several instances. Default:
    /// none (in-memory store, not shared).
    pub redis_url: Option<Secret>,
    /// PEM file of the certificate authority that issued a `rediss://`
    /// server's certificate, when it is not one the system trusts.
    pub redis_ca_file: Option<PathBuf>,
    /// What to do when the replay store cannot answer: `closed` (reject
    /// with `internal-error`, the default) or `open` (accept with the
    /// reason `replay_unchecked`). Overrides the policy's setting when set.
    pub store_failure: Option<StoreFailure>,
    /// How long a replay-store command may take, ms. Default 250.
    pub store_timeout_ms: u64,
    /// Live nonces the in-memory store may hold. Default 1 000 000.
    pub replay_capacity: usize,
    /// Whole-request timeout, ms. Default 5 000.
    pub request_timeout_ms: u64,
    /// Whether to record verifications and weigh accounts' and
    /// organisations' past (feature `history`). Default `true`.
    pub history: bool,
    /// The history's SQLite file, created on first run. Default
    /// `history.sqlite` in `data_dir`.
    pub history_db: Option<PathBuf>,
    /// Folder where answered verifications wait until the database has
    /// them (one process at a time: it is locked). Default:
    /// `<history_db>.pending` beside a configured `history_db`, else
    /// `history-journal` in `data_dir`.
    pub history_journal: Option<PathBuf>,
    /// PostgreSQL URL (`postgres://user:password@host:port/db`) for a history
    /// shared by several instances; they must then share `history_key`.
    /// Default: none (the SQLite file).
    pub database_url: Option<Secret>,
    /// The key (base64url of 32 bytes) that turns account and organisation
    /// ids into the keyed hashes the history stores; instances sharing a
    /// history share it. Default: `history.key` in `data_dir`, made on first
    /// run.
    pub history_key: Option<Secret>,
    /// File holding the history key.
    pub history_key_file: Option<PathBuf>,
    /// Days the history keeps an event. Default 90.
    pub retention_days: u32,
    /// Refused verifications (no token, a forged or replayed one) the
    /// history records per second at most; the rest are counted in
    /// `meridian_history_refused_unrecorded_total`. Refusals the policy lets
    /// through (the collector's error marker) have as many again of their
    /// own, and those of them naming an account as many again (each account
    /// 10 at once, then one every 6 s). Accepted sign-ins are always
    /// recorded (challenges ration them).
    /// 0: no limit. Default 1000.
    pub history_refused_per_second: u32,
    /// The operator console's secret (at least 16 characters, not a verify
    /// secret): with it, `meridian serve` serves the console under
    /// `/console`, on `internal_listen` when set. Default: none (no console).
    pub console_secret: Option<Secret>,
    /// File holding the console secret.
    pub console_secret_file: Option<PathBuf>,
    /// Minutes a console session lasts without a request (at most 12 hours
    /// after sign-in whatever this is). Default 30.
    pub console_idle_minutes: u32,
    /// `text` or `json`. Default `text`.
    pub log_format: LogFormat,
    /// Folder of the built collector, served under `/pkg/` (CORS for
    /// `cors_origins`). Default `.meridian/pkg` when it holds `meridian.js`.
    pub collector_dir: Option<PathBuf>,
    /// A UDP address for the second origin (`network.udp_origin`): the
    /// collector sends a TURN request there from the browser, around any
    /// HTTP or SOCKS proxy, and the source is noted against its challenge.
    /// E.g. `0.0.0.0:3478`. Default: off.
    pub udp_listen: Option<SocketAddr>,
    /// `host:port` browsers send that UDP to, when it is not `udp_listen`
    /// itself (a wildcard address, a public name, NAT in front). Default:
    /// the bound `udp_listen`.
    pub udp_public: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8686)),
            internal_listen: None,
            max_connections: 4096,
            max_connections_per_client: 512,
            header_read_timeout_ms: 10_000,
            challenge_budget: None,
            jwks: PathBuf::from(".meridian/keys/jwks.json"),
            verify_secret: Vec::new(),
            verify_secret_file: None,
            challenge_key: Vec::new(),
            challenge_key_file: None,
            challenge_lifetime_s: crate::challenge::DEFAULT_LIFETIME_S,
            challenge_rate_limit: 60,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            client_ip_header: crate::net::ClientIpHeader::default(),
            tcp_rtt_header: None,
            udp_listen: None,
            udp_public: None,
            ipv6_rate_limit_prefix: 64,
            data_dir: PathBuf::from(".meridian/data"),
            country_db: None,
            asn_db: None,
            private_relay_list: None,
            tor_exit_list: None,
            policy_file: None,
            policy: None,
            allowed_origins: Vec::new(),
            allowed_actions: Vec::new(),
            redis_url: None,
            redis_ca_file: None,
            store_failure: None,
            store_timeout_ms: 250,
            replay_capacity: 1_000_000,
            request_timeout_ms: 5_000,
            history: true,
            history_db: None,
            history_journal: None,
            database_url: None,
            history_key: None,
            history_key_file: None,
            retention_days: 90,
            history_refused_per_second: 1_000,
            console_secret: None,
            console_secret_file: None,
            console_idle_minutes: 30,
            log_format: LogFormat::Text,
            collector_dir: None,
        }
    }
}

/// Keys whose values are secrets.
const SECRET_KEYS: &[&str] =
    &["verify_secret", "challenge_key", "redis_url", "history_key", "database_url", "console_secret"];

/// A TOML file as a table. On a syntax error the message names the file,
/// line and problem only: toml's own text quotes the offending line, which
/// may hold a secret.
fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    text.parse::<toml::Table>().map_err(|e| {
        let line = e.span().map_or(0, |span| {
            let before = text.as_bytes().get(..span.start).unwrap_or(text.as_bytes());
            before.iter().filter(|b| **b == b'\n').count() + 1
        });
        ConfigError(format!("{}, line {line}: {}", path.display(), e.message().trim()))
    })
}

/// `message` with every secret value replaced.
fn redact(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_owned(), |text, secret| text.replace(secret.as_str(), "<secret>"))
}

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ServeConfig {
    /// Reads `file` (when given), then applies `MERIDIAN_*` variables from
    /// `env`.
    ///
    /// # Errors
    /// A message naming the key or variable that is wrong.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::load_over(toml::Table::new(), file, env)
    }

    /// [`Self::load`] over other defaults than [`ServeConfig::default`]
    /// (the demo's): `defaults`, then the file, then the variables.
    ///
    /// # Errors
    /// A message naming the key or variable that is wrong.
    pub fn load_over(
        defaults: toml::Table,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = defaults;
        if let Some(path) = file {
            table.extend(read_table(path)?);
        }
        let fields = layers::field_names::<Self>();
        let mut entries: Vec<(String, layers::Layer)> =
            table.into_iter().map(|(key, value)| (key, layers::Layer::File(value))).collect();
        for (name, value) in env {
            let Some(key) = name.strip_prefix("MERIDIAN_").map(str::to_ascii_lowercase) else { continue };
            // Other MERIDIAN_* variables belong to other tools.
            if !fields.contains(&key.as_str()) {
                continue;
            }
            entries.retain(|(existing, _)| *existing != key);
            entries.push((key, layers::Layer::Env { name, value }));
        }
        let secrets = layers::secret_values(&entries, SECRET_KEYS);
        let source = file.map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
        let mut config = layers::deserialize::<Self>(entries)
            .map_err(|e| ConfigError(redact(&format!("{source}: {e}"), &secrets)))?;
        config.read_secret_files()?;
        Ok(config)
    }

    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        let lines = |path: &Path, key: &str| -> Result<Vec<Secret>, ConfigError> {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("{key}: cannot read {}: {e}", path.display())))?;
            Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| Secret(l.into()))
                .collect())
        };
        if let Some(path) = &self.verify_secret_file {
            self.verify_secret.extend(lines(path, "verify_secret_file")?);
        }
        if let Some(path) = &self.challenge_key_file {
            self.challenge_key.extend(lines(path, "challenge_key_file")?);
        }
        if let Some(path) = &self.history_key_file {
            self.history_key = lines(path, "history_key_file")?.into_iter().next();
        }
        if let Some(path) = &self.console_secret_file {
            self.console_secret = lines(path, "console_secret_file")?.into_iter().next();
        }
        Ok(())
    }

    /// The effective policy: file or inline, plus the origins, actions and
    /// store-failure mode set at the top level.
    ///
    /// # Errors
    /// When the policy file cannot be read or is invalid.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let mut policy = match (&self.policy_file, &self.policy) {
            (Some(_), Some(_)) => {
                return Err(ConfigError("set either policy_file or [policy], not both".into()));
            }
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("policy_file: cannot read {}: {e}", path.display())))?;
                Policy::from_toml(&text)
                    .map_err(|e| ConfigError(format!("policy_file {}: {e}", path.display())))?
            }
            (None, Some(policy)) => {
                policy.validate().map_err(|e| ConfigError(e.to_string()))?;
                policy.clone()
            }
            (None, None) => Policy::default(),
        };
        policy.allowed_origins.extend(self.allowed_origins.iter().cloned());
        policy.allowed_actions.extend(self.allowed_actions.iter().cloned());
        if let Some(mode) = self.store_failure {
            policy.store_failure = mode;
        }
        Ok(policy)
    }

    /// The data files to read: those named, else those in `data_dir`.
    pub fn data_files(&self) -> crate::geo::DataFiles {
        let found = crate::geo::DataFiles::in_dir(&self.data_dir);
        crate::geo::DataFiles {
            country_db: self.country_db.clone().or(found.country_db),
            asn_db: self.asn_db.clone().or(found.asn_db),
            private_relay_list: self.private_relay_list.clone().or(found.private_relay_list),
            tor_exit_list: self.tor_exit_list.clone().or(found.tor_exit_list),
        }
    }

    /// The challenge key ring, or `None` when none is configured.
    ///
    /// # Errors
    /// When a key is not `[ID:]base64url-of-32-bytes` or ids repeat.
    pub fn challenge_keys(&self) -> Result<Option<crate::ChallengeKeys>, ConfigError> {
        if self.challenge_key.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for (index, secret) in self.challenge_key.iter().enumerate() {
            let text = secret.expose().trim();
            let (id, key) = match text.split_once(':') {
                Some((id, key)) => (
                    id.parse::<u8>().ok().filter(|id| *id > 0).ok_or_else(|| {
                        ConfigError(format!("challenge_key {}: id must be 1–255", index + 1))
                    })?,
                    key,
                ),
                None => (
                    u8::try_from(index + 1)
                        .map_err(|_| ConfigError("challenge_key: at most 255 keys".into()))?,
                    text,
                ),
            };
            if keys.iter().any(|k: &crate::ChallengeKey| k.id() == id) {
                return Err(ConfigError(format!("challenge_key {}: id {id} is used twice", index + 1)));
            }
            keys.push(crate::ChallengeKey::from_base64url(id, key).map_err(|_| {
                ConfigError(format!("challenge_key {}: not 32 bytes of base64url", index + 1))
            })?);
        }
        crate::ChallengeKeys::new(keys, self.challenge_lifetime_s)
            .map(Some)
            .map_err(|e| ConfigError(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn variables_override_the_file_and_lists_split() {
        let dir = std::env::temp_dir().join(format!("meridian-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("meridian.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nverify_secret = [\"from-file-0123456789\"]\n[policy]\nrestricted_regions = [\"CN\"]\n").unwrap();
        let config = ServeConfig::load(
            Some(&file),
            env(&[
                ("MERIDIAN_LISTEN", "127.0.0.1:9001"),
                ("MERIDIAN_CORS_ORIGINS", "https://a.example, https://b.example"),
                ("MERIDIAN_CHALLENGE_RATE_LIMIT", "5"),
                ("MERIDIAN_HOME", "ignored"),
                ("MERIDIAN_STORE_FAILURE", "open"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(config.challenge_rate_limit, 5);
        assert_eq!(config.verify_secret[0].expose(), "from-file-0123456789");
        let policy = config.policy().unwrap();
        assert_eq!(policy.restricted_regions, [crate::geo::Country::parse("CN").unwrap()]);
        assert_eq!(policy.store_failure, StoreFailure::Open);
        assert!(!format!("{config:?}").contains("from-file"), "secrets must not print");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let error = ServeConfig::load(None, env(&[("MERIDIAN_REPLAY_CAPACITY", "lots")])).unwrap_err();
        assert!(error.0.contains("MERIDIAN_REPLAY_CAPACITY"), "{error}");
        let error = ServeConfig::load(None, env(&[("MERIDIAN_LISTEN", "nowhere")])).unwrap_err();
        assert!(error.0.contains("listen"), "{error}");
        let error = ServeConfig::load(None, env(&[("MERIDIAN_STORE_FAILURE", "sideways")])).unwrap_err();
        assert!(error.0.contains("store_failure"), "{error}");
        let config = ServeConfig::load(None, env(&[("MERIDIAN_CHALLENGE_KEY", "7:AAAA")])).unwrap();
        assert!(config.challenge_keys().unwrap_err().0.contains("challenge_key 1"));
    }

    #[test]
    fn errors_never_show_secret_values() {
        let dir = std::env::temp_dir().join(format!("meridian-config-s-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("meridian.toml");
        // A broken line holding a secret: the error names the line, not its text.
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\nverify_secret = \"hunter2-very-secret-value\n")
            .unwrap();
        let error = ServeConfig::load(Some(&file), env(&[])).unwrap_err().0;
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("line 2"), "{error}");
        // A secret of the wrong type.
        std::fs::write(&file, "verify_secret = 918273645546372819\n").unwrap();
        let error = ServeConfig::load(Some(&file), env(&[])).unwrap_err().0;
        assert!(!error.contains("918273645546372819"), "{error}");
        assert!(error.contains("verify_secret"), "{error}");
        let error = ServeConfig::load(
            None,
            env(&[("MERIDIAN_REDIS_URL", "redis://:pw-1234@h/0"), ("MERIDIAN_LISTEN", "x")]),
        )
        .unwrap_err()
        .0;
        assert!(!error.contains("pw-1234"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("meridian-config-u-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("meridian.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let error = ServeConfig::load(Some(&file), env(&[])).unwrap_err();
        assert!(error.0.contains("lisen"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A value for every field, as a variable's text and as TOML: a new
    /// field without one fails [`every_field_is_reachable_from_file_and_variable`].
    const SAMPLES: &[(&str, &str, &str)] = &[
        ("listen", "127.0.0.1:9100", "\"127.0.0.1:9100\""),
        ("internal_listen", "127.0.0.1:9101", "\"127.0.0.1:9101\""),
        ("max_connections", "17", "17"),
        ("max_connections_per_client", "5", "5"),
        ("header_read_timeout_ms", "1234", "1234"),
        ("challenge_budget", "99", "99"),
        ("jwks", "/etc/meridian/jwks.json", "\"/etc/meridian/jwks.json\""),
        ("verify_secret", "a-secret-0123456789,b-secret-0123456789", "[\"a-secret-0123456789\"]"),
        ("verify_secret_file", "{dir}/lines", "\"{dir}/lines\""),
        ("challenge_key", "1:AAAA", "[\"1:AAAA\"]"),
        ("challenge_key_file", "{dir}/lines", "\"{dir}/lines\""),
        ("challenge_lifetime_s", "60", "60"),
        ("challenge_rate_limit", "5", "5"),
        ("cors_origins", "https://a.example,https://b.example", "[\"https://a.example\"]"),
        ("trusted_proxies", "10.0.0.0/8", "[\"10.0.0.0/8\"]"),
        ("client_ip_header", "forwarded", "\"forwarded\""),
        ("tcp_rtt_header", "x-client-rtt-us", "\"x-client-rtt-us\""),
        ("ipv6_rate_limit_prefix", "48", "48"),
        ("data_dir", "/var/lib/meridian", "\"/var/lib/meridian\""),
        ("country_db", "/data/c.mmdb", "\"/data/c.mmdb\""),
        ("asn_db", "/data/a.mmdb", "\"/data/a.mmdb\""),
        ("private_relay_list", "/data/pr.csv", "\"/data/pr.csv\""),
        ("tor_exit_list", "/data/tor.txt", "\"/data/tor.txt\""),
        ("policy_file", "/etc/meridian/policy.toml", "\"/etc/meridian/policy.toml\""),
        ("allowed_origins", "https://shop.example", "[\"https://shop.example\"]"),
        ("allowed_actions", "login,pay", "[\"login\"]"),
        ("redis_url", "redis://127.0.0.1:6379", "\"redis://127.0.0.1:6379\""),
        ("redis_ca_file", "/etc/ca.pem", "\"/etc/ca.pem\""),
        ("store_failure", "open", "\"open\""),
        ("store_timeout_ms", "99", "99"),
        ("replay_capacity", "1000", "1000"),
        ("request_timeout_ms", "999", "999"),
        ("history", "false", "false"),
        ("history_db", "/var/lib/meridian/h.sqlite", "\"/var/lib/meridian/h.sqlite\""),
        ("history_journal", "/var/lib/meridian/journal", "\"/var/lib/meridian/journal\""),
        ("history_key", "AAAA", "\"AAAA\""),
        ("database_url", "postgres://m@127.0.0.1/m", "\"postgres://m@127.0.0.1/m\""),
        ("history_key_file", "{dir}/lines", "\"{dir}/lines\""),
        ("retention_days", "30", "30"),
        ("history_refused_per_second", "50", "50"),
        ("console_secret", "console-0123456789abcdef", "\"console-0123456789abcdef\""),
        ("console_secret_file", "{dir}/lines", "\"{dir}/lines\""),
        ("console_idle_minutes", "15", "15"),
        ("log_format", "json", "\"json\""),
        ("collector_dir", "/srv/pkg", "\"/srv/pkg\""),
        ("udp_listen", "127.0.0.1:3478", "\"127.0.0.1:3478\""),
        ("udp_public", "verifier.example:3478", "\"verifier.example:3478\""),
    ];

    #[test]
    fn every_field_is_reachable_from_file_and_variable() {
        let dir = std::env::temp_dir().join(format!("meridian-config-f-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("meridian.toml");
        std::fs::write(dir.join("lines"), "line-0123456789abcdef\n").unwrap();
        let default = format!("{:?}", ServeConfig::default());
        for field in layers::field_names::<ServeConfig>() {
            if *field == "policy" {
                // A table: the file's `[policy]`, or `policy_file` from a variable.
                std::fs::write(&file, "[policy]\nrestricted_regions = [\"CN\"]\n").unwrap();
                let config = ServeConfig::load(Some(&file), env(&[])).unwrap();
                assert!(config.policy.is_some());
                continue;
            }
            let (_, text, toml) = *SAMPLES
                .iter()
                .find(|(name, _, _)| name == field)
                .unwrap_or_else(|| panic!("add a sample for the new setting `{field}` to SAMPLES"));
            let here = dir.display().to_string();
            let (text, toml) = (text.replace("{dir}", &here), toml.replace("{dir}", &here));
            let variable = format!("MERIDIAN_{}", field.to_ascii_uppercase());
            let from_env = ServeConfig::load(None, env(&[(&variable, &text)]))
                .unwrap_or_else(|e| panic!("{variable}={text}: {e}"));
            assert_ne!(format!("{from_env:?}"), default, "{variable} changes the configuration");
            std::fs::write(&file, format!("{field} = {toml}\n")).unwrap();
            let from_file =
                ServeConfig::load(Some(&file), env(&[])).unwrap_or_else(|e| panic!("{field}: {e}"));
            assert_ne!(format!("{from_file:?}"), default, "{field} in the file changes the configuration");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
