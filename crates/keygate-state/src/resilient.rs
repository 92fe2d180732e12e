// Failure policy: what admission and idempotency do while Redis is down or slow, and noticing
// when it is back. It must not silently weaken replay protection beyond what the operator chose.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::gate::{Admission, AdmitOutcome, BucketCheck, MemoryGate, NonceCheck, RequestGate};
use crate::idempotency::{IdemBegin, IdempotencyStore, StoredResponse};
use crate::rate::{BucketLimit, RateDecision, RateLimiter};
use crate::{NonceClaim, NonceStore, RedisState, StateError, StateFuture};

/// Nonce checks while Redis is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonceFailure {
    /// Refuse (503 `state_unavailable`): no request whose replay status is unknown gets through.
    #[default]
    Closed,
    /// Check this replica's memory only. A replay sent to another replica, or to this one after
    /// it restarts, is not detected while degraded, and nonces claimed locally are not known to
    /// Redis after recovery. An operator opt-in.
    LocalFallback,
}

/// Rate limits while Redis is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateFailure {
    /// Local buckets with rate and burst divided by `replicas`, so N replicas together
    /// approximate the global budget (exact only if traffic spreads evenly).
    LocalScaled { replicas: u32 },
    /// Refuse every rate-limited request (503).
    Closed,
    /// Let every request through unlimited.
    Open,
}

impl Default for RateFailure {
    fn default() -> Self {
        RateFailure::LocalScaled { replicas: 1 }
    }
}

/// Idempotency while Redis is unavailable: only failing closed is offered, since a local record
/// cannot stop a duplicate write arriving at another replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdempotencyFailure {
    #[default]
    Closed,
}

/// What [`ResilientGate`] does when Redis errors or misses its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    pub nonce: NonceFailure,
    pub rate: RateFailure,
    pub idempotency: IdempotencyFailure,
    /// While degraded, at most one request per interval tries Redis (the others go straight to
    /// the policy instead of each waiting out the deadline); its success ends degraded mode.
    pub probe_every: Duration,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            nonce: NonceFailure::Closed,
            rate: RateFailure::default(),
            idempotency: IdempotencyFailure::Closed,
            probe_every: Duration::from_millis(250),
        }
    }
}

/// Redis first, this replica's memory by policy when Redis fails.
///
/// | situation | nonce | rate limits | idempotency |
/// |---|---|---|---|
/// | Redis healthy | Redis | Redis | Redis |
/// | Redis down/slow, `Closed` | `Err(Unavailable)` | `Err(Unavailable)` | `Err(Unavailable)` |
/// | `NonceFailure::LocalFallback` | local memory | | |
/// | `RateFailure::LocalScaled{n}` | | local buckets at rate/n, burst/n | |
/// | `RateFailure::Open` | | allowed, `remaining = limit` | |
///
/// An admission with a nonce under `NonceFailure::Closed` fails as a whole (the request is
/// refused anyway). Degraded answers have `local_fallback: true`.
///
/// Health: any backend failure (error or missed deadline) enters degraded mode, any Redis
/// answer leaves it; each transition logs one line (`warn` entering, `info` leaving), never one
/// per request. While degraded, one request per `probe_every` tries Redis; call
/// [`ResilientGate::check_health`] periodically as well so an idle replica notices recovery.
#[derive(Debug)]
pub struct ResilientGate {
    redis: RedisState,
    local: MemoryGate,
    policy: FailurePolicy,
    degraded: AtomicBool,
    transitions: AtomicU64,
    epoch: Instant,
    last_probe_ms: AtomicU64,
}

impl ResilientGate {
    pub fn new(redis: RedisState, local: MemoryGate, policy: FailurePolicy) -> Self {
        Self {
            redis,
            local,
            policy,
            degraded: AtomicBool::new(false),
            transitions: AtomicU64::new(0),
            epoch: Instant::now(),
            last_probe_ms: AtomicU64::new(0),
        }
    }

    /// True while Redis is considered unavailable (for metrics and `/readyz`).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Healthy↔degraded transitions so far (both directions).
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    pub fn policy(&self) -> &FailurePolicy {
        &self.policy
    }

    pub fn redis(&self) -> &RedisState {
        &self.redis
    }

    pub fn local(&self) -> &MemoryGate {
        &self.local
    }

    /// Pings Redis and updates the health state; returns true when healthy.
    pub async fn check_health(&self) -> bool {
        match self.redis.ping().await {
            Ok(()) => {
                self.mark_healthy();
                true
            }
            Err(e) => {
                self.mark_degraded(&e);
                false
            }
        }
    }

    /// Drops expired local state; run it every second or so.
    pub fn sweep(&self) {
        self.local.sweep();
    }

    /// Admission by policy; see the type's table.
    pub async fn admit_resilient(&self, req: &Admission) -> Result<AdmitOutcome, StateError> {
        if self.skip_redis() {
            return self.fallback(req, "redis unavailable (degraded)");
        }
        match self.redis.admit_once(req).await {
            Ok(out) => {
                self.mark_healthy();
                Ok(out)
            }
            Err(e) if e.is_backend_failure() => {
                self.mark_degraded(&e);
                self.fallback(req, &e.to_string())
            }
            Err(e) => Err(e),
        }
    }

