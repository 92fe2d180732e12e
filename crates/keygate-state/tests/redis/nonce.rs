// Nonces on the shared Redis: set-if-absent semantics, expiry, and exactly-once under contention.
// Uses only keys under the test's own prefix.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keygate_state::{NonceClaim, NonceStore, RedisState};

use crate::common::*;

#[tokio::test]
async fn nonce_fresh_then_replayed() {
    let prefix = unique_prefix("nonce1");
    let cleanup = Cleanup::new(SHARED_URL, &prefix);
    let s = shared(&prefix, Duration::from_secs(1)).await;
    let ttl = Duration::from_secs(60);
    assert_eq!(s.claim("AK1", "n-0001", ttl).await.unwrap(), NonceClaim::Fresh);
    assert_eq!(s.claim("AK1", "n-0001", ttl).await.unwrap(), NonceClaim::Replayed);
    assert_eq!(s.claim("AK2", "n-0001", ttl).await.unwrap(), NonceClaim::Fresh);
    let key = s.nonce_key("AK1", "n-0001");
    assert_eq!(key, format!("{prefix}nonce:{{AK1}}:n-0001"));
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut sync_conn(SHARED_URL)).unwrap();
    assert!((59_000..=60_000).contains(&pttl), "PTTL {pttl}");
    assert_eq!(cleanup.keys().len(), 2);
}

#[tokio::test]
async fn nonce_ttl_expiry() {
    let prefix = unique_prefix("nonce2");
    let _cleanup = Cleanup::new(SHARED_URL, &prefix);
    let s = shared(&prefix, Duration::from_secs(1)).await;
    let ttl = Duration::from_millis(100);
    assert_eq!(s.claim("AK", "short", ttl).await.unwrap(), NonceClaim::Fresh);
    assert_eq!(s.claim("AK", "short", ttl).await.unwrap(), NonceClaim::Replayed);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(s.claim("AK", "short", ttl).await.unwrap(), NonceClaim::Fresh);
}

/// One signed request replayed 10,000 times, spread over 4 independent handles (4 TCP
/// connections, as 4 replicas would have) and 80 concurrent tasks: exactly one is fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_10k_concurrent_claims_exactly_one_fresh() {
    let prefix = unique_prefix("nonce3");
    let cleanup = Cleanup::new(SHARED_URL, &prefix);
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(shared(&prefix, Duration::from_secs(5)).await);
    }
    let fresh = Arc::new(AtomicUsize::new(0));
    let replayed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..80 {
        let s: RedisState = handles[t % 4].clone();
        let (fresh, replayed, failed) = (fresh.clone(), replayed.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..125 {
                match s.claim("AKIDEXAMPLE", "0123456789abcdef-replayed", Duration::from_secs(60)).await {
                    Ok(NonceClaim::Fresh) => fresh.fetch_add(1, Ordering::Relaxed),
                    Ok(NonceClaim::Replayed) => replayed.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert_eq!(fresh.load(Ordering::Relaxed), 1);
    assert_eq!(replayed.load(Ordering::Relaxed), 9_999);
    assert_eq!(cleanup.keys().len(), 1);
}

#[tokio::test]
async fn nonce_keys_are_escaped_and_bounded() {
    let prefix = unique_prefix("nonce4");
    let cleanup = Cleanup::new(SHARED_URL, &prefix);
    let s = shared(&prefix, Duration::from_secs(1)).await;
    let ttl = Duration::from_secs(60);
    let huge = "n".repeat(100_000);
    for (scope, nonce) in [("a}:{b", "c:d"), ("a", "}:{b:c:d"), ("AK", huge.as_str()), ("AK\n*?[", "x y\0z")]
    {
        assert_eq!(s.claim(scope, nonce, ttl).await.unwrap(), NonceClaim::Fresh, "{scope:?}");
        assert_eq!(s.claim(scope, nonce, ttl).await.unwrap(), NonceClaim::Replayed, "{scope:?}");
    }
    let keys = cleanup.keys();
    assert_eq!(keys.len(), 4, "{keys:?}");
    for k in &keys {
        assert!(k.len() < prefix.len() + 160, "{k}");
        assert_eq!(k.matches('{').count(), 1, "{k}");
    }
}
