// The Redis backend: one reconnecting multiplexed connection, key layout, per-call deadline, and
// every state trait on top. It must not block or retry past the deadline, nor touch keys outside its prefix.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use crate::gate::{Admission, AdmitOutcome, BucketCheck, NonceCheck, RequestGate};
use crate::idempotency::{IdemBegin, IdempotencyStore, StoredResponse};
use crate::keys::Keys;
use crate::rate::{BucketLimit, Gcra, RateDecision, RateLimiter};
use crate::{scripts, NonceClaim, NonceStore, StateError, StateFuture};

/// After this many deadlines missed in a row the connection is replaced: a connection whose peer
/// vanished without a reset (host down, network partition) never errors on its own, and the
/// connection manager only reconnects on errors.
const TIMEOUTS_BEFORE_REBUILD: u32 = 3;
const MIN_REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// Handle to the shared state in one Redis. Cheap to clone (all clones share the connection).
///
/// - One multiplexed connection (`redis::aio::ConnectionManager`): concurrent calls pipeline
///   over it; after a connection error it reconnects in the background with capped exponential
///   backoff (50 ms … 500 ms), so recovery after Redis returns takes well under a second of
///   traffic. Stuck connections (deadline missed three times in a row) are replaced too.
/// - Every call has a deadline (default 50 ms); on expiry the call returns
///   [`StateError::Unavailable`] and nothing waits longer. A call that timed out may still have
///   been applied by Redis (e.g. a nonce claimed); every failure policy treats it as failed,
///   which errs on the side of refusing.
/// - Lua scripts are sent as `EVALSHA`; on `NOSCRIPT` (Redis restarted, failed over, or
///   `SCRIPT FLUSH`) the `redis` crate sends `SCRIPT LOAD` and retries once, so the steady
///   state is one command per call.
/// - Time for rate limits comes from Redis `TIME` inside the script, never from a replica.
///
/// Keys (all under the prefix): `nonce:{scope}:nonce`, `rl:{bucket}`, `idem:{scope}:key`; caller
/// text is escaped and long parts hashed (see the crate docs for Cluster/Sentinel notes).
#[derive(Debug, Clone)]
pub struct RedisState {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    manager: RwLock<ConnectionManager>,
    keys: Keys,
    timeout: Duration,
    missed: AtomicU32,
    last_rebuild: Mutex<Instant>,
    admit: Script,
    idem_begin: Script,
    idem_complete: Script,
    idem_abandon: Script,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's connection info may hold a password; show only what identifies the handle.
        f.debug_struct("RedisState")
            .field("prefix", &self.keys.prefix())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisState {
    /// Default per-call deadline.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

    /// Connects to `url` (`redis://[user:pass@]host:port/db`) and checks it answers `PING`
    /// within `max(timeout, 1 s)`. All keys are written under `prefix` (e.g. `"kg:"`).
    /// `timeout` is the per-call deadline ([`RedisState::DEFAULT_TIMEOUT`] = 50 ms).
    pub async fn connect(
        url: &str,
        prefix: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, StateError> {
        let state = Self::connect_lazy(url, prefix, timeout)?;
        let startup = timeout.max(Duration::from_secs(1));
        let mut conn = state.conn();
        match tokio::time::timeout(startup, redis::cmd("PING").query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => Ok(state),
            Ok(Err(e)) => Err(StateError::Unavailable(format!("redis: {e}"))),
            Err(_) => Err(StateError::Unavailable(format!("redis: no answer to PING within {startup:?}"))),
        }
    }

    /// Like [`RedisState::connect`] without waiting for Redis: the first call connects. For a
    /// replica that should start (degraded) while Redis is down.
    pub fn connect_lazy(url: &str, prefix: impl Into<String>, timeout: Duration) -> Result<Self, StateError> {
        let client = redis::Client::open(url).map_err(|e| StateError::Invalid(format!("redis url: {e}")))?;
        let manager = new_manager(&client, timeout)?;
        Ok(Self {
            inner: std::sync::Arc::new(Inner {
                client,
                manager: RwLock::new(manager),
                keys: Keys::new(prefix.into()),
                timeout,
                missed: AtomicU32::new(0),
                last_rebuild: Mutex::new(Instant::now()),
                admit: Script::new(scripts::ADMIT),
                idem_begin: Script::new(scripts::IDEM_BEGIN),
                idem_complete: Script::new(scripts::IDEM_COMPLETE),
                idem_abandon: Script::new(scripts::IDEM_ABANDON),
            }),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// One `PING` within the deadline (health checks, `/readyz`).
    pub async fn ping(&self) -> Result<(), StateError> {
        let mut conn = self.conn();
        self.deadline(async move { redis::cmd("PING").query_async::<Value>(&mut conn).await })
            .await
            .map(|_| ())
    }

    /// The Redis key a nonce is stored under (for tests and operators).
    pub fn nonce_key(&self, scope: &str, nonce: &str) -> String {
        self.inner.keys.nonce(scope, nonce)
    }

    /// The Redis key a bucket is stored under.
    pub fn bucket_key(&self, name: &str) -> String {
        self.inner.keys.bucket(name)
    }

    /// The Redis key an idempotency record is stored under.
    pub fn idempotency_key(&self, scope: &str, key: &str) -> String {
        self.inner.keys.idempotency(scope, key)
    }

    /// `SET <prefix>nonce:{scope}:<nonce> 1 NX PX <ttl_ms>`: one command, atomic across replicas.
    pub async fn claim_nonce(
        &self,
        scope: &str,
        nonce: &str,
        ttl: Duration,
    ) -> Result<NonceClaim, StateError> {
        let key = self.inner.keys.nonce(scope, nonce);
        let mut conn = self.conn();
        let reply = self
            .deadline(async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg("1")
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms(ttl))
                    .query_async::<Value>(&mut conn)
                    .await
            })
            .await?;
        match reply {
            Value::Okay | Value::SimpleString(_) => Ok(NonceClaim::Fresh),
            Value::Nil => Ok(NonceClaim::Replayed),
            other => Err(StateError::Corrupt(format!("SET NX replied {other:?}"))),
        }
    }

    /// The [`RequestGate`] decision: one `EVALSHA` of the admission script.
    pub async fn admit_once(&self, req: &Admission) -> Result<AdmitOutcome, StateError> {
        let gcras =
            req.buckets.iter().map(|b| Gcra::new(&b.limit)).collect::<Result<Vec<_>, StateError>>()?;
        let mut inv = self.inner.admit.prepare_invoke();
        match &req.nonce {
            Some(NonceCheck { scope, nonce, ttl }) => {
                inv.key(self.inner.keys.nonce(scope, nonce)).arg("1").arg(ttl_ms(*ttl));
            }
            None => {
                inv.arg("0").arg("0");
            }
        }
        for (BucketCheck { name, cost, .. }, g) in req.buckets.iter().zip(&gcras) {
            // `{:?}` prints the shortest decimal that parses back to the same double.
            inv.key(self.inner.keys.bucket(name))
                .arg(format!("{:?}", g.interval_us))
                .arg(format!("{:?}", g.tau_us))
                .arg(*cost)
                .arg(g.limit);
        }
        let mut conn = self.conn();
        let reply = self.deadline(async move { inv.invoke_async::<Vec<i64>>(&mut conn).await }).await?;
        parse_admit(&reply, req.nonce.is_some(), &gcras)
    }

    /// Runs `fut` under the per-call deadline and maps its failure; counts missed deadlines
    /// and replaces the connection when they keep happening.
    pub(crate) async fn deadline<T, F>(&self, fut: F) -> Result<T, StateError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(v)) => {
                self.inner.missed.store(0, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                self.inner.missed.store(0, Ordering::Relaxed);
                Err(map_err(&e))
            }
            Err(_) => {
                let missed = self.inner.missed.fetch_add(1, Ordering::Relaxed) + 1;
                if missed >= TIMEOUTS_BEFORE_REBUILD {
                    self.rebuild();
                }
                Err(StateError::Unavailable(format!("redis: no answer within {:?}", self.inner.timeout)))
            }
        }
    }

    fn rebuild(&self) {
        {
            let mut last = self.inner.last_rebuild.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < MIN_REBUILD_INTERVAL {
                return;
            }
            *last = Instant::now();
        }
        if let Ok(fresh) = new_manager(&self.inner.client, self.inner.timeout) {
            *self.inner.manager.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            self.inner.missed.store(0, Ordering::Relaxed);
            tracing::info!(prefix = self.prefix(), "redis connection unresponsive; replaced it");
        }
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.inner.manager.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn idem_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: [u8; 32],
        in_flight_ttl: Duration,
    ) -> Result<IdemBegin, StateError> {
        let mut inv = self.inner.idem_begin.prepare_invoke();
        inv.key(self.inner.keys.idempotency(scope, key)).arg(&fingerprint[..]).arg(ttl_ms(in_flight_ttl));
        let mut conn = self.conn();
        let reply = self.deadline(async move { inv.invoke_async::<Vec<Value>>(&mut conn).await }).await?;
        match reply.as_slice() {
            [Value::Int(0)] => Ok(IdemBegin::Proceed),
            [Value::Int(1)] => Ok(IdemBegin::InFlight),
            [Value::Int(3)] => Ok(IdemBegin::KeyReused),
            [Value::Int(2), Value::BulkString(bytes)] => {
                Ok(IdemBegin::Completed(StoredResponse::decode(bytes)?))
            }
            other => Err(StateError::Corrupt(format!("idempotency begin replied {other:?}"))),
        }
    }

    async fn idem_complete(
        &self,
        scope: &str,
        key: &str,
        fingerprint: [u8; 32],
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let mut inv = self.inner.idem_complete.prepare_invoke();
        inv.key(self.inner.keys.idempotency(scope, key))
            .arg(&fingerprint[..])
            .arg(response.encode())
            .arg(ttl_ms(ttl));
        let mut conn = self.conn();
        self.deadline(async move { inv.invoke_async::<i64>(&mut conn).await }).await.map(|_| ())
    }

    async fn idem_abandon(&self, scope: &str, key: &str) -> Result<(), StateError> {
        let mut inv = self.inner.idem_abandon.prepare_invoke();
        inv.key(self.inner.keys.idempotency(scope, key));
        let mut conn = self.conn();
        self.deadline(async move { inv.invoke_async::<i64>(&mut conn).await }).await.map(|_| ())
    }
}

fn new_manager(client: &redis::Client, timeout: Duration) -> Result<ConnectionManager, StateError> {
    // Reconnect attempts back off from 50 ms to at most 500 ms so a returning Redis is found
    // quickly; after the retries run out the next call starts a new round.
    let config = ConnectionManagerConfig::new()
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_number_of_retries(6)
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
        .set_response_timeout(Some(timeout.max(Duration::from_millis(500))));
    ConnectionManager::new_lazy_with_config(client.clone(), config)
        .map_err(|e| StateError::Unavailable(format!("redis: {e}")))
}

fn map_err(e: &redis::RedisError) -> StateError {
    match e.kind() {
        redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse => {
            StateError::Corrupt(format!("redis: {e}"))
        }
        _ => StateError::Unavailable(format!("redis: {e}")),
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn parse_admit(reply: &[i64], has_nonce: bool, gcras: &[Gcra]) -> Result<AdmitOutcome, StateError> {
    let bad = || StateError::Corrupt(format!("admission script replied {reply:?}"));
    let (&state, rest) = reply.split_first().ok_or_else(bad)?;
    let (&denied, rest) = rest.split_first().ok_or_else(bad)?;
    let nonce = match (has_nonce, state) {
        (false, 0) => None,
        (true, 1) => Some(NonceClaim::Fresh),
        (true, 2) => {
            return Ok(AdmitOutcome { nonce: Some(NonceClaim::Replayed), ..AdmitOutcome::default() })
        }
        _ => return Err(bad()),
    };
    if rest.len() != gcras.len() * 4 {
        return Err(bad());
    }
    let rate = rest
        .chunks_exact(4)
        .zip(gcras)
        .map(|(c, g)| RateDecision {
            allowed: c[0] == 1,
            remaining: u32::try_from(c[1]).unwrap_or(0),
            limit: g.limit,
            retry_after: Duration::from_micros(u64::try_from(c[2]).unwrap_or(0)),
            reset_after: Duration::from_micros(u64::try_from(c[3]).unwrap_or(0)),
        })
        .collect();
    let denied_by = match usize::try_from(denied) {
        Ok(0) => None,
        Ok(i) if i <= gcras.len() => Some(i - 1),
        _ => return Err(bad()),
    };
    Ok(AdmitOutcome { nonce, rate, denied_by, local_fallback: false })
}

impl NonceStore for RedisState {
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        nonce: &'a str,
        ttl: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<NonceClaim, StateError>> + Send + 'a>>
    {
        Box::pin(self.claim_nonce(scope, nonce, ttl))
    }
}

impl RequestGate for RedisState {
    fn admit<'a>(&'a self, req: &'a Admission) -> StateFuture<'a, AdmitOutcome> {
        Box::pin(self.admit_once(req))
    }
}

impl RateLimiter for RedisState {
    fn check<'a>(
        &'a self,
        bucket: &'a str,
        limit: &'a BucketLimit,
        cost: u32,
    ) -> StateFuture<'a, RateDecision> {
        Box::pin(async move {
            let req = Admission {
                nonce: None,
                buckets: vec![BucketCheck { name: bucket.to_owned(), limit: *limit, cost }],
            };
            let mut out = self.admit_once(&req).await?;
            out.rate.pop().ok_or_else(|| StateError::Corrupt("admission script returned no decision".into()))
        })
    }
}

impl IdempotencyStore for RedisState {
    fn begin<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: [u8; 32],
        in_flight_ttl: Duration,
    ) -> StateFuture<'a, IdemBegin> {
        Box::pin(self.idem_begin(scope, key, fingerprint, in_flight_ttl))
    }

    fn complete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: [u8; 32],
        response: &'a StoredResponse,
        ttl: Duration,
    ) -> StateFuture<'a, ()> {
        Box::pin(self.idem_complete(scope, key, fingerprint, response, ttl))
    }

    fn abandon<'a>(&'a self, scope: &'a str, key: &'a str) -> StateFuture<'a, ()> {
        Box::pin(self.idem_abandon(scope, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_reply_parsing_rejects_shapes_it_did_not_ask_for() {
        let g = Gcra::new(&BucketLimit { rate_per_sec: 100.0, burst: 20 }).unwrap();
        let out = parse_admit(&[1, 0, 1, 19, 0, 10_000], true, &[g]).unwrap();
        assert_eq!(out.nonce, Some(NonceClaim::Fresh));
        assert_eq!(out.rate[0].remaining, 19);
        assert_eq!(out.rate[0].reset_after, Duration::from_millis(10));
        let out = parse_admit(&[2, 0], true, &[g]).unwrap();
        assert_eq!(out.nonce, Some(NonceClaim::Replayed));
        assert!(out.rate.is_empty());
        let out = parse_admit(&[0, 1, 0, 0, 10_000, 200_000], false, &[g]).unwrap();
        assert_eq!(out.denied_by, Some(0));
        for bad in [&[][..], &[1], &[1, 0, 1], &[0, 2, 0, 0, 0, 0], &[1, 0, 1, 1, 1, 1], &[3, 0]] {
            assert!(parse_admit(bad, false, &[g]).is_err(), "{bad:?}");
        }
    }
}
