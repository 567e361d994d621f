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

/// A string that must not be printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
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
    /// IPv6 clients are rate-limited per network of this prefix length.
    /// Default 64.
    pub ipv6_rate_limit_prefix: u8,
    /// Country database (.mmdb). Default `.meridian/data/country.mmdb` when present.
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
    /// `text` or `json`. Default `text`.
    pub log_format: LogFormat,
    /// Folder of the built collector, served under `/pkg/` (CORS for
    /// `cors_origins`). Default `.meridian/pkg` when it holds `meridian.js`.
    pub collector_dir: Option<PathBuf>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8686)),
            internal_listen: None,
            max_connections: 4096,
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
            ipv6_rate_limit_prefix: 64,
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
            log_format: LogFormat::Text,
            collector_dir: None,
        }
    }
}

/// Keys whose values are lists (comma-separated in variables).
const LIST_KEYS: &[&str] = &[
    "verify_secret",
    "challenge_key",
    "cors_origins",
    "trusted_proxies",
    "allowed_origins",
    "allowed_actions",
];
/// Keys whose values are numbers.
const NUMBER_KEYS: &[&str] = &[
    "challenge_lifetime_s",
    "challenge_rate_limit",
    "store_timeout_ms",
    "replay_capacity",
    "request_timeout_ms",
    "ipv6_rate_limit_prefix",
    "max_connections",
    "header_read_timeout_ms",
    "challenge_budget",
];
/// Every scalar key a variable may set (`policy` is a table: use `policy_file`).
const STRING_KEYS: &[&str] = &[
    "listen",
    "internal_listen",
    "jwks",
    "verify_secret_file",
    "challenge_key_file",
    "country_db",
    "asn_db",
    "private_relay_list",
    "tor_exit_list",
    "policy_file",
    "redis_url",
    "redis_ca_file",
    "store_failure",
    "client_ip_header",
    "log_format",
    "collector_dir",
];

/// Keys whose values are secrets.
const SECRET_KEYS: &[&str] = &["verify_secret", "challenge_key", "redis_url"];

/// The values under [`SECRET_KEYS`], as text, longest first.
fn secret_values(table: &toml::Table) -> Vec<String> {
    fn collect(value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
            toml::Value::Table(table) => table.values().for_each(|item| collect(item, out)),
            toml::Value::String(text) => out.push(text.clone()),
            other => out.push(other.to_string()),
        }
    }
    let mut values = Vec::new();
    for key in SECRET_KEYS {
        if let Some(value) = table.get(*key) {
            collect(value, &mut values);
        }
    }
    values.retain(|v| v.len() >= 4);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
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
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                // The message and position only: toml's own text quotes the
                // offending line, which may hold a secret.
                text.parse::<toml::Table>().map_err(|e| {
                    let line = e.span().map_or(0, |span| {
                        let before = text.as_bytes().get(..span.start).unwrap_or(text.as_bytes());
                        before.iter().filter(|b| **b == b'\n').count() + 1
                    });
                    ConfigError(format!("{}, line {line}: {}", path.display(), e.message().trim()))
                })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix("MERIDIAN_").map(str::to_ascii_lowercase) else { continue };
            let value = if LIST_KEYS.contains(&key.as_str()) {
                toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| v.to_owned().into())
                        .collect(),
                )
            } else if NUMBER_KEYS.contains(&key.as_str()) {
                let number = value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| ConfigError(format!("{name}: {value:?} is not a whole number")))?;
                toml::Value::Integer(number)
            } else if STRING_KEYS.contains(&key.as_str()) {
                toml::Value::String(value)
            } else {
                // Other MERIDIAN_* variables belong to other tools.
                continue;
            };
            table.insert(key, value);
        }
        let source = file.map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
        let secrets = secret_values(&table);
        let mut config: ServeConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(redact(&format!("{source}: {e}"), &secrets)))?;
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
            .ok_or_else(|| ConfigError("challenge_lifetime_s must be at least 1".into()))
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
        assert_eq!(policy.restricted_regions, ["CN"]);
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
}
