// The admin API, CLI and hot reload end to end with real processes: two replicas on one
// PostgreSQL or MySQL store (and Redis for the change nudge), create a key on one and use it on
// the other, revoke it and measure how long the other keeps accepting it. Also: per-key access
// policy after the signature, rotation overlap, and restarts during a store outage.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("kg_{tag}_{}_{}", std::process::id(), n % 1_000_000_000)
}

/// A database of its own on a real server, dropped at the end.
struct Db {
    kind: &'static str,
    name: String,
    url: String,
}

impl Db {
    fn new(kind: &'static str) -> Self {
        let name = unique(kind);
        let (ok, url) = match kind {
            "postgres" => (
                Command::new("psql")
                    .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
                    .arg(format!("CREATE DATABASE {name}"))
                    .status()
                    .unwrap()
                    .success(),
                format!("postgres://postgres@127.0.0.1:5432/{name}"),
            ),
            _ => (
                Command::new("mariadb")
                    .args(["-h", "127.0.0.1", "-u", "root", "-e"])
                    .arg(format!("CREATE DATABASE {name}"))
                    .status()
                    .unwrap()
                    .success(),
                format!("mysql://root@127.0.0.1:3306/{name}"),
            ),
        };
        assert!(ok, "creating database {name} on {kind}");
        Self { kind, name, url }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = match self.kind {
            "postgres" => Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
                .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .status(),
            _ => Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-u", "root", "-e"])
                .arg(format!("DROP DATABASE IF EXISTS {}", self.name))
                .status(),
        };
    }
}

async fn signed_get(gw: &Keygate, ak: &str, secret: &str, path: &str) -> (u16, Value) {
    let url = gw.url(path);
    let headers = sign(ak, secret, "GET", &url, &[], b"", &[]);
    let (status, _, body, _) = send("GET", &url, &headers, b"", false).await;
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status.as_u16(), v)
}

