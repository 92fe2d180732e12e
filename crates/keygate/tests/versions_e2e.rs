// Config versions end to end: two replicas on one PostgreSQL database and one Redis. Every admin
// change set becomes a numbered version (author, comment, document with secrets as references);
// versions diff; a rollback restores an earlier configuration on every replica; and while a
// publish holds the fence, replicas keep serving their previous snapshot instead of a half-applied
// change.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

async fn status_of(kg: &Keygate, key: &(String, String)) -> (u16, String) {
    let url = kg.url("/api/x");
    let h = sign(&key.0, &key.1, "GET", &url, &[], b"", &[]);
    let (s, _, b, _) = send("GET", &url, &h, b"", false).await;
    let code = serde_json::from_slice::<Value>(&b).map(|v| v["code"].as_str().unwrap_or("").to_string());
    (s.as_u16(), code.unwrap_or_default())
}

async fn until(what: &str, kg: &Keygate, key: &(String, String), want: u16) {
    let t = Instant::now();
    loop {
        let got = status_of(kg, key).await;
        if got.0 == want {
            return;
        }
        assert!(t.elapsed() < WAIT, "{what}: still {got:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_diff_rollback_and_the_publish_fence() {
    let db = PgDb::create("kg_ver");
    let up = start_upstream();
    let prefix = format!("kgtest:{}:", db.name);
    let cfg = format!(
        r#"
[server]
admin = "127.0.0.1:0"
reload_interval_ms = 100
snapshot_cache = ""
[store]
url = "{db}"
[state]
redis = "redis://127.0.0.1:6379"
key_prefix = "{prefix}"
[[routes]]
path_prefix = "/api"
upstream = "http://{up}"
"#,
        db = db.url(),
        up = up.addr()
    );
    let a = start_keygate(&cfg, &[]);
    let b = start_keygate(&cfg, &[]);
    let token = admin_token(&a, &["--name", "alice"]);
    let adm = a.admin.unwrap();
    let call = |m: &'static str, path: String, body: Option<Value>| {
        let token = token.clone();
        async move { admin_call(adm, &token, m, &path, body).await }
    };

    // Each change set is a version.
    assert_eq!(call("POST", "/admin/tenants".into(), Some(json!({"id": "t1", "name": "T1"}))).await.0, 201);
    assert_eq!(call("POST", "/admin/tenants/t1/apps".into(), Some(json!({"id": "app1"}))).await.0, 201);
    let (s, v) = call("POST", "/admin/apps/app1/keys".into(), Some(json!({"description": "first"}))).await;
    assert_eq!(s, 201, "{v}");
    let sk = v["secret"].as_str().unwrap().to_string();
    note_secret(&sk);
    let key = (v["key"]["access_key"].as_str().unwrap().to_string(), sk.clone());
    until("B serves the new key", &b, &key, 200).await;
    let (s, list) = call("GET", "/admin/tenants/t1/versions".into(), None).await;
    assert_eq!(s, 200, "{list}");
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list[0]["version"], 3, "newest first");
    assert!(list[0]["comment"].as_str().unwrap().starts_with("create key "), "{list:?}");
    assert!(list[0]["created_by"].as_str().unwrap().contains("alice"));
    let good = list[0]["version"].as_i64().unwrap();
    let (_, v3) = call("GET", format!("/admin/tenants/t1/versions/{good}"), None).await;
    let doc = v3["document"].as_str().unwrap();
    assert!(doc.contains(&key.0) && doc.contains("ref = \"store\""), "{doc}");
    assert!(!doc.contains(&sk), "a version never holds a secret");

    // A bad change: the key is disabled and its description edited in one call.
    let (s, _) = call(
        "PATCH",
        format!("/admin/keys/{}", key.0),
        Some(json!({"enabled": false, "description": "oops"})),
    )
    .await;
    assert_eq!(s, 200);
    until("B refuses the disabled key", &b, &key, 401).await;
    let (_, d) = call("GET", "/admin/tenants/t1/versions/4/diff".into(), None).await;
    let diff: Vec<&str> = d["diff"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(diff.contains(&"-enabled = true") && diff.contains(&"+enabled = false"), "{diff:?}");
    assert!(
        diff.contains(&"-description = \"first\"") && diff.contains(&"+description = \"oops\""),
        "{diff:?}"
    );
    assert_eq!(d["from"], 3);

    // Dry run says what a rollback would do, and does nothing.
    let (s, dry) =
        call("POST", format!("/admin/tenants/t1/versions/{good}/rollback"), Some(json!({"dry_run": true})))
            .await;
    assert_eq!(s, 200, "{dry}");
    assert!(dry["summary"].as_str().unwrap().starts_with("0 to create, 1 to update, 0 to delete"), "{dry}");
    assert!(dry["version"].is_null());
    assert_eq!(status_of(&b, &key).await.0, 401);

    // While a publish holds the fence, replicas keep their snapshot: a change made meanwhile
    // reaches them only when the fence is lowered.
    assert!(db.exec("UPDATE change_counter SET publishing_until = 4102444800 WHERE id = 1"));
    let (s, v) =
        call("POST", format!("/admin/tenants/t1/versions/{good}/rollback"), Some(json!({"comment": "x"})))
            .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "one publish at a time: {v}");
    let (s, _) = call("POST", format!("/admin/keys/{}/enable", key.0), None).await;
    assert_eq!(s, 200, "the store took the change");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(status_of(&a, &key).await.0, 401, "A still serves the fenced snapshot");
    assert_eq!(status_of(&b, &key).await.0, 401, "B still serves the fenced snapshot");
    assert!(db.exec("UPDATE change_counter SET publishing_until = NULL, value = value + 1 WHERE id = 1"));
    until("A after the fence", &a, &key, 200).await;
    until("B after the fence", &b, &key, 200).await;
    // Break it again, then roll back for real.
    let (s, _) = call("POST", format!("/admin/keys/{}/revoke", key.0), None).await;
    assert_eq!(s, 200);
    until("B refuses the revoked key", &b, &key, 401).await;
    let (s, rb) = call(
        "POST",
        format!("/admin/tenants/t1/versions/{good}/rollback"),
        Some(json!({"comment": "undo the bad change"})),
    )
    .await;
    assert_eq!(s, 200, "{rb}");
    assert!(
        rb["plan"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().starts_with("~ update key")),
        "{rb}"
    );
    let newest = rb["version"]["version"].as_i64().unwrap();
    assert_eq!(rb["version"]["comment"], format!("rollback to version {good}: undo the bad change"));
    until("A after the rollback", &a, &key, 200).await;
    until("B after the rollback", &b, &key, 200).await;
    let (_, restored) = call("GET", format!("/admin/tenants/t1/versions/{newest}"), None).await;
    assert_eq!(restored["document"], v3["document"], "the configuration is version {good}'s again");
    let (_, d) = call("GET", format!("/admin/tenants/t1/versions/{newest}/diff?from={good}"), None).await;
    assert!(d["diff"].as_array().unwrap().is_empty(), "{d}");
    assert_eq!(up.last().headers["x-kg-key-id"], key.0.as_str());

    // Secrets are never versioned: a version naming a key deleted since cannot be restored.
    let (s, _) = call("DELETE", format!("/admin/keys/{}", key.0), None).await;
    assert_eq!(s, 204);
    let (s, v) = call("POST", format!("/admin/tenants/t1/versions/{good}/rollback"), Some(json!({}))).await;
    assert_eq!(
        (s, v["code"].as_str(), v["field"].as_str()),
        (400, Some("invalid_request"), Some("version")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains(&key.0), "{v}");
    // Saving explicitly with a comment; unchanged configuration is no new version.
    let (s, v) = call("POST", "/admin/tenants/t1/versions".into(), Some(json!({"comment": "tag"}))).await;
    assert_eq!(s, 200, "nothing changed since the delete was recorded: {v}");
    // Other tenants' versions are hidden from tenant roles; developers cannot roll back.
    let dev = admin_token(&a, &["--name", "dev", "--role", "tenant_developer", "--tenant", "t1"]);
    assert_eq!(admin_call(adm, &dev, "GET", "/admin/tenants/t1/versions", None).await.0, 200);
    let (s, _) = admin_call(
        adm,
        &dev,
        "POST",
        &format!("/admin/tenants/t1/versions/{good}/rollback"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 403);
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut con = client.get_connection().unwrap();
    for k in redis::cmd("KEYS").arg(format!("{prefix}*")).query::<Vec<String>>(&mut con).unwrap() {
        let _: i64 = redis::cmd("DEL").arg(k).query(&mut con).unwrap();
    }
}
