// Owns the outbound call: `/out/<provider>/<path>` from a verified caller → grant and path checks
// → rate limit, concurrency, breaker → recipe → provider (timeouts, retries within a budget, one
// refetch on a refused token) → response verification/decryption → caller. Fails closed: nothing
// is sent unless the recipe succeeded.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use http_body_util::Full;
use keygate_inbound::body::ResponseBody;
use keygate_inbound::{Dispatch, Dispatched, GatewayError};
use keygate_state::{BucketLimit, RateLimiter};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::client::ProviderClient;
use crate::config::{Compiled, ProviderConfig};
use crate::error::OutboundError;
use crate::recipe::{self, After, Bindings, Ctx, OutRequest};
use crate::resilience::{Admit, Breaker, RetryBudget};
use crate::token::TokenManager;

/// A sample request for a test run.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    #[serde(default = "d_post")]
    pub method: String,
    /// Below the provider's base URL, e.g. `/pay`.
    pub path: String,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    /// Values to use for bindings in this run. Real bindings never enter a test run: any binding
    /// not given here is replaced by random letters and digits of the same length.
    #[serde(default)]
    pub bindings: std::collections::BTreeMap<String, String>,
}

fn d_post() -> String {
    "POST".into()
}

/// What a test run returns.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestReport {
    pub ok: bool,
    pub error: Option<TestError>,
    /// The request that would be sent (credentials and binding values masked).
    pub request: Option<TestOutgoing>,
    pub trace: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TestError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TestOutgoing {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Path prefix of the outbound listener.
pub const PREFIX: &str = "/out/";

/// A provider as loaded from the store: its document and its decrypted bindings.
pub struct ProviderSpec {
    pub id: String,
    pub tenant_id: String,
    pub config: serde_json::Value,
    pub secrets: Vec<(String, Zeroizing<Vec<u8>>)>,
}

impl fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSpec")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("bindings", &self.secrets.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish()
    }
}

/// One provider, ready to serve.
#[derive(Debug)]
pub struct Provider {
    pub id: String,
    pub tenant_id: String,
    pub config: ProviderConfig,
    compiled: Compiled,
    origin: String,
    bindings: Bindings,
    client: ProviderClient,
    breaker: Arc<Breaker>,
    budget: Arc<RetryBudget>,
    inflight: Option<Arc<Semaphore>>,
    /// Digest of config + secrets: runtime state survives a reload that leaves it unchanged.
    digest: [u8; 32],
}

impl Provider {
    pub fn build(spec: ProviderSpec) -> Result<Self, String> {
        let config = ProviderConfig::parse(&spec.config)?;
        let compiled = config.compile()?;
        let client = ProviderClient::new(
            compiled.connect_timeout,
            config.allow_private_addresses,
            compiled.hosts.clone(),
        )
        .map_err(|e| e.to_string())?;
        let origin = format!(
            "{}://{}",
            compiled.base.scheme_str().unwrap_or("https"),
            compiled.base.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        let mut digest_input = Zeroizing::new(spec.config.to_string().into_bytes());
        let mut names: Vec<_> = spec.secrets.iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (n, v) in &names {
            digest_input.extend_from_slice(n.as_bytes());
            digest_input.push(0);
            digest_input.extend_from_slice(v);
            digest_input.push(0);
        }
        let digest = crate::crypto::sha256(&digest_input);
        Ok(Self {
            breaker: Arc::new(Breaker::new(
                config.breaker.failure_threshold,
                Duration::from_millis(config.breaker.open_ms),
            )),
            budget: Arc::new(RetryBudget::new(config.retry.budget_ratio)),
            inflight: (config.max_concurrency > 0)
                .then(|| Arc::new(Semaphore::new(config.max_concurrency as usize))),
            bindings: Bindings::new(spec.secrets.into_iter().map(|(n, v)| (n, v.to_vec()))),
            id: spec.id,
            tenant_id: spec.tenant_id,
            config,
            compiled,
            origin,
            client,
            digest,
        })
    }

    /// Binding names the recipe needs that are not set.
    pub fn missing_bindings(&self) -> Vec<String> {
        self.config
            .recipe
            .bindings()
            .into_iter()
            .filter(|b| self.bindings.get(b).is_err())
            .map(str::to_string)
            .collect()
    }
}

/// The outbound gateway: providers (swapped as a whole on reload), token cache, shared limiter.
pub struct Outbound {
    providers: ArcSwap<HashMap<String, Arc<Provider>>>,
    tokens: Arc<TokenManager>,
    limiter: Option<Arc<dyn RateLimiter>>,
    scripts: crate::script::ScriptPool,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound").field("providers", &self.providers.load().len()).finish_non_exhaustive()
    }
}