/// Polls until `f` is true; returns how long it took after `since`.
async fn wait_until<F, Fut>(since: Instant, limit: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if f().await {
            return since.elapsed();
        }
        assert!(since.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn replica_config(
    store_url: &str,
    upstream: SocketAddr,
    redis_prefix: Option<&str>,
    reload_ms: u64,
) -> String {
    let state = match redis_prefix {
        Some(p) => format!("[state]\nredis = \"redis://127.0.0.1:6379\"\nkey_prefix = \"{p}\"\n"),
        None => String::new(),
    };
    format!(
        r#"
[server]
admin = "127.0.0.1:0"
reload_interval_ms = {reload_ms}
snapshot_cache = "{{dir}}/snapshot.cache"
[store]
url = "{store_url}"
{state}
[[routes]]
path_prefix = "/"
upstream = "http://{upstream}"
"#
    )
}

/// Two replicas on one store: a key created through A's admin API (by the CLI) works on B; a
/// revoke on A stops B within a second. Returns the revoke-to-effect latencies.
async fn two_replicas(kind: &'static str, nudge: bool, reload_ms: u64) -> Vec<Duration> {
    let db = Db::new(kind);
    let upstream = start_upstream();
    let prefix = format!("{}:", unique("nudge"));
    let cfg = replica_config(&db.url, upstream.addr(), nudge.then_some(prefix.as_str()), reload_ms);
    let a = start_keygate(&cfg, &[]);
    let b = start_keygate(&cfg, &[]);
    let admin = a.admin.expect("admin listener on A");
    let cfg_path = a.dir.path().join("keygate.toml");
    let cfg_path = cfg_path.to_str().unwrap();

    // Bootstrap: the first token straight on the store, the rest through the API with the CLI.
    let (ok, out, err) = cli(&["admin-token", "create", "-c", cfg_path, "--name", "ops", "--json"], &[]);
    assert!(ok, "{err}");
    let token = serde_json::from_str::<Value>(&out).unwrap()["token"].as_str().unwrap().to_string();
    note_secret(&token);
    let admin_url = format!("http://{admin}");
    let env = [("KEYGATE_ADMIN_URL", admin_url.as_str()), ("KEYGATE_ADMIN_TOKEN", token.as_str())];
    assert!(cli(&["tenants", "create", "t1"], &env).0);
    let (ok, out, err) = cli(&["apps", "create", "app1", "--tenant", "t1"], &env);
    assert!(ok && out.contains("app1"), "{out}{err}");
    let (ok, out, err) =
        cli(&["keys", "create", "--app", "app1", "--json", "--endpoint", "GET /orders/*"], &env);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let ak = created["key"]["access_key"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    note_secret(&secret);
    // Human output names the key; the secret is shown once and then never again.
    let (ok, table, _) = cli(&["keys", "list", "--app", "app1"], &env);
    assert!(ok && table.contains(&ak) && table.starts_with("ACCESS_KEY") && !table.contains(&secret));

    let (b, ak, secret) = (&b, ak.as_str(), secret.as_str());
    let t0 = Instant::now();
    let create_to_effect = wait_until(t0, Duration::from_secs(5), move || async move {
        signed_get(b, ak, secret, "/orders/1").await.0 == 200
    })
    .await;
    eprintln!("{kind} nudge={nudge}: create-to-effect on the other replica {create_to_effect:?}");
    let (status, v) = signed_get(b, ak, secret, "/other").await;
    assert_eq!((status, v["code"].as_str()), (403, Some("endpoint_not_allowed")));

    let mut latencies = Vec::new();
    for _ in 0..5 {
        let (s, _) = admin_call(admin, &token, "POST", &format!("/admin/keys/{ak}/revoke"), None).await;
        assert_eq!(s, 200);
        let t = Instant::now();
        latencies.push(
            wait_until(t, Duration::from_secs(5), move || async move {
                signed_get(b, ak, secret, "/orders/1").await.1["code"] == "key_disabled"
            })
            .await,
        );
        let (s, _) = admin_call(admin, &token, "POST", &format!("/admin/keys/{ak}/enable"), None).await;
        assert_eq!(s, 200);
        wait_until(Instant::now(), Duration::from_secs(5), move || async move {
            signed_get(b, ak, secret, "/orders/1").await.0 == 200
        })
        .await;
    }
    // Emergency revoke of the whole app.
    let (s, v) = admin_call(admin, &token, "POST", "/admin/apps/app1/revoke", None).await;
    assert_eq!((s, v["keys_disabled"].as_u64()), (200, Some(1)));
    let t = Instant::now();
    latencies.push(
        wait_until(t, Duration::from_secs(5), move || async move {
            signed_get(b, ak, secret, "/orders/1").await.1["code"] == "key_disabled"
        })
        .await,
    );
    latencies.sort();
    eprintln!(
        "{kind} nudge={nudge} reload_ms={reload_ms}: revoke-to-effect on the other replica: min {:?} median {:?} max {:?}",
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(*latencies.last().unwrap() < Duration::from_secs(1), "{latencies:?}");
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_revoke_within_a_second() {
    two_replicas("postgres", true, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_mysql_revoke_within_a_second() {
    two_replicas("mysql", true, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_polling_only() {
    two_replicas("postgres", false, 250).await;
}

const SK: &str = "policy-secret-0123456789abcdef";

#[tokio::test]
async fn access_policy_is_checked_only_after_the_signature() {
    let upstream = start_upstream();
    let cfg = format!(
        r#"
[store]
url = "sqlite://{{dir}}/keygate.db"
[[routes]]
path_prefix = "/"
upstream = "http://{}"
[[apps]]
id = "p"
[[apps.keys]]
access_key = "AKNET"
secret_env = "SK"
allowed_cidrs = ["10.0.0.0/8", "2001:db8::/32"]
[[apps.keys]]
access_key = "AKLOCAL"
secret_env = "SK"
allowed_cidrs = ["127.0.0.0/8"]
allowed_endpoints = ["GET /v1/orders/*", "POST /v1/orders"]
"#,
        upstream.addr()
    );
    let gw = start_keygate(&cfg, &[("SK", SK)]);
    // From 127.0.0.1, a key limited to 10/8 is refused — but only once the signature holds.
    let (s, v) = signed_get(&gw, "AKNET", SK, "/v1/orders/1").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("ip_not_allowed")));
    let (s, v) = signed_get(&gw, "AKNET", "wrong-secret-wrong-secret-xx", "/v1/orders/1").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("signature_mismatch")), "strangers learn nothing");

    assert_eq!(signed_get(&gw, "AKLOCAL", SK, "/v1/orders/1").await.0, 200);
    assert_eq!(signed_get(&gw, "AKLOCAL", SK, "/v1/orders/1/items").await.0, 200);
    let (s, v) = signed_get(&gw, "AKLOCAL", SK, "/v1/orders").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("endpoint_not_allowed")));
    let (s, v) = signed_get(&gw, "AKLOCAL", "wrong-secret-wrong-secret-xx", "/v1/admin").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("signature_mismatch")));
    let url = gw.url("/v1/orders");
    let headers = sign("AKLOCAL", SK, "POST", &url, &[], b"{}", &[]);
    assert_eq!(send("POST", &url, &headers, b"{}", false).await.0, 200);
    let headers = sign("AKLOCAL", SK, "DELETE", &url, &[], b"", &[]);
    let (s, _, body, _) = send("DELETE", &url, &headers, b"", false).await;
    assert_eq!((s.as_u16(), envelope(&body)["code"].as_str()), (403, Some("endpoint_not_allowed")));
    assert_eq!(upstream.count(), 3, "refused requests never reach the upstream");
}

#[tokio::test]
async fn rotation_overlap_then_the_old_key_stops() {
    let upstream = start_upstream();
    let cfg = format!(
        r#"
[server]
admin = "127.0.0.1:0"
reload_interval_ms = 100
last_used_flush_ms = 100
[store]
url = "sqlite://{{dir}}/keygate.db"
[[routes]]
path_prefix = "/"
upstream = "http://{}"
[[apps]]
id = "r"
tenant = "t"
[[apps.keys]]
access_key = "AKOLD"
secret_env = "SK"
"#,
        upstream.addr()
    );
    let gw = start_keygate(&cfg, &[("SK", SK)]);
    let cfg_path = gw.dir.path().join("keygate.toml");
    let (ok, out, err) = cli(
        &["admin-token", "create", "-c", cfg_path.to_str().unwrap(), "--name", "ops", "--json"],
        &[("SK", SK)],
    );
    assert!(ok, "{err}");
    let token = serde_json::from_str::<Value>(&out).unwrap()["token"].as_str().unwrap().to_string();
    let admin = gw.admin.unwrap();
    let (s, rot) =
        admin_call(admin, &token, "POST", "/admin/keys/AKOLD/rotate", Some(json!({"overlap_secs": 2}))).await;
    assert_eq!(s, 201, "{rot}");
    let new_ak = rot["new"]["access_key"].as_str().unwrap().to_string();
    let new_sk = rot["secret"].as_str().unwrap().to_string();
    note_secret(&new_sk);
    note_secret(&token);
    assert_eq!(rot["old"]["successor"], new_ak.as_str());
    let (gw, new_ak, new_sk) = (&gw, new_ak.as_str(), new_sk.as_str());
    wait_until(Instant::now(), Duration::from_secs(5), move || async move {
        signed_get(gw, new_ak, new_sk, "/x").await.0 == 200
    })
    .await;
    assert_eq!(signed_get(gw, "AKOLD", SK, "/x").await.0, 200, "both verify during the overlap");
    // last_used_at reaches the store in batches, without a write per request.
    let token_ref = token.as_str();
    wait_until(Instant::now(), Duration::from_secs(5), move || async move {
        let (_, k) = admin_call(admin, token_ref, "GET", "/admin/keys/AKOLD", None).await;
        k["last_used_at"].as_i64().is_some()
    })
    .await;
    let until = rot["old"]["overlap_until"].as_i64().unwrap();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    while now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = signed_get(gw, "AKOLD", SK, "/x").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("key_rotated")));
    assert_eq!(signed_get(gw, new_ak, new_sk, "/x").await.0, 200);
}

