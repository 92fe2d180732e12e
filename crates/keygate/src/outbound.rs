// Wires the outbound gateway into the process: its listener (a second data-plane Gateway whose one
// route hands verified callers to keygate-outbound), provider loading from the store, the shared
// token cache on Redis (sealed with the master keyring), and the provider validator of the admin API.

use std::sync::Arc;
use std::time::Duration;

use keygate_inbound::{Gateway, Route, RouteAuth, Snapshot, StateHandles, UpstreamClients};
use keygate_outbound::{Outbound, ProviderConfig, ProviderSpec, Sealer, SharedTokens, TokenManager};
use keygate_state::RateLimiter;
use keygate_store::Keyring;
use redis::AsyncCommands;
use zeroize::Zeroizing;

/// The outbound listener's single route: every `/out/…` request is verified like an inbound one
/// (signature, window, nonce, key policy), then dispatched. Provider limits apply inside.
pub fn route() -> Route {
    Route {
        path_prefix: "/out".into(),
        upstream: http::Uri::from_static("http://outbound.invalid"),
        strip_prefix: false,
        max_body_bytes: 64 * 1024 * 1024,
        timeout: Duration::from_secs(300),
        auth: RouteAuth::Signature,
        upstream_http2: false,
        preserve_host: false,
        per_ip_rate_limit: None,
        capture: None,
        user_tokens: false,
        mtls: keygate_inbound::MtlsMode::Off,
        fields: None,
        tenant: None,
    }
}

/// The outbound listener's gateway: same keys and request state as the inbound one.
pub fn gateway(
    snapshot: &Snapshot,
    state: StateHandles,
    upstream: UpstreamClients,
    outbound: Arc<Outbound>,
    observer: Option<Arc<dyn keygate_inbound::Observer>>,
) -> Gateway {
    let g = Gateway::new(snapshot.with_routes(vec![route()]), state, upstream).with_dispatch(outbound);
    match observer {
        Some(o) => g.with_observer(o),
        None => g,
    }
}

/// Replaces the providers of `outbound` with `providers` (from the store or the snapshot cache).
/// Refused documents are logged there; their calls fail closed.
pub fn apply(
    outbound: &Outbound,
    providers: Vec<keygate_store::LoadedProvider>,
) -> keygate_outbound::LoadReport {
    let specs = providers
        .into_iter()
        .map(|p| ProviderSpec {
            id: p.record.id,
            tenant_id: p.record.tenant_id,
            config: p.record.config,
            secrets: p.secrets,
        })
        .collect();
    outbound.load(specs)
}

/// The admin API's provider check: the outbound parser decides, and names the recipe's bindings.
pub fn validate_provider(doc: &serde_json::Value) -> Result<Vec<String>, (String, String)> {
    let cfg = ProviderConfig::parse(doc).map_err(|e| match e.split_once(": ") {
        Some((field, reason)) if !field.contains(' ') => (field.to_string(), reason.to_string()),
        _ => (String::new(), e),
    })?;
    Ok(cfg.recipe.bindings().into_iter().map(str::to_string).collect())
}

/// Seals token blobs with the master keyring (AAD: the cache key).
#[derive(Debug)]
pub struct KeyringSealer(pub Arc<Keyring>);

impl Sealer for KeyringSealer {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Option<Vec<u8>> {
        let (v, blob) = self.0.seal(aad, plaintext).ok()?;
        let mut out = v.to_be_bytes().to_vec();
        out.extend(blob);
        Some(out)
    }

    fn open(&self, aad: &[u8], blob: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (v, rest) = blob.split_at_checked(4)?;
        self.0.open(u32::from_be_bytes(v.try_into().ok()?), aad, rest).ok()
    }
}

/// Provider tokens shared by replicas through Redis (sealed blobs under `<prefix>tok:`).
#[derive(Clone)]
pub struct RedisTokens {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokens").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisTokens {
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = tokio::time::timeout(timeout.max(Duration::from_secs(2)), client.get_connection_manager())
            .await
            .map_err(|_| anyhow::anyhow!("redis connect timed out"))??;
        Ok(Self { conn, prefix: format!("{prefix}tok:"), timeout: timeout.max(Duration::from_millis(200)) })
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    async fn run<T, F>(&self, f: F) -> Result<T, String>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("redis timed out".into()),
        }
    }
}

impl SharedTokens for RedisTokens {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> keygate_outbound::token::BoxFut<'a, Result<Option<Vec<u8>>, String>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            self.run(c.get::<_, Option<Vec<u8>>>(self.key(key))).await
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Duration,
    ) -> keygate_outbound::token::BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            self.run(c.pset_ex::<_, _, ()>(self.key(key), value, ms)).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> keygate_outbound::token::BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            self.run(c.del::<_, ()>(self.key(key))).await
        })
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> keygate_outbound::token::BoxFut<'a, Result<bool, String>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let opts = redis::SetOptions::default()
                .conditional_set(redis::ExistenceCheck::NX)
                .with_expiration(redis::SetExpiry::PX(ms));
            let r: Option<String> = self.run(c.set_options(self.key(key), "1", opts)).await?;
            Ok(r.is_some())
        })
    }

    fn unlock<'a>(&'a self, key: &'a str) -> keygate_outbound::token::BoxFut<'a, Result<(), String>> {
        self.delete(key)
    }
}

/// The outbound gateway with its token cache (shared through Redis when configured) and the
/// request state's rate limiter for provider limits.
pub async fn build(
    redis: Option<&str>,
    prefix: &str,
    timeout: Duration,
    keyring: Arc<Keyring>,
    limiter: Arc<dyn RateLimiter>,
) -> Outbound {
    let shared: Option<(Arc<dyn SharedTokens>, Arc<dyn Sealer>)> = match redis {
        Some(url) => match RedisTokens::connect(url, prefix, timeout).await {
            Ok(r) => Some((Arc::new(r), Arc::new(KeyringSealer(keyring)))),
            Err(e) => {
                tracing::warn!(error = %e, "outbound token cache: Redis unavailable, tokens are per replica");
                None
            }
        },
        None => None,
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    Outbound::new(TokenManager::new(shared), Some(limiter), workers)
}

/// `POST /admin/providers/{id}/test-run`: `{"source"?, "request": {method, path, query, headers,
/// body, bindings}, "mocks"?: [{url, status, body}]}` → the report.
pub async fn test_run(
    out: &Outbound,
    provider_id: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, (String, String)> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        source: Option<String>,
        request: keygate_outbound::TestRequest,
        #[serde(default)]
        mocks: Vec<keygate_outbound::script::Mock>,
    }
    let b: Body = serde_json::from_value(body).map_err(|e| ("body".to_string(), e.to_string()))?;
    let report = out
        .test_run(provider_id, b.source, b.request, b.mocks)
        .await
        .map_err(|e| ("provider".to_string(), e.to_string()))?;
    serde_json::to_value(report).map_err(|e| ("report".to_string(), e.to_string()))
}

/// The admin API's test-run hook for this process's outbound gateway.
pub fn tester(out: Arc<Outbound>) -> keygate_admin::ScriptTester {
    Arc::new(move |id: String, body: serde_json::Value| {
        let out = out.clone();
        Box::pin(async move { test_run(&out, &id, body).await })
    })
}