/// Result of a reload: what loaded and what was refused (id, reason).
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: usize,
    pub refused: Vec<(String, String)>,
}

impl Outbound {
    /// `script_workers` threads run scripted recipes (a bounded queue of 64 per worker).
    pub fn new(tokens: TokenManager, limiter: Option<Arc<dyn RateLimiter>>, script_workers: usize) -> Self {
        Self {
            providers: ArcSwap::from_pointee(HashMap::new()),
            tokens: Arc::new(tokens),
            limiter,
            scripts: crate::script::ScriptPool::new(script_workers, script_workers * 64),
        }
    }

    /// Replaces every provider at once. A provider whose config and secrets did not change keeps
    /// its breaker, budget and connection pool; one that changed loses its cached tokens. An
    /// invalid provider is left out (and reported), so its calls fail closed.
    pub fn load(&self, specs: Vec<ProviderSpec>) -> LoadReport {
        let old = self.providers.load_full();
        let mut next = HashMap::with_capacity(specs.len());
        let mut report = LoadReport::default();
        for spec in specs {
            let id = spec.id.clone();
            match Provider::build(spec) {
                Ok(p) => {
                    let p = match old.get(&id) {
                        Some(prev) if prev.digest == p.digest => prev.clone(),
                        _ => {
                            self.tokens.forget_prefix(&format!("{id}:"));
                            Arc::new(p)
                        }
                    };
                    next.insert(id, p);
                    report.loaded += 1;
                }
                Err(e) => {
                    tracing::error!(provider = %id, error = %e, "provider refused; its calls fail closed");
                    report.refused.push((id, e));
                }
            }
        }
        for id in old.keys().filter(|id| !next.contains_key(*id)) {
            self.tokens.forget_prefix(&format!("{id}:"));
        }
        self.providers.store(Arc::new(next));
        report
    }

    pub fn provider(&self, id: &str) -> Option<Arc<Provider>> {
        self.providers.load().get(id).cloned()
    }

    pub fn provider_count(&self) -> usize {
        self.providers.load().len()
    }

