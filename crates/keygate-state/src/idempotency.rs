// Idempotency keys: first request wins, duplicates wait (in flight) or replay the stored response.
// It must never hand one request's stored response to a request with a different body.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{StateError, StateFuture};

const SHARDS: usize = 32;
const FORMAT_V1: u8 = 1;

/// A response kept for replay to later duplicates. The caller caps the body size before storing.
///
/// Stored compactly as length-prefixed binary (all integers big-endian):
///
/// ```text
/// u8  version = 1
/// u16 status
/// u32 header count, then per header: u32 name length, name bytes, u32 value length, value bytes
/// u32 body length, body bytes
/// ```
///
/// Binary rather than JSON so header values and bodies need no base64 (about a third smaller)
/// and decoding cannot be confused by content. Decoding rejects truncated or trailing bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl StoredResponse {
    /// The stored form described on the type.
    pub fn encode(&self) -> Vec<u8> {
        let size = 1
            + 2
            + 4
            + self.headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum::<usize>()
            + 4
            + self.body.len();
        let mut out = Vec::with_capacity(size);
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.status.to_be_bytes());
        put_len(&mut out, self.headers.len());
        for (name, value) in &self.headers {
            put_len(&mut out, name.len());
            out.extend_from_slice(name.as_bytes());
            put_len(&mut out, value.len());
            out.extend_from_slice(value);
        }
        put_len(&mut out, self.body.len());
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses [`StoredResponse::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.take(1)?[0];
        if version != FORMAT_V1 {
            return Err(corrupt(format!("unknown stored response version {version}")));
        }
        let status = u16::from_be_bytes([r.take(1)?[0], r.take(1)?[0]]);
        let count = r.len()?;
        // Each header needs at least 8 bytes; refuse counts the input cannot hold before allocating.
        if count > bytes.len() / 8 {
            return Err(corrupt("header count exceeds data"));
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let n = r.len()?;
            let name =
                std::str::from_utf8(r.take(n)?).map_err(|_| corrupt("header name is not UTF-8"))?.to_owned();
            let n = r.len()?;
            headers.push((name, r.take(n)?.to_vec()));
        }
        let n = r.len()?;
        let body = r.take(n)?.to_vec();
        if r.at != bytes.len() {
            return Err(corrupt("trailing bytes after stored response"));
        }
        Ok(Self { status, headers, body })
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Responses are capped far below 4 GiB by the caller; saturating keeps this total.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let end =
            self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or_else(|| corrupt("truncated"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn len(&mut self) -> Result<usize, StateError> {
        let b = self.take(4)?;
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        usize::try_from(n).map_err(|_| corrupt("length overflow"))
    }
}

fn corrupt(msg: impl Into<String>) -> StateError {
    StateError::Corrupt(msg.into())
}

/// What a request carrying an idempotency key should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdemBegin {
    /// First with this key: run it, then call `complete` (or `abandon` if it failed).
    Proceed,
    /// Another request with this key and body is running (409 `idempotency_in_flight`).
    InFlight,
    /// Already done: return this response.
    Completed(StoredResponse),
    /// The key was used with a different request fingerprint (422 `idempotency_key_reused`).
    KeyReused,
}

/// Per-scope (per app) idempotency keys.
///
/// The in-flight marker expires after `in_flight_ttl` so a crashed replica cannot block a key
/// forever. If a request outlives its marker, a duplicate may start; when both complete, the
/// first completion is kept. `abandon` removes any in-flight marker for the key, whichever
/// request placed it.
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    /// Atomically: absent → mark in flight and `Proceed`; present with another fingerprint →
    /// `KeyReused`; in flight → `InFlight`; completed → `Completed`.
    fn begin<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: [u8; 32],
        in_flight_ttl: Duration,
    ) -> StateFuture<'a, IdemBegin>;

    /// Stores the response for `ttl` (e.g. 24 h). Keeps an existing completed response, and
    /// leaves the key alone if it now belongs to another fingerprint; stores even if the
    /// in-flight marker expired, since the response is valid for this fingerprint.
    fn complete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: [u8; 32],
        response: &'a StoredResponse,
        ttl: Duration,
    ) -> StateFuture<'a, ()>;

    /// Removes the in-flight marker (the upstream failed) so a retry can proceed. A completed
    /// response is never removed.
    fn abandon<'a>(&'a self, scope: &'a str, key: &'a str) -> StateFuture<'a, ()>;
}

#[derive(Debug)]
enum Entry {
    InFlight { fingerprint: [u8; 32], expires: Instant },
    Completed { fingerprint: [u8; 32], expires: Instant, response: StoredResponse },
}

impl Entry {
    fn expires(&self) -> Instant {
        match self {
            Entry::InFlight { expires, .. } | Entry::Completed { expires, .. } => *expires,
        }
    }
}

type Shard = HashMap<(Box<str>, Box<str>), Entry>;

/// In-process [`IdempotencyStore`] with a cap on entries; when full it refuses new keys
/// ([`StateError::Full`]) rather than forget a live one.
#[derive(Debug)]
pub struct MemoryIdempotencyStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    capacity: usize,
    live: AtomicUsize,
}

impl MemoryIdempotencyStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            capacity: capacity.max(1),
            live: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut m = lock(shard);
            let before = m.len();
            m.retain(|_, e| e.expires() > now);
            self.live.fetch_sub(before - m.len(), Ordering::Relaxed);
        }
    }

    pub fn begin_now(
        &self,
        scope: &str,
        key: &str,
        fingerprint: [u8; 32],
        in_flight_ttl: Duration,
    ) -> Result<IdemBegin, StateError> {
        let now = Instant::now();
        if self.live.load(Ordering::Relaxed) >= self.capacity {
            self.sweep();
        }
        let mut m = self.shard(scope, key);
        let k: (Box<str>, Box<str>) = (scope.into(), key.into());
        match m.get(&k) {
            Some(e) if e.expires() > now => {
                return Ok(match e {
                    Entry::InFlight { fingerprint: f, .. } if *f == fingerprint => IdemBegin::InFlight,
                    Entry::Completed { fingerprint: f, response, .. } if *f == fingerprint => {
                        IdemBegin::Completed(response.clone())
                    }
                    _ => IdemBegin::KeyReused,
                });
            }
            Some(_) => {}
            None => {
                if self.live.load(Ordering::Relaxed) >= self.capacity {
                    return Err(StateError::Full { capacity: self.capacity });
                }
                self.live.fetch_add(1, Ordering::Relaxed);
            }
        }
        m.insert(k, Entry::InFlight { fingerprint, expires: now + in_flight_ttl });
        Ok(IdemBegin::Proceed)
    }

    pub fn complete_now(
        &self,
        scope: &str,
        key: &str,
        fingerprint: [u8; 32],
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let now = Instant::now();
        let mut m = self.shard(scope, key);
        let k: (Box<str>, Box<str>) = (scope.into(), key.into());
        match m.get(&k) {
            Some(Entry::Completed { expires, .. }) if *expires > now => return Ok(()),
            Some(Entry::InFlight { fingerprint: f, expires }) if *expires > now && *f != fingerprint => {
                return Ok(())
            }
            Some(_) => {}
            None => {
                if self.live.load(Ordering::Relaxed) >= self.capacity {
                    return Err(StateError::Full { capacity: self.capacity });
                }
                self.live.fetch_add(1, Ordering::Relaxed);
            }
        }
        m.insert(k, Entry::Completed { fingerprint, expires: now + ttl, response: response.clone() });
        Ok(())
    }

    pub fn abandon_now(&self, scope: &str, key: &str) {
        let mut m = self.shard(scope, key);
        let k: (Box<str>, Box<str>) = (scope.into(), key.into());
        if matches!(m.get(&k), Some(Entry::InFlight { .. })) {
            m.remove(&k);
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn shard(&self, scope: &str, key: &str) -> MutexGuard<'_, Shard> {
        lock(&self.shards[(self.hasher.hash_one((scope, key)) as usize) % SHARDS])
    }
}

// A poisoned shard only means another thread panicked while holding it; the map stays consistent.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl IdempotencyStore for MemoryIdempotencyStore {
    fn begin<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: [u8; 32],
        in_flight_ttl: Duration,
    ) -> StateFuture<'a, IdemBegin> {
        Box::pin(std::future::ready(self.begin_now(scope, key, fingerprint, in_flight_ttl)))
    }

    fn complete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: [u8; 32],
        response: &'a StoredResponse,
        ttl: Duration,
    ) -> StateFuture<'a, ()> {
        Box::pin(std::future::ready(self.complete_now(scope, key, fingerprint, response, ttl)))
    }

    fn abandon<'a>(&'a self, scope: &'a str, key: &'a str) -> StateFuture<'a, ()> {
        self.abandon_now(scope, key);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp() -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("x-bin".into(), vec![0, 255, 10]),
            ],
            body: b"{\"id\":7}".to_vec(),
        }
    }

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        let r = resp();
        let bytes = r.encode();
        assert_eq!(StoredResponse::decode(&bytes).unwrap(), r);
        assert_eq!(
            StoredResponse::decode(&StoredResponse::default().encode()).unwrap(),
            StoredResponse::default()
        );
        for cut in 0..bytes.len() {
            assert!(StoredResponse::decode(&bytes[..cut]).is_err(), "prefix {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(StoredResponse::decode(&extra).is_err());
        let mut v2 = bytes;
        v2[0] = 2;
        assert!(StoredResponse::decode(&v2).is_err());
        // A huge header count must not allocate.
        assert!(StoredResponse::decode(&[1, 0, 200, 255, 255, 255, 255]).is_err());
    }

    #[test]
    fn lifecycle() {
        let s = MemoryIdempotencyStore::new(10);
        let fp = [7u8; 32];
        let ttl = Duration::from_secs(60);
        assert_eq!(s.begin_now("app", "k", fp, ttl).unwrap(), IdemBegin::Proceed);
        assert_eq!(s.begin_now("app", "k", fp, ttl).unwrap(), IdemBegin::InFlight);
        assert_eq!(s.begin_now("app", "k", [8; 32], ttl).unwrap(), IdemBegin::KeyReused);
        assert_eq!(s.begin_now("other", "k", [8; 32], ttl).unwrap(), IdemBegin::Proceed);
        s.abandon_now("app", "k");
        assert_eq!(s.begin_now("app", "k", fp, ttl).unwrap(), IdemBegin::Proceed);
        s.complete_now("app", "k", fp, &resp(), ttl).unwrap();
        assert_eq!(s.begin_now("app", "k", fp, ttl).unwrap(), IdemBegin::Completed(resp()));
        assert_eq!(s.begin_now("app", "k", [8; 32], ttl).unwrap(), IdemBegin::KeyReused);
        // Completed responses survive abandon and a second completion.
        s.abandon_now("app", "k");
        s.complete_now("app", "k", fp, &StoredResponse::default(), ttl).unwrap();
        assert_eq!(s.begin_now("app", "k", fp, ttl).unwrap(), IdemBegin::Completed(resp()));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn in_flight_marker_expires_and_capacity_is_enforced() {
        let s = MemoryIdempotencyStore::new(1);
        let fp = [1u8; 32];
        assert_eq!(s.begin_now("a", "k", fp, Duration::from_millis(20)).unwrap(), IdemBegin::Proceed);
        assert!(matches!(s.begin_now("a", "k2", fp, Duration::from_secs(1)), Err(StateError::Full { .. })));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(s.begin_now("a", "k", fp, Duration::from_secs(1)).unwrap(), IdemBegin::Proceed);
        assert_eq!(s.len(), 1);
    }
}
