// Owns scripted recipes (seed 000's "custom mode"): a bounded pool of QuickJS runtimes on their
// own threads, a fresh context per execution (nothing a script changes survives it), a memory
// limit, a CPU deadline through the interrupt handler, a stack limit, no module loader (no
// `std`/`os`, no files, no network), no `eval`/`Function`, and only the helpers registered here.
// Secrets reach a script only as the arguments it names; every error message leaving a script
// has those values removed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use rquickjs::{Array, Ctx, Exception, Function, Object, TypedArray, Value};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::client::ProviderClient;
use crate::crypto;
use crate::token::{Fetched, TokenManager};

/// Limits of one execution.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub cpu: Duration,
    pub memory_bytes: usize,
    pub stack_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { cpu: Duration::from_millis(50), memory_bytes: 16 << 20, stack_bytes: 256 << 10 }
    }
}

/// The request as a script sees it (and returns it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScriptRequest {
    /// Lowercase names.
    pub headers: BTreeMap<String, String>,
    /// Path (relative to the provider's base URL) or, after `setURI`, an absolute URL.
    pub uri: String,
    /// Decoded query parameters.
    pub params: BTreeMap<String, String>,
    /// The JSON object body (`null` when the body is not a JSON object).
    pub body: serde_json::Value,
}

/// What the host offers a script besides pure helpers.
pub struct Bridge {
    pub handle: tokio::runtime::Handle,
    pub client: ProviderClient,
    /// Time left for the whole outbound call: the budget of each `http_post_json`.
    pub timeout: Duration,
    pub tokens: Arc<TokenManager>,
    pub token_key: String,
    /// Values of the bindings the script received: scrubbed from every error message.
    pub secrets: Vec<Zeroizing<String>>,
    /// This execution holds the token fetch lock (between `token_load` → null and `token_save`).
    pub holds_token_lock: std::sync::atomic::AtomicBool,
    /// Test runs: canned answers for `http_post_json` (URL → status, body); `None` in production.
    pub mocks: Option<Vec<Mock>>,
    /// Test runs: the steps the script took through host calls.
    pub trace: Option<Arc<Mutex<Vec<String>>>>,
}

/// A canned `http_post_json` answer for test runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mock {
    pub url: String,
    #[serde(default = "d_200")]
    pub status: u16,
    pub body: String,
}

fn d_200() -> u16 {
    200
}

impl Bridge {
    fn step(&self, what: String) {
        if let Some(t) = &self.trace {
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            if t.len() < 200 {
                t.push(scrub(&what, &self.secrets));
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // A script that failed between token_load and token_save must not block the others.
        if self.holds_token_lock.load(Ordering::SeqCst) {
            self.tokens.release(&self.token_key);
        }
    }
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("token_key", &self.token_key).finish_non_exhaustive()
    }
}

/// One execution.
pub struct Job {
    pub source: Arc<str>,
    /// Values for the function's parameters after the first three, in order.
    pub args: Vec<Option<Zeroizing<String>>>,
    pub request: ScriptRequest,
    pub limits: Limits,
    pub bridge: Arc<Bridge>,
    /// Set for a response hook: `function (respHeaders, respBody, status, bindings…)`.
    pub status: Option<u16>,
    reply: tokio::sync::oneshot::Sender<Result<(ScriptRequest, bool), String>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("args", &self.args.len()).finish_non_exhaustive()
    }
}

/// A bounded pool of script workers.
#[derive(Debug)]
pub struct ScriptPool {
    tx: mpsc::SyncSender<Job>,
}

impl ScriptPool {
    /// `workers` threads, each with its own runtime; at most `queue` jobs wait.
    pub fn new(workers: usize, queue: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let spawned =
                std::thread::Builder::new().name(format!("kg-script-{i}")).spawn(move || worker(rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a script worker");
            }
        }
        Self { tx }
    }

    /// Runs `source` on `request`; refuses at once when the queue is full.
    pub async fn run(
        &self,
        source: Arc<str>,
        args: Vec<Option<Zeroizing<String>>>,
        request: ScriptRequest,
        limits: Limits,
        bridge: Arc<Bridge>,
    ) -> Result<ScriptRequest, String> {
        self.submit(source, args, request, limits, bridge, None).await.map(|(r, _)| r)
    }

