// Throughput of the script pool: seed 000's script (token cached) executed as fast as 2 workers
// can, from many concurrent callers. Run:
//   cargo run --release -p keygate-outbound --example script_throughput
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_outbound::client::ProviderClient;
use keygate_outbound::script::{Bridge, Limits, ScriptPool, ScriptRequest};
use keygate_outbound::token::Fetched;
use keygate_outbound::TokenManager;
use zeroize::Zeroizing;

const SEED: &str = include_str!("../../../tests/interop/seed_000.js");

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let workers = 2;
    let pool = Arc::new(ScriptPool::new(workers, 4096));
    let tokens = Arc::new(TokenManager::default());
    tokens
        .get("p:script", Duration::ZERO, || async {
            Ok(Fetched { value: Zeroizing::new("Bearer t0k3n".into()), ttl: Duration::from_secs(3600) })
        })
        .await
        .unwrap();
    let client = ProviderClient::new(Duration::from_secs(1), true, Default::default()).unwrap();
    let args = || {
        [
            "app-1",
            "0123456789abcdef",
            "fedcba9876543210",
            "https://api.example.com",
            "https://api.example.com/token",
        ]
        .iter()
        .map(|s| Some(Zeroizing::new(s.to_string())))
        .collect::<Vec<_>>()
    };
    let request = ScriptRequest {
        headers: BTreeMap::new(),
        uri: "/pay".into(),
        params: BTreeMap::new(),
        body: serde_json::json!({"data": "{\"amount\":100}", "orderNo": "A-1", "timestamp": "1764000000000"}),
    };
    let run = |n: usize| {
        let (pool, tokens, client, request) = (pool.clone(), tokens.clone(), client.clone(), request.clone());
        async move {
            let mut tasks = Vec::new();
            for _ in 0..n {
                let (pool, tokens, client, request, a) =
                    (pool.clone(), tokens.clone(), client.clone(), request.clone(), args());
                tasks.push(tokio::spawn(async move {
                    let bridge = Arc::new(Bridge {
                        handle: tokio::runtime::Handle::current(),
                        client,
                        timeout: Duration::from_secs(5),
                        tokens,
                        token_key: "p:script".into(),
                        secrets: vec![],
                        holds_token_lock: Default::default(),
                        mocks: None,
                        trace: None,
                    });
                    pool.run(Arc::from(SEED), a, request, Limits::default(), bridge).await.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    run(200).await; // warm-up
    let n = 4000;
    let t = Instant::now();
    for _ in 0..n / 400 {
        run(400).await;
    }
    let el = t.elapsed();
    println!(
        "{n} executions of seed 000's script with {workers} workers in {:.2} s: {:.0} executions/s, {:.0} µs each per worker",
        el.as_secs_f64(),
        n as f64 / el.as_secs_f64(),
        el.as_secs_f64() * 1e6 * workers as f64 / n as f64
    );
}
