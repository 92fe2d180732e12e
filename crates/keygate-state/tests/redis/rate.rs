// Token buckets on Redis: the cluster-wide budget across replicas, decision values, idle expiry,
// and script reload after SCRIPT FLUSH (on a private server, never the shared one).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_state::{BucketLimit, IdemBegin, IdempotencyStore, RateLimiter, RedisState};

use crate::common::*;

/// 100/s, burst 20, shared by 3 independent handles (3 replicas), each hammering from 3 tasks
/// for 2.5 s. The cluster-wide budget over the run is burst + rate × elapsed, with elapsed
/// measured by Redis TIME right before the first and right after the last request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_three_replicas_share_one_budget_within_2_percent() {
    let prefix = unique_prefix("rate1");
    let _cleanup = Cleanup::new(SHARED_URL, &prefix);
    let limit = BucketLimit { rate_per_sec: 100.0, burst: 20 };
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(shared(&prefix, Duration::from_secs(2)).await);
    }
    let allowed = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let run = Duration::from_millis(2500);
    let go = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = Vec::new();
    for i in 0..9 {
        let s: RedisState = replicas[i % 3].clone();
        let (allowed, denied, errors, go) = (allowed.clone(), denied.clone(), errors.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            go.wait().await;
            let deadline = Instant::now() + run;
            while Instant::now() < deadline {
                match s.check("key:AKIDEXAMPLE", &limit, 1).await {
                    Ok(d) if d.allowed => allowed.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => denied.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let t_start = redis_time_us(SHARED_URL);
    go.wait().await;
    for t in tasks {
        t.await.unwrap();
    }
    let t_end = redis_time_us(SHARED_URL);
    let elapsed = (t_end - t_start) as f64 / 1e6;
    let expected = 20.0 + 100.0 * elapsed;
    let got = allowed.load(Ordering::Relaxed) as f64;
    eprintln!(
        "rate: allowed {got} denied {} errors {} over {elapsed:.4} s (Redis TIME); expected {expected:.1}",
        denied.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    assert!(denied.load(Ordering::Relaxed) > 1000, "load too light to drain the bucket");
    assert!(got <= expected + 1.0, "over budget: {got} > {expected}");
    assert!((got - expected).abs() <= expected * 0.02, "{got} vs {expected}");
}

#[tokio::test]
async fn rate_decision_values_are_sane() {
    let prefix = unique_prefix("rate2");
    let _cleanup = Cleanup::new(SHARED_URL, &prefix);
    let s = shared(&prefix, Duration::from_secs(1)).await;
    // 1/s so no token refills during the few milliseconds this takes.
    let limit = BucketLimit { rate_per_sec: 1.0, burst: 20 };
    for i in 0..20 {
        let d = s.check("b", &limit, 1).await.unwrap();
        assert!(d.allowed, "token {i}");
        assert_eq!(d.remaining, 19 - i);
        assert_eq!(d.limit, 20);
        assert_eq!(d.retry_after, Duration::ZERO);
    }
    let d = s.check("b", &limit, 1).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert!(d.retry_after > Duration::from_millis(900) && d.retry_after <= Duration::from_secs(1), "{d:?}");
    assert!(d.reset_after > Duration::from_secs(19) && d.reset_after <= Duration::from_secs(20), "{d:?}");
    // The key lives exactly as long as the bucket needs to refill.
    let pttl: i64 = redis::cmd("PTTL").arg(s.bucket_key("b")).query(&mut sync_conn(SHARED_URL)).unwrap();
    assert!((19_000..=20_000).contains(&pttl), "PTTL {pttl}");
    // Cost 0 peeks; a cost above the burst never passes.
    let d = s.check("b", &limit, 0).await.unwrap();
    assert!(d.allowed && d.remaining == 0);
    let d = s.check("other", &limit, 21).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, 20);
    // Refill: 100/s bucket drained, one token back after 10 ms.
    let fast = BucketLimit { rate_per_sec: 100.0, burst: 2 };
    assert!(s.check("fast", &fast, 2).await.unwrap().allowed);
    let d = s.check("fast", &fast, 1).await.unwrap();
    assert!(!d.allowed && d.retry_after <= Duration::from_millis(10));
    tokio::time::sleep(d.retry_after + Duration::from_millis(2)).await;
    assert!(s.check("fast", &fast, 1).await.unwrap().allowed);
    // Invalid limits are refused before touching Redis.
    assert!(s.check("b", &BucketLimit { rate_per_sec: 0.0, burst: 1 }, 1).await.is_err());
}

#[tokio::test]
async fn rate_idle_bucket_key_expires() {
    let prefix = unique_prefix("rate3");
    let cleanup = Cleanup::new(SHARED_URL, &prefix);
    let s = shared(&prefix, Duration::from_secs(1)).await;
    let limit = BucketLimit { rate_per_sec: 50.0, burst: 5 };
    assert!(s.check("idle", &limit, 5).await.unwrap().allowed);
    assert_eq!(cleanup.keys().len(), 1);
    // Full again after 100 ms; the key is gone and a fresh bucket behaves the same as a full one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(cleanup.keys().is_empty());
    assert_eq!(s.check("idle", &limit, 0).await.unwrap().remaining, 5);
}

/// `SCRIPT FLUSH` (as after a Redis restart or failover) between calls: the next call gets
/// NOSCRIPT, the client reloads the script and the call succeeds. Own server: flushing the
/// shared Redis's script cache would disturb other users of it.
#[tokio::test]
async fn noscript_after_script_flush_reloads_transparently() {
    let own = OwnRedis::start();
    let s = RedisState::connect(&own.url(), "kgtest:noscript:", Duration::from_secs(1)).await.unwrap();
    let limit = BucketLimit { rate_per_sec: 1.0, burst: 10 };
    assert_eq!(s.check("b", &limit, 1).await.unwrap().remaining, 9);
    assert_eq!(s.begin("app", "k", [1; 32], Duration::from_secs(5)).await.unwrap(), IdemBegin::Proceed);
    let loads_before = calls(&commandstats(&own.url()), "script|load");
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut sync_conn(&own.url())).unwrap();
    assert_eq!(s.check("b", &limit, 1).await.unwrap().remaining, 8);
    assert_eq!(s.begin("app", "k", [1; 32], Duration::from_secs(5)).await.unwrap(), IdemBegin::InFlight);
    let after = commandstats(&own.url());
    assert_eq!(calls(&after, "script|load") - loads_before, 2, "{after:?}");
}
