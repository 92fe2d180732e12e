// Shared harness of the end-to-end tests: a recording upstream (HTTP/1.1 + h2c, with trailers),
// and the real keygate binary started on a free port from a generated config.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

#[derive(Debug, Clone, Default)]
pub struct Upstream {
    pub addr: Option<SocketAddr>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub fn addr(&self) -> SocketAddr {
        self.addr.unwrap()
    }
    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("upstream saw no request")
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Starts the recording upstream on a background runtime thread. Paths:
/// `/slow…` waits 3 s; `/grpc…` answers like a gRPC server (trailers); anything else echoes 200.
pub fn start_upstream() -> Upstream {
    let (tx, rx) = std::sync::mpsc::channel();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let pq = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                            seen.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                path_and_query: pq.clone(),
                                headers: parts.headers.clone(),
                                body: body.clone(),
                                version: parts.version,
                            });
                            type B = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;
                            let resp: hyper::Response<B> = if pq.starts_with("/delay") {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                                let n = seen.lock().unwrap().len();
                                hyper::Response::new(
                                    Full::new(Bytes::from(format!("processed #{n}"))).boxed(),
                                )
                            } else if pq.starts_with("/json") {
                                // Echoes the request body as JSON (response field encryption).
                                let mut r = hyper::Response::new(Full::new(body.clone()).boxed());
                                r.headers_mut().insert("content-type", "application/json".parse().unwrap());
                                r
                            } else if pq.starts_with("/slow") {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                                hyper::Response::new(Full::new(Bytes::from_static(b"late")).boxed())
                            } else if pq.starts_with("/grpc") {
                                let mut trailers = http::HeaderMap::new();
                                trailers.insert("grpc-status", "0".parse().unwrap());
                                trailers.insert("grpc-message", "ok-from-upstream".parse().unwrap());
                                let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
                                    vec![Ok(Frame::data(body.clone())), Ok(Frame::trailers(trailers))];
                                let mut r =
                                    hyper::Response::new(StreamBody::new(futures_iter(frames)).boxed());
                                r.headers_mut().insert("content-type", "application/grpc".parse().unwrap());
                                r
                            } else {
                                let mut r = hyper::Response::new(
                                    Full::new(Bytes::from_static(b"upstream-ok")).boxed(),
                                );
                                r.headers_mut().insert("x-upstream", "1".parse().unwrap());
                                r
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
    });
    let addr = rx.recv().unwrap();
    Upstream { addr: Some(addr), seen }
}

/// A stream over a vector, without pulling in the futures crate.
pub fn futures_iter<T: Unpin>(items: Vec<T>) -> IterStream<T> {
    IterStream(items.into_iter())
}
pub struct IterStream<T>(std::vec::IntoIter<T>);
impl<T: Unpin> tokio_stream_like::Stream for IterStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        std::task::Poll::Ready(self.0.next())
    }
}
pub mod tokio_stream_like {
    pub use futures_core::Stream;
}