    /// Runs a response hook on `response` (headers and JSON body in a [`ScriptRequest`]);
    /// returns the edited response and whether the hook asked to drop the token.
    pub async fn run_response(
        &self,
        source: Arc<str>,
        args: Vec<Option<Zeroizing<String>>>,
        response: ScriptRequest,
        status: u16,
        limits: Limits,
        bridge: Arc<Bridge>,
    ) -> Result<(ScriptRequest, bool), String> {
        self.submit(source, args, response, limits, bridge, Some(status)).await
    }

    async fn submit(
        &self,
        source: Arc<str>,
        args: Vec<Option<Zeroizing<String>>>,
        request: ScriptRequest,
        limits: Limits,
        bridge: Arc<Bridge>,
        status: Option<u16>,
    ) -> Result<(ScriptRequest, bool), String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job { source, args, request, limits, bridge, status, reply };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => return Err("all script workers are busy".into()),
            Err(mpsc::TrySendError::Disconnected(_)) => return Err("script workers are gone".into()),
        }
        rx.await.map_err(|_| "the script worker stopped".to_string())?
    }
}

fn worker(rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let deadline = Arc::new(AtomicI64::new(i64::MAX));
    let mut rt = new_runtime(&deadline);
    loop {
        let job = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let Some(runtime) = rt.as_ref() else {
            let _ = job.reply.send(Err("script engine unavailable".into()));
            rt = new_runtime(&deadline);
            continue;
        };
        runtime.set_memory_limit(job.limits.memory_bytes);
        runtime.set_max_stack_size(job.limits.stack_bytes);
        let secrets = job.bridge.secrets.clone();
        let result = execute(runtime, &deadline, &job).map_err(|e| scrub(&e, &secrets));
        let failed = result.is_err();
        let _ = job.reply.send(result);
        deadline.store(i64::MAX, Ordering::SeqCst);
        if failed {
            // A script that hit a limit may leave the heap fragmented or near its cap: start over.
            rt = new_runtime(&deadline);
        } else if let Some(r) = rt.as_ref() {
            r.run_gc();
        }
    }
}

fn new_runtime(deadline: &Arc<AtomicI64>) -> Option<rquickjs::Runtime> {
    let rt = rquickjs::Runtime::new().ok()?;
    let d = deadline.clone();
    rt.set_interrupt_handler(Some(Box::new(move || now_ns() > d.load(Ordering::SeqCst))));
    Some(rt)
}

fn now_ns() -> i64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    i64::try_from(START.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(i64::MAX)
}

/// Replaces every secret value in `msg`.
pub fn scrub(msg: &str, secrets: &[Zeroizing<String>]) -> String {
    let mut out = msg.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s.as_str(), "[redacted]");
    }
    out.chars().take(300).collect()
}

const PRELUDE: &str = r#"
(function (g) {
  'use strict';
  function text(v) { return v === null || v === undefined ? '' : (typeof v === 'string' ? v : JSON.stringify(v)); }
  g.__mk = function (req) {
    var h = req.headers, p = req.params, b = (req.body && typeof req.body === 'object') ? req.body : {};
    var state = { uri: req.uri };
    var headers = {
      get: function (k) { var v = h[String(k).toLowerCase()]; return v === undefined ? null : v; },
      set: function (k, v) { h[String(k).toLowerCase()] = String(v); },
      delete: function (k) { delete h[String(k).toLowerCase()]; },
      getURI: function () { return state.uri; },
      setURI: function (u) { state.uri = String(u); }
    };
    var params = {
      get: function (k) { var v = p[k]; return v === undefined ? null : v; },
      set: function (k, v) { p[String(k)] = String(v); },
      delete: function (k) { delete p[k]; },
      keys: function () { return Object.keys(p); }
    };
    var body = {
      get: function (k) { var v = b[k]; return v === undefined ? null : v; },
      set: function (k, v) { b[String(k)] = v; },
      delete: function (k) { delete b[k]; },
      keys: function () { return Object.keys(b); },
      buildSignStr: function (skip) {
        skip = skip || ['sign'];
        return Object.keys(b).sort().filter(function (k) { return skip.indexOf(k) < 0 && text(b[k]) !== ''; })
          .map(function (k) { return k + '=' + text(b[k]); }).join('&');
      }
    };
    return { headers: headers, params: params, body: body,
             out: function () { return JSON.stringify({ headers: h, uri: state.uri, params: p, body: b }); } };
  };
})(globalThis);
"#;

