// Every request leaves one audit record — accepted or refused — with who, what and the
// decision, and none of the secrets, signatures or nonces of the run.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::*;

const SK: &str = "audit-secret-0123456789abcdef";

#[tokio::test]
async fn every_request_is_audited_without_secrets_and_searchable_from_the_cli() {
    let upstream = start_upstream();
    let cfg = format!(
        r#"
[store]
url = "sqlite://{{dir}}/keygate.db"
[[routes]]
path_prefix = "/api"
upstream = "http://{}"
[[apps]]
id = "shop"
[[apps.keys]]
access_key = "AKAUDIT"
secret_env = "SK"
"#,
        upstream.addr()
    );
    let gw = start_keygate(&cfg, &[("SK", SK)]);
    let mut secrets_of_the_run = vec![SK.to_string()];
    for i in 0..5 {
        let url = gw.url(&format!("/api/orders/{i}?x=1"));
        let h = sign("AKAUDIT", SK, "POST", &url, &[], b"{\"card\":\"4111\"}", &[]);
        secrets_of_the_run.push(header(&h, "x-kg-signature").to_string());
        secrets_of_the_run.push(header(&h, "x-kg-nonce").to_string());
        assert_eq!(send("POST", &url, &h, b"{\"card\":\"4111\"}", false).await.0, 200);
    }
    let url = gw.url("/api/orders/x");
    let h = sign("AKAUDIT", "wrong-0123456789abcdef0123", "GET", &url, &[], b"", &[]);
    secrets_of_the_run.push(header(&h, "x-kg-signature").to_string());
    assert_eq!(send("GET", &url, &h, b"", false).await.0, 401);
    assert_eq!(send("GET", &gw.url("/nowhere"), &[], b"", false).await.0, 404);

    let cfg_path = gw.dir.path().join("keygate.toml");
    let search = |extra: &[&str]| {
        let out = Command::new(bin())
            .args(["audit", "search", "-c", cfg_path.to_str().unwrap(), "--json"])
            .args(extra)
            .env("KEYGATE_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // The writer batches for up to 50 ms: wait until all 7 are in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut all;
    loop {
        all = search(&[]);
        if all.lines().count() == 7 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "audit rows: {all}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let rows: Vec<serde_json::Value> = all.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ok: Vec<_> = rows.iter().filter(|r| r["code"] == "ok").collect();
    assert_eq!(ok.len(), 5);
    let r = ok[0];
    assert_eq!(
        (r["app"].as_str(), r["key_id"].as_str(), r["method"].as_str(), r["route"].as_str()),
        (Some("shop"), Some("AKAUDIT"), Some("POST"), Some("/api"))
    );
    assert_eq!(
        (r["status"].as_u64(), r["client_ip"].as_str(), r["scheme"].as_str()),
        (Some(200), Some("127.0.0.1"), Some("kg1-hmac-sha256"))
    );
    assert_eq!(r["bytes_in"].as_u64(), Some(15));
    assert!(r["upstream_latency_us"].as_u64().is_some() && r["latency_us"].as_u64().is_some());
    assert!(r["path"].as_str().unwrap().starts_with("/api/orders/"));
    // The request ids match the X-Request-Id the clients got back.
    assert!(rows.iter().all(|r| r["request_id"].as_str().unwrap().len() >= 8));
    let refused = search(&["--code", "signature_mismatch"]);
    assert_eq!(refused.lines().count(), 1);
    assert!(search(&["--code", "route_not_found"]).contains("\"/nowhere\""));
    // No secret, signature, nonce or body in the audit log.
    for s in &secrets_of_the_run {
        assert!(!all.contains(s.as_str()), "{s:?} in the audit log");
    }
    assert!(!all.contains("4111"), "bodies are not audited");
    // And none in keygate's own logs either.
    let logs = gw.logs();
    for s in &secrets_of_the_run {
        assert!(!logs.contains(s.as_str()), "{s:?} in the logs");
    }
}

#[tokio::test]
async fn opt_in_capture_records_masked_bodies_and_listed_headers_only() {
    let upstream = start_upstream();
    let cfg = format!(
        r#"
[store]
url = "sqlite://{{dir}}/keygate.db"
[[routes]]
path_prefix = "/pay"
upstream = "http://{}"
audit_capture = {{ max_bytes = 2048, mask_fields = ["card", "cvv"], headers = ["content-type", "x-trace-id"] }}
[[apps]]
id = "shop"
[[apps.keys]]
access_key = "AKAUDIT"
secret_env = "SK"
"#,
        upstream.addr()
    );
    let gw = start_keygate(&cfg, &[("SK", SK)]);
    let url = gw.url("/pay/charge");
    let body = br#"{"card":"4111111111111111","amount":5,"nested":{"cvv":"987"}}"#;
    let h = sign(
        "AKAUDIT",
        SK,
        "POST",
        &url,
        &[("content-type", "application/json"), ("x-trace-id", "t-42")],
        body,
        &[],
    );
    let (status, _, resp_body, _) = send("POST", &url, &h, body, false).await;
    assert_eq!(status, 200);
    assert!(!resp_body.is_empty());
    let cfg_path = gw.dir.path().join("keygate.toml");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let row = loop {
        let out = Command::new(bin())
            .args(["audit", "search", "-c", cfg_path.to_str().unwrap(), "--json"])
            .env("KEYGATE_MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        if let Some(line) = text.lines().next() {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no audit row");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let req = row["request_body"].as_str().unwrap();
    assert!(
        req.contains(r#""card":"***""#) && req.contains(r#""cvv":"***""#) && req.contains(r#""amount":5"#),
        "{req}"
    );
    assert!(!req.contains("4111") && !req.contains("987"));
    let headers: serde_json::Value = serde_json::from_str(row["headers"].as_str().unwrap()).unwrap();
    assert_eq!(headers["x-trace-id"], "t-42");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.get("x-kg-signature").is_none() && headers.get("authorization").is_none());
    assert!(row["response_body"].as_str().is_some_and(|b| !b.is_empty()), "{row}");
    drop(gw);

    // Listing a credential header is refused at startup, not silently ignored.
    let bad = cfg.replace(r#"headers = ["content-type", "x-trace-id"]"#, r#"headers = ["Authorization"]"#);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.toml");
    std::fs::write(&path, bad.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("KEYGATE_MASTER_KEY", MASTER_KEY)
        .env("SK", SK)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never recorded"));
}
