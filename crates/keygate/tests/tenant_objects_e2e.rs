// Tenant-owned routes and alert rules end to end (issue 11), with real processes: two keygate
// replicas on one PostgreSQL database. A tenant admin publishes a route through replica A and
// replica B serves it — to that tenant's apps only; the operator's `[tenant_routes]` policy
// (subtree, upstream allowlist, auth) refuses the rest with a reason; the tenant's own alert rule
// fires on its traffic alone; versions capture routes and rules, and a rollback removes and
// restores a route on every replica; export writes them and import round-trips them.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{json, Value};
use support::*;

async fn call_signed(kg: &Keygate, key: &(String, String), path: &str) -> (u16, Value) {
    let headers = sign(&key.0, &key.1, "GET", &kg.url(path), &[], b"", &[]);
    call(kg, path, &headers).await
}

async fn call(kg: &Keygate, path: &str, headers: &[(String, String)]) -> (u16, Value) {
    let (s, h, b, _) = send("GET", &kg.url(path), headers, b"", false).await;
    let v = if h.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json")) {
        envelope(&b)
    } else {
        Value::Null
    };
    (s.as_u16(), v)
}

async fn new_key(adm: std::net::SocketAddr, token: &str, app: &str) -> (String, String) {
    let (s, v) = admin_call(adm, token, "POST", &format!("/admin/apps/{app}/keys"), Some(json!({}))).await;
    assert_eq!(s, 201, "{v}");
    let sk = v["secret"].as_str().unwrap().to_string();
    note_secret(&sk);
    (v["key"]["access_key"].as_str().unwrap().to_string(), sk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_publish_routes_and_alert_rules_of_their_own() {
    let db = PgDb::create("kg_tobj");
    let upstream = start_upstream();
    let cfg = format!(
        r#"
[server]
admin = "127.0.0.1:0"
reload_interval_ms = 100
snapshot_cache = ""
[store]
url = "{db}"
[tenant_routes]
upstream_hosts = ["127.0.0.1:*"]
[[routes]]
path_prefix = "/api"
upstream = "http://{up}"
"#,
        db = db.url(),
        up = upstream.addr()
    );
    let a = start_keygate(&cfg, &[]);
    let b = start_keygate(&cfg, &[]);
    let root = admin_token(&a, &[]);
    let adm = a.admin.unwrap();
    for (t, app) in [("acme", "acme-app"), ("globex", "globex-app")] {
        let (s, v) =
            admin_call(adm, &root, "POST", "/admin/tenants", Some(json!({"id": t, "name": t}))).await;
        assert_eq!(s, 201, "{v}");
        let (s, v) =
            admin_call(adm, &root, "POST", &format!("/admin/tenants/{t}/apps"), Some(json!({"id": app})))
                .await;
        assert_eq!(s, 201, "{v}");
    }
    let acme_key = new_key(adm, &root, "acme-app").await;
    let globex_key = new_key(adm, &root, "globex-app").await;
    let acme_admin = admin_token(&a, &["--name", "acme-ops", "--role", "tenant_admin", "--tenant", "acme"]);
    let acme_dev = admin_token(&a, &["--name", "acme-dev", "--role", "tenant_developer", "--tenant", "acme"]);
    let globex_admin =
        admin_token(&a, &["--name", "globex-ops", "--role", "tenant_admin", "--tenant", "globex"]);

    // The operator's policy, each refusal with its reason, nothing written.
    let route = |doc: Value| Some(json!({ "config": doc }));
    let up = format!("http://{}", upstream.addr());
    for (doc, reason) in [
        (json!({"path_prefix": "/t/globex/x", "upstream": up}), "start with /t/acme/"),
        (json!({"path_prefix": "/api/x", "upstream": up}), "start with /t/acme/"),
        (json!({"path_prefix": "/t/acme/x", "upstream": "http://169.254.169.254"}), "not allowed"),
        (json!({"path_prefix": "/t/acme/x", "upstream": "http://localhost:8080"}), "not allowed"),
        (json!({"path_prefix": "/t/acme/x", "upstream": up, "auth": "none"}), "auth"),
        (json!({"path_prefix": "/t/acme/x", "upstream": up, "surprise": 1}), "unknown field"),
    ] {
        let (s, v) =
            admin_call(adm, &acme_admin, "PUT", "/admin/tenants/acme/routes/bad", route(doc.clone())).await;
        assert_eq!(s, 400, "{doc}: {v}");
        assert_eq!(v["field"], "config");
        assert!(v["message"].as_str().unwrap().contains(reason), "{doc}: {v}");
    }
    // Roles: a developer reads but cannot write; another tenant's admin does not even see it.
    let orders = json!({"path_prefix": "/t/acme/orders", "upstream": up, "strip_prefix": true});
    let (s, _) =
        admin_call(adm, &acme_dev, "PUT", "/admin/tenants/acme/routes/orders", route(orders.clone())).await;
    assert_eq!(s, 403);
    let (s, _) =
        admin_call(adm, &globex_admin, "PUT", "/admin/tenants/acme/routes/orders", route(orders.clone()))
            .await;
    assert_eq!(s, 404);
    let (s, v) =
        admin_call(adm, &acme_admin, "PUT", "/admin/tenants/acme/routes/orders", route(orders.clone())).await;
    assert_eq!(s, 201, "{v}");
    assert!(v["updated_by"].as_str().unwrap().contains("acme-ops"), "the author is named: {v}");
    let (s, _) =
        admin_call(adm, &acme_admin, "PUT", "/admin/tenants/acme/routes/orders", route(orders.clone())).await;
    assert_eq!(s, 200, "the same document again");
    let dup = json!({"path_prefix": "/t/acme/orders", "upstream": up});
    let (s, v) = admin_call(adm, &acme_admin, "PUT", "/admin/tenants/acme/routes/orders2", route(dup)).await;
    assert_eq!(s, 400, "a prefix is unique within a tenant: {v}");
    let (s, v) = admin_call(adm, &acme_dev, "GET", "/admin/tenants/acme/routes", None).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (s, _) = admin_call(adm, &globex_admin, "GET", "/admin/tenants/acme/routes/orders", None).await;
    assert_eq!(s, 404);

    // Replica B serves the route (loaded through its own reload) to acme's apps only.
    let before = upstream.count();
    eventually("B serves the tenant route", || async {
        let (s, v) = call_signed(&b, &acme_key, "/t/acme/orders/42?x=1").await;
        if s == 200 {
            Ok(())
        } else {
            Err(format!("{s} {v}"))
        }
    })
    .await;
    assert_eq!(upstream.count(), before + 1);
    assert_eq!(upstream.last().path_and_query, "/42?x=1", "strip_prefix of the tenant's route");
    let (s, v) = call_signed(&b, &globex_key, "/t/acme/orders/42").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("endpoint_not_allowed")), "another tenant's app: {v}");
    let (s, _) = call_signed(&a, &globex_key, "/api/x").await;
    assert_eq!(s, 200, "operator routes stay open to every app");
    let (s, v) = call(&b, "/t/acme/orders/1", &[]).await;
    assert!(s == 400 || s == 401, "unsigned: {s} {v}");
    assert_eq!(upstream.count(), before + 2, "refused calls never reached the upstream");

    // An alert rule of acme's counts acme's traffic only.
    let rule = json!({"config": {"kind": "replays", "per": "app", "threshold": 2, "window_secs": 60}});
    let (s, v) =
        admin_call(adm, &acme_admin, "PUT", "/admin/tenants/acme/alert-rules/replay-burst", Some(rule)).await;
    assert_eq!(s, 201, "{v}");
    let bad = json!({"config": {"kind": "gauge_above", "gauge": "audit_spill_bytes", "threshold": 1.0}});
    let (s, v) = admin_call(adm, &acme_admin, "PUT", "/admin/tenants/acme/alert-rules/g", Some(bad)).await;
    assert_eq!(s, 400, "gauges are the operator's: {v}");
    // Globex replays first: acme's rule must not count them.
    let g = sign(&globex_key.0, &globex_key.1, "GET", &b.url("/api/r"), &[], b"", &[]);
    for _ in 0..4 {
        call(&b, "/api/r", &g).await;
    }
    let replay = eventually("B loaded acme's rule and fires it", || {
        let h = sign(&acme_key.0, &acme_key.1, "GET", &b.url("/t/acme/orders/r"), &[], b"", &[]);
        let (b, dev) = (&b, &acme_dev);
        async move {
            for _ in 0..3 {
                call(b, "/t/acme/orders/r", &h).await;
            }
            let (_, v) = admin_call(b.admin.unwrap(), dev, "GET", "/admin/tenants/acme/alerts", None).await;
            let fired = v["recent"].as_array().cloned().unwrap_or_default();
            if fired.is_empty() {
                Err(v.to_string())
            } else {
                Ok(fired)
            }
        }
    })
    .await;
    assert!(replay.iter().all(|a| a["tenant"] == "acme" && a["subject"] == "acme-app"), "{replay:?}");
    let (s, v) =
        admin_call(b.admin.unwrap(), &globex_admin, "GET", "/admin/tenants/globex/alerts", None).await;
    assert_eq!(s, 200);
    assert!(v["recent"].as_array().unwrap().is_empty(), "globex sees none of acme's alerts: {v}");
    let (s, _) = admin_call(adm, &globex_admin, "GET", "/admin/tenants/acme/alerts", None).await;
    assert_eq!(s, 404);

    // Versions hold routes and rules; rolling back removes the route on every replica, and
    // rolling forward brings it back.
    let (s, versions) = admin_call(adm, &acme_admin, "GET", "/admin/tenants/acme/versions", None).await;
    assert_eq!(s, 200);
    let versions = versions.as_array().unwrap().clone();
    let with_route =
        versions.iter().find(|v| v["comment"] == "create route orders").unwrap()["version"].as_i64().unwrap();
    let latest = versions[0]["version"].as_i64().unwrap();
    let (_, doc) =
        admin_call(adm, &acme_dev, "GET", &format!("/admin/tenants/acme/versions/{latest}"), None).await;
    let doc = doc["document"].as_str().unwrap();
    assert!(doc.contains("[[routes]]") && doc.contains("path_prefix = \"/t/acme/orders\""), "{doc}");
    assert!(doc.contains("[[alert_rules]]") && doc.contains("name = \"replay-burst\""), "{doc}");
    let (s, v) = admin_call(
        adm,
        &acme_admin,
        "POST",
        &format!("/admin/tenants/acme/versions/{}/rollback", with_route - 1),
        Some(json!({"comment": "undo the route"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["plan"].to_string().contains("delete route orders"), "{v}");
    for kg in [&a, &b] {
        eventually("the route is gone after the rollback", || async {
            let (s, v) = call_signed(kg, &acme_key, "/t/acme/orders/1").await;
            if s == 404 && v["code"] == "route_not_found" {
                Ok(())
            } else {
                Err(format!("{s} {v}"))
            }
        })
        .await;
    }
    let (s, v) = admin_call(
        adm,
        &acme_admin,
        "POST",
        &format!("/admin/tenants/acme/versions/{latest}/rollback"),
        Some(json!({"comment": "redo"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    eventually("the route is back on B", || async {
        let (s, v) = call_signed(&b, &acme_key, "/t/acme/orders/1").await;
        if s == 200 {
            Ok(())
        } else {
            Err(format!("{s} {v}"))
        }
    })
    .await;

    // Export writes the objects; importing the export changes nothing; an edited document is
    // planned as an update with the field named; a policy breach is refused with the
    // document's path (import given the gateway's config knows the policy).
    let cfg_path = a.dir.path().join("keygate.toml");
    let cfg_arg = cfg_path.to_str().unwrap();
    let (ok, exported, err) = cli(&["config", "export", "-c", cfg_arg, "--tenant", "acme"], &[]);
    assert!(ok, "{err}");
    assert!(exported.contains("[[routes]]") && exported.contains("[routes.config]"), "{exported}");
    let file = a.dir.path().join("acme.toml");
    std::fs::write(&file, &exported).unwrap();
    let (ok, out, err) = cli(&["config", "import", "-c", cfg_arg, "--dry-run", file.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("0 to create, 0 to update, 0 to delete"), "{out}");
    let edited = exported.replace("threshold = 2", "threshold = 5");
    std::fs::write(&file, &edited).unwrap();
    let (ok, out, err) = cli(&["config", "import", "-c", cfg_arg, "--dry-run", file.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("~ update alert rule replay-burst (tenant acme)")
            && out.contains("config.threshold: 2 → 5"),
        "{out}"
    );
    let breach = exported.replace("path_prefix = \"/t/acme/orders\"", "path_prefix = \"/t/globex/orders\"");
    std::fs::write(&file, &breach).unwrap();
    let (ok, _, err) = cli(&["config", "import", "-c", cfg_arg, file.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(err.contains("routes[0].config: path_prefix must be"), "{err}");

    // The operator tightens the policy: a replica started with it serves everything else, refuses
    // the tenant's route (fail closed), and says so on /readyz.
    let strict = cfg
        .replace("upstream_hosts = [\"127.0.0.1:*\"]", "upstream_hosts = [\"*.svc.internal\"]")
        .replace("[server]\n", "[server]\nmetrics = \"127.0.0.1:0\"\n");
    let c = start_keygate(&strict, &[]);
    let (s, v) = call_signed(&c, &acme_key, "/t/acme/orders/1").await;
    assert_eq!((s, v["code"].as_str()), (404, Some("route_not_found")), "{v}");
    assert_eq!(call_signed(&c, &acme_key, "/api/x").await.0, 200);
    let (_, _, body, _) =
        send("GET", &format!("http://{}/readyz", c.metrics.unwrap()), &[], b"", false).await;
    let ready = envelope(&body);
    let refused = ready["snapshot"]["refused_objects"].to_string();
    assert!(refused.contains("acme/route/orders") && refused.contains("not allowed"), "{ready}");
    let (_, _, metrics, _) =
        send("GET", &format!("http://{}/metrics", c.metrics.unwrap()), &[], b"", false).await;
    assert!(String::from_utf8_lossy(&metrics).contains("keygate_tenant_objects_refused 1"));
    drop(c);

    // Deleting is a tenant admin's call too, and every replica drops the route.
    let (s, _) = admin_call(adm, &acme_dev, "DELETE", "/admin/tenants/acme/routes/orders", None).await;
    assert_eq!(s, 403);
    let (s, _) = admin_call(adm, &acme_admin, "DELETE", "/admin/tenants/acme/routes/orders", None).await;
    assert_eq!(s, 204);
    eventually("B drops the deleted route", || async {
        let (s, v) = call_signed(&b, &acme_key, "/t/acme/orders/1").await;
        if s == 404 {
            Ok(())
        } else {
            Err(format!("{s} {v}"))
        }
    })
    .await;
    let (_, audit) = admin_call(adm, &root, "GET", "/admin/audit?limit=200", None).await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for want in ["route.create", "route.delete", "alert_rule.create"] {
        assert!(actions.contains(&want), "{want} not audited: {actions:?}");
    }
}
