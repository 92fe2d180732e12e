// Benchmarks of the rate-limit decision in memory and of one Redis admission round trip.
// The Redis bench is skipped (with a note on stderr) only when no Redis answers on 6379.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use keygate_state::{
    Admission, BucketCheck, BucketLimit, MemoryGate, MemoryRateLimiter, NonceCheck, RedisState, RequestGate,
};

fn memory_token_bucket(c: &mut Criterion) {
    let limiter = MemoryRateLimiter::new(1_000_000);
    let limit = BucketLimit { rate_per_sec: 100.0, burst: 20 };
    c.bench_function("memory_token_bucket_decision", |b| {
        b.iter(|| limiter.check_now("key:AKIDEXAMPLE0001", &limit, 1))
    });
    let t0 = Instant::now();
    let mut i: u64 = 0;
    c.bench_function("memory_token_bucket_decision_10k_buckets", |b| {
        b.iter(|| {
            i += 1;
            let name = format!("ip:10.0.{}.{}:/v1/orders", (i / 100) % 100, i % 100);
            limiter.check_at(&name, &limit, 1, t0 + Duration::from_micros(i))
        })
    });
    let gate = MemoryGate::with_capacity(10_000_000, 1_000_000);
    let mut n: u64 = 0;
    c.bench_function("memory_admit_nonce_and_2_buckets", |b| {
        b.iter(|| {
            n += 1;
            gate.admit_now(&admission(n))
        })
    });
}

fn admission(i: u64) -> Admission {
    let limit = BucketLimit { rate_per_sec: 1e6, burst: 1_000_000 };
    Admission {
        nonce: Some(NonceCheck {
            scope: "AKIDEXAMPLE0001".into(),
            nonce: format!("{i:032x}"),
            ttl: Duration::from_secs(60),
        }),
        buckets: vec![
            BucketCheck { name: "key:AKIDEXAMPLE0001".into(), limit, cost: 1 },
            BucketCheck { name: "ip:127.0.0.1:POST:/v1/orders".into(), limit, cost: 1 },
        ],
    }
}

fn redis_admit(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redis_admit_round_trip: skipped, no runtime: {e}");
            return;
        }
    };
    let prefix = format!("kgbench:{}:", std::process::id());
    let Ok(state) =
        rt.block_on(RedisState::connect("redis://127.0.0.1:6379/0", prefix.as_str(), Duration::from_secs(1)))
    else {
        eprintln!("redis_admit_round_trip: skipped, no Redis on 127.0.0.1:6379");
        return;
    };
    let mut i: u64 = 0;
    c.bench_function("redis_admit_round_trip_nonce_and_2_buckets", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(state.admit(&admission(i)))
        })
    });
    // Nonce keys expire after 60 s; delete them now so repeated runs do not pile up.
    if let Ok(mut con) = redis::Client::open("redis://127.0.0.1:6379/0").and_then(|c| c.get_connection()) {
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
            else {
                break;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query(&mut con);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
}

criterion_group!(benches, memory_token_bucket, redis_admit);
criterion_main!(benches);