#[tokio::test]
async fn a_restart_during_a_store_outage_serves_the_cached_snapshot() {
    let db = Db::new("postgres");
    let upstream = start_upstream();
    let good = format!(
        r#"
[server]
snapshot_cache = "{{dir}}/snapshot.cache"
[store]
url = "{}"
[[routes]]
path_prefix = "/"
upstream = "http://{}"
[[apps]]
id = "c"
[[apps.keys]]
access_key = "AKCACHE"
secret_env = "SK"
"#,
        db.url,
        upstream.addr()
    );
    let mut gw = start_keygate(&good, &[("SK", SK)]);
    assert_eq!(signed_get(&gw, "AKCACHE", SK, "/x").await.0, 200);
    // Keep the directory (cache, config) past this process.
    let kept = std::mem::replace(&mut gw.dir, tempfile::tempdir().unwrap());
    let dir = kept.path().to_path_buf();
    let cache = dir.join("snapshot.cache");
    assert!(cache.exists(), "cache written after the first load");
    let raw = std::fs::read(&cache).unwrap();
    assert!(!raw.windows(SK.len()).any(|w| w == SK.as_bytes()), "cache is sealed");
    drop(gw);

    // Same cache, store unreachable (nothing listens on port 1; the password must not leak).
    let dead = good
        .replace(&db.url, "postgres://kg:hunter2@127.0.0.1:1/none")
        .replace("{dir}", dir.to_str().unwrap());
    let cfg_path = dir.join("outage.toml");
    std::fs::write(&cfg_path, &dead).unwrap();
    let keep = tempfile::tempdir().unwrap();
    let gw2 = start_with(keep, &cfg_path, &[("SK", SK)]);
    assert_eq!(signed_get(&gw2, "AKCACHE", SK, "/x").await.0, 200, "served from the cached snapshot");
    let logs = gw2.logs();
    assert!(logs.contains("serving the cached snapshot") && !logs.contains("hunter2"), "{logs}");
    drop(gw2);

    // Without a cache: a clear message naming the URL (password masked) and a failing exit code.
    std::fs::remove_file(&cache).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config", cfg_path.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("KEYGATE_MASTER_KEY", MASTER_KEY)
        .env("SK", SK)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("127.0.0.1:1") && err.contains("no snapshot cache") && !err.contains("hunter2"),
        "{err}"
    );
}