/// A running keygate process; killed on drop.
pub struct Keygate {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener, when `[server] admin` is configured.
    pub admin: Option<SocketAddr>,
    /// The metrics/health listener, when `[server] metrics` is configured.
    pub metrics: Option<SocketAddr>,
    /// The outbound listener, when `[server] outbound` is configured.
    pub outbound: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Keygate {
    fn drop(&mut self) {
        if let Some(dir) = artifacts() {
            self.save_artifacts(&dir);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `KEYGATE_TEST_ARTIFACTS` set (scripts/test does), every process's log, metric output and
/// audit rows are kept there, and every secret a test used is listed in `secrets.txt`, so one
/// grep over the whole run can prove no secret leaked (scripts/secret-grep).
pub fn artifacts() -> Option<PathBuf> {
    std::env::var_os("KEYGATE_TEST_ARTIFACTS").map(PathBuf::from)
}

/// Lists a secret of this run for the final grep.
pub fn note_secret(secret: &str) {
    let Some(dir) = artifacts() else { return };
    if secret.len() < 8 {
        return; // too short to grep for without false hits
    }
    use std::io::Write as _;
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("secrets.txt")) {
        let _ = writeln!(f, "{secret}");
    }
}

impl Keygate {
    fn save_artifacts(&self, dir: &Path) {
        let tag = format!("{}-{}", std::process::id(), self.child.id());
        let _ = std::fs::create_dir_all(dir.join("logs"));
        let _ = std::fs::write(dir.join("logs").join(format!("{tag}.log")), self.logs());
        if let Some(m) = self.metrics {
            use std::io::{Read as _, Write as _};
            if let Ok(mut s) = std::net::TcpStream::connect_timeout(&m, Duration::from_secs(2)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out);
                let _ = std::fs::create_dir_all(dir.join("metrics"));
                let _ = std::fs::write(dir.join("metrics").join(format!("{tag}.txt")), out);
            }
        }
        let cfg = self.dir.path().join("keygate.toml");
        if cfg.exists() {
            let out = Command::new(bin())
                .args(["audit", "export", "-c"])
                .arg(&cfg)
                .env("KEYGATE_MASTER_KEY", MASTER_KEY)
                .output();
            if let Ok(out) = out {
                let _ = std::fs::create_dir_all(dir.join("audit"));
                let _ = std::fs::write(dir.join("audit").join(format!("{tag}.jsonl")), out.stdout);
            }
        }
    }
}

impl Keygate {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("keygate.db")
    }
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keygate")
}

pub const MASTER_KEY: &str = "v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Writes `config` (TOML; `{dir}` is replaced by the temp dir) and starts keygate on a free port.
/// Extra env vars carry the secrets the config names with secret_env.
pub fn start_keygate(config: &str, env: &[(&str, &str)]) -> Keygate {
    let dir = tempfile::tempdir().unwrap();
    let config = config.replace("{dir}", &dir.path().display().to_string());
    let cfg_path = dir.path().join("keygate.toml");
    std::fs::write(&cfg_path, config).unwrap();
    start_with(dir, &cfg_path, env)
}

pub fn start_with(dir: tempfile::TempDir, cfg_path: &Path, env: &[(&str, &str)]) -> Keygate {
    // Every value handed to the process through the environment is a secret of this run (SK,
    // master keys, passwords), as are inline `secret = "…"` values of the config.
    note_secret(MASTER_KEY.trim_start_matches("v1:"));
    for (_, v) in env {
        for part in v.split(',') {
            note_secret(part.split_once(':').map_or(part, |(_, b)| b));
        }
    }
    if let Ok(text) = std::fs::read_to_string(cfg_path) {
        for line in text.lines() {
            if let Some(v) = line.trim().strip_prefix("secret = \"") {
                note_secret(v.trim_end_matches('"'));
            }
        }
    }
    let mut cmd = Command::new(bin());
    cmd.args(["--log-format", "json", "serve", "--config"])
        .arg(cfg_path)
        .args(["--listen", "127.0.0.1:0"])
        .env("KEYGATE_MASTER_KEY", MASTER_KEY)
        .env("KEYGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let log2 = log.clone();
    let admin: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let admin2 = admin.clone();
    let metrics: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let metrics2 = metrics.clone();
    let outbound: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let outbound2 = outbound.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(addr) = v.get("addr").and_then(|a| a.as_str()) {
                    if v["message"].as_str().unwrap_or("").starts_with("admin listening") {
                        *admin2.lock().unwrap() = addr.parse().ok();
                    }
                    if v["message"].as_str().unwrap_or("").starts_with("metrics listening") {
                        *metrics2.lock().unwrap() = addr.parse().ok();
                    }
                    if v["message"].as_str().unwrap_or("").starts_with("outbound listening") {
                        *outbound2.lock().unwrap() = addr.parse().ok();
                    }
                    if v["message"].as_str().unwrap_or("").starts_with("inbound listening") {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                        }
                    }
                }
            }
            log2.lock().unwrap().push(line);
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!("keygate did not start; log:\n{}", log.lock().unwrap().join("\n"));
        }
    };
    let admin = *admin.lock().unwrap();
    let metrics = *metrics.lock().unwrap();
    let outbound = *outbound.lock().unwrap();
    Keygate { child, addr, admin, metrics, outbound, dir, log }
}

/// Minimal HTTP client for the tests (HTTP/1.1, or h2c with `http2`).
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    http2: bool,
) -> (http::StatusCode, http::HeaderMap, Bytes, Option<http::HeaderMap>) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (n, v) in headers {
        req = req.header(n.as_str(), v.as_str());
    }
    let mut req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    if http2 {
        *req.version_mut() = http::Version::HTTP_2;
    }
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (status, headers, collected.to_bytes(), trailers)
}

