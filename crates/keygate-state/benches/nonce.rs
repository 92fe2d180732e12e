use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use keygate_state::MemoryNonceStore;

fn nonce_claim(c: &mut Criterion) {
    let store = MemoryNonceStore::new(10_000_000);
    let mut i: u64 = 0;
    c.bench_function("memory_nonce_claim_fresh", |b| {
        b.iter(|| {
            i += 1;
            let nonce = format!("{i:032x}");
            store.claim_now("AKIDEXAMPLE0001", &nonce, Duration::from_secs(600))
        })
    });
    c.bench_function("memory_nonce_claim_replay", |b| {
        store.claim_now("AKIDEXAMPLE0001", "fixed-nonce-0123456789", Duration::from_secs(600)).ok();
        b.iter(|| store.claim_now("AKIDEXAMPLE0001", "fixed-nonce-0123456789", Duration::from_secs(600)))
    });
}

criterion_group!(benches, nonce_claim);
criterion_main!(benches);
