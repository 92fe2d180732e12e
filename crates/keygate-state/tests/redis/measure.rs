// Latency of the Redis admission path on the shared Redis (ignored by default: numbers, not
// assertions). Run: cargo test -p keygate-state --release --test redis measure -- --ignored --nocapture

use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_state::{Admission, BucketCheck, BucketLimit, NonceCheck, RedisState, RequestGate};
use tokio::sync::Mutex;

use crate::common::*;

fn request(i: u64) -> Admission {
    let limit = BucketLimit { rate_per_sec: 1e6, burst: 1_000_000 };
    Admission {
        nonce: Some(NonceCheck {
            scope: "AKIDEXAMPLE0001".into(),
            nonce: format!("{i:032x}"),
            ttl: Duration::from_secs(600),
        }),
        buckets: vec![
            BucketCheck { name: "key:AKIDEXAMPLE0001".into(), limit, cost: 1 },
            BucketCheck { name: "ip:127.0.0.1:POST:/v1/orders".into(), limit, cost: 1 },
        ],
    }
}

fn report(what: &str, mut lat: Vec<Duration>, errors: usize) {
    lat.sort_unstable();
    eprintln!(
        "{what}: n={} errors={errors} p50={:?} p90={:?} p99={:?} p99.9={:?} max={:?}",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat.last().copied().unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly with --ignored --nocapture"]
async fn measure_admit_latency() {
    let prefix = unique_prefix("measure");
    let _cleanup = Cleanup::new(SHARED_URL, &prefix);
    let s = shared(&prefix, RedisState::DEFAULT_TIMEOUT).await;
    for i in 0..500 {
        let _ = s.admit(&request(u64::MAX - i)).await;
    }

    // Closed loop: one request at a time, 10k sequential admissions.
    let mut lat = Vec::with_capacity(10_000);
    let mut errors = 0;
    for i in 0..10_000u64 {
        let t = Instant::now();
        if s.admit(&request(i)).await.is_err() {
            errors += 1;
        }
        lat.push(t.elapsed());
    }
    report("closed loop, sequential (nonce + 2 buckets)", lat, errors);

    // Open loop: 5,000 requests/s for 3 s, each on its own task. Requests are released in
    // batches of 5 per millisecond (tokio's timer resolution); latency is measured from the
    // moment each task starts, so timer lateness is not counted as Redis latency.
    let rate = 5_000u64;
    let per_tick = 5u64;
    let total = rate * 3;
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for batch in 0..total / per_tick {
        tick.tick().await;
        for j in 0..per_tick {
            let i = batch * per_tick + j;
            let (s, lat, errs) = (s.clone(), lat.clone(), errs.clone());
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let r = s.admit(&request(1_000_000 + i)).await;
                let took = t.elapsed();
                if r.is_err() {
                    errs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                lat.lock().await.push(took);
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    let lat = std::mem::take(&mut *lat.lock().await);
    report(
        &format!("open loop {rate}/s offered, {achieved:.0}/s achieved"),
        lat,
        errs.load(std::sync::atomic::Ordering::Relaxed),
    );
}
