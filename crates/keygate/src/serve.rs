// `keygate serve`: loads config into the store, builds the data plane's snapshot, keeps it
// fresh by polling the store's change counter, and serves until SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use keygate_inbound::{
    Gateway, IdempotencySettings, InboundServer, KeyEntry, KeyScheme, Route, Snapshot, StateHandles,
    TlsFiles, UpstreamClients,
};
use keygate_state::{MemoryGate, MemoryIdempotencyStore, RedisState, ResilientGate};
use keygate_store::{AppRecord, KeyRecord, Keyring, MasterKey, Store, TenantObject};

use crate::cache::{self, SnapshotData};
use crate::config::{
    Config, FieldKeySettings, HttpSigSettings, LegacySettings, MtlsSettings, SigV4Settings,
    SCHEME_FIELD_PARTNER, SCHEME_FIELD_RSA, SCHEME_HTTPSIG, SCHEME_KG1, SCHEME_LEGACY, SCHEME_MTLS,
    SCHEME_SIGV4,
};

/// What `serve` needs beyond the config file.
pub struct ServeOptions {
    pub config: Config,
    /// Directory relative secret files are resolved against.
    pub base_dir: PathBuf,
    /// Printed once the listener is up (demo mode's try-it lines).
    pub banner: Option<Box<dyn Fn(std::net::SocketAddr) -> String + Send>>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions").field("base_dir", &self.base_dir).finish_non_exhaustive()
    }
}

/// Reads the master keys: `KEYGATE_MASTER_KEY`, else the configured file. Either may hold
/// several keys separated by commas or newlines (during a master-key rotation: the old ones and
/// the new one); the highest version seals, every listed version opens.
pub fn load_keyring(file: Option<&Path>) -> Result<Keyring> {
    let (text, source) = if let Ok(text) = std::env::var("KEYGATE_MASTER_KEY") {
        (zeroize::Zeroizing::new(text), "KEYGATE_MASTER_KEY".to_string())
    } else if let Some(path) = file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading master key file {}", path.display()))?,
        );
        (text, format!("master key file {}", path.display()))
    } else {
        anyhow::bail!(
            "no master key: set KEYGATE_MASTER_KEY (generate one with `keygate master-key generate`) or [store] master_key_file"
        );
    };
    let mut keys = Vec::new();
    for part in text.split([',', '\n']).map(str::trim).filter(|p| !p.is_empty()) {
        keys.push(MasterKey::parse(part).with_context(|| source.clone())?);
    }
    Keyring::new(keys).with_context(|| source.clone())
}

/// Writes the config's apps and keys into the store; unchanged entries are left alone.
pub async fn import(store: &Store, cfg: &Config, base_dir: &Path) -> Result<(usize, usize)> {
    let mut changed = 0;
    let mut total = 0;
    for app in &cfg.apps {
        let rec = AppRecord {
            id: app.id.clone(),
            tenant_id: app.tenant.clone(),
            name: app.name.clone().unwrap_or_else(|| app.id.clone()),
            enabled: app.enabled,
        };
        if store.upsert_app(&rec).await? != keygate_store::Upsert::Unchanged {
            changed += 1;
        }
        for k in &app.keys {
            total += 1;
            let secret = k.secret_bytes(base_dir)?;
            if secret.len() < 16 {
                tracing::warn!(access_key = %k.access_key, "secret is shorter than 16 bytes; generated keys use 32");
            }
            let (valid_from, valid_to) = k.validity()?;
            let rec = KeyRecord {
                access_key: k.access_key.clone(),
                app_id: app.id.clone(),
                scheme: k.scheme.clone(),
                scheme_settings: match k.scheme.as_str() {
                    // The public half is kept beside the sealed private key, for download.
                    SCHEME_FIELD_RSA => {
                        let mut s = k.scheme_settings()?;
                        let pair = keygate_sign::fields::FieldKeyPair::from_pem(&secret)
                            .map_err(|e| anyhow::anyhow!("{}: private key: {e}", k.access_key))?;
                        s["public_key_pem"] = pair.public_key_pem().into();
                        s
                    }
                    _ => k.scheme_settings()?,
                },
                enabled: k.enabled,
                valid_from,
                valid_to,
                timestamp_window_secs: k.timestamp_window_secs,
                description: k.description.clone(),
                rate_limit: k
                    .rate_limit
                    .map(|r| keygate_store::RateLimit { rate_per_sec: r.rate_per_sec, burst: r.burst }),
                scopes: k.scopes.clone(),
                allowed_endpoints: k.allowed_endpoints.clone(),
                allowed_cidrs: k.allowed_cidrs.clone(),
                auth_policy: k.auth_policy.clone(),
                ..KeyRecord::default()
            };
            if store.upsert_key(&rec, &secret).await? != keygate_store::Upsert::Unchanged {
                changed += 1;
            }
        }
    }
    Ok((total, changed))
}