    /// Runs one outbound call for `app_id`. `path_and_query` is what follows `/out`.
    pub async fn call(
        &self,
        app_id: Option<&str>,
        method: Method,
        raw_path: &str,
        raw_query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Bytes>, OutboundError> {
        let rest =
            raw_path.strip_prefix(PREFIX).ok_or_else(|| OutboundError::ProviderNotFound(String::new()))?;
        let (id, sub) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let p = self.provider(id).ok_or_else(|| OutboundError::ProviderNotFound(id.to_string()))?;
        if !app_id.is_some_and(|a| p.config.granted_apps.iter().any(|g| g == a)) {
            return Err(OutboundError::ProviderNotGranted(id.to_string()));
        }
        if !p.compiled.rules.iter().any(|r| r.matches(&method, sub)) {
            return Err(OutboundError::PathNotAllowed { method: method.to_string(), path: sub.to_string() });
        }
        if body.len() as u64 > p.config.max_body_bytes {
            return Err(OutboundError::BodyTooLarge(p.config.max_body_bytes));
        }
        let query = crate::crypto::parse_pairs(raw_query.unwrap_or(""))
            .map_err(|e| OutboundError::recipe(p.config.recipe.name(), format!("query: {e}")))?;
        if let (Some(limiter), Some(r)) = (&self.limiter, &p.config.rate_limit) {
            let limit = BucketLimit { rate_per_sec: r.rate_per_sec, burst: r.burst };
            let d = limiter
                .check(&format!("out:{}", p.id), &limit, 1)
                .await
                .map_err(|_| OutboundError::StateUnavailable)?;
            if !d.allowed {
                return Err(OutboundError::RateLimited {
                    retry_after_secs: d.retry_after.as_secs_f64().ceil() as u64,
                });
            }
        }
        let _permit = match &p.inflight {
            Some(s) => Some(s.clone().try_acquire_owned().map_err(|_| OutboundError::Busy)?),
            None => None,
        };
        let req = OutRequest {
            method,
            path: sub.to_string(),
            query,
            headers: forwardable(headers),
            body,
            url_override: None,
        };
        self.run(&p, req).await
    }

    async fn run(&self, p: &Provider, original: OutRequest) -> Result<Response<Bytes>, OutboundError> {
        let started = Instant::now();
        let deadline = started + p.compiled.timeout;
        let retry = &p.config.retry;
        let idempotent = matches!(
            original.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let may_retry = idempotent || retry.unsafe_methods;
        p.budget.deposit();
        let mut attempt = 0u32;
        let mut token_retried = false;
        loop {
            attempt += 1;
            let probe = match p.breaker.admit() {
                Admit::Refuse(d) => {
                    return Err(OutboundError::CircuitOpen { retry_after_secs: d.as_secs().max(1) })
                }
                Admit::Probe => true,
                Admit::Go => false,
            };
            let ctx = Ctx {
                provider_id: &p.id,
                origin: &p.origin,
                base_path: &p.compiled.base_path,
                bindings: &p.bindings,
                tokens: &self.tokens,
                scripts: Some(&self.scripts),
                test: None,
                client: &p.client,
                deadline,
                now_ms: unix_ms(),
            };
            let mut req = original.clone();
            let prepared = match recipe::prepare(&p.config.recipe, &ctx, &mut req).await {
                Ok(prep) => prep,
                Err(e) => {
                    // A recipe failure says nothing about the provider's health, except a failed
                    // token fetch, which counts like any provider failure.
                    if probe || is_provider_failure(&e) {
                        p.breaker.record(!is_provider_failure(&e));
                    }
                    return Err(e);
                }
            };
            let http_req = build_request(&ctx, req)?;
            let outcome = p.client.send(http_req, ctx.remaining()).await;
            let failure = match &outcome {
                Ok(r) => r.status().is_server_error(),
                Err(e) => is_provider_failure(e),
            };
            p.breaker.record(!failure);
            let retryable = match &outcome {
                Ok(r) => retry.on_status.contains(&r.status().as_u16()),
                Err(OutboundError::Timeout(_)) | Err(OutboundError::Unavailable(_)) => true,
                Err(_) => false,
            };
            let mut resp = match outcome {
                Ok(r) => r,
                Err(e) => {
                    if retryable
                        && may_retry
                        && attempt < retry.max_attempts
                        && self.can_retry(p, deadline).await
                    {
                        continue;
                    }
                    return Err(e);
                }
            };
            if retryable && may_retry && attempt < retry.max_attempts && self.can_retry(p, deadline).await {
                continue;
            }
            match recipe::on_response(&p.config.recipe, &ctx, &prepared, &mut resp).await? {
                After::Done => return Ok(resp),
                After::TokenRejected => {
                    if let Some((key, token)) = &prepared.token {
                        self.tokens.invalidate(key, token).await;
                    }
                    if token_retried {
                        return Err(OutboundError::AuthFailed);
                    }
                    token_retried = true;
                    attempt -= 1; // a token refresh is not a retry of the provider
                }
            }
        }
    }

    /// Runs a provider's scripted recipe (or `source` instead of its active one) on a sample
    /// request without contacting the provider: `http_post_json` answers from `mocks`, tokens
    /// come from a private cache, bindings are stand-ins (real secrets never enter a test run),
    /// and the result is the request that would be sent — credential headers masked — plus a
    /// step trace.
    pub async fn test_run(
        &self,
        provider_id: &str,
        source: Option<String>,
        sample: TestRequest,
        mocks: Vec<crate::script::Mock>,
    ) -> Result<TestReport, OutboundError> {
        let p = self
            .provider(provider_id)
            .ok_or_else(|| OutboundError::ProviderNotFound(provider_id.to_string()))?;
        let mut recipe = p.config.recipe.clone();
        match (&mut recipe, source) {
            (crate::config::RecipeConfig::Script(c), Some(src)) => {
                crate::script::check_syntax(&src).map_err(|e| OutboundError::recipe("script", e))?;
                c.source = src;
            }
            (crate::config::RecipeConfig::Script(_), None) => {}
            _ => return Err(OutboundError::recipe("script", "test runs are for scripted recipes")),
        }
        let method = Method::from_bytes(sample.method.as_bytes())
            .map_err(|_| OutboundError::recipe("script", "invalid method"))?;
        let query =
            crate::crypto::parse_pairs(&sample.query).map_err(|e| OutboundError::recipe("script", e))?;
        let mut headers = HeaderMap::new();
        for (n, v) in &sample.headers {
            if let (Ok(n), Ok(v)) =
                (http::HeaderName::from_bytes(n.as_bytes()), http::HeaderValue::from_str(v))
            {
                headers.insert(n, v);
            }
        }
        let mut req = OutRequest {
            method,
            path: sample.path,
            query,
            headers,
            body: Bytes::from(sample.body),
            url_override: None,
        };
        let hooks = crate::recipe::TestHooks { mocks, trace: Default::default() };
        let test_bindings = Bindings::new(p.bindings.names().map(|n| {
            let value = match sample.bindings.get(n) {
                Some(v) => v.as_bytes().to_vec(),
                None => stand_in(p.bindings.get(n).map_or(16, <[u8]>::len)),
            };
            (n.to_string(), value)
        }));
        let private_tokens = Arc::new(TokenManager::default());
        let ctx = Ctx {
            provider_id: &p.id,
            origin: &p.origin,
            base_path: &p.compiled.base_path,
            bindings: &test_bindings,
            tokens: &private_tokens,
            scripts: Some(&self.scripts),
            test: Some(&hooks),
            client: &p.client,
            deadline: Instant::now() + p.compiled.timeout,
            now_ms: unix_ms(),
        };
        let result = recipe::prepare(&recipe, &ctx, &mut req).await;
        let secrets: Vec<Zeroizing<String>> = p
            .bindings
            .names()
            .filter_map(|n| p.bindings.get(n).ok())
            .filter_map(|v| std::str::from_utf8(v).ok())
            .map(|v| Zeroizing::new(v.to_string()))
            .collect();
        let mask = |s: &str| crate::script::scrub(s, &secrets);
        let trace = hooks.trace.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let outgoing = match &result {
            Ok(_) => {
                let url = match &req.url_override {
                    Some(u) => u.clone(),
                    None => format!("{}{}", ctx.origin, ctx.full_path(&req)),
                };
                let q = req.encoded_query();
                let url = if q.is_empty() { url } else { format!("{url}?{q}") };
                let headers = req
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        let shown =
                            if matches!(n.as_str(), "authorization" | "cookie" | "proxy-authorization") {
                                "[masked]".to_string()
                            } else {
                                mask(v.to_str().unwrap_or("<binary>"))
                            };
                        (n.as_str().to_string(), shown)
                    })
                    .collect();
                Some(TestOutgoing {
                    method: req.method.to_string(),
                    url: mask(&url),
                    headers,
                    body: mask(&String::from_utf8_lossy(&req.body)),
                })
            }
            Err(_) => None,
        };
        Ok(TestReport {
            ok: result.is_ok(),
            error: result
                .err()
                .map(|e| TestError { code: e.code().to_string(), message: mask(&e.to_string()) }),
            request: outgoing,
            trace,
        })
    }

