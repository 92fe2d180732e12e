//! Memory of the in-memory replay store at 1M live nonces (issue 9's "RSS with 1M live nonces").
//! Run: `cargo run --release -p keygate-state --example nonce_rss`. Linux only (reads
//! /proc/self/status). Nonces look like real ones: 16-character access key scope, 32-character
//! nonce, 10-minute TTL, so none expire during the run.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use keygate_state::{MemoryNonceStore, NonceClaim};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn main() {
    const N: usize = 1_000_000;
    let store = MemoryNonceStore::new(N + 1);
    let before = rss_bytes();
    let ttl = Duration::from_secs(600);
    let t = Instant::now();
    let mut nonce = String::with_capacity(32);
    for i in 0..N {
        nonce.clear();
        use std::fmt::Write as _;
        write!(nonce, "{i:032x}").unwrap();
        let scope = ["AKIDEXAMPLE00001", "AKIDEXAMPLE00002", "AKIDEXAMPLE00003"][i % 3];
        assert_eq!(store.claim_now(scope, &nonce, ttl).unwrap(), NonceClaim::Fresh);
    }
    let elapsed = t.elapsed();
    let after = rss_bytes();
    println!(
        "{N} live nonces: RSS +{:.1} MiB ({:.0} B/nonce), inserted in {:.2} s ({:.0} ns/claim)",
        (after - before) as f64 / 1048576.0,
        (after - before) as f64 / N as f64,
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / N as f64
    );
    assert_eq!(store.len(), N);
}