#[tokio::test]
async fn master_key_rotation_rewraps_every_secret_without_decrypting_it() {
    const V2: &str = "v2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    let upstream = start_upstream();
    let cfg = format!(
        r#"
[store]
url = "sqlite://{{dir}}/keygate.db"
[[routes]]
path_prefix = "/"
upstream = "http://{}"
[[apps]]
id = "m"
[[apps.keys]]
access_key = "AKMK"
secret_env = "SK"
"#,
        upstream.addr()
    );
    let mut gw = start_keygate(&cfg, &[("SK", SK)]);
    assert_eq!(signed_get(&gw, "AKMK", SK, "/x").await.0, 200);
    let kept = std::mem::replace(&mut gw.dir, tempfile::tempdir().unwrap());
    drop(gw);
    let cfg_path = kept.path().join("keygate.toml");
    let both = format!("{MASTER_KEY},{V2}");
    let (ok, out, err) =
        cli(&["master-key", "rotate", "-c", cfg_path.to_str().unwrap()], &[("KEYGATE_MASTER_KEY", &both)]);
    assert!(ok && out.contains("re-wrapped 1 secret"), "{out}{err}");
    let (ok, out, _) =
        cli(&["master-key", "rotate", "-c", cfg_path.to_str().unwrap()], &[("KEYGATE_MASTER_KEY", &both)]);
    assert!(ok && out.contains("re-wrapped 0 secret"), "idempotent: {out}");
    // Only the new master key from now on: the secret still opens, the request still verifies.
    let gw = start_with(kept, &cfg_path, &[("SK", SK), ("KEYGATE_MASTER_KEY", V2)]);
    assert_eq!(signed_get(&gw, "AKMK", SK, "/x").await.0, 200);
}
