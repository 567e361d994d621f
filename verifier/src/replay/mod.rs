//! Replay stores: remember spent challenge nonces until their challenge
//! expires, so each token is accepted once.

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::future::Future;
use std::pin::Pin;

pub use memory::MemoryReplayStore;
#[cfg(feature = "redis")]
pub use redis::RedisReplayStore;

/// Whether a nonce was fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// First use: it is now recorded.
    Fresh,
    /// Already recorded: a replay.
    Replayed,
}

/// The store could not answer; single use cannot be guaranteed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayStoreError {
    /// The store holds as many live nonces as it may; nothing expired yet.
    #[error("replay store is full ({capacity} live nonces)")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
    /// The backing service failed or timed out.
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
}

/// The future a [`ReplayStore`] returns.
pub type SpendFuture<'a> = Pin<Box<dyn Future<Output = Result<Spend, ReplayStoreError>> + Send + 'a>>;

/// The future [`ReplayStore::check`] returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ReplayStoreError>> + Send + 'a>>;

/// Records nonces atomically: of concurrent spends of one nonce, exactly one
/// sees [`Spend::Fresh`].
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `nonce` as spent until `expires_at_ms` (Unix ms), at `now_ms`.
    fn spend(&self, nonce: [u8; 16], expires_at_ms: i64, now_ms: i64) -> SpendFuture<'_>;

    /// Whether the store can answer right now (for `/readyz`).
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// A short name for logs and health output (`memory`, `redis`).
    fn kind(&self) -> &'static str;
}