    async fn can_retry(&self, p: &Provider, deadline: Instant) -> bool {
        let backoff = Duration::from_millis(p.config.retry.backoff_ms);
        if Instant::now() + backoff >= deadline || !p.budget.try_withdraw() {
            return false;
        }
        tokio::time::sleep(backoff).await;
        true
    }
}

/// Random `[A-Za-z0-9]` of `len` bytes: a binding's stand-in in test runs.
fn stand_in(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = vec![0u8; len];
    if aws_lc_rs::rand::fill(&mut raw).is_err() {
        return vec![b'x'; len];
    }
    raw.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()]).collect()
}

fn is_provider_failure(e: &OutboundError) -> bool {
    matches!(e, OutboundError::Timeout(_) | OutboundError::Unavailable(_))
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Caller headers that may reach the provider: never keygate's auth headers, the caller's own
/// credentials, hop-by-hop headers or proxy headers that would reveal internal topology.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (n, v) in headers {
        let s = n.as_str();
        let dropped = s.starts_with("x-kg-")
            || s.starts_with("x-forwarded-")
            || matches!(
                s,
                "authorization"
                    | "proxy-authorization"
                    | "cookie"
                    | "host"
                    | "content-length"
                    | "connection"
                    | "keep-alive"
                    | "te"
                    | "trailer"
                    | "transfer-encoding"
                    | "upgrade"
                    | "proxy-connection"
                    | "forwarded"
                    | "x-request-id"
                    | "idempotency-key"
            );
        if !dropped {
            out.append(n.clone(), v.clone());
        }
    }
    out
}

