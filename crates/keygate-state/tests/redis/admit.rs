// Admission (nonce + buckets in one script): one command per request, ordering rules, and the
// same decisions as the memory gate for the same sequence.

use std::time::Duration;

use keygate_state::{
    Admission, BucketCheck, BucketLimit, MemoryGate, NonceCheck, NonceClaim, RedisState, RequestGate,
};

use crate::common::*;

fn admission(nonce: Option<&str>, buckets: &[(&str, f64, u32, u32)]) -> Admission {
    Admission {
        nonce: nonce.map(|n| NonceCheck {
            scope: "AKIDEXAMPLE".into(),
            nonce: n.into(),
            ttl: Duration::from_secs(600),
        }),
        buckets: buckets
            .iter()
            .map(|(name, rate, burst, cost)| BucketCheck {
                name: (*name).into(),
                limit: BucketLimit { rate_per_sec: *rate, burst: *burst },
                cost: *cost,
            })
            .collect(),
    }
}

/// Counted on a private server so no other client's commands mix in. `MONITOR` lists every
/// command with its origin: after the script is loaded, N admissions (nonce + 2 buckets) are
/// exactly N client commands, all `EVALSHA` (one request/response each, so one round trip);
/// the rest run inside the script. `INFO commandstats` agrees on the EVALSHA count.
#[tokio::test]
async fn admit_is_one_command_per_request() {
    let own = OwnRedis::start();
    let s = RedisState::connect(&own.url(), "kgtest:rtt:", Duration::from_secs(1)).await.unwrap();
    let two = [("key:AK", 1000.0, 1000, 1), ("ip:127.0.0.1:/v1/orders", 1000.0, 1000, 1)];
    assert!(s.admit(&admission(Some("warm-up-nonce-0001"), &two)).await.unwrap().admitted());
    let before = commandstats(&own.url());
    let monitor = Monitor::start(own.port);
    let n = 200usize;
    for i in 0..n {
        let out = s.admit(&admission(Some(&format!("nonce-{i:016}")), &two)).await.unwrap();
        assert!(out.admitted());
    }
    let lines = monitor.finish();
    let after = commandstats(&own.url());
    let (in_script, client): (Vec<&String>, Vec<&String>) = lines.iter().partition(|l| l.contains(" lua] "));
    eprintln!(
        "admit: {n} requests -> {} client commands, {} commands inside the script ({} per request)",
        client.len(),
        in_script.len(),
        in_script.len() / n
    );
    assert_eq!(client.len(), n, "first lines: {:?}", &client[..client.len().min(3)]);
    let other = client.iter().find(|l| !l.to_ascii_lowercase().contains("] \"evalsha\" "));
    assert!(other.is_none(), "a client command other than EVALSHA: {other:?}");
    assert_eq!(calls(&after, "evalsha") - calls(&before, "evalsha"), n as u64);
}

#[tokio::test]
async fn admit_replay_charges_nothing_denial_charges_nothing_and_keeps_nonce() {
    let prefix = unique_prefix("admit1");
    let _cleanup = Cleanup::new(SHARED_URL, &prefix);
    let s = shared(&prefix, Duration::from_secs(1)).await;
    let b = [("key", 0.01, 2, 1), ("ip", 0.01, 1, 1)];
    let out = s.admit(&admission(Some("nonce-000000000001"), &b)).await.unwrap();
    assert!(out.admitted() && !out.local_fallback);
    assert_eq!(out.nonce, Some(NonceClaim::Fresh));
    assert_eq!((out.rate[0].remaining, out.rate[1].remaining), (1, 0));

    let out = s.admit(&admission(Some("nonce-000000000001"), &b)).await.unwrap();
    assert_eq!(out.nonce, Some(NonceClaim::Replayed));
    assert!(out.rate.is_empty() && !out.admitted());

    let out = s.admit(&admission(Some("nonce-000000000002"), &b)).await.unwrap();
    assert_eq!(out.nonce, Some(NonceClaim::Fresh));
    assert_eq!(out.denied_by, Some(1));
    assert!(out.headline().unwrap().retry_after > Duration::from_secs(99));
    // The denied request's nonce stays claimed; "key" was not charged.
    assert_eq!(
        s.admit(&admission(Some("nonce-000000000002"), &[])).await.unwrap().nonce,
        Some(NonceClaim::Replayed)
    );
    assert_eq!(s.admit(&admission(None, &[("key", 0.01, 2, 0)])).await.unwrap().rate[0].remaining, 1);
    // A bucket named twice is charged twice within one admission.
    let out = s.admit(&admission(None, &[("dup", 0.01, 3, 2), ("dup", 0.01, 3, 2)])).await.unwrap();
    assert_eq!(out.denied_by, Some(1));
    assert_eq!(s.admit(&admission(None, &[("dup", 0.01, 3, 0)])).await.unwrap().rate[0].remaining, 3);
}

/// The Lua script and the Rust arithmetic agree: the same sequence of admissions gives the same
/// outcomes on Redis and in memory (slow refill, so the different clocks do not matter).
#[tokio::test]
async fn admit_redis_and_memory_decide_alike() {
    let prefix = unique_prefix("admit2");
    let _cleanup = Cleanup::new(SHARED_URL, &prefix);
    let s = shared(&prefix, Duration::from_secs(1)).await;
    let m = MemoryGate::with_capacity(1000, 1000);
    let seq: Vec<Admission> = (0..60)
        .map(|i| {
            let nonce = if i % 7 == 3 { "repeat-nonce-00001".to_string() } else { format!("nonce-{i:012}") };
            let cost = (i % 4) as u32;
            admission(Some(&nonce), &[("a", 0.001, 25, cost), ("b", 0.0001, 40, 1), ("a", 0.001, 25, 1)])
        })
        .collect();
    for (i, req) in seq.iter().enumerate() {
        let r = s.admit(req).await.unwrap();
        let l = m.admit(req).await.unwrap();
        assert_eq!(r.nonce, l.nonce, "step {i}");
        assert_eq!(r.denied_by, l.denied_by, "step {i}");
        assert_eq!(r.rate.len(), l.rate.len(), "step {i}");
        for (x, y) in r.rate.iter().zip(&l.rate) {
            assert_eq!((x.allowed, x.remaining, x.limit), (y.allowed, y.remaining, y.limit), "step {i}");
        }
    }
}
