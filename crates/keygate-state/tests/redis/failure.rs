// Redis failures on a private redis-server: killed (connection refused) and paused (no answer).
// Checks deadlines, each failure policy, one log line per transition, and automatic recovery.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_state::{
    Admission, BucketCheck, BucketLimit, FailurePolicy, IdempotencyStore, MemoryGate, NonceCheck, NonceClaim,
    NonceFailure, NonceStore, RateFailure, RedisState, RequestGate, ResilientGate, StateError,
};

use crate::common::*;

const TIMEOUT: Duration = Duration::from_millis(50);
/// Deadline plus scheduling slack on a busy 2-core machine.
const MAX_FAIL_TIME: Duration = Duration::from_millis(150);

fn with_nonce(n: &str) -> Admission {
    Admission {
        nonce: Some(NonceCheck { scope: "AK".into(), nonce: n.into(), ttl: Duration::from_secs(60) }),
        buckets: vec![BucketCheck {
            name: "key:AK".into(),
            limit: BucketLimit { rate_per_sec: 100.0, burst: 20 },
            cost: 1,
        }],
    }
}

fn rate_only() -> Admission {
    Admission {
        nonce: None,
        buckets: vec![BucketCheck {
            name: "key:AK".into(),
            limit: BucketLimit { rate_per_sec: 0.01, burst: 20 },
            cost: 1,
        }],
    }
}

/// Counts the transition lines (`tracing` events of the resilient module at WARN and INFO)
/// carrying one key prefix. Installed as the global subscriber: a thread-local one can miss
/// events whose callsite interest another test thread cached first.
#[derive(Default)]
struct Counter {
    warn: AtomicUsize,
    info: AtomicUsize,
}

static COUNTERS: std::sync::Mutex<Vec<(String, Arc<Counter>)>> = std::sync::Mutex::new(Vec::new());

fn count_transitions(prefix: &str) -> Arc<Counter> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(CountingSubscriber).expect("no other global subscriber");
    });
    let c = Arc::new(Counter::default());
    COUNTERS.lock().expect("counters").push((prefix.to_owned(), c.clone()));
    c
}

struct CountingSubscriber;

struct PrefixField(Option<String>);