fn exception(ctx: &Ctx<'_>, e: rquickjs::Error) -> String {
    if let rquickjs::Error::Exception = e {
        let v = ctx.catch();
        if let Some(ex) = v.as_exception() {
            let msg = ex.message().unwrap_or_default();
            if msg.contains("interrupted") {
                return "script exceeded its CPU time".into();
            }
            return format!("script error: {msg}");
        }
        if let Some(s) = v.as_string().and_then(|s| s.to_string().ok()) {
            return format!("script threw: {s}");
        }
        return "script threw a non-error value".into();
    }
    let text = e.to_string();
    if text.contains("out of memory") || text.contains("Allocation") {
        "script exceeded its memory limit".into()
    } else if text.contains("stack") {
        "script exceeded its stack limit".into()
    } else {
        format!("script engine: {text}")
    }
}

fn execute(
    rt: &rquickjs::Runtime,
    deadline: &Arc<AtomicI64>,
    job: &Job,
) -> Result<(ScriptRequest, bool), String> {
    let ctx = rquickjs::Context::full(rt).map_err(|e| format!("script engine: {e}"))?;
    let cpu_ns = i64::try_from(job.limits.cpu.as_nanos()).unwrap_or(i64::MAX);
    ctx.with(|ctx| -> Result<(ScriptRequest, bool), String> {
        install(&ctx, job.bridge.clone(), deadline.clone()).map_err(|e| exception(&ctx, e))?;
        ctx.eval::<(), _>(PRELUDE).map_err(|e| exception(&ctx, e))?;
        // No code generation from strings inside the sandbox.
        ctx.eval::<(), _>(
            "delete globalThis.eval; Object.defineProperty(Function.prototype, 'constructor', {value: undefined, writable: false, configurable: false});",
        )
        .map_err(|e| exception(&ctx, e))?;
        deadline.store(now_ns().saturating_add(cpu_ns), Ordering::SeqCst);
        let f: Function = ctx.eval(format!("({})", job.source)).map_err(|e| exception(&ctx, e))?;
        let input = serde_json::to_string(&job.request).map_err(|e| e.to_string())?;
        let req = ctx.json_parse(input).map_err(|e| exception(&ctx, e))?;
        let mk: Function = ctx.globals().get("__mk").map_err(|e| exception(&ctx, e))?;
        let parts: Object = mk.call((req,)).map_err(|e| exception(&ctx, e))?;
        let args = Array::new(ctx.clone()).map_err(|e| exception(&ctx, e))?;
        let first: &[&str] = if job.status.is_some() { &["headers", "body"] } else { &["headers", "params", "body"] };
        for (i, name) in first.iter().enumerate() {
            let v: Value = parts.get(*name).map_err(|e| exception(&ctx, e))?;
            args.set(i, v).map_err(|e| exception(&ctx, e))?;
        }
        if let Some(status) = job.status {
            args.set(2, i32::from(status)).map_err(|e| exception(&ctx, e))?;
        }
        for (i, a) in job.args.iter().enumerate() {
            let v = match a {
                Some(s) => rquickjs::String::from_str(ctx.clone(), s).map_err(|e| exception(&ctx, e))?.into_value(),
                None => Value::new_undefined(ctx.clone()),
            };
            args.set(3 + i, v).map_err(|e| exception(&ctx, e))?;
        }
        let apply: Function = ctx.eval("(function (f, a) { return f.apply(null, a); })").map_err(|e| exception(&ctx, e))?;
        let returned: Value = apply.call((f, args)).map_err(|e| exception(&ctx, e))?;
        // A response hook asks to drop the token by returning "clear_token" or {clearToken: true}.
        let clear = returned.as_string().and_then(|s| s.to_string().ok()).is_some_and(|s| s == "clear_token")
            || returned
                .as_object()
                .and_then(|o| o.get::<_, Value>("clearToken").ok())
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
        let out: Function = parts.get("out").map_err(|e| exception(&ctx, e))?;
        let json: rquickjs::String = out.call(()).map_err(|e| exception(&ctx, e))?;
        let json = json.to_string().map_err(|e| exception(&ctx, e))?;
        let out = serde_json::from_str::<ScriptRequest>(&json).map_err(|_| "the script left the request in an unusable shape".to_string())?;
        Ok((out, clear))
    })
}

