// Walks the whole role × endpoint × tenant matrix of the admin API and asserts every cell, on a
// real (SQLite) store: for each principal and endpoint, fresh target objects are created, the
// call is made, and the status must be the one in the table. Refused calls must write nothing
// (no admin audit row appears).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use keygate_admin::{router, AdminState};
use keygate_store::{
    AdminRole, AdminTokenRecord, AppRecord, KeyRecord, Keyring, MasterKey, Store, TenantRecord,
};
use serde_json::{json, Value};
use tower::ServiceExt;

const P: [&str; 7] = ["gateway_admin", "t1_admin", "t1_dev", "t2_admin", "t2_dev", "anonymous", "revoked"];

/// Expected status per principal, in the order of `P`. Targets are always in tenant t1 (t1_dev is
/// granted app a1 only), so t2's tokens show what another tenant sees.
const MATRIX: &[(&str, [u16; 7])] = &[
    ("GET /admin/whoami", [200, 200, 200, 200, 200, 401, 401]),
    ("GET /admin/tenants", [200, 200, 200, 200, 200, 401, 401]),
    ("POST /admin/tenants", [201, 403, 403, 403, 403, 401, 401]),
    ("GET /admin/tenants/t1", [200, 200, 200, 404, 404, 401, 401]),
    ("DELETE /admin/tenants/{fresh_tenant}", [204, 403, 403, 403, 403, 401, 401]),
    ("GET /admin/tenants/t1/apps", [200, 200, 200, 404, 404, 401, 401]),
    ("POST /admin/tenants/t1/apps", [201, 201, 403, 404, 404, 401, 401]),
    ("GET /admin/apps/a1", [200, 200, 200, 404, 404, 401, 401]),
    ("PATCH /admin/apps/{fresh_app}", [200, 200, 403, 404, 404, 401, 401]),
    ("DELETE /admin/apps/{fresh_app}", [204, 204, 403, 404, 404, 401, 401]),
    ("POST /admin/apps/{fresh_app}/revoke", [200, 200, 403, 404, 404, 401, 401]),
    ("GET /admin/apps/a1/keys", [200, 200, 200, 404, 404, 401, 401]),
    ("POST /admin/apps/a1/keys", [201, 201, 201, 404, 404, 401, 401]),
    ("POST /admin/apps/a2/keys", [201, 201, 403, 404, 404, 401, 401]),
    ("GET /admin/keys/{fresh_key}", [200, 200, 200, 404, 404, 401, 401]),
    ("PATCH /admin/keys/{fresh_key}", [200, 200, 403, 404, 404, 401, 401]),
    ("DELETE /admin/keys/{fresh_key}", [204, 204, 403, 404, 404, 401, 401]),
    ("POST /admin/keys/{fresh_key}/rotate", [201, 201, 403, 404, 404, 401, 401]),
    ("POST /admin/keys/{fresh_key}/revoke", [200, 200, 403, 404, 404, 401, 401]),
    ("POST /admin/keys/{fresh_key}/enable", [200, 200, 403, 404, 404, 401, 401]),
    ("GET /admin/tokens?tenant=t1", [200, 200, 403, 404, 404, 401, 401]),
    ("GET /admin/tokens", [200, 200, 403, 200, 403, 401, 401]),
    ("POST /admin/tokens {t1 developer}", [201, 201, 403, 404, 404, 401, 401]),
    ("POST /admin/tokens {gateway admin}", [201, 403, 403, 403, 403, 401, 401]),
    ("GET /admin/tokens/{fresh_t1_token}", [200, 200, 403, 404, 404, 401, 401]),
    ("DELETE /admin/tokens/{fresh_t1_token}", [200, 200, 403, 404, 404, 401, 401]),
    ("GET /admin/audit", [200, 403, 403, 403, 403, 401, 401]),
    ("GET /admin/requests", [200, 403, 403, 403, 403, 401, 401]),
    ("GET /admin/requests?app=a1", [200, 200, 200, 404, 404, 401, 401]),
    ("POST /admin/apps/a1/user-tokens", [201, 201, 201, 404, 404, 401, 401]),
    ("POST /admin/apps/a2/user-tokens", [201, 201, 403, 404, 404, 401, 401]),
    ("POST /admin/apps/a1/tokens/revoke", [200, 200, 200, 404, 404, 401, 401]),
    ("POST /admin/api-tokens/revoke {fresh_a2_token}", [200, 200, 403, 404, 404, 401, 401]),
    ("GET /admin/alerts", [200, 403, 403, 403, 403, 401, 401]),
    ("GET /admin/tenants/t1/versions", [200, 200, 200, 404, 404, 401, 401]),
    ("GET /admin/tenants/t1/versions/1", [200, 200, 200, 404, 404, 401, 401]),
    ("GET /admin/tenants/t1/versions/1/diff", [200, 200, 200, 404, 404, 401, 401]),
    ("POST /admin/tenants/t1/versions", [201, 201, 403, 404, 404, 401, 401]),
    ("POST /admin/tenants/t1/versions/1/rollback", [200, 200, 403, 404, 404, 401, 401]),
    ("GET /admin/tenants/t1/alerts", [200, 200, 200, 404, 404, 401, 401]),
    ("GET /admin/tenants/t1/routes", [200, 200, 200, 404, 404, 401, 401]),
    ("GET /admin/tenants/t1/routes/{fresh_route}", [200, 200, 200, 404, 404, 401, 401]),
    ("PUT /admin/tenants/t1/routes/{new_name}", [201, 201, 403, 404, 404, 401, 401]),
    ("PUT /admin/tenants/t1/routes/{fresh_route}", [200, 200, 403, 404, 404, 401, 401]),
    ("DELETE /admin/tenants/t1/routes/{fresh_route}", [204, 204, 403, 404, 404, 401, 401]),
    ("GET /admin/tenants/t1/alert-rules", [200, 200, 200, 404, 404, 401, 401]),
    ("GET /admin/tenants/t1/alert-rules/{fresh_rule}", [200, 200, 200, 404, 404, 401, 401]),
    ("PUT /admin/tenants/t1/alert-rules/{new_name}", [201, 201, 403, 404, 404, 401, 401]),
    ("DELETE /admin/tenants/t1/alert-rules/{fresh_rule}", [204, 204, 403, 404, 404, 401, 401]),
];