fn build_request(ctx: &Ctx<'_>, req: OutRequest) -> Result<Request<Full<Bytes>>, OutboundError> {
    let q = req.encoded_query();
    let mut uri = match &req.url_override {
        Some(u) => u.clone(),
        None => format!("{}{}", ctx.origin, ctx.full_path(&req)),
    };
    if !q.is_empty() {
        uri.push('?');
        uri.push_str(&q);
    }
    let mut b = Request::builder().method(req.method).uri(uri);
    if let Some(h) = b.headers_mut() {
        *h = req.headers;
    }
    b.body(Full::new(req.body))
        .map_err(|_| OutboundError::recipe("request", "the prepared request is not valid HTTP"))
}

/// Response headers the caller may see (hop-by-hop ones dropped; framing is re-done).
fn response_headers(h: &mut HeaderMap) {
    for n in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
        header::TRAILER,
        header::UPGRADE,
        header::SET_COOKIE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        h.remove(n);
    }
}

impl OutboundError {
    /// The data plane's envelope form of this error.
    pub fn into_gateway(self) -> GatewayError {
        GatewayError::Dispatch {
            status: self.status(),
            code: self.code(),
            retry_after: self.retry_after(),
            message: self.to_string(),
        }
    }
}

impl Dispatch for Outbound {
    fn dispatch<'a>(
        &'a self,
        req: Dispatched<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, GatewayError>> + Send + 'a>> {
        Box::pin(async move {
            let app = req.caller.map(|c| c.app_id.as_str());
            let resp = self
                .call(
                    app,
                    req.parts.method.clone(),
                    req.parts.uri.path(),
                    req.parts.uri.query(),
                    &req.parts.headers,
                    req.body,
                )
                .await
                .map_err(|e| {
                    tracing::info!(
                        request_id = req.request_id,
                        code = e.code(),
                        "outbound call refused: {e}"
                    );
                    e.into_gateway()
                })?;
            let (mut parts, body) = resp.into_parts();
            response_headers(&mut parts.headers);
            if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(
                    OutboundError::ResponseInvalid("protocol upgrades are not proxied".into()).into_gateway()
                );
            }
            Ok(Response::from_parts(parts, keygate_inbound::body::full(body)))
        })
    }
}