    fn fallback(&self, req: &Admission, cause: &str) -> Result<AdmitOutcome, StateError> {
        let unavailable = || Err(StateError::Unavailable(cause.to_owned()));
        if req.nonce.is_some() && self.policy.nonce == NonceFailure::Closed {
            return unavailable();
        }
        let mut out = match (self.policy.rate, req.buckets.is_empty()) {
            (_, true) => self.local.admit_now(req)?,
            (RateFailure::Closed, false) => return unavailable(),
            (RateFailure::LocalScaled { replicas }, false) => self.local.admit_scaled(req, replicas)?,
            (RateFailure::Open, false) => {
                let nonce_only = Admission { nonce: req.nonce.clone(), buckets: Vec::new() };
                let mut out = self.local.admit_now(&nonce_only)?;
                if out.nonce != Some(NonceClaim::Replayed) {
                    out.rate = req.buckets.iter().map(|b| unlimited(&b.limit)).collect();
                }
                out
            }
        };
        out.local_fallback = true;
        Ok(out)
    }

    /// Runs one idempotency call, tracking health. `gated` calls skip Redis while degraded
    /// unless it is their turn to probe; the others (finishing a request that already ran)
    /// always try, since a stale in-flight marker would block the key until it expires.
    async fn guarded<T>(&self, gated: bool, fut: StateFuture<'_, T>) -> Result<T, StateError> {
        if gated && self.skip_redis() {
            return Err(StateError::Unavailable("redis unavailable (degraded)".into()));
        }
        match fut.await {
            Ok(v) => {
                self.mark_healthy();
                Ok(v)
            }
            Err(e) => {
                if e.is_backend_failure() {
                    self.mark_degraded(&e);
                }
                Err(e)
            }
        }
    }

    /// While degraded, lets one caller per `probe_every` through to Redis.
    fn skip_redis(&self) -> bool {
        if !self.is_degraded() {
            return false;
        }
        let now = self.now_ms();
        let last = self.last_probe_ms.load(Ordering::Relaxed);
        let every = u64::try_from(self.policy.probe_every.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) < every {
            return true;
        }
        self.last_probe_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
    }

    fn mark_degraded(&self, e: &StateError) {
        self.last_probe_ms.store(self.now_ms(), Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            self.transitions.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                prefix = self.redis.prefix(),
                error = %e,
                nonce = ?self.policy.nonce,
                rate = ?self.policy.rate,
                idempotency = ?self.policy.idempotency,
                "shared state (redis) unavailable; degraded mode"
            );
        }
    }

    fn mark_healthy(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            self.transitions.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                prefix = self.redis.prefix(),
                "shared state (redis) reachable again; leaving degraded mode"
            );
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

fn unlimited(limit: &BucketLimit) -> RateDecision {
    RateDecision {
        allowed: true,
        remaining: limit.burst,
        limit: limit.burst,
        retry_after: Duration::ZERO,
        reset_after: Duration::ZERO,
    }
}

impl RequestGate for ResilientGate {
    fn admit<'a>(&'a self, req: &'a Admission) -> StateFuture<'a, AdmitOutcome> {
        Box::pin(self.admit_resilient(req))
    }
}

impl NonceStore for ResilientGate {
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        nonce: &'a str,
        ttl: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<NonceClaim, StateError>> + Send + 'a>>
    {
        Box::pin(async move {
            let req = Admission {
                nonce: Some(NonceCheck { scope: scope.to_owned(), nonce: nonce.to_owned(), ttl }),
                buckets: Vec::new(),
            };
            let out = self.admit_resilient(&req).await?;
            out.nonce.ok_or_else(|| StateError::Corrupt("admission returned no nonce claim".into()))
        })
    }
}

impl RateLimiter for ResilientGate {
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
            let mut out = self.admit_resilient(&req).await?;
            out.rate.pop().ok_or_else(|| StateError::Corrupt("admission returned no decision".into()))
        })
    }
}

/// Idempotency has one policy, fail closed: every call goes to Redis, except that while degraded
/// `begin` fails fast unless it is probing.
impl IdempotencyStore for ResilientGate {
    fn begin<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: [u8; 32],
        in_flight_ttl: Duration,
    ) -> StateFuture<'a, IdemBegin> {
        Box::pin(self.guarded(true, self.redis.begin(scope, key, fingerprint, in_flight_ttl)))
    }

    fn complete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: [u8; 32],
        response: &'a StoredResponse,
        ttl: Duration,
    ) -> StateFuture<'a, ()> {
        Box::pin(self.guarded(false, self.redis.complete(scope, key, fingerprint, response, ttl)))
    }

    fn abandon<'a>(&'a self, scope: &'a str, key: &'a str) -> StateFuture<'a, ()> {
        Box::pin(self.guarded(false, self.redis.abandon(scope, key)))
    }
}
