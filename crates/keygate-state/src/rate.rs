// Token buckets: the limit types, the exact bucket arithmetic (shared with the Redis script), and
// the in-process limiter. It must not drift from the Lua copy in `scripts.rs`, nor evict a live bucket.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{StateError, StateFuture};

const SHARDS: usize = 64;

/// Bucket name → theoretical arrival time (µs since the limiter's epoch).
type Buckets = HashMap<Box<str>, f64>;

/// Slack, in microseconds of refill time, allowed when comparing against the burst. Redis
/// timestamps are ~1.7e15 µs, where an f64 step is 0.25 µs; without slack, `now + 20·T - now`
/// can round above `20·T` and the last token of a full burst would be refused.
pub(crate) const EPS_US: f64 = 1.0;

/// Highest accepted rate. Above it one token refills in under a microsecond, finer than the
/// clocks and the slack above can resolve.
const MAX_RATE_PER_SEC: f64 = 1_000_000.0;

/// A token bucket's settings: refills at `rate_per_sec` tokens per second up to `burst` tokens.
/// A bucket nobody touched for `burst / rate_per_sec` seconds is full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketLimit {
    pub rate_per_sec: f64,
    pub burst: u32,
}

/// One bucket's answer, with what the `Retry-After` and IETF `RateLimit-*` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// The request may proceed; its cost has been taken from the bucket.
    pub allowed: bool,
    /// Whole tokens left after this decision (`RateLimit-Remaining`).
    pub remaining: u32,
    /// The bucket's capacity (`RateLimit-Limit`).
    pub limit: u32,
    /// When denied: how long until the same request would be allowed (`Retry-After`, round it
    /// up to whole seconds). Zero when allowed. A cost above the burst is never allowed; its
    /// retry time is reported but retrying will not help.
    pub retry_after: Duration,
    /// How long until the bucket is full again (`RateLimit-Reset`).
    pub reset_after: Duration,
}

/// Token-bucket rate limiting keyed by bucket name (e.g. `key:<access key>`,
/// `ip:<addr>:<endpoint>`).
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// Takes `cost` tokens from `bucket` if it holds that many; otherwise takes nothing.
    /// `cost` 0 reports the bucket's state without changing it.
    fn check<'a>(
        &'a self,
        bucket: &'a str,
        limit: &'a BucketLimit,
        cost: u32,
    ) -> StateFuture<'a, RateDecision>;
}

/// A bucket limit in the units the arithmetic uses. The burst is fractional so a limit can be
/// split across replicas (`20 / 3` each) without rounding the sum away from the global budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Gcra {
    /// Microseconds to refill one token.
    pub(crate) interval_us: f64,
    /// Microseconds to refill the whole burst: how far ahead of now the bucket may be booked.
    pub(crate) tau_us: f64,
    /// What `RateDecision::limit` reports.
    pub(crate) limit: u32,
}

impl Gcra {
    pub(crate) fn new(limit: &BucketLimit) -> Result<Self, StateError> {
        Self::scaled(limit, 1)
    }

    /// The share of `limit` one of `replicas` replicas enforces on its own.
    pub(crate) fn scaled(limit: &BucketLimit, replicas: u32) -> Result<Self, StateError> {
        let rate = limit.rate_per_sec;
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE_PER_SEC) {
            return Err(StateError::Invalid(format!(
                "rate_per_sec must be in (0, {MAX_RATE_PER_SEC}], got {rate}"
            )));
        }
        if limit.burst == 0 {
            return Err(StateError::Invalid("burst must be at least 1".into()));
        }
        let n = f64::from(replicas.max(1));
        let rate = rate / n;
        let burst = f64::from(limit.burst) / n;
        let interval_us = 1e6 / rate;
        // Truncation is intended: a replica holding 6.67 tokens can promise 6.
        let reported = (burst.floor() as u32).max(1);
        Ok(Self { interval_us, tau_us: burst * interval_us, limit: reported })
    }

    /// Generic cell rate algorithm, equivalent to a token bucket: the state is the theoretical
    /// arrival time `tat` (µs) at which the bucket would be full again; absent means full.
    /// Returns the decision and, when allowed with a cost, the new `tat` to store.
    ///
    /// Keep in step with `ADMIT` in `scripts.rs`, which performs the same operations in the
    /// same order on Redis's clock.
    pub(crate) fn decide(&self, stored_tat: Option<f64>, now: f64, cost: u32) -> (RateDecision, Option<f64>) {
        let t = self.interval_us;
        let tau = self.tau_us;
        let tat = match stored_tat {
            Some(v) if v > now => v,
            _ => now,
        };
        let new_tat = tat + f64::from(cost) * t;
        if new_tat - now <= tau + EPS_US {
            let remaining = tokens(tau - (new_tat - now), t, self.limit);
            let decision = RateDecision {
                allowed: true,
                remaining,
                limit: self.limit,
                retry_after: Duration::ZERO,
                reset_after: micros(new_tat - now),
            };
            (decision, (cost > 0).then_some(new_tat))
        } else {
            let decision = RateDecision {
                allowed: false,
                remaining: tokens(tau - (tat - now), t, self.limit),
                limit: self.limit,
                retry_after: micros(new_tat - tau - now),
                reset_after: micros(tat - now),
            };
            (decision, None)
        }
    }
}

