//! Load generator for keygate: every request signed with a fresh nonce (KG1 or legacy MD5), or
//! sent unsigned (`--scheme none`) for plain-proxy baselines. Closed loop at fixed concurrency, or
//! open loop at a fixed rate with latency measured from each request's *intended* send time
//! (coordinated-omission corrected). Prints one JSON line of results.
//!
//! Open-loop pacing runs on its own OS thread, not on tokio's timer: tokio's timer wheel has 1 ms
//! resolution and rounds deadlines up, which added 0-1 ms of generator-made delay to every
//! request and buried the proxy's own latency. The pacer sleeps with `std::thread::sleep`
//! (hrtimer, ~50 µs slack), hands each intended send time to the connections round-robin, and
//! reports how late it woke (`pacer_late_p99_us`) so that share can be read off the results.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use keygate_sign::Signer;
use secrecy::SecretBox;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scheme {
    None,
    Kg1,
    Legacy,
    /// KG1 with a wrong secret: measures the rejection path.
    Kg1Bad,
}

#[derive(Debug, Parser)]
struct Args {
    /// Target URL (http:// only), e.g. http://127.0.0.1:8080/bench?x=1
    url: String,
    #[arg(long, value_enum, default_value = "kg1")]
    scheme: Scheme,
    #[arg(long, default_value = "AKBENCH000001")]
    key: String,
    /// Secret (benchmark keys only).
    #[arg(long, default_value = "bench-secret-0123456789abcdef")]
    secret: String,
    /// Connections (closed loop: one request in flight per connection).
    #[arg(short, long, default_value_t = 32)]
    connections: usize,
    #[arg(short, long, default_value_t = 10)]
    duration_secs: u64,
    /// Open loop: total requests per second across all connections (0 = closed loop).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Request body size in bytes (POST when > 0).
    #[arg(long, default_value_t = 0)]
    body_bytes: usize,
    /// Warm-up seconds excluded from the results.
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
}

#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    non2xx: AtomicU64,
    errors: AtomicU64,
}

fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    let uri: http::Uri = args.url.parse().context("url")?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// targets");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(args, uri))
}

async fn run(args: Arc<Args>, uri: http::Uri) -> Result<()> {
    let authority = uri.authority().context("host")?.to_string();
    let counters = Arc::new(Counters::default());
    // Everything a run needs before its clock starts: the crypto library's one-time set-up (tens
    // of ms in aws-lc on first use) and every connection. Otherwise the first requests wait for
    // them, and an open-loop run books that wait as tail latency of the system under test.
    let warm =
        Signer::new(args.key.clone(), SecretBox::new(args.secret.as_bytes().to_vec().into_boxed_slice()));
    warm.sign("GET", &args.url, &http::HeaderMap::new(), b"")?;
    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        senders.push(connect(&authority).await?);
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup_secs);
    let end = measure_from + Duration::from_secs(args.duration_secs);
    let seq = Arc::new(AtomicU64::new(0));
    let mut tickets = Vec::new();
    let mut tasks = Vec::new();
    for (conn_id, sender) in senders.into_iter().enumerate() {
        let (args, uri, authority, counters, seq) =
            (args.clone(), uri.clone(), authority.clone(), counters.clone(), seq.clone());
        let schedule = if args.rate > 0 {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tickets.push(tx);
            Schedule::Paced(rx)
        } else {
            Schedule::ClosedLoop
        };
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            if let Err(e) = connection(
                sender,
                &args,
                &uri,
                &authority,
                &counters,
                &seq,
                schedule,
                measure_from,
                end,
                &mut hist,
            )
            .await
            {
                eprintln!("connection {conn_id}: {e:#}");
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            hist
        }));
    }
    let pacer = (args.rate > 0).then(|| {
        let rate = args.rate;
        std::thread::spawn(move || pace(rate, start, end, tickets))
    });
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        hist.add(t.await?)?;
    }
    let late = match pacer {
        Some(p) => Some(p.join().map_err(|_| anyhow::anyhow!("pacer thread panicked"))?),
        None => None,
    };
    let secs = args.duration_secs as f64;
    let ok = counters.ok.load(Ordering::Relaxed);
    let out = serde_json::json!({
        "url": args.url,
        "scheme": format!("{:?}", args.scheme).to_lowercase(),
        "mode": if args.rate > 0 { format!("open-loop {} req/s", args.rate) } else { format!("closed-loop {} conns", args.connections) },
        "requests": hist.len(),
        "rps": hist.len() as f64 / secs,
        "ok": ok,
        "non_2xx": counters.non2xx.load(Ordering::Relaxed),
        "errors": counters.errors.load(Ordering::Relaxed),
        "p50_us": hist.value_at_quantile(0.50),
        "p99_us": hist.value_at_quantile(0.99),
        "p999_us": hist.value_at_quantile(0.999),
        "max_us": hist.max(),
        "pacer_late_p50_us": late.as_ref().map(|h| h.value_at_quantile(0.50)),
        "pacer_late_p99_us": late.as_ref().map(|h| h.value_at_quantile(0.99)),
    });
    println!("{out}");
    Ok(())
}

