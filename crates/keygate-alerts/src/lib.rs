//! Alerts: rules with thresholds, windows and cooldowns over request outcomes and gauges
//! (signature-failure spikes per app or IP, replay bursts, a new source range for an app,
//! provider error spikes, audit spill growth), delivered to a JSON webhook, Slack, DingTalk,
//! Feishu/Lark, WeCom or SMTP email with retries. Off the request path: `record` never blocks.
//!
//! Besides the operator's rules (from the config), tenants own rules (from the database, set
//! with [`Alerts::set_tenant_rules`]): each tenant's rules run in an engine of their own that
//! only sees events of that tenant's apps, and their alerts carry the tenant.
#![forbid(unsafe_code)]

pub mod channels;
pub mod rules;
pub mod smtp;
pub mod tenants;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

pub use channels::{ChannelConfig, DeliveryError, Retry, Sender};
pub use rules::{Alert, Engine, Event, Per, RuleConfig, RuleError};
pub use tenants::validate_tenant_rules;

use tenants::{Recent, TenantEngines, TenantSet};

/// `[alerts]` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// At most this many alerts are delivered per minute; the rest are counted and reported in
    /// one summary alert at the end of the minute (an attacker rotating source IPs must not
    /// turn alerting into a flood of webhooks and mail).
    #[serde(default = "default_max_per_minute")]
    pub max_per_minute: u32,
}

fn default_max_per_minute() -> u32 {
    30
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self { rules: Vec::new(), channels: Vec::new(), max_per_minute: default_max_per_minute() }
    }
}

enum Input {
    Event(Event),
    Gauge(String, f64),
}

/// Counters of the alert pipeline.
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Inputs dropped because the queue was full (alerting never slows requests down).
    pub dropped: AtomicU64,
    pub fired: AtomicU64,
    /// Fired but not delivered individually because of `max_per_minute`.
    pub suppressed: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

/// Fired alerts kept for [`Alerts::view`] (and as many per tenant for
/// [`Alerts::view_for_tenant`]).
pub const RECENT: usize = 50;

/// Handle to the running alert pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    tx: mpsc::Sender<Input>,
    pub stats: Arc<AlertStats>,
    /// The newest fired alerts (at most [`RECENT`] overall and per tenant), for the consoles.
    recent: Arc<std::sync::Mutex<Recent>>,
    rules: Arc<Vec<RuleConfig>>,
    /// Channel kinds only: a webhook URL can be a credential (Slack, DingTalk) and is never shown.
    channel_kinds: Arc<Vec<&'static str>>,
    /// Codes the operator's rules count.
    operator_codes: Arc<Vec<String>>,
    /// Codes some operator or tenant rule counts (plus `ok` when a rule watches successful
    /// calls), sorted. Read on every request: lock-free, allocation-free.
    interesting: Arc<ArcSwap<Vec<String>>>,
    /// The tenant rules, watched by the evaluation task. A `watch` rather than an `Input` on
    /// the bounded queue: an update is never dropped when the queue is full (and never blocks
    /// the caller), updates coalesce (only the newest set matters), and the task checks it
    /// before each queued event, so events recorded after `set_tenant_rules` returns see the
    /// new rules.
    tenants: watch::Sender<Arc<TenantSet>>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts").field("stats", &self.stats).finish_non_exhaustive()
    }
}

/// Start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

impl Alerts {
    /// Validates the rules and starts the evaluation task (on the current Tokio runtime).
    pub fn start(cfg: AlertsConfig, retry: Retry) -> Result<Self, AlertsError> {
        Self::start_with_window(cfg, retry, std::time::Duration::from_secs(60))
    }