/// Loads a snapshot from the store in one streaming pass over the keys: each decrypted key
/// becomes a compact entry (and, with a cache, one sealed line) as its row arrives, so a reload
/// of 100k keys never holds 100k full records. Uses not yet flushed survive from `previous`.
/// The operator's file routes and the policy tenants' own routes are checked against.
#[derive(Debug, Clone)]
pub struct RouteSet {
    pub file: Vec<Route>,
    pub policy: crate::tenant_objects::Policy,
    /// What the last build refused, for `/readyz`.
    pub refused: Arc<std::sync::Mutex<Vec<String>>>,
}

impl RouteSet {
    pub fn new(cfg: &crate::config::Config) -> Result<Self> {
        let file: Vec<Route> = cfg.routes.iter().map(|r| r.to_route()).collect::<Result<_>>()?;
        let policy = crate::tenant_objects::Policy::new(
            &cfg.tenant_routes,
            &file,
            !cfg.server.tls_client_ca.is_empty(),
        )?;
        Ok(Self { file, policy, refused: Arc::default() })
    }

    /// File routes plus every tenant route that passes the policy; refused ones are logged
    /// and kept for `/readyz` and `keygate_tenant_objects_refused`, never served.
    pub fn build(&self, objects: &[TenantObject]) -> Vec<Route> {
        let (mut routes, refused) = self.policy.routes(objects);
        let (_, refused_rules) = crate::tenant_objects::alert_rules(objects);
        for (target, why) in refused.iter().chain(&refused_rules) {
            tracing::warn!(object = %target, reason = %why, "tenant object refused by the operator's policy; not loaded");
        }
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) =
            refused.iter().chain(&refused_rules).map(|(t, why)| format!("{t}: {why}")).collect();
        routes.extend(self.file.iter().cloned());
        routes
    }
}

fn app_tenants(apps: &[keygate_store::AppRecord]) -> std::collections::HashMap<String, Arc<str>> {
    apps.iter().map(|a| (a.id.clone(), Arc::from(a.tenant_id.as_str()))).collect()
}

pub async fn load_snapshot(
    store: &Store,
    routes: &RouteSet,
    previous: Option<&Snapshot>,
    cache: Option<(&Path, &Keyring)>,
    providers: &[keygate_store::LoadedProvider],
    objects: &[TenantObject],
) -> Result<Snapshot> {
    let version = store.change_counter().await?;
    let app_list = store.list_apps().await?;
    let mut writer = match cache {
        Some(_) => Some(cache::CacheWriter::new(version, &app_list, providers, objects)?),
        None => None,
    };
    let tenants = app_tenants(&app_list);
    let apps: std::collections::HashMap<String, bool> =
        app_list.into_iter().map(|a| (a.id, a.enabled)).collect();
    let mut keys = Vec::new();
    let mut cache_error = None;
    let app_states = apps.clone();
    store
        .load_keys_with(|k| {
            if let Some(w) = writer.as_mut() {
                if let Err(e) = w.push(&k) {
                    cache_error.get_or_insert(e);
                }
            }
            if let Some(entry) = key_entry(k, &apps) {
                carry_last_use(&entry, previous);
                keys.push(entry);
            }
        })
        .await?;
    if let (Some(w), Some((path, keyring))) = (writer, cache) {
        let written = match cache_error {
            Some(e) => Err(e),
            None => w.finish(path, keyring),
        };
        if let Err(e) = written {
            tracing::warn!(error = %format!("{e:#}"), "could not write the snapshot cache");
        }
    }
    Ok(Snapshot::new(keys, routes.build(objects), version).with_apps(app_states).with_app_tenants(tenants))
}

fn carry_last_use(entry: &KeyEntry, previous: Option<&Snapshot>) {
    use std::sync::atomic::Ordering::Relaxed;
    if let Some(old) = previous.and_then(|p| p.key(&entry.access_key)) {
        entry.last_used.store(old.last_used.load(Relaxed), Relaxed);
    }
}

/// Builds a snapshot from a cache file's contents (startup during a store outage).
pub fn build_snapshot(data: SnapshotData, routes: &RouteSet) -> Snapshot {
    let tenants = app_tenants(&data.apps);
    let apps: std::collections::HashMap<String, bool> =
        data.apps.into_iter().map(|a| (a.id, a.enabled)).collect();
    let keys = data.keys.into_iter().filter_map(|k| key_entry(k, &apps)).collect();
    Snapshot::new(keys, routes.build(&data.objects), data.version).with_apps(apps).with_app_tenants(tenants)
}

/// Writes keys' last-use times to the store every `every`, in one batch per flush, only for
/// keys used since their last flush. A failed flush is retried with the next one.
async fn last_used_loop(store: Store, gateway: Arc<Gateway>, every: Duration) {
    let mut flushed: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snapshot = gateway.snapshot();
        let batch: Vec<(String, i64)> = snapshot
            .keys()
            .filter_map(|k| {
                let t = k.last_used.load(std::sync::atomic::Ordering::Relaxed);
                (t > 0 && flushed.get(&k.access_key).is_none_or(|f| *f < t))
                    .then(|| (k.access_key.clone(), t))
            })
            .collect();
        drop(snapshot);
        if batch.is_empty() {
            continue;
        }
        match store.touch_last_used(&batch).await {
            Ok(_) => flushed.extend(batch),
            Err(e) => {
                tracing::debug!(error = %e, keys = batch.len(), "last_used_at flush failed; retrying next time")
            }
        }
    }
}

