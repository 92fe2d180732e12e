// The web console in a real browser: starts keygate (admin listener + an inbound route), makes
// the tenants and admin tokens of four roles (tenants may publish routes to the test upstream,
// `[tenant_routes]`), then runs tests/console/console.mjs, which drives
// Debian's headless Chromium through the console with playwright-core (scripts/test installs
// both). With KEYGATE_SCREENSHOTS=<dir> the main pages are saved there (docs/img holds a set).
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() {
    let up = start_upstream();
    let cfg = format!(
        r#"
[server]
admin = "127.0.0.1:0"
outbound = "127.0.0.1:0"
reload_interval_ms = 100
[store]
url = "sqlite://{{dir}}/keygate.db"
[[routes]]
path_prefix = "/api"
upstream = "http://{up}"
[tenant_routes]
upstream_hosts = ["127.0.0.1:*"]
[[alerts.rules]]
kind = "signature_failures"
name = "bad signatures"
per = "app"
threshold = 1
window_secs = 60
[[alerts.channels]]
type = "webhook"
url = "http://{up}/alerts-webhook"
"#,
        up = up.addr()
    );
    let kg = start_keygate(&cfg, &[]);
    let admin = admin_token(&kg, &[]);
    let adm = kg.admin.unwrap();
    for (t, name) in [("t1", "Tenant One"), ("t2", "Tenant Two")] {
        assert_eq!(
            admin_call(adm, &admin, "POST", "/admin/tenants", Some(json!({"id": t, "name": name}))).await.0,
            201
        );
    }
    assert_eq!(
        admin_call(adm, &admin, "POST", "/admin/tenants/t1/apps", Some(json!({"id": "shop"}))).await.0,
        201
    );
    // A scripted outbound provider for the editor and test-run pages; its binding is set in the console.
    let script = "function (reqHeaders, reqParams, reqBody, ApiKey) {\n  // sign the sorted body with the key\n  reqHeaders.set('X-Sign', sha256(reqBody.buildSignStr() + ApiKey));\n}";
    let doc = json!({"tenant_id": "t1", "config": {
        "base_url": "http://127.0.0.1:9", "allow_private_addresses": true, "paths": ["POST /*"],
        "granted_apps": ["shop"], "recipe": {"type": "script", "source": script}}});
    let (s, v) = admin_call(adm, &admin, "PUT", "/admin/providers/sigpay", Some(doc)).await;
    assert!(s == 200 || s == 201, "{v}");
    let (s, v) = admin_call(
        adm,
        &admin,
        "POST",
        "/admin/providers/sigpay/scripts",
        Some(json!({"source": script, "comment": "first version"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    note_secret("console-binding-value-0123456789");
    let t1_dev = admin_token(
        &kg,
        &["--name", "dev", "--role", "tenant_developer", "--tenant", "t1", "--grant", "shop"],
    );
    let t1_admin = admin_token(&kg, &["--name", "owner", "--role", "tenant_admin", "--tenant", "t1"]);
    let t2_admin = admin_token(&kg, &["--name", "other", "--role", "tenant_admin", "--tenant", "t2"]);

    let shots = std::env::var("KEYGATE_SCREENSHOTS").ok();
    let script = repo_root().join("tests/console/console.mjs");
    let out = Command::new("node")
        .arg(&script)
        .env("KG_ADMIN", format!("http://{adm}"))
        .env("KG_INBOUND", format!("http://{}", kg.addr))
        .env("KG_UPSTREAM", up.addr().to_string())
        .env(
            "KG_TOKENS",
            json!({"admin": admin, "t1_admin": t1_admin, "t1_dev": t1_dev, "t2_admin": t2_admin}).to_string(),
        )
        .env("KG_SHOTS", shots.unwrap_or_default())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "console.mjs failed:\n{stdout}\n{stderr}\n--- keygate log ---\n{}",
        kg.logs()
    );
    assert!(stdout.contains("console e2e ok"), "{stdout}");
}