/// The binary records versions from exported documents; here the document is a counter, which is
/// all the role checks need (the real hook is tested end to end in crates/keygate/tests).
#[derive(Debug)]
struct CountingVersions;

impl keygate_admin::ConfigVersions for CountingVersions {
    fn record<'a>(
        &'a self,
        store: &'a Store,
        tenant: &'a str,
        comment: &'a str,
    ) -> keygate_admin::BoxFuture<'a, Result<Option<keygate_store::ConfigVersion>, String>> {
        Box::pin(async move {
            let n = store.list_config_versions(tenant).await.map_err(|e| e.to_string())?.len();
            store.add_config_version(tenant, comment, &format!("doc {n}")).await.map_err(|e| e.to_string())
        })
    }

    fn rollback<'a>(
        &'a self,
        _store: &'a Store,
        _tenant: &'a str,
        _document: &'a str,
        _comment: &'a str,
        _dry_run: bool,
    ) -> keygate_admin::BoxFuture<'a, Result<keygate_admin::RollbackOutcome, keygate_admin::RollbackError>>
    {
        Box::pin(async { Ok(keygate_admin::RollbackOutcome::default()) })
    }
}

/// One token store for the whole run, as one gateway process has.
fn token_store() -> Arc<keygate_state::MemoryTokenStore> {
    static STORE: std::sync::OnceLock<Arc<keygate_state::MemoryTokenStore>> = std::sync::OnceLock::new();
    STORE.get_or_init(|| Arc::new(keygate_state::MemoryTokenStore::new(10_000))).clone()
}