fn key_entry(
    k: keygate_store::KeyWithSecret,
    apps: &std::collections::HashMap<String, bool>,
) -> Option<KeyEntry> {
    let r = k.record;
    let scheme = match r.scheme.as_str() {
        SCHEME_KG1 => KeyScheme::Kg1,
        SCHEME_LEGACY => {
            let parsed = serde_json::from_value::<LegacySettings>(r.scheme_settings.clone())
                .map_err(anyhow::Error::from)
                .and_then(|s| s.to_config());
            match parsed {
                Ok(cfg) => KeyScheme::Legacy(cfg),
                Err(e) => {
                    tracing::error!(access_key = %r.access_key, error = %format!("{e:#}"), "bad legacy settings in store; key not loaded");
                    return None;
                }
            }
        }
        SCHEME_HTTPSIG => match serde_json::from_value::<HttpSigSettings>(r.scheme_settings.clone()) {
            Ok(s) if s.check().is_ok() => KeyScheme::HttpSignature {
                ed25519: s.alg == "ed25519",
                required_components: s.required_components,
            },
            _ => {
                tracing::error!(access_key = %r.access_key, "bad http-signature settings in store; key not loaded");
                return None;
            }
        },
        SCHEME_FIELD_RSA => {
            use secrecy::ExposeSecret as _;
            let settings = serde_json::from_value::<FieldKeySettings>(r.scheme_settings.clone());
            let pair = keygate_sign::fields::FieldKeyPair::from_pem(k.secret.expose_secret())
                .or_else(|_| keygate_sign::fields::FieldKeyPair::from_pkcs8_der(k.secret.expose_secret()));
            match (settings, pair) {
                (Ok(s), Ok(pair)) if s.check(false).is_ok() => {
                    KeyScheme::FieldKey { kid: s.kid, pair: Arc::new(pair) }
                }
                _ => {
                    tracing::error!(access_key = %r.access_key, "bad field-rsa key in store; key not loaded");
                    return None;
                }
            }
        }
        SCHEME_FIELD_PARTNER => {
            let settings = serde_json::from_value::<FieldKeySettings>(r.scheme_settings.clone());
            let public = settings
                .as_ref()
                .ok()
                .and_then(|s| s.public_key_pem.as_deref())
                .map(|pem| keygate_sign::fields::FieldPublicKey::from_pem(pem.as_bytes()));
            match (settings, public) {
                (Ok(s), Some(Ok(pk))) if s.check(true).is_ok() => {
                    KeyScheme::FieldPartner { kid: s.kid, public: Arc::new(pk) }
                }
                _ => {
                    tracing::error!(access_key = %r.access_key, "bad field-partner key in store; key not loaded");
                    return None;
                }
            }
        }
        SCHEME_MTLS => match serde_json::from_value::<MtlsSettings>(r.scheme_settings.clone()) {
            Ok(s) if s.check().is_ok() => KeyScheme::Mtls {
                spki_sha256: s.spki_sha256.as_deref().and_then(keygate_inbound::mtls::parse_spki_hex),
                subject: s.subject,
            },
            _ => {
                tracing::error!(access_key = %r.access_key, "bad mtls settings in store; key not loaded");
                return None;
            }
        },
        SCHEME_SIGV4 => match serde_json::from_value::<SigV4Settings>(r.scheme_settings.clone()) {
            Ok(s) if s.check().is_ok() => KeyScheme::SigV4 {
                region: s.region,
                service: s.service,
                allow_unsigned_payload: s.allow_unsigned_payload,
            },
            _ => {
                tracing::error!(access_key = %r.access_key, "bad aws-sigv4 settings in store; key not loaded");
                return None;
            }
        },
        other => {
            tracing::error!(access_key = %r.access_key, scheme = other, "unknown scheme in store; key not loaded");
            return None;
        }
    };
    let access = match keygate_inbound::AccessPolicy::parse(&r.allowed_cidrs, &r.allowed_endpoints) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(access_key = %r.access_key, error = %e, "bad access policy in store; key not loaded");
            return None;
        }
    };
    let mut secret = k.secret;
    if let KeyScheme::HttpSignature { ed25519: true, .. } = &scheme {
        // The stored value is the base64 of the raw 32-byte public key.
        use base64::Engine as _;
        use secrecy::ExposeSecret as _;
        let text = std::str::from_utf8(secret.expose_secret()).unwrap_or_default().trim().to_string();
        match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(raw) if raw.len() == 32 => secret = secrecy::SecretBox::new(raw.into_boxed_slice()),
            _ => {
                tracing::error!(access_key = %r.access_key, "ed25519 key is not a base64 32-byte public key; key not loaded");
                return None;
            }
        }
    }
    let Some(auth_policy) = keygate_inbound::AuthPolicy::parse(&r.auth_policy) else {
        tracing::error!(access_key = %r.access_key, "unknown auth_policy in store; key not loaded");
        return None;
    };
    let app_enabled = apps.get(&r.app_id).copied().unwrap_or(false);
    Some(KeyEntry {
        auth_policy,
        access_key: r.access_key,
        app_id: r.app_id,
        scheme,
        enabled: r.enabled && app_enabled,
        valid_from: r.valid_from,
        valid_to: r.valid_to,
        timestamp_window_secs: r.timestamp_window_secs,
        rate_limit: r
            .rate_limit
            .map(|l| keygate_state::BucketLimit { rate_per_sec: l.rate_per_sec, burst: l.burst }),
        access,
        // Only a rotated key (one with a successor) stops at the end of its overlap.
        overlap_until: r.successor.as_ref().and(r.overlap_until),
        secret,
        prepared: Default::default(),
        last_used: std::sync::atomic::AtomicI64::new(0),
    })
}