fn bytes_of<'js>(v: &Value<'js>) -> rquickjs::Result<Vec<u8>> {
    if let Some(s) = v.as_string() {
        return Ok(s.to_string()?.into_bytes());
    }
    if let Ok(t) = TypedArray::<u8>::from_value(v.clone()) {
        if let Some(b) = t.as_bytes() {
            return Ok(b.to_vec());
        }
    }
    Err(rquickjs::Error::new_from_js("value", "string or Uint8Array"))
}

fn throw(ctx: &Ctx<'_>, msg: &str) -> rquickjs::Error {
    Exception::throw_message(ctx, msg)
}

/// Registers the helpers. Every function fails with a JS exception naming the problem.
fn install<'js>(ctx: &Ctx<'js>, bridge: Arc<Bridge>, deadline: Arc<AtomicI64>) -> rquickjs::Result<()> {
    let g = ctx.globals();
    macro_rules! digest {
        ($name:literal, $f:expr) => {
            g.set(
                $name,
                Function::new(ctx.clone(), move |v: Value<'js>| -> rquickjs::Result<String> {
                    Ok(hex::encode($f(&bytes_of(&v)?)))
                })?,
            )?;
        };
    }
    digest!("md5", crypto::md5);
    digest!("sha1", crypto::sha1);
    digest!("sha256", |b: &[u8]| crypto::sha256(b).to_vec());
    g.set(
        "hmac_sha256",
        Function::new(ctx.clone(), |k: Value<'js>, d: Value<'js>| -> rquickjs::Result<String> {
            Ok(hex::encode(crypto::hmac_sha256(&bytes_of(&k)?, &bytes_of(&d)?)))
        })?,
    )?;
    g.set(
        "hmac_sha1",
        Function::new(ctx.clone(), |k: Value<'js>, d: Value<'js>| -> rquickjs::Result<String> {
            Ok(hex::encode(crypto::hmac_sha1(&bytes_of(&k)?, &bytes_of(&d)?)))
        })?,
    )?;
    g.set(
        "aes_cbc_pkcs5_encrypt",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             k: Value<'js>,
             p: Value<'js>,
             iv: Value<'js>|
             -> rquickjs::Result<TypedArray<'js, u8>> {
                let ct = crypto::aes_cbc_encrypt(&bytes_of(&k)?, &bytes_of(&iv)?, &bytes_of(&p)?)
                    .map_err(|e| throw(&ctx, e))?;
                TypedArray::new(ctx, ct)
            },
        )?,
    )?;
    g.set(
        "aes_cbc_pkcs5_decrypt",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, k: Value<'js>, c: Value<'js>, iv: Value<'js>| -> rquickjs::Result<String> {
                let ct = ciphertext(&ctx, &c)?;
                let pt = crypto::aes_cbc_decrypt(&bytes_of(&k)?, &bytes_of(&iv)?, &ct)
                    .map_err(|e| throw(&ctx, e))?;
                String::from_utf8(pt).map_err(|_| throw(&ctx, "plaintext is not UTF-8"))
            },
        )?,
    )?;
    g.set(
        "aes_gcm_encrypt",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, k: Value<'js>, p: Value<'js>| -> rquickjs::Result<TypedArray<'js, u8>> {
                let ct =
                    crypto::aes_gcm_encrypt(&bytes_of(&k)?, &bytes_of(&p)?).map_err(|e| throw(&ctx, e))?;
                TypedArray::new(ctx, ct)
            },
        )?,
    )?;
    g.set(
        "aes_gcm_decrypt",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, k: Value<'js>, c: Value<'js>| -> rquickjs::Result<String> {
                let pt = crypto::aes_gcm_decrypt(&bytes_of(&k)?, &ciphertext(&ctx, &c)?)
                    .map_err(|e| throw(&ctx, e))?;
                String::from_utf8(pt).map_err(|_| throw(&ctx, "plaintext is not UTF-8"))
            },
        )?,
    )?;
    g.set(
        "rsa_sign_sha256",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, key: Value<'js>, d: Value<'js>| -> rquickjs::Result<String> {
                let k = keygate_sign::rsa::RsaSigner::from_text(&bytes_of(&key)?)
                    .map_err(|e| throw(&ctx, &e.to_string()))?;
                let sig = k.sign_sha256(&bytes_of(&d)?).map_err(|e| throw(&ctx, &e.to_string()))?;
                Ok(crypto::b64(&sig))
            },
        )?,
    )?;
    g.set(
        "base64_encode",
        Function::new(ctx.clone(), |v: Value<'js>| -> rquickjs::Result<String> {
            Ok(crypto::b64(&bytes_of(&v)?))
        })?,
    )?;
    g.set(
        "base64_decode",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, s: String| -> rquickjs::Result<TypedArray<'js, u8>> {
            let b = crypto::b64_decode(&s).map_err(|e| throw(&ctx, e))?;
            TypedArray::new(ctx, b)
        })?,
    )?;
    g.set(
        "hex_encode",
        Function::new(ctx.clone(), |v: Value<'js>| -> rquickjs::Result<String> {
            Ok(hex::encode(bytes_of(&v)?))
        })?,
    )?;
    g.set("url_encode", Function::new(ctx.clone(), |s: String| crypto::url_encode(&s))?)?;
    g.set(
        "bytes_to_string",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, v: Value<'js>| -> rquickjs::Result<String> {
            String::from_utf8(bytes_of(&v)?).map_err(|_| throw(&ctx, "not UTF-8"))
        })?,
    )?;
    g.set(
        "uuid",
        Function::new(ctx.clone(), |ctx: Ctx<'js>| -> rquickjs::Result<String> {
            let mut b = crypto::random_bytes::<16>().map_err(|e| throw(&ctx, e))?;
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let h = hex::encode(b);
            Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
        })?,
    )?;
    g.set(
        "now_ms",
        Function::new(ctx.clone(), || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as f64)
                .unwrap_or(0.0)
        })?,
    )?;
    // Host calls pause the CPU clock: time spent waiting on the network is not script time.
    let b = bridge.clone();
    let d = deadline.clone();
    g.set(
        "token_load",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| -> rquickjs::Result<Value<'js>> {
            let started = Instant::now();
            let t = b.handle.block_on(b.tokens.load_or_lock(&b.token_key));
            extend(&d, started);
            if t.is_none() {
                b.holds_token_lock.store(true, Ordering::SeqCst);
            }
            b.step(format!(
                "token_load() → {}",
                if t.is_some() { "cached token" } else { "null (no token: this call fetches)" }
            ));
            match t {
                Some(v) => Ok(rquickjs::String::from_str(ctx, &v)?.into_value()),
                None => Ok(Value::new_null(ctx)),
            }
        })?,
    )?;
    let b = bridge.clone();
    g.set(
        "token_save",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, token: String, expire: Value<'js>| -> rquickjs::Result<()> {
                let ttl = expire_ttl(&ctx, &expire)?;
                b.step(format!("token_save(…) → cached for {} s", ttl.as_secs()));
                b.tokens.save(&b.token_key, Fetched { value: Zeroizing::new(token), ttl });
                b.holds_token_lock.store(false, Ordering::SeqCst);
                Ok(())
            },
        )?,
    )?;
    let b = bridge;
    let d = deadline;
    g.set(
        "http_post_json",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  url: String,
                  obj: Value<'js>,
                  headers: rquickjs::function::Opt<Object<'js>>|
                  -> rquickjs::Result<String> {
                let body = ctx
                    .json_stringify(obj)?
                    .map(|s| s.to_string())
                    .transpose()?
                    .unwrap_or_else(|| "null".into());
                let mut req = Request::builder()
                    .method(Method::POST)
                    .uri(url.as_str())
                    .header("content-type", "application/json");
                if let Some(h) = headers.0 {
                    for entry in h.props::<String, String>() {
                        let (k, v) = entry?;
                        req = req.header(k, v);
                    }
                }
                if let Some(mocks) = &b.mocks {
                    let m = mocks.iter().find(|m| m.url == url);
                    b.step(format!(
                        "http_post_json({url}, {} bytes) → {}",
                        body.len(),
                        m.map_or("no mock for this URL".to_string(), |m| format!(
                            "mock {} ({} bytes)",
                            m.status,
                            m.body.len()
                        ))
                    ));
                    let m = m.ok_or_else(|| {
                        throw(&ctx, "test run: no mock response for this URL (the provider is not contacted)")
                    })?;
                    return Ok(m.body.clone());
                }
                let req = req
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|_| throw(&ctx, "invalid URL or header"))?;
                let started = Instant::now();
                let resp = b.handle.block_on(b.client.send(req, b.timeout));
                extend(&d, started);
                let resp = resp.map_err(|e| throw(&ctx, &e.to_string()))?;
                b.step(format!(
                    "http_post_json({url}) → {} ({} bytes)",
                    resp.status().as_u16(),
                    resp.body().len()
                ));
                String::from_utf8(resp.body().to_vec()).map_err(|_| throw(&ctx, "response is not UTF-8"))
            },
        )?,
    )?;
    Ok(())
}

