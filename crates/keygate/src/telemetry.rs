// Prometheus metrics and health endpoints on their own listener (`[server] metrics`), and the
// observer that turns every finished request into metrics. Labels are bounded by configuration
// (route prefix, app id, stable error code) — never a nonce, raw path, IP or anything secret.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use keygate_inbound::{Observer, RequestOutcome};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds): 100 µs … 10 s.
const BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the global metrics recorder once per process and returns its handle.
pub fn install_recorder() -> Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new().set_buckets(BUCKETS).context("metrics buckets")?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    describe();
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("keygate_requests_total", "Finished inbound requests by route, app and decision code");
    describe_histogram!(
        "keygate_request_duration_seconds",
        Unit::Seconds,
        "Time in keygate until the response head"
    );
    describe_histogram!("keygate_upstream_duration_seconds", Unit::Seconds, "Upstream time to response head");
    describe_counter!("keygate_signature_failures_total", "signature_mismatch refusals by app");
    describe_counter!("keygate_replays_total", "nonce_replayed refusals by app");
    describe_counter!("keygate_rate_limited_total", "rate_limited refusals by route");
    describe_counter!("keygate_request_bytes_total", "Request body bytes by route");
    describe_counter!("keygate_response_bytes_total", "Response body bytes (Content-Length) by route");
    describe_gauge!("keygate_snapshot_version", "Store change counter of the snapshot in use");
    describe_gauge!("keygate_snapshot_keys", "Keys in the snapshot in use");
    describe_gauge!("keygate_store_up", "1 when the last store check succeeded");
    describe_gauge!("keygate_redis_up", "1 when Redis answers (absent without Redis)");
    describe_gauge!("keygate_audit_queue_depth", "Audit records queued for the writer");
    describe_gauge!("keygate_audit_spill_bytes", "Bytes in the audit spill file (database unreachable)");
    describe_gauge!("keygate_audit_db_up", "1 while audit records go straight to the database");
    describe_counter!("keygate_audit_written_total", "Audit records stored in the database");
    describe_counter!("keygate_audit_spilled_total", "Audit records written to the spill file");
    describe_counter!("keygate_audit_dropped_total", "Audit records that could not be kept");
}

/// Turns finished requests into metrics.
#[derive(Debug, Default)]
pub struct MetricsObserver;

impl Observer for MetricsObserver {
    fn observe(&self, o: &RequestOutcome<'_>) {
        let route = o.route.map(|r| r.path_prefix.clone()).unwrap_or_else(|| "-".into());
        let app = o.app_id.unwrap_or("-").to_string();
        metrics::counter!("keygate_requests_total", "route" => route.clone(), "app" => app.clone(), "code" => o.code)
            .increment(1);
        let class = match o.status.as_u16() {
            200..=399 => "2xx_3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        metrics::histogram!("keygate_request_duration_seconds", "route" => route.clone(), "class" => class)
            .record(o.latency.as_secs_f64());
        if let Some(u) = o.upstream_latency {
            metrics::histogram!("keygate_upstream_duration_seconds", "route" => route.clone())
                .record(u.as_secs_f64());
        }
        match o.code {
            "signature_mismatch" => {
                metrics::counter!("keygate_signature_failures_total", "app" => app).increment(1)
            }
            "nonce_replayed" => metrics::counter!("keygate_replays_total", "app" => app).increment(1),
            "rate_limited" => {
                metrics::counter!("keygate_rate_limited_total", "route" => route.clone()).increment(1)
            }
            _ => {}
        }
        if o.bytes_in > 0 {
            metrics::counter!("keygate_request_bytes_total", "route" => route.clone()).increment(o.bytes_in);
        }
        if o.bytes_out > 0 {
            metrics::counter!("keygate_response_bytes_total", "route" => route).increment(o.bytes_out);
        }
    }
}

/// Feeds the alert rules (only outcomes some rule looks at).
#[derive(Debug)]
pub struct AlertObserver(pub keygate_alerts::Alerts);

impl Observer for AlertObserver {
    fn observe(&self, o: &RequestOutcome<'_>) {
        if self.0.wants(o.code) {
            self.0.record(keygate_alerts::Event {
                app: o.app_id.map(str::to_string),
                ip: o.client_ip,
                code: o.code.to_string(),
            });
        }
    }
}

/// A captured body, masked per the route's settings.
fn capture_body(o: &RequestOutcome<'_>, body: Option<(&[u8], Option<&str>)>) -> Option<String> {
    let c = o.route?.capture.as_ref()?;
    let (bytes, ct) = body?;
    if bytes.is_empty() {
        return None;
    }
    Some(keygate_audit::mask::body_for_audit(ct, bytes, &c.mask_fields, c.max_bytes))
}

/// Passes each outcome to several observers.
#[derive(Debug)]
pub struct Fanout(pub Vec<Arc<dyn Observer>>);

impl Observer for Fanout {
    fn observe(&self, o: &RequestOutcome<'_>) {
        for x in &self.0 {
            x.observe(o);
        }
    }