pub async fn run(opts: ServeOptions) -> Result<()> {
    let cfg = &opts.config;
    let keyring = Arc::new(load_keyring(cfg.store.master_key_file.as_deref())?);
    let cache_path = cfg.snapshot_cache_path(&opts.base_dir);
    let routes = RouteSet::new(cfg)?;
    if routes.file.is_empty() && cfg.tenant_routes.upstream_hosts.is_empty() {
        tracing::warn!("no [[routes]] configured and tenants may not publish any: every request will get route_not_found");
    }
    for r in routes.file.iter().filter(|r| r.auth == keygate_inbound::RouteAuth::None) {
        tracing::warn!(path_prefix = %r.path_prefix, "route has auth = \"none\": requests are forwarded unauthenticated");
    }

    // The store, or — when it is unreachable at startup — the last good snapshot from disk.
    let outbound_on = cfg.server.outbound.is_some();
    let (store, snapshot, providers, objects) = match Store::open(&cfg.store.url, keyring.clone()).await {
        Ok(store) => {
            let (total, changed) = import(&store, cfg, &opts.base_dir).await?;
            tracing::info!(keys = total, changed, "config imported");
            let cache = cache_path.as_deref().map(|p| (p, &*keyring));
            // The counter is read before anything is loaded: if a write lands in between, the
            // snapshot carries the older number and the reload loop loads the change whole.
            let (before, _) = store.change_state().await?;
            let providers = if outbound_on { store.load_providers().await? } else { Vec::new() };
            let objects = store.list_tenant_objects(None, None).await?;
            let mut snapshot = load_snapshot(&store, &routes, None, cache, &providers, &objects).await?;
            snapshot.version = snapshot.version.min(before);
            (Some(store), snapshot, providers, objects)
        }
        Err(e) => {
            let Some(path) = cache_path.as_deref().filter(|p| p.exists()) else {
                return Err(anyhow::Error::new(e)
                    .context("the store is unreachable and there is no snapshot cache to serve from"));
            };
            let data = cache::read(path, &keyring)
                .with_context(|| format!("the store is unreachable ({e}); reading the snapshot cache"))?;
            tracing::warn!(error = %e, cache = %path.display(), version = data.version,
                "store unreachable at startup: serving the cached snapshot until it returns");
            let mut data = data;
            let providers = std::mem::take(&mut data.providers);
            let objects = data.objects.clone();
            (None, build_snapshot(data, &routes), providers, objects)
        }
    };
    tracing::info!(keys = snapshot.key_count(), version = snapshot.version, "snapshot loaded");

    let (state, sweeper, redis_ok, limiter) = build_state(&cfg.state)?;
    let audit = if cfg.audit.enabled {
        let url = cfg.audit.url.clone().unwrap_or_else(|| cfg.store.url.clone());
        let spill_dir = match &cfg.audit.spill_dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => opts.base_dir.join(d),
            None => opts.base_dir.join("audit-spill"),
        };
        let mut sink_cfg = keygate_audit::SinkConfig::new(&url, spill_dir);
        sink_cfg.max_spill_bytes = cfg.audit.max_spill_bytes;
        sink_cfg.on_spill_full = cfg.audit.policy()?;
        let (sink, _writer) = keygate_audit::AuditSink::start(sink_cfg).context("[audit] spill directory")?;
        tracing::info!(db = %keygate_store::redact_url(&url), "audit log on");
        tokio::spawn(retention_loop(url, cfg.audit.retention_days));
        Some(sink)
    } else {
        tracing::warn!("[audit] enabled = false: requests are not audited");
        None
    };
    let health = Arc::new(crate::telemetry::Health {
        redis_ok,
        audit: audit.clone(),
        refused_objects: routes.refused.clone(),
        ..Default::default()
    });
    let metrics = match &cfg.server.metrics {
        Some(addr) => {
            let handle = crate::telemetry::install_recorder()?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics listener {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!(addr = %local, "metrics listening on http://{local}/metrics");
            Some((handle, listener))
        }
        None => None,
    };
    let upstream = UpstreamClients::new(&keygate_inbound::UpstreamOptions {
        lean_http1: cfg.server.upstream_pool == crate::config::UpstreamPool::Lean,
        ..Default::default()
    })
    .context("upstream TLS roots")?;
    health.set_store(store.is_some());
    health.set_snapshot(snapshot.version, snapshot.key_count(), store.is_some());
    let mut observers: Vec<Arc<dyn keygate_inbound::Observer>> = Vec::new();
    if let Some(sink) = &audit {
        observers.push(Arc::new(crate::telemetry::AuditObserver(sink.clone())));
    }
    if metrics.is_some() {
        observers.push(Arc::new(crate::telemetry::MetricsObserver));
    }
    // Always running: tenants may add their own rules at any time (docs/tenant-routes.md). With
    // no rule at all the request path pays one empty-list check.
    let alerts_view: Option<keygate_admin::AlertsView>;
    let alerts_handle: keygate_alerts::Alerts;
    {
        if !cfg.alerts.rules.is_empty() && cfg.alerts.channels.is_empty() {
            tracing::warn!("[alerts] has rules but no channels: alerts are only logged");
        }
        let alerts = keygate_alerts::Alerts::start(cfg.alerts.clone(), keygate_alerts::Retry::default())
            .context("[alerts]")?;
        alerts_handle = alerts.clone();
        set_tenant_alerts(&alerts, &objects, &snapshot_app_tenants(&snapshot));
        if let Some(sink) = audit.clone() {
            let a = alerts.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    let bytes = sink.stats().spill_bytes.load(std::sync::atomic::Ordering::Relaxed);
                    a.gauge("audit_spill_bytes", bytes as f64);
                }
            });
        }
        tracing::info!(rules = cfg.alerts.rules.len(), channels = cfg.alerts.channels.len(), "alerts on");
        let view = alerts.clone();
        alerts_view = Some(Arc::new(move |tenant: Option<&str>| match tenant {
            None => view.view(),
            Some(t) => view.view_for_tenant(t),
        }));
        observers.push(Arc::new(crate::telemetry::AlertObserver(alerts)));
    }
    let observer: Option<Arc<dyn keygate_inbound::Observer>> = match observers.len() {
        0 => None,
        1 => Some(observers.remove(0)),
        _ => Some(Arc::new(crate::telemetry::Fanout(observers))),
    };
    let outbound = match &cfg.server.outbound {
        Some(addr) => {
            let out = Arc::new(
                crate::outbound::build(
                    cfg.state.redis.as_deref(),
                    &cfg.state.key_prefix,
                    Duration::from_millis(cfg.state.timeout_ms),
                    keyring.clone(),
                    limiter,
                )
                .await,
            );
            let report = crate::outbound::apply(&out, providers);
            let source = if store.is_some() { "store" } else { "snapshot cache" };
            tracing::info!(
                providers = report.loaded,
                refused = report.refused.len(),
                source,
                "providers loaded"
            );
            let g = Arc::new(crate::outbound::gateway(
                &snapshot,
                state.clone(),
                upstream.clone(),
                out.clone(),
                observer.clone(),
            ));
            let server = InboundServer::bind(addr, None, g.clone()).await?;
            let local = server.local_addr()?;
            tracing::info!(addr = %local, "outbound listening on http://{local}/out/<provider>/");
            Some((g, out, server))
        }
        None => None,
    };
    let token_store = build_token_store(cfg)?;
    let mut gateway = Gateway::new(snapshot, state, upstream).with_tls(cfg.server.tls_cert.is_some());
    if let Some(o) = observer {
        gateway = gateway.with_observer(o);
    }
    if let Some(store) = &token_store {
        gateway = gateway.with_tokens(keygate_inbound::TokenSettings {
            store: store.clone(),
            path: cfg.tokens.path.clone(),
            default_ttl: Duration::from_secs(cfg.tokens.default_ttl_secs),
            max_ttl: Duration::from_secs(cfg.tokens.max_ttl_secs),
        });
        tracing::info!(path = %cfg.tokens.path, shared = cfg.state.redis.is_some(), "API token exchange on");
    }
    let gateway = Arc::new(gateway);
    let (outbound, outbound_server) = match outbound {
        Some((g, out, server)) => (Some((g, out)), Some(server)),
        None => (None, None),
    };
    let outbound_task = outbound_server.map(|server| tokio::spawn(server.serve(shutdown_signal())));
    let metrics_task = metrics.map(|(handle, listener)| {
        let health = health.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::telemetry::serve(listener, handle, health, shutdown_signal()).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        })
    });
    let nudge = Arc::new(tokio::sync::Notify::new());
    let nudger = cfg.state.redis.as_ref().map(|url| {
        tokio::spawn(crate::nudge::subscribe(
            url.clone(),
            crate::nudge::channel(&cfg.state.key_prefix),
            nudge.clone(),
        ))
    });
    let object_policy = routes.policy.clone();
    let version_policy = routes.policy.clone();
    let reloader = tokio::spawn(reload_loop(
        Reloader {
            url: cfg.store.url.clone(),
            keyring: keyring.clone(),
            store: store.clone(),
            cache: cache_path.clone(),
            routes,
            health: health.clone(),
            outbound: outbound.clone(),
            alerts: alerts_handle,
        },
        gateway.clone(),
        nudge.clone(),
        Duration::from_millis(cfg.server.reload_interval_ms.max(50)),
    ));

    let toucher = store.as_ref().map(|s| {
        tokio::spawn(last_used_loop(
            s.clone(),
            gateway.clone(),
            Duration::from_millis(cfg.server.last_used_flush_ms.max(100)),
        ))
    });
    let admin = match (&cfg.server.admin, &store) {
        (Some(addr), Some(store)) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding admin listener {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!(addr = %local, "admin listening on http://{local}");
            let publisher =
                cfg.state.redis.as_ref().map(|url| crate::nudge::Publisher::new(url, &cfg.state.key_prefix));
            let local_nudge = nudge.clone();
            let audit_db = match (&cfg.audit.enabled, cfg.audit.url.as_ref().unwrap_or(&cfg.store.url)) {
                (true, url) => match keygate_audit::AuditDb::open(url).await {
                    Ok(db) => Some(db),
                    Err(e) => {
                        tracing::warn!(error = %e, "admin API: request search unavailable");
                        None
                    }
                },
                (false, _) => None,
            };
            let state = keygate_admin::AdminState {
                store: store.clone(),
                audit: audit_db,
                validate_key: Arc::new(validate_key),
                validate_provider: Some(Arc::new(crate::outbound::validate_provider)),
                script_tester: outbound.as_ref().map(|(_, out)| crate::outbound::tester(out.clone())),
                versions: Some(Arc::new(crate::versions::Versions {
                    base_dir: opts.base_dir.clone(),
                    policy: version_policy,
                })),
                alerts: alerts_view.clone(),
                validate_object: Some(Arc::new(move |o, siblings| object_policy.check(o, siblings))),
                tokens: token_store.clone().map(|store| keygate_admin::TokenIssuer {
                    store,
                    max_ttl: Duration::from_secs(cfg.tokens.max_ttl_secs),
                    default_ttl: Duration::from_secs(cfg.tokens.default_ttl_secs),
                }),
                on_change: Arc::new(move || {
                    local_nudge.notify_one();
                    if let Some(p) = &publisher {
                        p.publish();
                    }
                }),
            };
            Some(tokio::spawn(async move {
                if let Err(e) = keygate_admin::serve(listener, state, shutdown_signal()).await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            }))
        }
        (Some(_), None) => {
            tracing::warn!("admin API not started: the store is unreachable (restart once it is back)");
            None
        }
        (None, _) => None,
    };

    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: cfg.server.tls_client_ca.clone(),
        }),
        (None, None) => None,
        _ => anyhow::bail!("[server] needs both tls_cert and tls_key, or neither"),
    };
    let server = InboundServer::bind(&cfg.server.inbound, tls.as_ref(), gateway).await?;
    if let Some(reloader) = server.tls_reloader() {
        tokio::spawn(tls_reload_loop(reloader, Duration::from_millis(cfg.server.tls_reload_interval_ms)));
    }
    let addr = server.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "inbound listening on {scheme}://{addr}");
    if let Some(banner) = &opts.banner {
        println!("{}", banner(addr));
    }
    server.serve(shutdown_signal()).await;
    if let Some(sink) = &audit {
        // Everything served is in the database or the spill file before we exit.
        if tokio::time::timeout(Duration::from_secs(10), sink.flush()).await.is_err() {
            tracing::warn!("audit flush did not finish in 10 s");
        }
    }
    sweeper.abort();
    reloader.abort();
    if let Some(n) = nudger {
        n.abort();
    }
    if let Some(a) = admin {
        a.abort();
    }
    if let Some(t) = toucher {
        t.abort();
    }
    if let Some(m) = metrics_task {
        m.abort();
    }
    if let Some(t) = outbound_task {
        t.abort();
    }
    if let Some(store) = store {
        store.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The admin API's gateway-side key check: a scheme this gateway verifies, with settings it can
/// parse, and an access policy it can enforce.
pub(crate) fn validate_key(k: &KeyRecord) -> std::result::Result<(), (String, String)> {
    fn settings<T: serde::de::DeserializeOwned>(
        k: &KeyRecord,
        check: impl FnOnce(T) -> Result<()>,
    ) -> std::result::Result<(), (String, String)> {
        serde_json::from_value::<T>(k.scheme_settings.clone())
            .map_err(anyhow::Error::from)
            .and_then(check)
            .map_err(|e| ("key.scheme_settings".to_string(), format!("{e:#}")))
    }
    match k.scheme.as_str() {
        SCHEME_KG1 => {}
        SCHEME_LEGACY => settings(k, |s: LegacySettings| s.to_config().map(|_| ()))?,
        SCHEME_HTTPSIG => settings(k, |s: HttpSigSettings| s.check())?,
        SCHEME_SIGV4 => settings(k, |s: SigV4Settings| s.check())?,
        SCHEME_MTLS => settings(k, |s: MtlsSettings| s.check())?,
        SCHEME_FIELD_RSA | SCHEME_FIELD_PARTNER => {
            let partner = k.scheme == SCHEME_FIELD_PARTNER;
            settings(k, |s: FieldKeySettings| s.check(partner))?
        }
        other => {
            return Err((
                "key.scheme".into(),
                format!(
                    "unknown scheme {other:?}; this gateway knows {SCHEME_KG1}, {SCHEME_LEGACY}, {SCHEME_SIGV4}, \
                     {SCHEME_HTTPSIG}, {SCHEME_MTLS}, {SCHEME_FIELD_RSA} and {SCHEME_FIELD_PARTNER}"
                ),
            ))
        }
    }
    keygate_inbound::AccessPolicy::parse(&k.allowed_cidrs, &k.allowed_endpoints)
        .map(|_| ())
        .map_err(|e| ("key.access_policy".into(), e))
}

/// Request state: Redis shared by all replicas (with the failure policy) when configured, else
/// this process's memory. Returns the handles and the housekeeping task (expiry sweeps, Redis
/// health probes so an idle replica notices recovery).
type RedisHealth = Option<Arc<dyn Fn() -> bool + Send + Sync>>;

/// Request state, its sweeper task, Redis health probe, and the limiter outbound providers share.
type BuiltState =
    (StateHandles, tokio::task::JoinHandle<()>, RedisHealth, Arc<dyn keygate_state::RateLimiter>);

fn build_state(cfg: &crate::config::StateConfig) -> Result<BuiltState> {
    let settings = IdempotencySettings {
        ttl: Duration::from_secs(cfg.idempotency_ttl_secs),
        max_body_bytes: cfg.idempotency_max_body_bytes,
    };
    let local = MemoryGate::with_capacity(cfg.nonce_capacity, cfg.nonce_capacity);
    match &cfg.redis {
        None => {
            let gate = Arc::new(local);
            let idem = Arc::new(MemoryIdempotencyStore::new(cfg.nonce_capacity));
            let limiter = Arc::new(keygate_state::MemoryRateLimiter::new(cfg.nonce_capacity));
            let (g, i, l) = (gate.clone(), idem.clone(), limiter.clone());
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    g.sweep();
                    i.sweep();
                    l.sweep();
                }
            });
            Ok((
                StateHandles { gate, idempotency: idem, idempotency_settings: settings },
                task,
                None,
                limiter,
            ))
        }
        Some(url) => {
            let redis =
                RedisState::connect_lazy(url, cfg.key_prefix.clone(), Duration::from_millis(cfg.timeout_ms))
                    .map_err(|e| anyhow::anyhow!("[state] redis {}: {e}", keygate_store::redact_url(url)))?;
            let resilient = Arc::new(ResilientGate::new(redis, local, cfg.failure_policy()?));
            tracing::info!(redis = %keygate_store::redact_url(url), prefix = %cfg.key_prefix, "request state on Redis");
            let r = resilient.clone();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    r.sweep();
                    r.check_health().await;
                }
            });
            let probe = resilient.clone();
            Ok((
                StateHandles {
                    gate: resilient.clone(),
                    idempotency: resilient.clone(),
                    idempotency_settings: settings,
                },
                task,
                Some(Arc::new(move || !probe.is_degraded())),
                resilient,
            ))
        }
    }
}

