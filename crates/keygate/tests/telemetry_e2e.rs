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
