//! A bounded in-memory replay store for a single verifier instance.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use super::{ReplayStore, ReplayStoreError, Spend, SpendFuture};

const SHARDS: usize = 16;

/// Nonces in sharded hash maps with expiry. Expired entries are swept when a
/// shard fills or once per `sweep_interval_ms`, so memory is bounded by
/// `capacity` entries; when full of live nonces it refuses new ones (the
/// verifier then fails closed) instead of forgetting spent ones.
///
/// Instances do not share it: behind a load balancer, use Redis.
#[derive(Debug)]
pub struct MemoryReplayStore {
    shards: Vec<Mutex<Shard>>,
    capacity_per_shard: usize,
    sweep_interval_ms: i64,
}

#[derive(Debug, Default)]
struct Shard {
    expiry_by_nonce: HashMap<[u8; 16], i64>,
    last_sweep_ms: i64,
}

impl MemoryReplayStore {
    /// A store for at most `capacity` live nonces (rounded up to a multiple
    /// of the shard count).
    pub fn new(capacity: usize) -> Self {
        let capacity_per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            capacity_per_shard,
            sweep_interval_ms: 10_000,
        }
    }

    /// Live and not yet swept nonces.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |s| s.expiry_by_nonce.len())).sum()
    }

    /// Whether the store holds no nonce.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn spend_now(&self, nonce: [u8; 16], expires_at_ms: i64, now_ms: i64) -> Result<Spend, ReplayStoreError> {
        // Nonces are random, so their first byte spreads them evenly.
        let shard = &self.shards[usize::from(nonce[0]) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = now_ms.saturating_sub(shard.last_sweep_ms) >= self.sweep_interval_ms;
        if due || shard.expiry_by_nonce.len() >= self.capacity_per_shard {
            shard.expiry_by_nonce.retain(|_, expiry| *expiry > now_ms);
            shard.last_sweep_ms = now_ms;
        }
        let full = shard.expiry_by_nonce.len() >= self.capacity_per_shard;
        // One hash and probe for both the replay check and the insert.
        match shard.expiry_by_nonce.entry(nonce) {
            Entry::Occupied(entry) if *entry.get() > now_ms => Ok(Spend::Replayed),
            // An expired entry is reused in place: the shard does not grow.
            Entry::Occupied(mut entry) => {
                entry.insert(expires_at_ms);
                Ok(Spend::Fresh)
            }
            Entry::Vacant(_) if full => {
                Err(ReplayStoreError::Full { capacity: self.capacity_per_shard * SHARDS })
            }
            Entry::Vacant(entry) => {
                entry.insert(expires_at_ms);
                Ok(Spend::Fresh)
            }
        }
    }
}

impl ReplayStore for MemoryReplayStore {
    fn spend(&self, nonce: [u8; 16], expires_at_ms: i64, now_ms: i64) -> SpendFuture<'_> {
        let result = self.spend_now(nonce, expires_at_ms, now_ms);
        Box::pin(std::future::ready(result))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    fn nonce(i: u32) -> [u8; 16] {
        let mut n = [0; 16];
        n[..4].copy_from_slice(&i.to_le_bytes());
        n
    }

    #[test]
    fn second_spend_is_a_replay_until_expiry() {
        let store = MemoryReplayStore::new(100);
        assert_eq!(store.spend_now(nonce(1), 1_000, 0), Ok(Spend::Fresh));
        assert_eq!(store.spend_now(nonce(1), 1_000, 999), Ok(Spend::Replayed));
        // Past its challenge's expiry the token is rejected as expired
        // anyway, so forgetting the nonce is safe.
        assert_eq!(store.spend_now(nonce(1), 2_000, 1_000), Ok(Spend::Fresh));
    }

    #[test]
    fn stays_bounded_under_a_flood() {
        let store = MemoryReplayStore::new(160);
        let mut full = 0;
        for i in 0..10_000 {
            match store.spend_now(nonce(i), 1_000_000, 0) {
                Ok(Spend::Fresh) => {}
                Err(ReplayStoreError::Full { .. }) => full += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(store.len() <= 160, "len {}", store.len());
        assert!(full > 0);
        // Once the flood's challenges expire, room comes back.
        assert_eq!(store.spend_now(nonce(20_000), 3_000_000, 2_000_000), Ok(Spend::Fresh));
        assert!(store.len() <= 160);
    }
}