/// Reloads the listener's certificate, key and client CA bundles when one of the files changes
/// (checked every `every`) or on SIGHUP. Open connections keep their configuration; a reload that
/// fails keeps the previous one and says so in the log.
async fn tls_reload_loop(reloader: keygate_inbound::TlsReloader, every: Duration) {
    let stamp = |files: &[std::path::PathBuf]| -> Vec<Option<(std::time::SystemTime, u64)>> {
        files
            .iter()
            .map(|f| std::fs::metadata(f).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
            .collect()
    };
    let files = reloader.files();
    let mut seen = stamp(&files);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let poll = if every.is_zero() { Duration::from_secs(3600) } else { every };
    loop {
        let forced = tokio::select! {
            () = tokio::time::sleep(poll) => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = stamp(&files);
        if !forced && (every.is_zero() || now == seen) {
            continue;
        }
        seen = now;
        match reloader.reload() {
            Ok(()) => {
                metrics::counter!("keygate_tls_reloads_total", "result" => "ok").increment(1);
                tracing::info!("TLS certificates reloaded");
            }
            Err(e) => {
                metrics::counter!("keygate_tls_reloads_total", "result" => "failed").increment(1);
                tracing::error!(error = %e, "TLS reload failed; keeping the previous certificates");
            }
        }
    }
}

/// Where API tokens live: Redis when the state is shared (an issue or a revocation is seen by
/// every replica at once; no local fallback — a token check fails closed when Redis is down),
/// else this process's memory.
fn build_token_store(cfg: &Config) -> Result<Option<Arc<dyn keygate_state::TokenStore>>> {
    if !cfg.tokens.enabled {
        return Ok(None);
    }
    cfg.tokens.validate()?;
    Ok(Some(match &cfg.state.redis {
        Some(url) => Arc::new(
            RedisState::connect_lazy(
                url,
                cfg.state.key_prefix.clone(),
                Duration::from_millis(cfg.state.timeout_ms),
            )
            .map_err(|e| anyhow::anyhow!("[state] redis {}: {e}", keygate_store::redact_url(url)))?,
        ),
        None => Arc::new(keygate_state::MemoryTokenStore::new(cfg.tokens.memory_capacity)),
    }))
}

/// Deletes audit records older than `days`, a minute after start and then daily, in batches of
/// 5,000 with a pause between them so the table is never locked for long.
async fn retention_loop(url: String, days: u32) {
    if days == 0 {
        return;
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut tick = tokio::time::interval(Duration::from_secs(86_400));
    loop {
        tick.tick().await;
        let cutoff = (std::time::SystemTime::now() - Duration::from_secs(u64::from(days) * 86_400))
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let done = async {
            let db = keygate_audit::AuditDb::open(&url).await?;
            let n = db.delete_older_than(cutoff, 5_000, Duration::from_millis(50)).await;
            db.close().await;
            n
        }
        .await;
        match done {
            Ok(n) => tracing::info!(deleted = n, days, "audit retention"),
            Err(e) => tracing::warn!(error = %e, "audit retention failed; retrying tomorrow"),
        }
    }
}

/// What the reload loop needs to (re)build snapshots.
struct Reloader {
    url: String,
    keyring: Arc<Keyring>,
    /// `None` while the store has been unreachable since startup.
    store: Option<Store>,
    cache: Option<PathBuf>,
    routes: RouteSet,
    health: Arc<crate::telemetry::Health>,
    /// The outbound listener's gateway (same keys) and providers, reloaded with the snapshot.
    outbound: Option<(Arc<Gateway>, Arc<keygate_outbound::Outbound>)>,
    /// Tenants' alert rules are handed over with every reload.
    alerts: keygate_alerts::Alerts,
}

/// Hands every tenant's valid alert rules (and which tenant owns each app) to the alert
/// pipeline; unchanged rules keep their counts.
fn set_tenant_alerts(
    alerts: &keygate_alerts::Alerts,
    objects: &[TenantObject],
    app_tenants: &std::collections::HashMap<String, String>,
) {
    let (rules, _) = crate::tenant_objects::alert_rules(objects);
    alerts.set_tenant_rules(rules, app_tenants.clone());
}

fn snapshot_app_tenants(s: &Snapshot) -> std::collections::HashMap<String, String> {
    s.app_tenants().map(|(a, t)| (a.to_string(), t.to_string())).collect()
}

/// Polls the change counter (and wakes early on a nudge from this replica's admin API or from
/// Redis); on a change rebuilds the snapshot and refreshes the cache. On error keeps serving the
/// last good snapshot and says so once.
async fn reload_loop(
    mut r: Reloader,
    gateway: Arc<Gateway>,
    nudge: Arc<tokio::sync::Notify>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = nudge.notified() => {}
        }
        let current = gateway.snapshot().version;
        let result = async {
            if r.store.is_none() {
                r.store = Some(Store::open(&r.url, r.keyring.clone()).await?);
                tracing::info!("store reachable again");
            }
            let Some(store) = r.store.as_ref() else { return Ok(None) };
            // A publish (rollback, import) in progress: keep the snapshot until it is whole.
            let (v, publishing) = store.change_state().await?;
            if v == current || publishing {
                return Ok::<_, anyhow::Error>(None);
            }
            let started = std::time::Instant::now();
            let cache = r.cache.as_deref().map(|p| (p, &*r.keyring));
            // Providers are read with the keys so the cache holds both from one moment.
            let providers = if r.outbound.is_some() { store.load_providers().await? } else { Vec::new() };
            let objects = store.list_tenant_objects(None, None).await?;
            let s = load_snapshot(store, &r.routes, Some(&gateway.snapshot()), cache, &providers, &objects)
                .await?;
            // Something changed while loading (or a publish began): providers (read first) and
            // keys may come from different moments, or hold half a change. Drop it; the next
            // round loads the whole change. (Comparing with `v`, read before anything was loaded,
            // is what closes the race where providers were read just before a write and keys just
            // after it: the snapshot then carried the new counter with the old providers, and no
            // later poll saw a difference.)
            let (after, publishing) = store.change_state().await?;
            if after != v || s.version != v || publishing {
                tracing::debug!(
                    started = v,
                    now = after,
                    publishing,
                    "store changed during reload; retrying"
                );
                nudge.notify_one();
                return Ok(None);
            }
            Ok(Some((s, providers, objects, started.elapsed())))
        }
        .await;
        match result {
            Ok(Some((s, providers, objects, took))) => {
                tracing::info!(
                    version = s.version,
                    keys = s.key_count(),
                    reload_ms = took.as_millis() as u64,
                    "snapshot reloaded"
                );
                r.health.set_snapshot(s.version, s.key_count(), true);
                set_tenant_alerts(&r.alerts, &objects, &snapshot_app_tenants(&s));
                if let Some((g, out)) = &r.outbound {
                    g.swap_snapshot(s.with_routes(vec![crate::outbound::route()]));
                    let rep = crate::outbound::apply(out, providers);
                    tracing::info!(providers = rep.loaded, refused = rep.refused.len(), "providers reloaded");
                }
                gateway.swap_snapshot(s);
                r.health.set_store(true);
                failing = false;
            }
            Ok(None) => {
                r.health.set_store(true);
                failing = false;
            }
            Err(e) => {
                r.health.set_store(false);
                if !failing {
                    tracing::warn!(error = %format!("{e:#}"), "store unreachable; serving the last good snapshot");
                }
                failing = true;
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
