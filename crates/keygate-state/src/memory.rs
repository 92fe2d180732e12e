// In-process nonce store for the single-replica default: sharded maps with expiry and a hard
// entry cap. It must not evict a live entry to make room; when full it refuses (fail closed).

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{NonceClaim, NonceStore, StateError};

const SHARDS: usize = 64;

/// Bounded in-memory [`NonceStore`]. Entries live until their TTL passes; expired entries are
/// swept lazily when a shard fills up and by [`MemoryNonceStore::sweep`] (call it periodically).
#[derive(Debug)]
pub struct MemoryNonceStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    capacity: usize,
    live: AtomicUsize,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Shard {
    // Key: "scope\0nonce". Value: expiry in ms since `epoch`.
    entries: HashMap<Box<str>, u64>,
}

impl MemoryNonceStore {
    /// A store that remembers at most `capacity` live nonces across all keys.
    pub fn new(capacity: usize) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        Self {
            shards,
            hasher: std::collections::hash_map::RandomState::new(),
            capacity: capacity.max(1),
            live: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    /// Number of entries currently held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired entry. Cheap enough to run every second.
    pub fn sweep(&self) {
        let now = self.now_ms();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            self.sweep_shard(&mut shard, now);
        }
    }

    /// Claims synchronously; the trait method wraps this.
    pub fn claim_now(&self, scope: &str, nonce: &str, ttl: Duration) -> Result<NonceClaim, StateError> {
        let now = self.now_ms();
        let expires = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut key = String::with_capacity(scope.len() + 1 + nonce.len());
        key.push_str(scope);
        key.push('\0');
        key.push_str(nonce);

        let idx = (self.hasher.hash_one(&key) as usize) % SHARDS;
        let mut shard = lock(&self.shards[idx]);

        if let Some(exp) = shard.entries.get_mut(key.as_str()) {
            if *exp > now {
                return Ok(NonceClaim::Replayed);
            }
            // Expired but not yet swept: the slot is reused, the live count is unchanged.
            *exp = expires;
            return Ok(NonceClaim::Fresh);
        }
        if self.live.load(Ordering::Relaxed) >= self.capacity {
            self.sweep_shard(&mut shard, now);
            drop(shard);
            if self.live.load(Ordering::Relaxed) >= self.capacity {
                self.sweep();
            }
            if self.live.load(Ordering::Relaxed) >= self.capacity {
                return Err(StateError::Full { capacity: self.capacity });
            }
            shard = lock(&self.shards[idx]);
            // Another thread may have claimed the same nonce while the lock was released.
            if let Some(exp) = shard.entries.get(key.as_str()) {
                if *exp > now {
                    return Ok(NonceClaim::Replayed);
                }
            }
        }
        if shard.entries.insert(key.into_boxed_str(), expires).is_none() {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        Ok(NonceClaim::Fresh)
    }

    fn sweep_shard(&self, shard: &mut Shard, now: u64) {
        let before = shard.entries.len();
        shard.entries.retain(|_, exp| *exp > now);
        let removed = before - shard.entries.len();
        if removed > 0 {
            self.live.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

// A poisoned shard only means another thread panicked mid-insert; the map itself is still
// consistent (insert/retain do not leave it half-updated), so keep serving.
fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NonceStore for MemoryNonceStore {
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        nonce: &'a str,
        ttl: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<NonceClaim, StateError>> + Send + 'a>> {
        let out = self.claim_now(scope, nonce, ttl);
        Box::pin(std::future::ready(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_claim_is_fresh_second_is_replay() {
        let s = MemoryNonceStore::new(10);
        let ttl = Duration::from_secs(60);
        assert_eq!(s.claim_now("AK1", "n1", ttl).unwrap(), NonceClaim::Fresh);
        assert_eq!(s.claim_now("AK1", "n1", ttl).unwrap(), NonceClaim::Replayed);
        // Same nonce under another key is independent.
        assert_eq!(s.claim_now("AK2", "n1", ttl).unwrap(), NonceClaim::Fresh);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn scope_and_nonce_cannot_be_confused_by_concatenation() {
        let s = MemoryNonceStore::new(10);
        let ttl = Duration::from_secs(60);
        assert_eq!(s.claim_now("AK", "1n", ttl).unwrap(), NonceClaim::Fresh);
        assert_eq!(s.claim_now("AK1", "n", ttl).unwrap(), NonceClaim::Fresh);
    }

    #[test]
    fn expired_entries_free_their_slot() {
        let s = MemoryNonceStore::new(2);
        let short = Duration::from_millis(30);
        assert_eq!(s.claim_now("k", "a", short).unwrap(), NonceClaim::Fresh);
        assert_eq!(s.claim_now("k", "b", short).unwrap(), NonceClaim::Fresh);
        std::thread::sleep(Duration::from_millis(60));
        // Full, but both entries expired: the claim sweeps and succeeds.
        assert_eq!(s.claim_now("k", "c", short).unwrap(), NonceClaim::Fresh);
        // An expired nonce may be claimed again (the timestamp window rejects it upstream).
        assert_eq!(s.claim_now("k", "a", short).unwrap(), NonceClaim::Fresh);
    }

    #[test]
    fn full_store_refuses_instead_of_evicting_live_entries() {
        let s = MemoryNonceStore::new(3);
        let ttl = Duration::from_secs(60);
        for n in ["a", "b", "c"] {
            assert_eq!(s.claim_now("k", n, ttl).unwrap(), NonceClaim::Fresh);
        }
        assert!(matches!(s.claim_now("k", "d", ttl), Err(StateError::Full { capacity: 3 })));
        // Live entries are still remembered: replays stay rejected.
        for n in ["a", "b", "c"] {
            assert_eq!(s.claim_now("k", n, ttl).unwrap(), NonceClaim::Replayed);
        }
    }

    #[test]
    fn sweep_drops_only_expired() {
        let s = MemoryNonceStore::new(100);
        s.claim_now("k", "short", Duration::from_millis(10)).unwrap();
        s.claim_now("k", "long", Duration::from_secs(60)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        s.sweep();
        assert_eq!(s.len(), 1);
        assert_eq!(s.claim_now("k", "long", Duration::from_secs(60)).unwrap(), NonceClaim::Replayed);
    }

    #[test]
    fn concurrent_claims_of_one_nonce_admit_exactly_one() {
        let s = std::sync::Arc::new(MemoryNonceStore::new(1000));
        let fresh = std::sync::Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                let fresh = fresh.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        if s.claim_now("k", "same", Duration::from_secs(60)).unwrap() == NonceClaim::Fresh {
                            fresh.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(fresh.load(Ordering::Relaxed), 1);
    }
}