fn extend(deadline: &AtomicI64, since: Instant) {
    let paused = i64::try_from(since.elapsed().as_nanos()).unwrap_or(0);
    deadline.fetch_add(paused, Ordering::SeqCst);
}

fn ciphertext(ctx: &Ctx<'_>, v: &Value<'_>) -> rquickjs::Result<Vec<u8>> {
    // A string is base64 (what scripts usually hold); bytes are used as they are.
    match v.as_string() {
        Some(s) => crypto::b64_decode(&s.to_string()?).map_err(|e| throw(ctx, e)),
        None => bytes_of(v),
    }
}

/// `expireTime` as providers send it: absolute Unix ms or s, or seconds from now.
fn expire_ttl(ctx: &Ctx<'_>, v: &Value<'_>) -> rquickjs::Result<Duration> {
    let n: f64 = if let Some(n) = v.as_number() {
        n
    } else if let Some(s) = v.as_string() {
        s.to_string()?.trim().parse().map_err(|_| throw(ctx, "expireTime must be a number"))?
    } else {
        300.0
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0);
    let ms = if n > 1e11 {
        n - now_ms
    } else if n > 1e9 {
        n * 1000.0 - now_ms
    } else {
        n * 1000.0
    };
    Ok(Duration::from_millis(ms.max(0.0) as u64))
}