    fn accepting(&self) -> bool {
        self.0.iter().all(|x| x.accepting())
    }
}

/// Turns finished requests into audit records (queued; never blocks).
#[derive(Debug)]
pub struct AuditObserver(pub keygate_audit::AuditSink);

impl Observer for AuditObserver {
    fn observe(&self, o: &RequestOutcome<'_>) {
        let at_ms = o.at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        self.0.record(keygate_audit::AuditRecord {
            id: keygate_audit::new_id(at_ms),
            at_ms,
            request_id: o.request_id.to_string(),
            direction: "inbound".into(),
            app: o.app_id.map(str::to_string),
            key_id: o.access_key.map(str::to_string),
            scheme: o.scheme.map(str::to_string),
            client_ip: o.client_ip.to_canonical().to_string(),
            method: o.method.as_str().to_string(),
            route: o.route.map(|r| r.path_prefix.clone()).unwrap_or_else(|| "-".into()),
            path: keygate_audit::clip_path(o.path),
            status: o.status.as_u16(),
            code: o.code.to_string(),
            latency_us: o.latency.as_micros() as i64,
            upstream_latency_us: o.upstream_latency.map(|d| d.as_micros() as i64),
            bytes_in: o.bytes_in as i64,
            bytes_out: o.bytes_out as i64,
            request_body: capture_body(o, o.request_body),
            response_body: capture_body(o, o.response_body),
            headers: (!o.headers.is_empty()).then(|| {
                let map: serde_json::Map<String, serde_json::Value> = o
                    .headers
                    .iter()
                    .filter(|(n, _)| !keygate_audit::mask::is_secret_header(n))
                    .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                serde_json::Value::Object(map).to_string()
            }),
        });
    }

    fn accepting(&self) -> bool {
        self.0.accepting()
    }
}

/// What `/readyz` reports.
#[derive(Default)]
pub struct Health {
    pub store_ok: AtomicBool,
    /// The snapshot in use came from the store (not only from the cache).
    pub snapshot_from_store: AtomicBool,
    pub snapshot_version: AtomicI64,
    pub snapshot_keys: AtomicUsize,
    /// `Some` when Redis is configured: true while it answers.
    pub redis_ok: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// The audit writer, when auditing is on.
    pub audit: Option<keygate_audit::AuditSink>,
    /// Tenant objects the last load refused (`tenant/kind/name: reason`): served without them.
    pub refused_objects: Arc<std::sync::Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("store_ok", &self.store_ok).finish_non_exhaustive()
    }
}

impl Health {
    pub fn set_store(&self, ok: bool) {
        self.store_ok.store(ok, Ordering::Relaxed);
        metrics::gauge!("keygate_store_up").set(if ok { 1.0 } else { 0.0 });
    }

    pub fn set_snapshot(&self, version: i64, keys: usize, from_store: bool) {
        self.snapshot_version.store(version, Ordering::Relaxed);
        self.snapshot_keys.store(keys, Ordering::Relaxed);
        self.snapshot_from_store.store(from_store, Ordering::Relaxed);
        metrics::gauge!("keygate_snapshot_version").set(version as f64);
        metrics::gauge!("keygate_snapshot_keys").set(keys as f64);
    }

    fn report(&self) -> (bool, serde_json::Value) {
        let store = self.store_ok.load(Ordering::Relaxed);
        let redis = self.redis_ok.as_ref().map(|f| f());
        if let Some(r) = redis {
            metrics::gauge!("keygate_redis_up").set(if r { 1.0 } else { 0.0 });
        }
        let audit = self.audit.as_ref().map(|a| {
            use std::sync::atomic::Ordering::Relaxed;
            let st = a.stats();
            metrics::gauge!("keygate_audit_queue_depth").set(a.queue_depth() as f64);
            metrics::gauge!("keygate_audit_spill_bytes").set(st.spill_bytes.load(Relaxed) as f64);
            metrics::counter!("keygate_audit_written_total").absolute(st.written.load(Relaxed));
            metrics::counter!("keygate_audit_spilled_total").absolute(st.spilled.load(Relaxed));
            metrics::counter!("keygate_audit_dropped_total").absolute(st.dropped.load(Relaxed));
            metrics::gauge!("keygate_audit_db_up").set(if st.db_up.load(Relaxed) { 1.0 } else { 0.0 });
            serde_json::json!({
                "accepting": a.accepting(),
                "database": if st.db_up.load(Relaxed) { "ok" } else { "spilling" },
                "spill_bytes": st.spill_bytes.load(Relaxed),
            })
        });
        // A replica serving a cached snapshot while the store is down still verifies correctly,
        // but it cannot see revocations: not ready, so a load balancer prefers healthy peers.
        let refused = self.refused_objects.lock().unwrap_or_else(|e| e.into_inner()).clone();
        metrics::gauge!("keygate_tenant_objects_refused").set(refused.len() as f64);
        let audit_ok = self.audit.as_ref().is_none_or(|a| a.accepting());
        let ready = store && redis.unwrap_or(true) && audit_ok;
        let body = serde_json::json!({
            "ready": ready,
            "store": if store { "ok" } else { "unreachable" },
            "redis": match redis { None => "not configured", Some(true) => "ok", Some(false) => "degraded" },
            "audit": audit,
            "snapshot": {
                "version": self.snapshot_version.load(Ordering::Relaxed),
                "keys": self.snapshot_keys.load(Ordering::Relaxed),
                "source": if self.snapshot_from_store.load(Ordering::Relaxed) { "store" } else { "cache" },
                // A tenant's route or rule the operator's policy refuses is a configuration
                // problem, not an outage: reported here and in keygate_tenant_objects_refused,
                // while everything else is served.
                "refused_objects": refused,
            },
        });
        (ready, body)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    health: Arc<Health>,
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    s.health.report(); // refreshes the Redis gauge
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let (ready, body) = s.health.report();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body))
}

/// Serves `/metrics`, `/healthz`, `/readyz` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: PrometheusHandle,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = metrics.clone();
    let upkeep_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    upkeep_task.abort();
    result
}
