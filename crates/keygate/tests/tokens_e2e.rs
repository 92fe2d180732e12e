// API tokens end to end with real processes: two keygate replicas on one PostgreSQL database and
// one Redis. A signed exchange on one replica issues a token the other accepts; key policies
// (signature, token, both) are enforced; a revocation through the admin API of one replica is
// refused by the other on its very next request; user tokens reach only routes that opt in.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{json, Value};
use support::*;

async fn call(
    kg: &Keygate,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, Value) {
    let (s, h, b, _) = send(method, &kg.url(path), headers, body, false).await;
    let v = if h.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json")) {
        envelope(&b)
    } else {
        Value::Null
    };
    (s.as_u16(), v)
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {token}"))]
}

/// A signed exchange; the answer.
async fn exchange(kg: &Keygate, key: &(String, String), body: &[u8]) -> (u16, Value) {
    let headers = sign(&key.0, &key.1, "POST", &kg.url("/auth/token"), &[], body, &[]);
    call(kg, "POST", "/auth/token", &headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_policies_and_cluster_wide_revocation() {
    let db = PgDb::create("kg_tok");
    let upstream = start_upstream();
    let prefix = format!("kgtest:{}:", db.name);
    let cfg = format!(
        r#"
[server]
admin = "127.0.0.1:0"
reload_interval_ms = 200
snapshot_cache = ""
[store]
url = "{db}"
[state]
redis = "redis://127.0.0.1:6379"
key_prefix = "{prefix}"
[tokens]
enabled = true
default_ttl_secs = 600
max_ttl_secs = 3600
[[routes]]
path_prefix = "/api"
upstream = "http://{up}"
[[routes]]
path_prefix = "/me"
upstream = "http://{up}"
user_tokens = true
"#,
        db = db.url(),
        up = upstream.addr()
    );
    let a = start_keygate(&cfg, &[]);
    let b = start_keygate(&cfg, &[]);

    // Admin token, tenant, app and one key per policy, all through replica A.
    let admin_token = admin_token(&a, &[]);
    let adm = a.admin.unwrap();
    assert_eq!(
        admin_call(adm, &admin_token, "POST", "/admin/tenants", Some(json!({"id": "t1", "name": "T"})))
            .await
            .0,
        201
    );
    let (s, v) = admin_call(
        adm,
        &admin_token,
        "POST",
        "/admin/tenants/t1/apps",
        Some(json!({"id": "app1", "name": "A"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mut keys = std::collections::HashMap::new();
    for policy in ["signature", "token", "both"] {
        let (s, v) = admin_call(
            adm,
            &admin_token,
            "POST",
            "/admin/apps/app1/keys",
            Some(json!({"auth_policy": policy})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["key"]["auth_policy"], policy);
        let sk = v["secret"].as_str().unwrap().to_string();
        note_secret(&sk);
        keys.insert(policy, (v["key"]["access_key"].as_str().unwrap().to_string(), sk));
    }
    let (s, v) = admin_call(
        adm,
        &admin_token,
        "POST",
        "/admin/apps/app1/keys",
        Some(json!({"auth_policy": "tokens"})),
    )
    .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("key.auth_policy")), "{v}");
    let (k_sig, k_tok, k_both) = (&keys["signature"], &keys["token"], &keys["both"]);

    // Exchange on A (A reloads on its own admin write), use on B once B has the key.
    let v = eventually("A knows the new keys", || {
        let a = &a;
        async move {
            match exchange(a, k_tok, br#"{"ttl_secs": 120}"#).await {
                (200, v) => Ok(v),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let tok = v["access_token"].as_str().unwrap().to_string();
    note_secret(&tok);
    assert!(tok.starts_with("kgt_") && tok.len() == 47, "{tok}");
    assert_eq!((v["token_type"].as_str(), v["expires_in"].as_u64()), (Some("Bearer"), Some(120)));
    assert_eq!((v["app_id"].as_str(), v["access_key"].as_str()), (Some("app1"), Some(k_tok.0.as_str())));
    eventually("B accepts A's token", || {
        let b = &b;
        let h = bearer(&tok);
        async move {
            match call(b, "GET", "/api/orders?x=1", &h, b"").await {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let seen = upstream.last();
    assert_eq!(seen.headers["x-kg-app-id"], "app1");
    assert_eq!(seen.headers["x-kg-key-id"], k_tok.0.as_str());
    assert!(seen.headers.get("authorization").is_none(), "the token never reaches the upstream");
    assert!(seen.headers.get("x-kg-user-id").is_none());
    // The same token in X-Kg-Token works too; a bogus one does not.
    let (s, _) = call(&b, "GET", "/api/x", &[("x-kg-token".into(), tok.clone())], b"").await;
    assert_eq!(s, 200);
    assert!(upstream.last().headers.get("x-kg-token").is_none());
    let (s, v) =
        call(&b, "GET", "/api/x", &bearer("kgt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), b"").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("token_invalid")), "{v}");

    // Policy `token`: a signed request without a token is refused.
    let h = sign(&k_tok.0, &k_tok.1, "GET", &b.url("/api/x"), &[], b"", &[]);
    let (s, v) = call(&b, "GET", "/api/x", &h, b"").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("token_required")), "{v}");
    // Policy `signature`: no tokens at all.
    let (s, v) = exchange(&b, k_sig, b"").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("token_not_allowed")), "{v}");
    let h = sign(&k_sig.0, &k_sig.1, "GET", &b.url("/api/x"), &[], b"", &[]);
    assert_eq!(call(&b, "GET", "/api/x", &h, b"").await.0, 200);
    // Bad exchanges.
    for body in [&br#"{"ttl_secs": 0}"#[..], br#"{"ttl_secs": 3601}"#, br#"{"scope": "x"}"#, b"[1]", b"nope"]
    {
        let (s, v) = exchange(&b, k_tok, body).await;
        assert_eq!((s, v["code"].as_str()), (400, Some("invalid_token_request")), "{v}");
    }
    let (s, v) = call(&b, "GET", "/auth/token", &[], b"").await;
    assert_eq!((s, v["code"].as_str()), (405, Some("method_not_allowed")), "{v}");
    let (s, v) = call(&b, "POST", "/auth/token", &[], b"").await;
    assert_eq!(s, 401, "an unsigned exchange is refused: {v}");
    // A token cannot refresh itself: the exchange must be signed.
    let (s, _) = call(&b, "POST", "/auth/token", &bearer(&tok), b"").await;
    assert_eq!(s, 401);

    // Policy `both`: the token alone is not enough, nor the signature alone; a token of another
    // key does not pair with this key's signature.
    let (s, v) = exchange(&b, k_both, b"").await;
    assert_eq!(s, 200, "{v}");
    let tok_both = v["access_token"].as_str().unwrap().to_string();
    note_secret(&tok_both);
    assert_eq!(v["expires_in"], 600, "default TTL");
    let (s, v) = call(&a, "GET", "/api/x", &bearer(&tok_both), b"").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("missing_auth")), "{v}");
    let h = sign(&k_both.0, &k_both.1, "GET", &a.url("/api/x"), &[], b"", &[]);
    let (s, v) = call(&a, "GET", "/api/x", &h, b"").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("token_required")), "{v}");
    let h = sign(&k_both.0, &k_both.1, "GET", &a.url("/api/x"), &[("x-kg-token", &tok)], b"", &[]);
    let (s, v) = call(&a, "GET", "/api/x", &h, b"").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("token_key_mismatch")), "{v}");
    let h = sign(&k_both.0, &k_both.1, "GET", &a.url("/api/x"), &[("x-kg-token", &tok_both)], b"", &[]);
    let (s, v) = call(&a, "GET", "/api/x", &h, b"").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(upstream.last().headers["x-kg-key-id"], k_both.0.as_str());
    // The signature's nonce still protects a `both` request against replay.
    let (s, v) = call(&b, "GET", "/api/x", &h, b"").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("nonce_replayed")), "{v}");

    // Revoking the token through A's admin API: B refuses it on the very next request.
    let (s, v) =
        admin_call(adm, &admin_token, "POST", "/admin/api-tokens/revoke", Some(json!({"token": tok}))).await;
    assert_eq!((s, v["revoked"].as_u64()), (200, Some(1)), "{v}");
    let (s, v) = call(&b, "GET", "/api/x", &bearer(&tok), b"").await;
    assert_eq!((s, v["code"].as_str()), (401, Some("token_invalid")), "{v}");
    let (s, _) =
        admin_call(adm, &admin_token, "POST", "/admin/api-tokens/revoke", Some(json!({"token": tok}))).await;
    assert_eq!(s, 404, "an unknown token");

    // User tokens: issued for a login service, accepted only where the route opts in.
    let (s, v) = admin_call(
        adm,
        &admin_token,
        "POST",
        "/admin/apps/app1/user-tokens",
        Some(json!({"user_id": "alice", "ttl_secs": 300})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let alice = v["access_token"].as_str().unwrap().to_string();
    note_secret(&alice);
    let (s, v) = admin_call(
        adm,
        &admin_token,
        "POST",
        "/admin/apps/app1/user-tokens",
        Some(json!({"user_id": "bob"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let bob = v["access_token"].as_str().unwrap().to_string();
    note_secret(&bob);
    let (s, v) =
        admin_call(adm, &admin_token, "POST", "/admin/apps/app1/user-tokens", Some(json!({"user_id": ""})))
            .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("user_id")), "{v}");
    let (s, _) = call(&b, "GET", "/me/profile", &bearer(&alice), b"").await;
    assert_eq!(s, 200);
    let seen = upstream.last();
    assert_eq!(
        (seen.headers["x-kg-user-id"].to_str().unwrap(), seen.headers["x-kg-app-id"].to_str().unwrap()),
        ("alice", "app1")
    );
    assert!(seen.headers.get("x-kg-key-id").is_none());
    let (s, v) = call(&b, "GET", "/api/x", &bearer(&alice), b"").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("token_not_allowed")), "{v}");
    let (s, v) = call(&b, "POST", "/auth/token", &bearer(&alice), b"").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("token_not_allowed")), "{v}");
    // Log alice out everywhere; bob stays logged in.
    let (s, v) = admin_call(
        adm,
        &admin_token,
        "POST",
        "/admin/apps/app1/tokens/revoke",
        Some(json!({"user_id": "alice"})),
    )
    .await;
    assert_eq!((s, v["revoked"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(call(&b, "GET", "/me/profile", &bearer(&alice), b"").await.1["code"], "token_invalid");
    assert_eq!(call(&b, "GET", "/me/profile", &bearer(&bob), b"").await.0, 200);

    // Revoking the key (emergency) ends its tokens as soon as the replicas reload.
    let (s, v) = exchange(&a, k_tok, b"").await;
    assert_eq!(s, 200, "{v}");
    let tok2 = v["access_token"].as_str().unwrap().to_string();
    note_secret(&tok2);
    assert_eq!(call(&b, "GET", "/api/x", &bearer(&tok2), b"").await.0, 200);
    let (s, _) =
        admin_call(adm, &admin_token, "POST", &format!("/admin/keys/{}/revoke", k_tok.0), None).await;
    assert_eq!(s, 200);
    eventually("B refuses the revoked key's token", || {
        let b = &b;
        let h = bearer(&tok2);
        async move {
            match call(b, "GET", "/api/x", &h, b"").await {
                (401, v) if v["code"] == "key_disabled" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    // Disabling the app ends its user tokens the same way.
    let (s, _) = admin_call(adm, &admin_token, "POST", "/admin/apps/app1/revoke", None).await;
    assert_eq!(s, 200);
    eventually("B refuses the disabled app's user token", || {
        let b = &b;
        let h = bearer(&bob);
        async move {
            match call(b, "GET", "/me/profile", &h, b"").await {
                (401, v) if v["code"] == "token_invalid" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;

    // Redis holds hashes only: no key or value contains a token.
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut con = client.get_connection().unwrap();
    let stored: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}tok*")).query(&mut con).unwrap();
    assert!(!stored.is_empty());
    for k in &stored {
        let t: String = redis::cmd("TYPE").arg(k).query(&mut con).unwrap();
        let dump: Vec<u8> = match t.as_str() {
            "string" => redis::cmd("GET").arg(k).query(&mut con).unwrap(),
            _ => redis::cmd("SMEMBERS").arg(k).query::<Vec<String>>(&mut con).unwrap().join(",").into_bytes(),
        };
        for secret in [&tok, &tok2, &tok_both, &alice, &bob] {
            assert!(!k.contains(secret.as_str()));
            assert!(!String::from_utf8_lossy(&dump).contains(secret.as_str()));
        }
    }
    for k in redis::cmd("KEYS").arg(format!("{prefix}*")).query::<Vec<String>>(&mut con).unwrap() {
        let _: i64 = redis::cmd("DEL").arg(k).query(&mut con).unwrap();
    }
}