fn tokens(free_us: f64, interval_us: f64, limit: u32) -> u32 {
    let n = ((free_us + EPS_US) / interval_us).floor();
    if n <= 0.0 {
        0
    } else {
        (n as u32).min(limit)
    }
}

// Nearest microsecond, not ceiling: the inputs carry float noise of a fraction of a
// microsecond, and the comparison slack (EPS_US) already admits a request that early.
fn micros(us: f64) -> Duration {
    if us <= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_micros((us + 0.5).floor() as u64)
    }
}

/// Exact in-process token buckets: sharded maps of bucket name → `tat`. A bucket whose `tat`
/// has passed is full, which is the same as absent, so [`MemoryRateLimiter::sweep`] drops it.
#[derive(Debug)]
pub struct MemoryRateLimiter {
    shards: Box<[Mutex<Buckets>]>,
    hasher: std::collections::hash_map::RandomState,
    capacity: usize,
    live: AtomicUsize,
    epoch: Instant,
}

impl MemoryRateLimiter {
    /// A limiter tracking at most `capacity` non-full buckets. When that many buckets are all
    /// partly drained, a new bucket is refused with [`StateError::Full`] rather than resetting
    /// (and so re-granting the burst of) a live one.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            capacity: capacity.max(1),
            live: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    /// Buckets currently held (not full, or full but not yet swept).
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// True when no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every bucket that has refilled completely. Cheap enough to run every second.
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    fn sweep_at(&self, at: Instant) {
        let now = self.us(at);
        for shard in self.shards.iter() {
            let mut m = lock(shard);
            let before = m.len();
            m.retain(|_, tat| *tat > now);
            let removed = before - m.len();
            if removed > 0 {
                self.live.fetch_sub(removed, Ordering::Relaxed);
            }
        }
    }

    /// Decides now; the trait method wraps this.
    pub fn check_now(
        &self,
        bucket: &str,
        limit: &BucketLimit,
        cost: u32,
    ) -> Result<RateDecision, StateError> {
        self.check_at(bucket, limit, cost, Instant::now())
    }

