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
use keygate_store::{AppRecord, KeyRecord, Keyring, MasterKey, Store};

use crate::config::{Config, LegacySettings, SCHEME_KG1, SCHEME_LEGACY};

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

/// Reads the master key: `KEYGATE_MASTER_KEY`, else the configured file.
pub fn load_keyring(file: Option<&Path>) -> Result<Keyring> {
    let key = if let Ok(text) = std::env::var("KEYGATE_MASTER_KEY") {
        MasterKey::parse(&text).context("KEYGATE_MASTER_KEY")?
    } else if let Some(path) = file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading master key file {}", path.display()))?,
        );
        MasterKey::parse(&text).with_context(|| format!("master key file {}", path.display()))?
    } else {
        anyhow::bail!(
            "no master key: set KEYGATE_MASTER_KEY (generate one with `keygate master-key generate`) or [store] master_key_file"
        );
    };
    Ok(Keyring::new([key])?)
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
                scheme_settings: k.scheme_settings()?,
                enabled: k.enabled,
                valid_from,
                valid_to,
                timestamp_window_secs: k.timestamp_window_secs,
                description: k.description.clone(),
                rate_limit: k
                    .rate_limit
                    .map(|r| keygate_store::RateLimit { rate_per_sec: r.rate_per_sec, burst: r.burst }),
                ..KeyRecord::default()
            };
            if store.upsert_key(&rec, &secret).await? != keygate_store::Upsert::Unchanged {
                changed += 1;
            }
        }
    }
    Ok((total, changed))
}

/// Builds the data plane's snapshot from the store and the configured routes. A key whose app
/// is disabled is loaded disabled.
pub async fn build_snapshot(store: &Store, routes: &[Route]) -> Result<Snapshot> {
    let version = store.change_counter().await?;
    let apps: std::collections::HashMap<String, bool> =
        store.list_apps().await?.into_iter().map(|a| (a.id, a.enabled)).collect();
    let mut keys = Vec::new();
    for k in store.load_keys().await? {
        let r = k.record;
        let scheme = match r.scheme.as_str() {
            SCHEME_KG1 => KeyScheme::Kg1,
            SCHEME_LEGACY => {
                let s: LegacySettings = serde_json::from_value(r.scheme_settings.clone())
                    .with_context(|| format!("legacy settings of {}", r.access_key))?;
                KeyScheme::Legacy(s.to_config()?)
            }
            other => {
                tracing::error!(access_key = %r.access_key, scheme = other, "unknown scheme in store; key not loaded");
                continue;
            }
        };
        let app_enabled = apps.get(&r.app_id).copied().unwrap_or(false);
        keys.push(KeyEntry {
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
            secret: k.secret,
        });
    }
    Ok(Snapshot::new(keys, routes.to_vec(), version))
}

pub async fn run(opts: ServeOptions) -> Result<()> {
    let cfg = &opts.config;
    let keyring = Arc::new(load_keyring(cfg.store.master_key_file.as_deref())?);
    let store = Store::open(&cfg.store.url, keyring).await?;
    let (total, changed) = import(&store, cfg, &opts.base_dir).await?;
    tracing::info!(keys = total, changed, "config imported");

    let routes: Vec<Route> = cfg.routes.iter().map(|r| r.to_route()).collect::<Result<_>>()?;
    if routes.is_empty() {
        tracing::warn!("no [[routes]] configured: every request will get route_not_found");
    }
    for r in routes.iter().filter(|r| r.auth == keygate_inbound::RouteAuth::None) {
        tracing::warn!(path_prefix = %r.path_prefix, "route has auth = \"none\": requests are forwarded unauthenticated");
    }
    let snapshot = build_snapshot(&store, &routes).await?;
    tracing::info!(keys = snapshot.key_count(), version = snapshot.version, "snapshot loaded");

    let (state, sweeper) = build_state(&cfg.state)?;
    let upstream =
        UpstreamClients::new(&keygate_inbound::UpstreamOptions::default()).context("upstream TLS roots")?;
    let gateway = Arc::new(Gateway::new(snapshot, state, upstream));
    let reloader = tokio::spawn(reload_loop(
        store.clone(),
        gateway.clone(),
        routes,
        Duration::from_millis(cfg.server.reload_interval_ms.max(50)),
    ));

    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
        (None, None) => None,
        _ => anyhow::bail!("[server] needs both tls_cert and tls_key, or neither"),
    };
    let server = InboundServer::bind(&cfg.server.inbound, tls.as_ref(), gateway).await?;
    let addr = server.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "inbound listening on {scheme}://{addr}");
    if let Some(banner) = &opts.banner {
        println!("{}", banner(addr));
    }
    server.serve(shutdown_signal()).await;
    sweeper.abort();
    reloader.abort();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Request state: Redis shared by all replicas (with the failure policy) when configured, else
/// this process's memory. Returns the handles and the housekeeping task (expiry sweeps, Redis
/// health probes so an idle replica notices recovery).
fn build_state(cfg: &crate::config::StateConfig) -> Result<(StateHandles, tokio::task::JoinHandle<()>)> {
    let settings = IdempotencySettings {
        ttl: Duration::from_secs(cfg.idempotency_ttl_secs),
        max_body_bytes: cfg.idempotency_max_body_bytes,
    };
    let local = MemoryGate::with_capacity(cfg.nonce_capacity, cfg.nonce_capacity);
    match &cfg.redis {
        None => {
            let gate = Arc::new(local);
            let idem = Arc::new(MemoryIdempotencyStore::new(cfg.nonce_capacity));
            let (g, i) = (gate.clone(), idem.clone());
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    g.sweep();
                    i.sweep();
                }
            });
            Ok((StateHandles { gate, idempotency: idem, idempotency_settings: settings }, task))
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
            Ok((
                StateHandles {
                    gate: resilient.clone(),
                    idempotency: resilient,
                    idempotency_settings: settings,
                },
                task,
            ))
        }
    }
}

/// Polls the change counter; on a change rebuilds the snapshot. On error keeps serving the last
/// good snapshot and says so.
async fn reload_loop(store: Store, gateway: Arc<Gateway>, routes: Vec<Route>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let current = gateway.snapshot().version;
        let result = async {
            let v = store.change_counter().await?;
            if v == current {
                return Ok::<_, anyhow::Error>(None);
            }
            Ok(Some(build_snapshot(&store, &routes).await?))
        }
        .await;
        match result {
            Ok(Some(s)) => {
                tracing::info!(version = s.version, keys = s.key_count(), "snapshot reloaded");
                gateway.swap_snapshot(s);
                failing = false;
            }
            Ok(None) => failing = false,
            Err(e) => {
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