struct Fixture {
    store: Store,
    audit: keygate_audit::AuditDb,
    tokens: Vec<Option<String>>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("kg.db").display());
    let ring = Arc::new(Keyring::new([MasterKey::generate(1).unwrap().0]).unwrap());
    let store = Store::open(&url, ring).await.unwrap();
    for t in ["t1", "t2"] {
        store.create_tenant(&TenantRecord { id: t.into(), name: t.into() }).await.unwrap();
    }
    for (a, t) in [("a1", "t1"), ("a2", "t1"), ("b1", "t2")] {
        store
            .create_app(&AppRecord { id: a.into(), tenant_id: t.into(), name: a.into(), enabled: true })
            .await
            .unwrap();
    }
    let mut tokens = Vec::new();
    for p in P {
        let rec = match p {
            "gateway_admin" => AdminTokenRecord::new(p, AdminRole::GatewayAdmin, None),
            "t1_admin" | "revoked" => AdminTokenRecord::new(p, AdminRole::TenantAdmin, Some("t1")),
            "t1_dev" => {
                let mut r = AdminTokenRecord::new(p, AdminRole::TenantDeveloper, Some("t1"));
                r.app_grants = vec!["a1".into()];
                r
            }
            "t2_admin" => AdminTokenRecord::new(p, AdminRole::TenantAdmin, Some("t2")),
            "t2_dev" => {
                let mut r = AdminTokenRecord::new(p, AdminRole::TenantDeveloper, Some("t2"));
                r.app_grants = vec!["b1".into()];
                r
            }
            _ => {
                tokens.push(None);
                continue;
            }
        };
        let (rec, token) = store.create_admin_token(&rec).await.unwrap();
        if p == "revoked" {
            store.revoke_admin_token(&rec.id).await.unwrap();
        }
        tokens.push(Some(token.to_string()));
    }
    store.add_config_version("t1", "seed", "doc 0").await.unwrap();
    let audit = keygate_audit::AuditDb::open(&url).await.unwrap();
    Fixture { store, audit, tokens, _dir: dir }
}

/// Creates the cell's fresh targets and returns the concrete request line and body.
async fn prepare(store: &Store, cell: &str, n: usize) -> (Method, String, Option<Value>) {
    let (method, rest) = cell.split_once(' ').unwrap();
    let method: Method = method.parse().unwrap();
    let (path, body_tag) = match rest.split_once(' ') {
        Some((p, b)) => (p.to_string(), Some(b)),
        None => (rest.to_string(), None),
    };
    let mut path = path;
    if path.contains("{fresh_tenant}") {
        let id = format!("tx{n}");
        store.create_tenant(&TenantRecord { id: id.clone(), name: id.clone() }).await.unwrap();
        path = path.replace("{fresh_tenant}", &id);
    }
    if path.contains("{fresh_app}") {
        let id = format!("ax{n}");
        store
            .create_app(&AppRecord {
                id: id.clone(),
                tenant_id: "t1".into(),
                name: id.clone(),
                enabled: true,
            })
            .await
            .unwrap();
        path = path.replace("{fresh_app}", &id);
    }
    if path.contains("{fresh_key}") {
        let ak = format!("AKX{n}");
        let rec = KeyRecord {
            access_key: ak.clone(),
            app_id: "a1".into(),
            scheme: "kg1-hmac-sha256".into(),
            scheme_settings: json!({}),
            enabled: true,
            timestamp_window_secs: 300,
            ..KeyRecord::default()
        };
        store.create_key(&rec, &keygate_store::generate_secret().unwrap()).await.unwrap();
        path = path.replace("{fresh_key}", &ak);
    }
    for (placeholder, kind) in [
        ("{fresh_route}", keygate_store::ObjectKind::Route),
        ("{fresh_rule}", keygate_store::ObjectKind::AlertRule),
    ] {
        if path.contains(placeholder) {
            let name = format!("o{n}");
            let rec = keygate_store::TenantObject {
                tenant_id: "t1".into(),
                kind,
                name: name.clone(),
                config: json!({"v": 1}),
                created_at: 0,
                updated_at: 0,
                updated_by: String::new(),
            };
            store.put_tenant_object(&rec).await.unwrap();
            path = path.replace(placeholder, &name);
        }
    }
    path = path.replace("{new_name}", &format!("new{n}"));
    if path.contains("{fresh_t1_token}") {
        let (rec, _) = store
            .create_admin_token(&AdminTokenRecord::new("fresh", AdminRole::TenantDeveloper, Some("t1")))
            .await
            .unwrap();
        path = path.replace("{fresh_t1_token}", &rec.id);
    }
    let body = match (method.as_str(), path.as_str(), body_tag) {
        ("POST", "/admin/tenants", _) => Some(json!({"id": format!("new{n}"), "name": "New"})),
        ("POST", "/admin/tenants/t1/apps", _) => Some(json!({"id": format!("app{n}")})),
        ("POST", p, _) if p.ends_with("/keys") => Some(json!({"description": "matrix"})),
        ("PATCH", p, _) if p.starts_with("/admin/apps/") => Some(json!({"name": "renamed"})),
        ("PATCH", _, _) => Some(json!({"description": "patched", "allowed_cidrs": ["10.0.0.0/8"]})),
        ("POST", p, _) if p.ends_with("/rotate") => Some(json!({"overlap_secs": 60})),
        ("POST", "/admin/tokens", Some("{t1 developer}")) => {
            Some(json!({"name": "d", "role": "tenant_developer", "tenant_id": "t1", "app_grants": ["a1"]}))
        }
        ("POST", "/admin/tokens", Some("{gateway admin}")) => {
            Some(json!({"name": "g", "role": "gateway_admin"}))
        }
        ("POST", p, _) if p.contains("/versions") => Some(json!({"comment": "matrix"})),
        ("PUT", p, _) if p.contains("/routes/") || p.contains("/alert-rules/") => {
            Some(json!({"config": {"v": n}}))
        }
        ("POST", p, _) if p.ends_with("/user-tokens") => Some(json!({"user_id": format!("user{n}")})),
        ("POST", p, _) if p.ends_with("/tokens/revoke") => Some(json!({"user_id": "user1"})),
        ("POST", "/admin/api-tokens/revoke", Some("{fresh_a2_token}")) => {
            use keygate_state::TokenStore as _;
            let (token, hash) = keygate_state::new_token().unwrap();
            let grant = keygate_state::TokenGrant {
                app_id: "a2".into(),
                access_key: None,
                user_id: Some("u".into()),
                expires_at: 4_102_444_800,
            };
            token_store().issue(&hash, &grant, std::time::Duration::from_secs(600)).await.unwrap();
            Some(json!({"token": token}))
        }
        _ => None,
    };
    (method, path, body)
}

