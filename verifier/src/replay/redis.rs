//! A Redis replay store, shared by every verifier instance that points at
//! the same Redis.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{ReplayStore, ReplayStoreError, Spend, SpendFuture};

/// Spends nonces with one atomic `SET key 1 NX PX ttl`: of concurrent spends
/// of a nonce across all instances, exactly one gets `OK`. Keys expire with
/// their challenge, so Redis holds only live nonces.
///
/// The connection is made lazily and re-made after failures; every command
/// is bounded by `timeout`, so a dead Redis costs at most that long.
#[derive(Clone)]
pub struct RedisReplayStore {
    connection: ConnectionManager,
    timeout: Duration,
    prefix: String,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("RedisReplayStore").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// How long a spent nonce outlives its challenge in Redis: more than any
/// clock difference between instances that still lets them agree on the
/// challenge's expiry (their own leeway is seconds).
pub(super) const NONCE_TTL_LEEWAY_MS: i64 = 60_000;

impl RedisReplayStore {
    /// A store for `url` (`redis://host:port/db`, `rediss://…`). Does not
    /// connect yet: a Redis that is down at start-up is reported by
    /// [`ReplayStore::check`] and by failing spends, not by a crash.
    ///
    /// # Errors
    /// When the URL is not a Redis URL.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ReplayStoreError> {
        Self::with_tls_root(url, timeout, None)
    }

    /// [`Self::new`], trusting `root_cert` (PEM) for a `rediss://` server
    /// instead of the system's certificate authorities — for a Redis whose
    /// certificate a private CA issued.
    ///
    /// # Errors
    /// When the URL is not a Redis URL, or the certificate is not PEM.
    pub fn with_tls_root(
        url: &str,
        timeout: Duration,
        root_cert: Option<Vec<u8>>,
    ) -> Result<Self, ReplayStoreError> {
        // rustls needs one process-wide crypto provider; ring is the one
        // built in. Installing it twice is harmless (the second is refused).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let invalid = |e: redis::RedisError| {
            ReplayStoreError::Unavailable(format!("invalid Redis URL: {}", e.kind_str()))
        };
        let client = match root_cert {
            None => redis::Client::open(url).map_err(invalid)?,
            Some(pem) => {
                if !url.starts_with("rediss://") {
                    return Err(ReplayStoreError::Unavailable(
                        "a Redis CA certificate is only used with a rediss:// URL".into(),
                    ));
                }
                let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
                redis::Client::build_with_tls(url, certificates).map_err(invalid)?
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| ReplayStoreError::Unavailable(e.to_string()))?;
        Ok(Self { connection, timeout, prefix: "meridian:nonce:".into() })
    }

    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, ReplayStoreError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, command.query_async::<T>(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(ReplayStoreError::Unavailable(format!("redis: {}", e.kind_str()))),
            Err(_) => {
                Err(ReplayStoreError::Unavailable(format!("redis: no answer within {:?}", self.timeout)))
            }
        }
    }
}

trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for redis::RedisError {
    /// The error's category and detail, without the URL.
    fn kind_str(&self) -> String {
        format!("{:?}: {}", self.kind(), self.detail().unwrap_or("no detail"))
    }
}

/// Adds an address to a challenge's set unless it already holds the most
/// it may, and (re)sets the set's expiry: one atomic step.
const NOTE_SIGHTING: &str = "if redis.call('SCARD', KEYS[1]) < tonumber(ARGV[2]) then \
     redis.call('SADD', KEYS[1], ARGV[1]) end \
     return redis.call('PEXPIRE', KEYS[1], ARGV[3])";

impl RedisReplayStore {
    fn sightings_key(nonce: &[u8; 16]) -> String {
        format!("meridian:udp:{}", meridian_protocol::base64url_encode(nonce))
    }
}

/// The UDP origin's sightings beside the spent nonces, so that the
/// instance that verifies a token sees the probe another one received.
impl crate::udp::SharedSightings for RedisReplayStore {
    fn note(&self, nonce: [u8; 16], ip: std::net::IpAddr, ttl_ms: i64) -> crate::udp::SharedFuture<'_, ()> {
        Box::pin(async move {
            let mut command = redis::cmd("EVAL");
            command
                .arg(NOTE_SIGHTING)
                .arg(1)
                .arg(Self::sightings_key(&nonce))
                .arg(ip.to_string())
                .arg(crate::udp::SHARED_PER_CHALLENGE)
                .arg(ttl_ms.max(1));
            self.run::<i64>(command).await.map(drop).map_err(|e| e.to_string())
        })
    }

    fn seen(&self, nonce: [u8; 16]) -> crate::udp::SharedFuture<'_, Vec<std::net::IpAddr>> {
        Box::pin(async move {
            let mut command = redis::cmd("SMEMBERS");
            command.arg(Self::sightings_key(&nonce));
            let members: Vec<String> = self.run(command).await.map_err(|e| e.to_string())?;
            // Only this code writes the set; anything else in it is ignored.
            Ok(members.iter().filter_map(|m| m.parse().ok()).collect())
        })
    }
}

impl ReplayStore for RedisReplayStore {
    fn spend(&self, nonce: [u8; 16], expires_at_ms: i64, now_ms: i64) -> SpendFuture<'_> {
        let key = format!("{}{}", self.prefix, meridian_protocol::base64url_encode(&nonce));
        // Kept past the challenge's expiry by a margin: another instance
        // whose clock runs behind this one's still accepts the challenge for
        // that long, and must still find the nonce spent.
        let ttl_ms = expires_at_ms.saturating_sub(now_ms).saturating_add(NONCE_TTL_LEEWAY_MS).max(1);
        Box::pin(async move {
            let mut command = redis::cmd("SET");
            command.arg(key).arg(1).arg("NX").arg("PX").arg(ttl_ms);
            let reply: Option<String> = self.run(command).await?;
            Ok(if reply.is_some() { Spend::Fresh } else { Spend::Replayed })
        })
    }

    fn check(&self) -> super::CheckFuture<'_> {
        Box::pin(async move {
            let reply: String = self.run(redis::cmd("PING")).await?;
            if reply == "PONG" {
                Ok(())
            } else {
                Err(ReplayStoreError::Unavailable(format!("redis answered PING with {reply:?}")))
            }
        })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