    /// [`Alerts::start`] with the rate-cap window given (tests use a short one).
    pub fn start_with_window(
        cfg: AlertsConfig,
        retry: Retry,
        window: std::time::Duration,
    ) -> Result<Self, AlertsError> {
        let mut engine = Engine::new(&cfg.rules)?;
        let rules = Arc::new(cfg.rules.clone());
        let channel_kinds = Arc::new(cfg.channels.iter().map(|c| c.kind()).collect::<Vec<_>>());
        let recent: Arc<std::sync::Mutex<Recent>> = Arc::default();
        let recent_w = recent.clone();
        let operator_codes = Arc::new(interesting_codes(&cfg.rules));
        let interesting = Arc::new(ArcSwap::from(operator_codes.clone()));
        let (tenants, mut tenants_rx) = watch::channel(Arc::new(TenantSet::default()));
        let mut tenant_engines = TenantEngines::default();
        let sender = Sender::new(retry)?;
        let (tx, mut rx) = mpsc::channel::<Input>(16_384);
        let stats = Arc::new(AlertStats::default());
        let channels = Arc::new(cfg.channels);
        let cap = u64::from(cfg.max_per_minute.max(1));
        let st = stats.clone();
        let deliver = move |alert: Alert, st: Arc<AlertStats>| {
            for ch in channels.iter() {
                let (sender, ch, alert, st) = (sender.clone(), ch.clone(), alert.clone(), st.clone());
                tokio::spawn(async move {
                    match sender.deliver(&ch, &alert).await {
                        Ok(_) => st.delivered.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::error!(channel = ch.kind(), rule = %alert.rule, error = %e, "alert not delivered");
                            st.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                });
            }
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(window);
            tick.tick().await;
            let (mut sent, mut suppressed) = (0u64, 0u64);
            let mut tenants_open = true;
            loop {
                // Biased: a tenant-rule update first (rare), then the rate-cap tick (once per
                // window, so a flood of events cannot starve it), then the queue.
                let input = tokio::select! {
                    biased;
                    changed = tenants_rx.changed(), if tenants_open => {
                        match changed {
                            Ok(()) => {
                                let set = tenants_rx.borrow_and_update().clone();
                                tenant_engines.update(set);
                            }
                            // Every handle is gone; drain the queue.
                            Err(_) => tenants_open = false,
                        }
                        continue;
                    }
                    _ = tick.tick() => {
                        if suppressed > 0 {
                            let now = unix_now();
                            deliver(Alert {
                                rule: "alert_rate_cap".into(),
                                kind: "summary".into(),
                                subject: "keygate".into(),
                                count: suppressed,
                                window_secs: window.as_secs(),
                                at: now,
                                message: format!(
                                    "keygate: {suppressed} more alerts in the last {} s were not sent individually (max {cap} per window); see the logs",
                                    window.as_secs()
                                ),
                                tenant: None,
                            }, st.clone());
                        }
                        sent = 0;
                        suppressed = 0;
                        continue;
                    }
                    input = rx.recv() => match input {
                        Some(i) => i,
                        None => return,
                    },
                };
                let now = unix_now();
                let fired = match input {
                    Input::Event(ev) => {
                        // The operator's rules see every event; a tenant's only its apps'.
                        let mut fired = engine.observe(&ev, now);
                        fired.extend(tenant_engines.observe(&ev, now));
                        fired
                    }
                    Input::Gauge(name, v) => engine.gauge(&name, v, now),
                };
                for alert in fired {
                    st.fired.fetch_add(1, Ordering::Relaxed);
                    recent_w.lock().unwrap_or_else(|e| e.into_inner()).push(&alert);
                    tracing::warn!(
                        rule = %alert.rule,
                        subject = %alert.subject,
                        count = alert.count,
                        tenant = alert.tenant.as_deref().unwrap_or("-"),
                        "alert: {}",
                        alert.message
                    );
                    // Tenant alerts count against the same cap: no flooding through them either.
                    if sent < cap {
                        sent += 1;
                        deliver(alert, st.clone());
                    } else {
                        suppressed += 1;
                        st.suppressed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Self { tx, stats, recent, rules, channel_kinds, operator_codes, interesting, tenants })
    }

    /// Sets the tenants' rules (tenant id → rules) and which tenant owns each app (app id →
    /// tenant id). Call after every configuration reload: an identical call is a cheap no-op,
    /// and a tenant whose rules did not change keeps its counts (changed rules start from
    /// zero; tenants left out are dropped). Each tenant's rules should have passed
    /// [`validate_tenant_rules`]; a tenant whose rules do not is logged and gets no rules.
    /// Never blocks on the event queue, and events recorded after it returns see the new rules.
    pub fn set_tenant_rules(
        &self,
        rules: HashMap<String, Vec<RuleConfig>>,
        app_tenant: HashMap<String, String>,
    ) {
        // Under the watch's lock: concurrent calls apply in one order, `interesting` included.
        self.tenants.send_if_modified(|cur| {
            if cur.rules == rules && cur.app_tenant == app_tenant {
                return false;
            }
            let next = cur.next(rules, app_tenant);
            let mut codes = (*self.operator_codes).clone();
            for (_, list) in next.all_active() {
                codes.extend(interesting_codes(list));
            }
            codes.sort_unstable();
            codes.dedup();
            self.interesting.store(Arc::new(codes));
            *cur = Arc::new(next);
            true
        });
    }

    /// What the console shows: rules, channel kinds (never their URLs or addresses), counters,
    /// the newest fired alerts (newest first, tenants' included) and the tenants' rules.
    pub fn view(&self) -> serde_json::Value {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner()).all();
        let set = self.tenants.borrow().clone();
        let tenant_rules: serde_json::Map<String, serde_json::Value> =
            set.all_active().map(|(t, r)| (t.clone(), serde_json::to_value(r).unwrap_or_default())).collect();
        let s = &self.stats;
        serde_json::json!({
            "rules": *self.rules,
            "channels": *self.channel_kinds,
            "stats": {
                "fired": s.fired.load(Ordering::Relaxed),
                "delivered": s.delivered.load(Ordering::Relaxed),
                "failed": s.failed.load(Ordering::Relaxed),
                "suppressed": s.suppressed.load(Ordering::Relaxed),
                "dropped": s.dropped.load(Ordering::Relaxed),
            },
            "recent": recent,
            "tenant_rules": tenant_rules,
        })
    }

    /// What a tenant's console shows: its rules, how many alerts they fired and their newest
    /// alerts, newest first. Nothing of the operator's (no channels, no other counters).
    pub fn view_for_tenant(&self, tenant: &str) -> serde_json::Value {
        let (recent, fired) = self.recent.lock().unwrap_or_else(|e| e.into_inner()).tenant(tenant);
        let set = self.tenants.borrow().clone();
        serde_json::json!({
            "rules": set.active(tenant).unwrap_or(&[]),
            "stats": { "fired": fired },
            "recent": recent,
        })
    }

    /// Whether any rule (the operator's or a tenant's) looks at outcomes with this code (skip
    /// the rest before allocating). Lock-free and allocation-free.
    pub fn wants(&self, code: &str) -> bool {
        self.interesting.load().binary_search_by(|c| c.as_str().cmp(code)).is_ok()
    }

    /// Queues a request outcome; drops it (counted) if the queue is full.
    pub fn record(&self, ev: Event) {
        if self.tx.try_send(Input::Event(ev)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a gauge reading.
    pub fn gauge(&self, name: &str, value: f64) {
        if self.tx.try_send(Input::Gauge(name.to_string(), value)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn interesting_codes(rules: &[RuleConfig]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rules {
        match r {
            RuleConfig::SignatureFailures { .. } => out.push("signature_mismatch".into()),
            RuleConfig::Replays { .. } => out.push("nonce_replayed".into()),
            RuleConfig::CodeSpike { codes, .. } => out.extend(codes.iter().cloned()),
            RuleConfig::NewIpRange { .. } => out.push("ok".into()),
            RuleConfig::GaugeAbove { .. } => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