async fn call(
    fx: &Fixture,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let mut state = AdminState::new(fx.store.clone());
    state.audit = Some(fx.audit.clone());
    state.versions = Some(Arc::new(CountingVersions));
    // The binary checks documents against the operator's policy; the role checks come first.
    state.validate_object = Some(Arc::new(|_, _| Ok(())));
    state.tokens = Some(keygate_admin::TokenIssuer {
        store: token_store(),
        default_ttl: std::time::Duration::from_secs(900),
        max_ttl: std::time::Duration::from_secs(3600),
    });
    let resp = router(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, v)
}

#[tokio::test]
async fn every_role_endpoint_tenant_cell() {
    let fx = fixture().await;
    let mut failures = Vec::new();
    let mut n = 0;
    for (cell, expected) in MATRIX {
        for (i, principal) in P.iter().enumerate() {
            n += 1;
            let (method, path, body) = prepare(&fx.store, cell, n).await;
            let audit_before = fx.store.list_admin_audit(1, 0).await.unwrap();
            let (status, v) = call(&fx, fx.tokens[i].as_deref(), method, &path, body).await;
            if status.as_u16() != expected[i] {
                failures.push(format!("{cell} as {principal}: got {status} {v}, want {}", expected[i]));
                continue;
            }
            if !status.is_success() {
                // Refusals use the envelope with a stable code, and write nothing.
                let code = v["code"].as_str().unwrap_or_default();
                let want = match status.as_u16() {
                    401 => "unauthorized",
                    403 => "forbidden",
                    404 => "not_found",
                    _ => unreachable!(),
                };
                if code != want || v["request_id"].as_str().is_none() {
                    failures.push(format!("{cell} as {principal}: bad envelope {v}"));
                }
                let audit_after = fx.store.list_admin_audit(1, 0).await.unwrap();
                if audit_before.first().map(|e| e.id) != audit_after.first().map(|e| e.id) {
                    failures.push(format!("{cell} as {principal}: refused but wrote an audit row"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cells wrong:\n{}", failures.len(), n, failures.join("\n"));
    assert_eq!(n, MATRIX.len() * P.len());
}

#[tokio::test]
async fn lists_show_only_what_the_principal_may_see() {
    let fx = fixture().await;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect()
    };
    let (_, all) = call(&fx, fx.tokens[0].as_deref(), Method::GET, "/admin/tenants", None).await;
    assert_eq!(ids(&all), ["t1", "t2"]);
    let (_, own) = call(&fx, fx.tokens[3].as_deref(), Method::GET, "/admin/tenants", None).await;
    assert_eq!(ids(&own), ["t2"]);
    let (_, toks) = call(&fx, fx.tokens[3].as_deref(), Method::GET, "/admin/tokens", None).await;
    assert!(toks.as_array().unwrap().iter().all(|t| t["tenant_id"] == "t2"));
}

#[tokio::test]
async fn secrets_leave_once_and_never_again() {
    let fx = fixture().await;
    let ga = fx.tokens[0].as_deref();
    let (s, created) =
        call(&fx, ga, Method::POST, "/admin/apps/a1/keys", Some(json!({"access_key": "AKONCE"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 43, "256-bit secret");
    for path in ["/admin/keys/AKONCE", "/admin/apps/a1/keys", "/admin/audit?limit=1000"] {
        let (_, v) = call(&fx, ga, Method::GET, path, None).await;
        assert!(!v.to_string().contains(&secret), "{path} leaks the secret");
    }
    // Imported secrets are never echoed.
    let imported = "imported-secret-0123456789";
    let (s, v) = call(
        &fx,
        ga,
        Method::POST,
        "/admin/apps/a1/keys",
        Some(json!({"access_key": "AKIMP", "secret": imported})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(v["secret"].is_null() && !v.to_string().contains(imported));
    let (s, v) = call(
        &fx,
        ga,
        Method::POST,
        "/admin/apps/a1/keys",
        Some(json!({"access_key": "AKSHORT", "secret": "short"})),
    )
    .await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some("secret")));
    // The decrypted secret matches what was shown (the store holds it, sealed).
    let keys = fx.store.load_keys().await.unwrap();
    let k = keys.iter().find(|k| k.record.access_key == "AKONCE").unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&k.secret), secret.as_bytes());
}

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() {
    let fx = fixture().await;
    let ga = fx.tokens[0].as_deref();
    let cases = [
        (json!({"allowed_cidrs": ["10.0.0.1/8"]}), "key.allowed_cidrs[0]"),
        (json!({"allowed_endpoints": ["get /x"]}), "key.allowed_endpoints[0]"),
        (json!({"valid_from": 2000000000, "valid_to": 1900000000}), "key.valid_to"),
        (json!({"access_key": "A K"}), "key.access_key"),
        (json!({"description": "x".repeat(5000)}), "key.description"),
        (json!({"rate_limit": {"rate_per_sec": 0, "burst": 1}}), "key.rate_limit.rate_per_sec"),
    ];
    let before = fx.store.list_keys(None).await.unwrap().len();
    for (body, field) in cases {
        let (s, v) = call(&fx, ga, Method::POST, "/admin/apps/a1/keys", Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["code"], "invalid_request");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let (s, v) = call(&fx, ga, Method::POST, "/admin/apps/a1/keys", Some(json!({"nope": 1}))).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")));
    // SQL metacharacters are data, not syntax.
    let sneaky = "AK';DROP/**/TABLE/**/keys;--";
    let (s, _) =
        call(&fx, ga, Method::POST, "/admin/apps/a1/keys", Some(json!({"access_key": sneaky}))).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(fx.store.get_key(sneaky).await.unwrap().access_key, sneaky);
    assert_eq!(fx.store.list_keys(None).await.unwrap().len(), before + 1);
    // Duplicate access key: conflict.
    let (s, v) =
        call(&fx, ga, Method::POST, "/admin/apps/a1/keys", Some(json!({"access_key": sneaky}))).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let fx = fixture().await;
    let (s, doc) = call(&fx, None, Method::GET, "/admin/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (cell, _) in MATRIX {
        let path = cell.split(' ').nth(1).unwrap().split('?').next().unwrap();
        let templ = path
            .replace("{fresh_tenant}", "{tenant}")
            .replace("/t1/", "/{tenant}/")
            .replace("/admin/tenants/t1", "/admin/tenants/{tenant}")
            .replace("{fresh_app}", "{app}")
            .replace("/apps/a1", "/apps/{app}")
            .replace("/apps/a2", "/apps/{app}")
            .replace("{fresh_key}", "{key}")
            .replace("{fresh_t1_token}", "{id}")
            .replace("/versions/1", "/versions/{version}")
            .replace("{fresh_route}", "{name}")
            .replace("{fresh_rule}", "{name}")
            .replace("{new_name}", "{name}");
        assert!(paths.contains_key(&templ), "{templ} missing from the OpenAPI document");
    }
}
