// The metrics and health listener of a real process: request counters by route/app/code,
// latency histograms, readiness, and no unbounded or secret label values.
#![allow(clippy::unwrap_used)]

mod support;

use support::*;

const SK: &str = "metrics-secret-0123456789abcdef";

#[tokio::test]
async fn metrics_count_decisions_with_bounded_labels_and_readyz_reports_state() {
    let upstream = start_upstream();
    let cfg = format!(
        r#"
[server]
metrics = "127.0.0.1:0"
[store]
url = "sqlite://{{dir}}/keygate.db"
[[routes]]
path_prefix = "/api"
upstream = "http://{}"
[[apps]]
id = "shop"
[[apps.keys]]
access_key = "AKMETRICS"
secret_env = "SK"
"#,
        upstream.addr()
    );
    let gw = start_keygate(&cfg, &[("SK", SK)]);
    let m = gw.metrics.expect("metrics listener");
    for i in 0..3 {
        let url = gw.url(&format!("/api/orders/{i}?nonce-ish=abc{i}"));
        let h = sign("AKMETRICS", SK, "GET", &url, &[], b"", &[]);
        assert_eq!(send("GET", &url, &h, b"", false).await.0, 200);
    }
    let url = gw.url("/api/orders/9");
    let h = sign("AKMETRICS", "wrong-secret-0123456789abcdef", "GET", &url, &[], b"", &[]);
    assert_eq!(send("GET", &url, &h, b"", false).await.0, 401);
    let nonce = header(&h, "x-kg-nonce").to_string();

    let (s, _, body, _) = send("GET", &format!("http://{m}/metrics"), &[], b"", false).await;
    assert_eq!(s, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
            .to_string()
    };
    assert!(line(r#"keygate_requests_total{route="/api",app="shop",code="ok"}"#).ends_with(" 3"));
    assert!(
        line(r#"keygate_requests_total{route="/api",app="shop",code="signature_mismatch"}"#).ends_with(" 1")
    );
    assert!(line(r#"keygate_signature_failures_total{app="shop"}"#).ends_with(" 1"));
    assert!(text.contains("keygate_request_duration_seconds_bucket{route=\"/api\""));
    assert!(text.contains("keygate_upstream_duration_seconds_bucket{route=\"/api\""));
    assert!(line("keygate_snapshot_keys ").ends_with(" 1"));
    assert!(line("keygate_store_up ").ends_with(" 1"));
    // Bounded labels only: no raw path, query, IP, nonce — and never a secret.
    for forbidden in ["/api/orders", "nonce-ish", "127.0.0.1", nonce.as_str(), SK, "AKMETRICS"] {
        assert!(!text.contains(forbidden), "{forbidden:?} in metrics output");
    }

    let (s, _, body, _) = send("GET", &format!("http://{m}/readyz"), &[], b"", false).await;
    let v = envelope(&body);
    assert_eq!((s.as_u16(), v["ready"].as_bool(), v["store"].as_str()), (200, Some(true), Some("ok")), "{v}");
    assert_eq!(v["snapshot"]["keys"], 1);
    assert_eq!(v["redis"], "not configured");
    let (s, _, body, _) = send("GET", &format!("http://{m}/healthz"), &[], b"", false).await;
    assert_eq!((s.as_u16(), &body[..]), (200, &b"ok\n"[..]));
}

#[tokio::test]
async fn a_signature_failure_spike_alerts_a_webhook_once_without_secrets() {
    let upstream = start_upstream();
    let hook = start_upstream(); // records what it receives: our webhook receiver
    let cfg = format!(
        r#"
[store]
url = "sqlite://{{dir}}/keygate.db"
[[routes]]
path_prefix = "/"
upstream = "http://{}"
[[apps]]
id = "shop"
[[apps.keys]]
access_key = "AKALERT"
secret_env = "SK"
[alerts]
rules = [{{ kind = "signature_failures", per = "app", threshold = 3, window_secs = 60, cooldown_secs = 600 }}]
channels = [{{ type = "webhook", url = "http://{}/hook" }}, {{ type = "slack", url = "http://{}/slack" }}]
"#,
        upstream.addr(),
        hook.addr(),
        hook.addr()
    );
    let gw = start_keygate(&cfg, &[("SK", SK)]);
    let mut nonces = Vec::new();
    for i in 0..6 {
        let url = gw.url(&format!("/orders/{i}"));
        let h = sign("AKALERT", "attacker-guess-0123456789abcdef", "GET", &url, &[], b"", &[]);
        nonces.push(header(&h, "x-kg-nonce").to_string());
        assert_eq!(send("GET", &url, &h, b"", false).await.0, 401);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hook.count() < 2 {
        assert!(std::time::Instant::now() < deadline, "no alert; logs:\n{}", gw.logs());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(hook.count(), 2, "one alert (cooldown), to two channels");
    let seen = hook.seen.lock().unwrap().clone();
    let generic = seen.iter().find(|s| s.path_and_query == "/hook").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&generic.body).unwrap();
    assert_eq!(
        (v["rule"].as_str(), v["subject"].as_str(), v["count"].as_u64()),
        (Some("signature_failures"), Some("shop"), Some(4))
    );
    let slack = seen.iter().find(|s| s.path_and_query == "/slack").unwrap();
    let text = String::from_utf8_lossy(&slack.body);
    assert!(text.contains("signature failures from app shop"), "{text}");
    for s in &seen {
        let body = String::from_utf8_lossy(&s.body);
        for forbidden in
            [SK, "attacker-guess", "AKALERT"].iter().copied().chain(nonces.iter().map(String::as_str))
        {
            assert!(!body.contains(forbidden), "{forbidden:?} in an alert");
        }
    }
    assert_eq!(upstream.count(), 0);
}
