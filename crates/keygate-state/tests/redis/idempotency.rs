// Idempotency keys on the shared Redis: first-wins under a race of 50 duplicates across handles,
// stored-response replay, key reuse, abandon and in-flight expiry.

use std::sync::Arc;
use std::time::Duration;

use keygate_state::{IdemBegin, IdempotencyStore, RedisState, StoredResponse};
use tokio::sync::Barrier;

use crate::common::*;

fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("x-binary".into(), (0..=255u8).collect()),
        ],
        body: (0..100_000u32).map(|i| (i % 251) as u8).collect(),
    }
}

/// 50 concurrent duplicates over 5 handles (5 replicas): exactly one proceeds (the upstream
/// would see exactly one request), the other 49 are told it is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idem_50_concurrent_duplicates_exactly_one_proceeds() {
    let prefix = unique_prefix("idem1");
    let cleanup = Cleanup::new(SHARED_URL, &prefix);
    let mut handles = Vec::new();
    for _ in 0..5 {
        handles.push(shared(&prefix, Duration::from_secs(2)).await);
    }
    let fp = [0xab; 32];
    let barrier = Arc::new(Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s: RedisState = handles[i % 5].clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            s.begin("app-1", "order-42", fp, Duration::from_secs(30)).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| **o == IdemBegin::Proceed).count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == IdemBegin::InFlight).count(), 49);

    // The winner completes; every later duplicate gets the stored response, byte for byte.
    let s = &handles[0];
    s.complete("app-1", "order-42", fp, &response(), Duration::from_secs(60)).await.unwrap();
    for h in &handles {
        assert_eq!(
            h.begin("app-1", "order-42", fp, Duration::from_secs(30)).await.unwrap(),
            IdemBegin::Completed(response())
        );
    }
    // Same key, different body.
    assert_eq!(
        s.begin("app-1", "order-42", [0xcd; 32], Duration::from_secs(30)).await.unwrap(),
        IdemBegin::KeyReused
    );
    // Keys are per scope (app).
    assert_eq!(
        s.begin("app-2", "order-42", [0xcd; 32], Duration::from_secs(30)).await.unwrap(),
        IdemBegin::Proceed
    );
    // Abandon never removes a completed response; a second completion does not replace it.
    s.abandon("app-1", "order-42").await.unwrap();
    s.complete("app-1", "order-42", fp, &StoredResponse::default(), Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        s.begin("app-1", "order-42", fp, Duration::from_secs(30)).await.unwrap(),
        IdemBegin::Completed(response())
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg(s.idempotency_key("app-1", "order-42"))
        .query(&mut sync_conn(SHARED_URL))
        .unwrap();
    assert!((50_000..=60_000).contains(&pttl), "PTTL {pttl}");
    assert_eq!(cleanup.keys().len(), 2);
}

#[tokio::test]
async fn idem_abandon_lets_a_retry_proceed_and_markers_expire() {
    let prefix = unique_prefix("idem2");
    let _cleanup = Cleanup::new(SHARED_URL, &prefix);
    let s = shared(&prefix, Duration::from_secs(1)).await;
    let fp = [1; 32];
    assert_eq!(s.begin("app", "k1", fp, Duration::from_secs(30)).await.unwrap(), IdemBegin::Proceed);
    assert_eq!(s.begin("app", "k1", fp, Duration::from_secs(30)).await.unwrap(), IdemBegin::InFlight);
    // A different body is refused even while the first is in flight.
    assert_eq!(s.begin("app", "k1", [2; 32], Duration::from_secs(30)).await.unwrap(), IdemBegin::KeyReused);
    s.abandon("app", "k1").await.unwrap();
    assert_eq!(s.begin("app", "k1", fp, Duration::from_secs(30)).await.unwrap(), IdemBegin::Proceed);

    // A crashed replica's marker expires after the in-flight TTL.
    assert_eq!(s.begin("app", "k2", fp, Duration::from_millis(100)).await.unwrap(), IdemBegin::Proceed);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(s.begin("app", "k2", fp, Duration::from_secs(30)).await.unwrap(), IdemBegin::Proceed);

    // Completing after the marker expired still stores the response.
    assert_eq!(s.begin("app", "k3", fp, Duration::from_millis(50)).await.unwrap(), IdemBegin::Proceed);
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.complete("app", "k3", fp, &response(), Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        s.begin("app", "k3", fp, Duration::from_secs(30)).await.unwrap(),
        IdemBegin::Completed(response())
    );
}

#[tokio::test]
async fn idem_foreign_value_is_reported_as_corrupt() {
    let prefix = unique_prefix("idem3");
    let _cleanup = Cleanup::new(SHARED_URL, &prefix);
    let s = shared(&prefix, Duration::from_secs(1)).await;
    let fp = [9; 32];
    let mut v = b"C".to_vec();
    v.extend_from_slice(&fp);
    v.extend_from_slice(b"\x07garbage");
    let _: () = redis::cmd("SET")
        .arg(s.idempotency_key("app", "k"))
        .arg(v)
        .query(&mut sync_conn(SHARED_URL))
        .unwrap();
    let err = s.begin("app", "k", fp, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, keygate_state::StateError::Corrupt(_)), "{err:?}");
}