/// The source from its `function` keyword on: leading whitespace and `//` / `/* */` comments
/// (a header comment on a script) are skipped.
pub fn after_comments(source: &str) -> &str {
    let mut s = source.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("//") {
            s = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            return s;
        }
    }
}

/// The names of the function's parameters (`function (a, b, c) …`).
pub fn parameters(source: &str) -> Result<Vec<String>, String> {
    let s = after_comments(source);
    let rest = s.strip_prefix("function").ok_or(
        "the script must be a function expression: function (reqHeaders, reqParams, reqBody, …) { … }",
    )?;
    let open = rest.find('(').ok_or("missing parameter list")?;
    let close = rest[open..].find(')').ok_or("unclosed parameter list")? + open;
    let names: Vec<String> =
        rest[open + 1..close].split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
    if names.len() < 3 {
        return Err("the function takes (reqHeaders, reqParams, reqBody, bindings…)".into());
    }
    for n in &names {
        if !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            return Err(format!("parameter {n} is not a plain identifier"));
        }
    }
    Ok(names)
}

/// Compiles the script in a throwaway sandbox: syntax errors are reported when it is saved.
/// Evaluating the function expression does not run its body; anything smuggled around it runs
/// under the same CPU and memory limits as an execution.
pub fn check_syntax(source: &str) -> Result<(), String> {
    parameters(source)?;
    let rt = rquickjs::Runtime::new().map_err(|e| e.to_string())?;
    rt.set_memory_limit(16 << 20);
    rt.set_max_stack_size(256 << 10);
    let until = Instant::now() + Duration::from_millis(100);
    rt.set_interrupt_handler(Some(Box::new(move || Instant::now() > until)));
    let ctx = rquickjs::Context::full(&rt).map_err(|e| e.to_string())?;
    ctx.with(|ctx| {
        let r: rquickjs::Result<Value> = ctx.eval(format!("({source})"));
        match r {
            Ok(v) if v.is_function() => Ok(()),
            Ok(_) => Err("the script must evaluate to a function".into()),
            Err(e) => Err(exception(&ctx, e)),
        }
    })
}
