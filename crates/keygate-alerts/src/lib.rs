//! Alerts: rules with thresholds, windows and cooldowns over request outcomes and gauges
//! (signature-failure spikes per app or IP, replay bursts, a new source range for an app,
//! provider error spikes, audit spill growth), delivered to a JSON webhook, Slack, DingTalk,
//! Feishu/Lark, WeCom or SMTP email with retries. Off the request path: `record` never blocks.
#![forbid(unsafe_code)]

pub mod channels;
pub mod rules;
pub mod smtp;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::mpsc;

pub use channels::{ChannelConfig, DeliveryError, Retry, Sender};
pub use rules::{Alert, Engine, Event, Per, RuleConfig, RuleError};

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

/// Fired alerts kept for [`Alerts::view`].
pub const RECENT: usize = 50;

/// Handle to the running alert pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    tx: mpsc::Sender<Input>,
    pub stats: Arc<AlertStats>,
    /// The newest fired alerts (at most [`RECENT`]), for the console.
    recent: Arc<std::sync::Mutex<std::collections::VecDeque<Alert>>>,
    rules: Arc<Vec<RuleConfig>>,
    /// Channel kinds only: a webhook URL can be a credential (Slack, DingTalk) and is never shown.
    channel_kinds: Arc<Vec<&'static str>>,
    /// Codes some rule counts (plus `ok` when a rule watches successful calls).
    interesting: Arc<Vec<String>>,
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
        let recent: Arc<std::sync::Mutex<std::collections::VecDeque<Alert>>> = Arc::default();
        let recent_w = recent.clone();
        let interesting = Arc::new(interesting_codes(&cfg.rules));
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
            loop {
                let input = tokio::select! {
                    input = rx.recv() => match input {
                        Some(i) => i,
                        None => return,
                    },
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
                            }, st.clone());
                        }
                        sent = 0;
                        suppressed = 0;
                        continue;
                    }
                };
                let now = unix_now();
                let fired = match input {
                    Input::Event(ev) => engine.observe(&ev, now),
                    Input::Gauge(name, v) => engine.gauge(&name, v, now),
                };
                for alert in fired {
                    st.fired.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut r = recent_w.lock().unwrap_or_else(|e| e.into_inner());
                        if r.len() == RECENT {
                            r.pop_front();
                        }
                        r.push_back(alert.clone());
                    }
                    tracing::warn!(rule = %alert.rule, subject = %alert.subject, count = alert.count, "alert: {}", alert.message);
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
        Ok(Self { tx, stats, recent, rules, channel_kinds, interesting })
    }

    /// What the console shows: rules, channel kinds (never their URLs or addresses), counters,
    /// and the newest fired alerts, newest first.
    pub fn view(&self) -> serde_json::Value {
        let recent: Vec<Alert> =
            self.recent.lock().unwrap_or_else(|e| e.into_inner()).iter().rev().cloned().collect();
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
        })
    }

    /// Whether any rule looks at outcomes with this code (skip the rest before allocating).
    pub fn wants(&self, code: &str) -> bool {
        self.interesting.iter().any(|c| c == code)
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