/// How a connection learns when to send: in a closed loop right after the previous response; in
/// an open loop at the intended times the pacer hands it (queued while a response is slow, so
/// the wait counts against the system under test).
enum Schedule {
    ClosedLoop,
    Paced(tokio::sync::mpsc::UnboundedReceiver<Instant>),
}

/// Issues intended send times at `rate` per second from `start` until `end`, round-robin over the
/// connections, and returns a histogram of how late (µs) it woke for each one.
fn pace(
    rate: u64,
    start: Instant,
    end: Instant,
    tickets: Vec<tokio::sync::mpsc::UnboundedSender<Instant>>,
) -> Histogram<u64> {
    let mut late = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let step = Duration::from_secs_f64(1.0 / rate as f64);
    for k in 0u32.. {
        let intended = start + step * k;
        if intended >= end {
            break;
        }
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        let _ = late.record((Instant::now().saturating_duration_since(intended).as_micros() as u64).max(1));
        // A connection that failed has dropped its receiver; its share is counted as errors.
        let _ = tickets[k as usize % tickets.len()].send(intended);
    }
    late
}

fn run_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.finish()
    })
}

async fn connect(authority: &str) -> Result<http1::SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(authority).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn send(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Result<http::StatusCode> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    mut sender: http1::SendRequest<Full<Bytes>>,
    args: &Args,
    uri: &http::Uri,
    authority: &str,
    counters: &Counters,
    seq: &AtomicU64,
    mut schedule: Schedule,
    measure_from: Instant,
    end: Instant,
    hist: &mut Histogram<u64>,
) -> Result<()> {
    let secret = match args.scheme {
        Scheme::Kg1Bad => "definitely-not-the-secret".to_string(),
        _ => args.secret.clone(),
    };
    let signer = Signer::new(args.key.clone(), SecretBox::new(secret.as_bytes().to_vec().into_boxed_slice()))
        .with_signed_headers(["host"])?;
    let body = Bytes::from(vec![b'x'; args.body_bytes]);
    let method = if args.body_bytes > 0 { "POST" } else { "GET" };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::HOST, http::HeaderValue::from_str(authority)?);
    loop {
        let intended = match &mut schedule {
            Schedule::ClosedLoop => Instant::now(),
            Schedule::Paced(rx) => match rx.recv().await {
                Some(t) => t,
                None => return Ok(()),
            },
        };
        if intended >= end {
            return Ok(());
        }
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        match args.scheme {
            Scheme::None => {}
            Scheme::Kg1 | Scheme::Kg1Bad => {
                for (n, v) in signer.sign(method, &args.url, &headers, &body)?.0 {
                    req = req.header(n, v);
                }
            }
            Scheme::Legacy => {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
                // Unique across runs too: keygate remembers nonces for the whole window.
                let nonce = format!("{:016x}{n:016x}", run_id());
                let mut params = vec![
                    ("appId".to_string(), args.key.clone()),
                    ("timeStamp".to_string(), ts.to_string()),
                    ("nonce".to_string(), nonce.clone()),
                    ("method".to_string(), "bench".to_string()),
                ];
                params.sort();
                let cfg = keygate_sign::legacy::LegacyConfig::default();
                let sign = keygate_sign::legacy::sign(&cfg, &params, args.secret.as_bytes());
                let pq = format!(
                    "{}?appId={}&timeStamp={ts}&nonce={nonce}&method=bench&sign={sign}",
                    uri.path(),
                    args.key
                );
                req = req.uri(pq);
            }
        }
        let req = req.body(Full::new(body.clone()))?;
        // A server may close a keep-alive connection (nginx after keepalive_requests): reconnect
        // and count it, rather than silently losing the connection's share of the load.
        let status = match send(&mut sender, req).await {
            Ok(s) => s,
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                sender = connect(authority).await?;
                continue;
            }
        };
        let done = Instant::now();
        if intended >= measure_from {
            let micros = done.saturating_duration_since(intended).as_micros() as u64;
            hist.record(micros.max(1))?;
            if status.is_success() {
                counters.ok.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.non2xx.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
