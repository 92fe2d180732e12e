// Several keygate processes sharing one real Redis: replay protection, rate limits and
// idempotency must hold across replicas, and losing Redis must fail closed and recover.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const SECRET: &str = "cluster-secret-0123456789abcdef";
const AK: &str = "AKCLUSTER0001";
const AK_LIMITED: &str = "AKLIMITED0001";

fn unique_prefix() -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("kgtest:{}:{n}:", std::process::id())
}

fn config(upstream: SocketAddr, redis_url: &str, prefix: &str, timeout_ms: u64) -> String {
    format!(
        r#"
[store]
url = "sqlite://{{dir}}/keygate.db"
[state]
redis = "{redis_url}"
key_prefix = "{prefix}"
timeout_ms = {timeout_ms}
[[routes]]
path_prefix = "/"
upstream = "http://{upstream}"
[[apps]]
id = "cluster-app"
[[apps.keys]]
access_key = "{AK}"
secret_env = "SK"
[[apps.keys]]
access_key = "{AK_LIMITED}"
secret_env = "SK"
rate_limit = {{ rate_per_sec = 100, burst = 20 }}
"#
    )
}

fn replicas(n: usize, upstream: SocketAddr, redis_url: &str, prefix: &str) -> Vec<Keygate> {
    // A generous deadline: these tests are about exactness under load on a small, busy CI box;
    // the outage test below checks fast failure with the default 50 ms.
    (0..n).map(|_| start_keygate(&config(upstream, redis_url, prefix, 1000), &[("SK", SECRET)])).collect()
}