/// Signs with the Rust SDK (keygate_sign::Signer) and returns all headers to send.
pub fn sign(
    key: &str,
    secret: &str,
    method: &str,
    url: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    signed_headers: &[&str],
) -> Vec<(String, String)> {
    let uri: http::Uri = url.parse().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("host", uri.authority().unwrap().as_str().parse().unwrap());
    for (n, v) in extra {
        headers.append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
    }
    note_secret(secret);
    let signer = keygate_sign::Signer::new(
        key,
        secrecy::SecretBox::new(secret.as_bytes().to_vec().into_boxed_slice()),
    )
    .with_signed_headers(signed_headers.iter().copied())
    .unwrap();
    let signed = signer.sign(method, url, &headers, body).unwrap();
    let mut out: Vec<(String, String)> =
        headers.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string())).collect();
    out.extend(signed.0.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string())));
    out
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap()
}

pub fn set_header(headers: &mut [(String, String)], name: &str, value: &str) {
    for (n, v) in headers.iter_mut() {
        if n.eq_ignore_ascii_case(name) {
            *v = value.to_string();
        }
    }
}

pub fn envelope(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Runs the keygate CLI with the test master key (and no ambient admin token).
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("KEYGATE_MASTER_KEY", MASTER_KEY).env_remove("KEYGATE_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One admin API call with a bearer token; the JSON answer (or `null`).
pub async fn admin_call(
    admin: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, _, bytes, _) =
        send(method, &format!("http://{admin}{path}"), &headers, body.as_bytes(), false).await;
    (status.as_u16(), if bytes.is_empty() { serde_json::Value::Null } else { envelope(&bytes) })
}

/// Runs `tests/interop/provider_sdks.py <mode>` (the providers' and standards' own Python
/// libraries) with a JSON case; its JSON answer.
pub fn python_sdk(mode: &str, case: &serde_json::Value) -> serde_json::Value {
    python_tool("provider_sdks.py", mode, case)
}

/// Runs `tests/interop/<script> <mode>` with a JSON case on stdin; its JSON answer.
pub fn python_tool(script: &str, mode: &str, case: &serde_json::Value) -> serde_json::Value {
    use std::io::Write as _;
    let script = repo_root().join("tests/interop").join(script);
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with tests/interop/requirements.txt installed must be on PATH");
    child.stdin.take().unwrap().write_all(case.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{} {mode} failed", script.display());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A PostgreSQL database of one test's own on the local server; dropped (its sessions forced
/// out) when the value goes, also when the test panics.
pub struct PgDb {
    pub name: String,
}

impl PgDb {
    /// `<tag>_<12 random hex>`: runs in parallel never share a database.
    pub fn create(tag: &str) -> Self {
        let mut b = [0u8; 6];
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).unwrap();
        let name = format!("{tag}_{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>());
        assert!(psql("test", &format!("CREATE DATABASE {name}")), "creating database {name}");
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    /// Runs one SQL statement in this database.
    pub fn exec(&self, sql: &str) -> bool {
        psql(&self.name, sql)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        psql("test", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(db: &str, sql: &str) -> bool {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qc", sql])
        .status()
        .is_ok_and(|s| s.success())
}

/// A new admin token made directly on the store of a running keygate (`keygate admin-token
/// create`), noted as a secret of the run. `extra` adds flags, e.g. `["--role", "tenant_admin"]`;
/// the name defaults to `ops`.
pub fn admin_token(kg: &Keygate, extra: &[&str]) -> String {
    let cfg = kg.dir.path().join("keygate.toml");
    let mut args = vec!["admin-token", "create", "-c", cfg.to_str().unwrap(), "--json"];
    if !extra.contains(&"--name") {
        args.extend(["--name", "ops"]);
    }
    args.extend_from_slice(extra);
    let (ok, out, err) = cli(&args, &[]);
    assert!(ok, "admin-token create failed: {err}");
    let token =
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["token"].as_str().unwrap().to_string();
    note_secret(&token);
    token
}

/// Retries `f` until it returns `Ok`, for changes that reach a replica through its reload; panics
/// with the last answer after 30 s (generous for a loaded CI machine; no timing is asserted).
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let t = std::time::Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if t.elapsed() > Duration::from_secs(30) => panic!("{what}: still {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}