    /// Decides as of `at` (not before this limiter was created): deterministic for tests and
    /// benchmarks.
    pub fn check_at(
        &self,
        bucket: &str,
        limit: &BucketLimit,
        cost: u32,
        at: Instant,
    ) -> Result<RateDecision, StateError> {
        let g = Gcra::new(limit)?;
        if self.live.load(Ordering::Relaxed) >= self.capacity {
            self.sweep_at(at);
        }
        let now = self.us(at);
        // One bucket, one lock: the common case skips the multi-bucket bookkeeping.
        let mut m = lock(&self.shards[self.shard_of(bucket)]);
        let (d, new_tat) = g.decide(m.get(bucket).copied(), now, cost);
        if let Some(t) = new_tat {
            if let Some(v) = m.get_mut(bucket) {
                *v = t;
            } else if self.live.load(Ordering::Relaxed) >= self.capacity {
                return Err(StateError::Full { capacity: self.capacity });
            } else {
                m.insert(bucket.into(), t);
                self.live.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(d)
    }

    /// All-or-nothing decision over several buckets: every bucket is evaluated (a name listed
    /// twice sees its own earlier charge), and tokens are taken only if all allow. Returns the
    /// decisions and the index of the first denying bucket.
    pub(crate) fn check_many_at(
        &self,
        checks: &[(&str, Gcra, u32)],
        at: Instant,
    ) -> Result<(Vec<RateDecision>, Option<usize>), StateError> {
        if self.live.load(Ordering::Relaxed) >= self.capacity {
            self.sweep_at(at);
        }
        let now = self.us(at);
        let idx: Vec<usize> = checks.iter().map(|(name, _, _)| self.shard_of(name)).collect();
        let mut order = idx.clone();
        order.sort_unstable();
        order.dedup();
        // Locks are always taken in ascending shard order, so two multi-bucket checks can't deadlock.
        let mut guards: Vec<(usize, MutexGuard<'_, Buckets>)> =
            order.iter().map(|&i| (i, lock(&self.shards[i]))).collect();

        let mut pending: Vec<(usize, &str, f64)> = Vec::new();
        let mut decisions = Vec::with_capacity(checks.len());
        let mut denied_by = None;
        for (n, ((name, g, cost), shard)) in checks.iter().zip(&idx).enumerate() {
            let stored = match pending.iter().rev().find(|(_, p, _)| p == name) {
                Some((_, _, tat)) => Some(*tat),
                None => guard(&mut guards, *shard).get(*name).copied(),
            };
            let (d, new_tat) = g.decide(stored, now, *cost);
            if !d.allowed && denied_by.is_none() {
                denied_by = Some(n);
            }
            if let Some(t) = new_tat {
                pending.push((*shard, name, t));
            }
            decisions.push(d);
        }
        if denied_by.is_none() {
            for (shard, name, tat) in pending {
                let m = guard(&mut guards, shard);
                if let Some(v) = m.get_mut(name) {
                    *v = tat;
                    continue;
                }
                if self.live.load(Ordering::Relaxed) >= self.capacity {
                    return Err(StateError::Full { capacity: self.capacity });
                }
                m.insert(name.into(), tat);
                self.live.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok((decisions, denied_by))
    }

    fn shard_of(&self, name: &str) -> usize {
        (self.hasher.hash_one(name) as usize) % SHARDS
    }

    fn us(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.epoch).as_nanos() as f64 / 1000.0
    }
}

fn guard<'g, 'm>(guards: &'g mut [(usize, MutexGuard<'m, Buckets>)], shard: usize) -> &'g mut Buckets {
    // `guards` holds every shard named in the checks, so the search always succeeds; the
    // fallback index only keeps this free of panics.
    let pos = guards.iter().position(|(i, _)| *i == shard).unwrap_or(0);
    &mut guards[pos].1
}

// A poisoned shard only means another thread panicked between lock and unlock; the map stays
// consistent (insert/retain do not leave it half-updated), so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RateLimiter for MemoryRateLimiter {
    fn check<'a>(
        &'a self,
        bucket: &'a str,
        limit: &'a BucketLimit,
        cost: u32,
    ) -> StateFuture<'a, RateDecision> {
        Box::pin(std::future::ready(self.check_now(bucket, limit, cost)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: BucketLimit = BucketLimit { rate_per_sec: 100.0, burst: 20 };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn full_bucket_grants_exactly_the_burst_then_refills_at_the_rate() {
        let r = MemoryRateLimiter::new(100);
        let t0 = Instant::now();
        for i in 0..20 {
            let d = r.check_at("b", &L, 1, t0).unwrap();
            assert!(d.allowed, "token {i}");
            assert_eq!(d.remaining, 19 - i);
            assert_eq!(d.limit, 20);
        }
        let d = r.check_at("b", &L, 1, t0).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, ms(10));
        assert_eq!(d.reset_after, ms(200));
        // 100/s: one token every 10 ms, exact to the 1 µs comparison slack.
        assert!(!r.check_at("b", &L, 1, t0 + Duration::from_micros(9_998)).unwrap().allowed);
        let d = r.check_at("b", &L, 1, t0 + ms(10)).unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // Over one simulated second at 1 kHz offered load exactly 100 more pass.
        let mut ok = 0;
        for step in 1..=1000u64 {
            if r.check_at("b", &L, 1, t0 + ms(10) + ms(step)).unwrap().allowed {
                ok += 1;
            }
        }
        assert_eq!(ok, 100);
    }

    #[test]
    fn long_run_accepts_burst_plus_rate_times_elapsed() {
        let r = MemoryRateLimiter::new(100);
        let t0 = Instant::now();
        let mut ok = 0u32;
        // 3 s at one attempt every 0.7 ms.
        for k in 0..=(3_000_000 / 700) {
            if r.check_at("b", &L, 1, t0 + Duration::from_micros(k * 700)).unwrap().allowed {
                ok += 1;
            }
        }
        // Last attempt at 2.9995 s: the burst plus floor(299.95) refilled tokens.
        assert_eq!(ok, 319);
    }

    #[test]
    fn denied_requests_take_nothing_and_cost_is_honoured() {
        let r = MemoryRateLimiter::new(100);
        let t0 = Instant::now();
        let l = BucketLimit { rate_per_sec: 10.0, burst: 10 };
        assert!(r.check_at("b", &l, 7, t0).unwrap().allowed);
        let d = r.check_at("b", &l, 5, t0).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.remaining, 3);
        assert_eq!(d.retry_after, ms(200));
        assert!(r.check_at("b", &l, 3, t0).unwrap().allowed);
        // Cost 0 peeks.
        let d = r.check_at("b", &l, 0, t0).unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_after, ms(1000));
        // Cost above the burst never passes, even on a full bucket.
        assert!(!r.check_at("other", &l, 11, t0).unwrap().allowed);
    }

    #[test]
    fn fractional_rates_and_bursts() {
        let r = MemoryRateLimiter::new(100);
        let t0 = Instant::now();
        let l = BucketLimit { rate_per_sec: 0.5, burst: 1 };
        assert!(r.check_at("b", &l, 1, t0).unwrap().allowed);
        let d = r.check_at("b", &l, 1, t0 + ms(500)).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, ms(1500));
        assert!(r.check_at("b", &l, 1, t0 + ms(2000)).unwrap().allowed);

        // A 20-token burst split over 3 replicas: 6.67 tokens each, 6 usable at once.
        let g = Gcra::scaled(&L, 3).unwrap();
        assert_eq!(g.limit, 6);
        let mut ok = 0;
        for _ in 0..10 {
            let (out, _) = r.check_many_at(&[("s", g, 1)], t0).unwrap();
            ok += u32::from(out[0].allowed);
        }
        assert_eq!(ok, 6);
    }

    #[test]
    fn many_buckets_all_or_nothing() {
        let r = MemoryRateLimiter::new(100);
        let t0 = Instant::now();
        let a = Gcra::new(&BucketLimit { rate_per_sec: 1.0, burst: 5 }).unwrap();
        let b = Gcra::new(&BucketLimit { rate_per_sec: 1.0, burst: 1 }).unwrap();
        let (d, denied) = r.check_many_at(&[("a", a, 1), ("b", b, 1)], t0).unwrap();
        assert_eq!(denied, None);
        assert_eq!(d[0].remaining, 4);
        // b is empty now: a must not be charged.
        let (d, denied) = r.check_many_at(&[("a", a, 1), ("b", b, 1)], t0).unwrap();
        assert_eq!(denied, Some(1));
        assert!(d[0].allowed && !d[1].allowed);
        assert_eq!(
            r.check_at("a", &BucketLimit { rate_per_sec: 1.0, burst: 5 }, 0, t0).unwrap().remaining,
            4
        );
        // One name twice in a request is charged twice.
        let (d, denied) = r.check_many_at(&[("c", a, 3), ("c", a, 3)], t0).unwrap();
        assert_eq!(denied, Some(1));
        assert_eq!(d[1].remaining, 2);
    }

    #[test]
    fn idle_buckets_are_swept_and_capacity_refuses_new_ones() {
        let r = MemoryRateLimiter::new(2);
        let t0 = Instant::now();
        let l = BucketLimit { rate_per_sec: 1000.0, burst: 1 };
        r.check_at("a", &l, 1, t0).unwrap();
        r.check_at("b", &l, 1, t0).unwrap();
        assert_eq!(r.len(), 2);
        assert!(matches!(r.check_at("c", &l, 1, t0), Err(StateError::Full { capacity: 2 })));
        // Once both are full again the next check sweeps them and proceeds.
        assert!(r.check_at("c", &l, 1, t0 + ms(2)).unwrap().allowed);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn invalid_limits_are_refused() {
        let r = MemoryRateLimiter::new(2);
        for l in [
            BucketLimit { rate_per_sec: 0.0, burst: 1 },
            BucketLimit { rate_per_sec: f64::NAN, burst: 1 },
            BucketLimit { rate_per_sec: 1.0, burst: 0 },
            BucketLimit { rate_per_sec: 2e6, burst: 1 },
        ] {
            assert!(matches!(r.check_now("x", &l, 1), Err(StateError::Invalid(_))), "{l:?}");
        }
    }

    #[test]
    fn arithmetic_holds_at_redis_clock_magnitudes() {
        // Redis TIME in µs is ~1.7e15, where f64 steps are 0.25 µs: the full burst must still pass.
        let g = Gcra::new(&L).unwrap();
        let now = 1_763_900_000_123_457.0;
        let mut tat = None;
        for i in 0..20 {
            let (d, t) = g.decide(tat, now, 1);
            assert!(d.allowed, "token {i}");
            tat = t;
        }
        assert!(!g.decide(tat, now, 1).0.allowed);
        assert!(g.decide(tat, now + 10_000.0, 1).0.allowed);
    }
}