fn delete_prefix(prefix: &str) {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "--scan", "--pattern", &format!("{prefix}*")])
        .output()
        .unwrap();
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|s| s.to_string()).collect();
    for chunk in keys.chunks(500) {
        let _ = Command::new("redis-cli").args(["-h", "127.0.0.1", "DEL"]).args(chunk).output();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Sends `total` copies of one signed request, spread round-robin over the replicas with
/// `concurrency` in flight; returns the count of each status.
async fn blast(
    urls: Vec<String>,
    headers: Vec<(String, String)>,
    total: usize,
    concurrency: usize,
) -> (usize, usize, usize) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counts = Arc::new(std::sync::Mutex::new((0usize, 0usize, 0usize)));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, counts, urls, headers) =
            (client.clone(), next.clone(), counts.clone(), urls.clone(), headers.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let mut req = hyper::Request::builder().method("GET").uri(&urls[i % urls.len()]);
                for (n, v) in &headers {
                    if n != "host" {
                        req = req.header(n.as_str(), v.as_str());
                    }
                }
                let resp = client.request(req.body(http_body_util::Full::default()).unwrap()).await.unwrap();
                let status = resp.status().as_u16();
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                let mut c = counts.lock().unwrap();
                match status {
                    200 => c.0 += 1,
                    401 => c.1 += 1,
                    _ => c.2 += 1,
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = *counts.lock().unwrap();
    c
}

#[test]
fn one_signed_request_replayed_10000_times_across_replicas_is_accepted_once() {
    let up = start_upstream();
    let prefix = unique_prefix();
    let kgs = replicas(3, up.addr(), "redis://127.0.0.1:6379/0", &prefix);
    let rt = runtime();
    for n in [2usize, 3] {
        // Host is not signed, so one signature is valid on every replica's port.
        let path = format!("/replay/{n}?x=1");
        let headers = sign(AK, SECRET, "GET", &kgs[0].url(&path), &[], b"", &[]);
        let urls: Vec<String> = kgs[..n].iter().map(|k| k.url(&path)).collect();
        let (ok, replayed, other) = rt.block_on(blast(urls, headers, 10_000, 64));
        assert_eq!((ok, replayed, other), (1, 9_999, 0), "{n} replicas");
    }
    assert_eq!(up.count(), 2);
    delete_prefix(&prefix);
}

#[test]
fn rate_limit_is_exact_across_three_replicas() {
    let up = start_upstream();
    let prefix = unique_prefix();
    let kgs = replicas(3, up.addr(), "redis://127.0.0.1:6379/0", &prefix);
    let urls: Vec<String> = kgs.iter().map(|k| k.url("/limited")).collect();
    let rt = runtime();
    let (accepted, limited, elapsed, sample) = rt.block_on(async {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        let deadline = Duration::from_secs(5);
        let start = Instant::now();
        let counts = Arc::new(std::sync::Mutex::new((0usize, 0usize, None::<http::HeaderMap>)));
        let mut tasks = Vec::new();
        for t in 0..24 {
            let (client, counts, urls) = (client.clone(), counts.clone(), urls.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = t;
                while start.elapsed() < deadline {
                    let url = &urls[i % urls.len()];
                    i += 1;
                    let headers = sign(AK_LIMITED, SECRET, "GET", url, &[], b"", &[]);
                    let mut req = hyper::Request::builder().uri(url);
                    for (n, v) in &headers {
                        if n != "host" {
                            req = req.header(n.as_str(), v.as_str());
                        }
                    }
                    let resp =
                        client.request(req.body(http_body_util::Full::default()).unwrap()).await.unwrap();
                    let status = resp.status().as_u16();
                    let h = resp.headers().clone();
                    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                    let mut c = counts.lock().unwrap();
                    match status {
                        200 => c.0 += 1,
                        429 => {
                            c.1 += 1;
                            c.2.get_or_insert(h);
                        }
                        s => panic!("unexpected status {s}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let c = counts.lock().unwrap();
        (c.0, c.1, start.elapsed(), c.2.clone())
    });
    let budget = 20.0 + 100.0 * elapsed.as_secs_f64();
    let error = (accepted as f64 - budget).abs() / budget;
    eprintln!(
        "accepted {accepted}, limited {limited}, elapsed {elapsed:?}, budget {budget:.1}, error {:.2}%",
        error * 100.0
    );
    assert!(limited > accepted, "the load must exceed the limit for the test to mean anything");
    assert!(error <= 0.02, "accepted {accepted} vs budget {budget:.1} ({:.2}% off)", error * 100.0);
    let h = sample.unwrap();
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(h["ratelimit-limit"], "20");
    assert_eq!(h["ratelimit-remaining"], "0");
    assert!(h.contains_key("ratelimit-reset"));
    assert_eq!(up.count(), accepted);
    delete_prefix(&prefix);
}

#[test]
fn idempotency_race_reaches_the_upstream_once() {
    let up = start_upstream();
    let prefix = unique_prefix();
    let kgs = replicas(3, up.addr(), "redis://127.0.0.1:6379/0", &prefix);
    let rt = runtime();
    let body = br#"{"pay":100}"#;
    let send_dup = |i: usize, body: &'static [u8]| {
        let url = kgs[i % kgs.len()].url("/delay/pay");
        let headers = sign(AK, SECRET, "POST", &url, &[("idempotency-key", "order-42")], body, &[]);
        async move { send("POST", &url, &headers, body, false).await }
    };
    let results = rt.block_on(async {
        let futs: Vec<_> = (0..50).map(|i| tokio::spawn(send_dup(i, body))).collect();
        let mut out = Vec::new();
        for f in futs {
            out.push(f.await.unwrap());
        }
        out
    });
    assert_eq!(up.count(), 1, "the upstream must see exactly one of 50 concurrent duplicates");
    let first: Vec<_> =
        results.iter().filter(|r| r.0 == 200 && !r.1.contains_key("idempotent-replayed")).collect();
    assert_eq!(first.len(), 1);
    for r in &results {
        match r.0.as_u16() {
            200 => assert_eq!(r.2, first[0].2),
            409 => assert_eq!(envelope(&r.2)["code"], "idempotency_in_flight"),
            s => panic!("unexpected {s}"),
        }
    }
    // After completion: the stored response is replayed, from any replica.
    let (s, h, b, _) = rt.block_on(send_dup(7, body));
    assert_eq!((s.as_u16(), &b), (200, &first[0].2));
    assert_eq!(h["idempotent-replayed"], "true");
    // Same key, different body: refused.
    let (s, _, b, _) = rt.block_on(send_dup(8, br#"{"pay":999}"#));
    assert_eq!(
        (s.as_u16(), envelope(&b)["code"].as_str().unwrap().to_string()),
        (422, "idempotency_key_reused".into())
    );
    assert_eq!(up.count(), 1);
    delete_prefix(&prefix);
}

struct RedisServer(Child);
impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis(port: u16) -> RedisServer {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    RedisServer(child)
}

#[test]
fn losing_redis_fails_closed_and_recovers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = start_redis(port);
    let up = start_upstream();
    let mut kg = start_keygate(
        &config(up.addr(), &format!("redis://127.0.0.1:{port}/0"), "kgfail:", 50),
        &[("SK", SECRET)],
    );
    let rt = runtime();
    let base = kg.addr;
    let call = |path: &str| {
        let url = format!("http://{base}{path}");
        let h = sign(AK, SECRET, "GET", &url, &[], b"", &[]);
        rt.block_on(async move {
            let t = Instant::now();
            let r = send("GET", &url, &h, b"", false).await;
            (r.0.as_u16(), envelope_or_text(&r.2), t.elapsed())
        })
    };
    assert_eq!(call("/before").0, 200);
    drop(redis); // SIGKILL
    for i in 0..5 {
        let (status, code, took) = call(&format!("/during/{i}"));
        assert_eq!((status, code.as_str()), (503, "state_unavailable"));
        assert!(took < Duration::from_secs(2), "refusal took {took:?}");
    }
    assert!(kg.child.try_wait().unwrap().is_none(), "keygate exited");
    let _redis = start_redis(port);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, _) = call("/after");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover within 5 s of Redis returning");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(100));
    let logs = kg.logs();
    assert!(logs.contains("WARN") || logs.contains("\"level\":\"WARN\""), "no transition logged:\n{logs}");
    assert_eq!(up.count(), 2);
}

fn envelope_or_text(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(|s| s.to_string()))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}