impl tracing::field::Visit for PrefixField {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "prefix" {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl tracing::Subscriber for CountingSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        if e.metadata().target() != "keygate_state::resilient" {
            return;
        }
        let mut p = PrefixField(None);
        e.record(&mut p);
        let counters = COUNTERS.lock().expect("counters");
        let Some((_, c)) = counters.iter().find(|(prefix, _)| Some(prefix) == p.0.as_ref()) else { return };
        match *e.metadata().level() {
            tracing::Level::WARN => c.warn.fetch_add(1, Ordering::Relaxed),
            tracing::Level::INFO => c.info.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

async fn wait_healthy(gate: &ResilientGate, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if gate.check_health().await {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < within, "not healthy again within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Default policy (nonces closed, rate limits local ÷ 3 replicas, idempotency closed): Redis is
/// SIGKILLed, then restarted empty on the same port.
#[tokio::test]
async fn failure_kill_default_policy_then_recover() {
    let counter = count_transitions("kgtest:fail1:");
    let mut own = OwnRedis::start();
    let redis = RedisState::connect(&own.url(), "kgtest:fail1:", TIMEOUT).await.unwrap();
    let policy = FailurePolicy { rate: RateFailure::LocalScaled { replicas: 3 }, ..FailurePolicy::default() };
    let gate = ResilientGate::new(redis.clone(), MemoryGate::with_capacity(1000, 1000), policy);
    assert!(gate.admit(&with_nonce("before-kill-000001")).await.unwrap().admitted());
    assert!(!gate.is_degraded());

    own.kill();
    // Direct calls fail within the deadline, no panic, no hang.
    for i in 0..20 {
        let t = Instant::now();
        let r = redis.claim("AK", &format!("direct-{i:012}"), Duration::from_secs(60)).await;
        assert!(matches!(r, Err(StateError::Unavailable(_))), "{r:?}");
        assert!(t.elapsed() < MAX_FAIL_TIME, "took {:?}", t.elapsed());
    }
    // Through the gate: nonces fail closed, for 2 s of traffic.
    let t_outage = Instant::now();
    let mut n = 0;
    while t_outage.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        let r = gate.admit(&with_nonce(&format!("during-{n:012}"))).await;
        assert!(matches!(r, Err(StateError::Unavailable(_))), "{r:?}");
        assert!(t.elapsed() < MAX_FAIL_TIME, "took {:?}", t.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(gate.is_degraded());
    // Rate limits fall back to local buckets holding a third of the budget: burst 20 → 6.
    let allowed = {
        let mut ok = 0;
        for _ in 0..20 {
            let out = gate.admit(&rate_only()).await.unwrap();
            assert!(out.local_fallback);
            ok += usize::from(out.admitted());
        }
        ok
    };
    assert_eq!(allowed, 6);
    // Idempotency fails closed.
    assert!(gate.begin("app", "k", [0; 32], Duration::from_secs(5)).await.is_err());
    assert_eq!(counter.warn.load(Ordering::Relaxed), 1, "one warn line for the whole outage ({n} requests)");
    assert_eq!(gate.transitions(), 1);

    own.restart();
    let took = wait_healthy(&gate, Duration::from_secs(5)).await;
    eprintln!("failure(kill): {n} nonce admissions refused during outage; healthy {took:?} after restart");
    assert!(!gate.is_degraded());
    assert_eq!(counter.info.load(Ordering::Relaxed), 1);
    assert_eq!(gate.transitions(), 2);
    // Back on Redis (scripts reloaded on the new, empty server).
    let out = gate.admit(&with_nonce("after-restart-0001")).await.unwrap();
    assert!(out.admitted() && !out.local_fallback);
    assert_eq!(
        gate.admit(&with_nonce("after-restart-0001")).await.unwrap().nonce,
        Some(NonceClaim::Replayed)
    );
}

/// Opt-in policies: nonces checked locally, rate limits open; then rate limits closed.
#[tokio::test]
async fn failure_local_fallback_and_open_policies() {
    let mut own = OwnRedis::start();
    let redis = RedisState::connect(&own.url(), "kgtest:fail2:", TIMEOUT).await.unwrap();
    let policy = FailurePolicy {
        nonce: NonceFailure::LocalFallback,
        rate: RateFailure::Open,
        ..FailurePolicy::default()
    };
    let gate = ResilientGate::new(redis.clone(), MemoryGate::with_capacity(1000, 1000), policy);
    own.kill();
    let out = gate.admit(&with_nonce("local-nonce-000001")).await.unwrap();
    assert!(out.admitted() && out.local_fallback);
    assert_eq!(out.rate[0].remaining, 20);
    let out = gate.admit(&with_nonce("local-nonce-000001")).await.unwrap();
    assert_eq!(out.nonce, Some(NonceClaim::Replayed));
    assert!(!out.admitted());
    assert_eq!(
        gate.claim("AK", "local-nonce-000002", Duration::from_secs(60)).await.unwrap(),
        NonceClaim::Fresh
    );
    for _ in 0..100 {
        assert!(gate.admit(&rate_only()).await.unwrap().admitted());
    }
    assert!(gate.is_degraded());

    let closed = ResilientGate::new(
        redis,
        MemoryGate::with_capacity(1000, 1000),
        FailurePolicy {
            nonce: NonceFailure::LocalFallback,
            rate: RateFailure::Closed,
            ..FailurePolicy::default()
        },
    );
    assert!(matches!(closed.admit(&rate_only()).await, Err(StateError::Unavailable(_))));
    // A nonce-only admission still works locally under LocalFallback.
    let nonce_only = Admission { nonce: with_nonce("x-000000000001").nonce, buckets: vec![] };
    assert_eq!(closed.admit(&nonce_only).await.unwrap().nonce, Some(NonceClaim::Fresh));
}

/// A hung Redis (SIGSTOP: sockets open, no answers): every call returns within the deadline;
/// after SIGCONT the same handle recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_hung_redis_times_out_then_recovers() {
    let own = OwnRedis::start();
    let redis = RedisState::connect(&own.url(), "kgtest:fail3:", TIMEOUT).await.unwrap();
    let gate =
        ResilientGate::new(redis.clone(), MemoryGate::with_capacity(1000, 1000), FailurePolicy::default());
    assert!(gate.admit(&with_nonce("before-pause-00001")).await.unwrap().admitted());
    own.pause();
    let mut worst = Duration::ZERO;
    let t_outage = Instant::now();
    let mut i = 0;
    // Long enough for the stuck connection to be replaced at least once.
    while t_outage.elapsed() < Duration::from_millis(2500) {
        let t = Instant::now();
        let r = redis.claim("AK", &format!("paused-{i:012}"), Duration::from_secs(60)).await;
        assert!(matches!(r, Err(StateError::Unavailable(_))), "{r:?}");
        worst = worst.max(t.elapsed());
        let t = Instant::now();
        let r = gate.admit(&with_nonce(&format!("gate-paused-{i:08}"))).await;
        assert!(matches!(r, Err(StateError::Unavailable(_))), "{r:?}");
        worst = worst.max(t.elapsed());
        i += 1;
    }
    assert!(worst < MAX_FAIL_TIME, "slowest failure {worst:?}");
    assert!(gate.is_degraded());
    own.resume();
    let took = wait_healthy(&gate, Duration::from_secs(5)).await;
    eprintln!("failure(pause): slowest refused call {worst:?}; healthy {took:?} after resume");
    assert!(gate.admit(&with_nonce("after-resume-00001")).await.unwrap().admitted());
}

#[tokio::test]
async fn connect_to_a_dead_port_fails_fast_and_lazy_connect_recovers() {
    let mut own = OwnRedis::start();
    own.kill();
    let t = Instant::now();
    assert!(RedisState::connect(&own.url(), "kgtest:fail4:", TIMEOUT).await.is_err());
    assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", t.elapsed());
    // A replica may start while Redis is down and pick it up later.
    let lazy = RedisState::connect_lazy(&own.url(), "kgtest:fail4:", TIMEOUT).unwrap();
    assert!(lazy.ping().await.is_err());
    own.restart();
    let t0 = Instant::now();
    while lazy.ping().await.is_err() {
        assert!(t0.elapsed() < Duration::from_secs(5), "lazy handle did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
