// One repository test suite run against every backend on real servers: SQLite files,
// PostgreSQL (127.0.0.1:5432) and MariaDB/MySQL (127.0.0.1:3306), each test in its own database.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{keyring_of, seed_secret, Kind, TestDb};
use keygate_store::{
    AdminRole, AdminTokenRecord, AppRecord, BackendKind, KeyRecord, Keyring, ProviderRecord, RateLimit,
    Store, StoreError, TenantRecord, Upsert,
};
use secrecy::ExposeSecret;

/// Expands every listed case into one `#[tokio::test]` per backend: `sqlite::case`,
/// `postgres::case`, `mysql::case`.
macro_rules! backend_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $case() { super::run(super::Kind::Sqlite, super::$case).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $case() { super::run(super::Kind::Postgres, super::$case).await })*
        }
        mod mysql {
            $(#[tokio::test] async fn $case() { super::run(super::Kind::Mysql, super::$case).await })*
        }
    };
}

backend_tests!(
    migrations_are_idempotent,
    crud_tenants_apps_keys,
    validation_errors_name_the_field_and_write_nothing,
    duplicates_are_conflicts,
    sql_metacharacters_round_trip,
    failed_transactions_leave_nothing_half_written,
    change_counter_bumps_exactly_on_changes,
    secrets_never_stored_in_clear,
    rotation_sets_successor_and_overlap,
    disable_app_revokes_every_key,
    rewrap_all_moves_every_row_to_the_new_master_key,
    touch_last_used_is_batched_and_monotonic,
    admin_audit_records_who_what_before_after,
    concurrent_writers_do_not_lose_updates,
    admin_tokens_are_hashed_scoped_and_revocable,
    providers_and_write_only_secrets,
    config_versions_and_the_publish_fence,
    tenant_objects_are_scoped_audited_and_counted,
);

async fn run<F, Fut>(kind: Kind, case: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    case(TestDb::new(kind).await).await;
}

async fn open(db: &TestDb, keyring: &Arc<Keyring>) -> Store {
    Store::open(&db.url, keyring.clone()).await.unwrap()
}

fn ring() -> Arc<Keyring> {
    keyring_of(&[1])
}

fn tenant(id: &str) -> TenantRecord {
    TenantRecord { id: id.into(), name: format!("Tenant {id}") }
}

fn app(id: &str, tenant_id: &str) -> AppRecord {
    AppRecord { id: id.into(), tenant_id: tenant_id.into(), name: format!("App {id}"), enabled: true }
}

fn key(access_key: &str, app_id: &str) -> KeyRecord {
    KeyRecord {
        access_key: access_key.into(),
        app_id: app_id.into(),
        scheme: "kg1-hmac-sha256".into(),
        scheme_settings: serde_json::json!({"digest": "sha256"}),
        enabled: true,
        valid_from: Some(1_700_000_000),
        valid_to: Some(4_102_444_800),
        timestamp_window_secs: 300,
        description: "test key".into(),
        scopes: vec!["orders:read".into(), "orders:write".into()],
        allowed_endpoints: vec!["GET /v1/orders/*".into(), "POST /v1/orders".into()],
        allowed_cidrs: vec!["10.0.0.0/8".into(), "2001:db8::/32".into(), "192.168.1.7".into()],
        rate_limit: Some(RateLimit { rate_per_sec: 12.5, burst: 40 }),
        created_by: "alice".into(),
        auth_policy: "both".into(),
        ..Default::default()
    }
}

fn secret(tag: &str) -> Vec<u8> {
    format!("SECRET-{tag}-0123456789abcdef0123456789abcdef").into_bytes()
}

/// A store with tenant `t1` and app `a1` in it.
async fn seeded(db: &TestDb) -> Store {
    let store = open(db, &ring()).await;
    store.create_tenant(&tenant("t1")).await.unwrap();
    store.create_app(&app("a1", "t1")).await.unwrap();
    store
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(r: Result<T, StoreError>, field: &str) {
    match r {
        Err(StoreError::Invalid { field: f, reason }) => {
            assert_eq!(f, field, "wrong field path (reason: {reason})");
            assert!(!reason.is_empty());
        }
        other => panic!("expected Invalid {{ field: {field} }}, got {other:?}"),
    }
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::Conflict(_))), "expected Conflict, got {r:?}");
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::NotFound(w)) => assert_eq!(w, what),
        other => panic!("expected NotFound({what}), got {other:?}"),
    }
}

// ---- cases ----

async fn migrations_are_idempotent(db: TestDb) {
    let store = seeded(&db).await;
    let expected = match db.kind {
        Kind::Sqlite => BackendKind::Sqlite,
        Kind::Postgres => BackendKind::Postgres,
        Kind::Mysql => BackendKind::Mysql,
    };
    assert_eq!(store.backend_kind(), expected);
    store.create_key(&key("AK1", "a1"), &secret("1")).await.unwrap();
    let counter = store.change_counter().await.unwrap();
    store.close().await;
    // Opening again (and again) re-runs the migrator: nothing to apply, nothing lost.
    for _ in 0..2 {
        let store = open(&db, &ring()).await;
        assert_eq!(store.change_counter().await.unwrap(), counter);
        assert_eq!(store.get_key("AK1").await.unwrap(), key("AK1", "a1"));
        assert_eq!(store.list_tenants().await.unwrap(), vec![tenant("t1")]);
        store.close().await;
    }
}

async fn crud_tenants_apps_keys(db: TestDb) {
    let store = open(&db, &ring()).await;
    // Tenants.
    assert_eq!(store.create_tenant(&tenant("t1")).await.unwrap(), tenant("t1"));
    store.create_tenant(&tenant("t2")).await.unwrap();
    assert_eq!(store.get_tenant("t1").await.unwrap(), tenant("t1"));
    assert_eq!(store.list_tenants().await.unwrap(), vec![tenant("t1"), tenant("t2")]);
    let renamed = TenantRecord { id: "t2".into(), name: "Renamed".into() };
    assert_eq!(store.update_tenant(&renamed).await.unwrap(), renamed);
    assert_eq!(store.get_tenant("t2").await.unwrap(), renamed);
    assert_not_found(store.get_tenant("nope").await, "tenant nope");
    assert_not_found(store.update_tenant(&tenant("nope")).await, "tenant nope");

    // Apps.
    assert_not_found(store.create_app(&app("a1", "nope")).await, "tenant nope");
    store.create_app(&app("a1", "t1")).await.unwrap();
    store.create_app(&app("a2", "t1")).await.unwrap();
    store.create_app(&app("b1", "t2")).await.unwrap();
    assert_eq!(store.get_app("a1").await.unwrap(), app("a1", "t1"));
    assert_eq!(store.list_apps().await.unwrap().len(), 3);
    assert_eq!(store.list_apps_of_tenant("t1").await.unwrap(), vec![app("a1", "t1"), app("a2", "t1")]);
    let moved = AppRecord { tenant_id: "t2".into(), name: "Moved".into(), ..app("a2", "t1") };
    assert_eq!(store.update_app(&moved).await.unwrap(), moved);
    assert_eq!(store.list_apps_of_tenant("t2").await.unwrap().len(), 2);
    assert_not_found(store.update_app(&app("a1", "nope")).await, "tenant nope");
    assert_not_found(store.get_app("nope").await, "app nope");

    // Keys: every field survives the round trip.
    assert_not_found(store.create_key(&key("AK0", "nope"), &secret("0")).await, "app nope");
    let k1 = key("AK1", "a1");
    assert_eq!(store.create_key(&k1, &secret("1")).await.unwrap(), k1);
    let mut k2 = key("AK2", "a1");
    k2.rate_limit = None;
    k2.valid_from = None;
    k2.scopes.clear();
    k2.allowed_cidrs = vec!["::/0".into()];
    assert_eq!(store.import_key(&k2, b"short").await.unwrap(), k2);
    store.create_key(&key("AK3", "b1"), &secret("3")).await.unwrap();
    assert_eq!(store.get_key("AK1").await.unwrap(), k1);
    assert_eq!(store.get_key("AK2").await.unwrap(), k2);
    let listed: Vec<String> =
        store.list_keys(Some("a1")).await.unwrap().into_iter().map(|k| k.access_key).collect();
    assert_eq!(listed, ["AK1", "AK2"]);
    assert_eq!(store.list_keys(None).await.unwrap().len(), 3);
    assert_not_found(store.get_key("nope").await, "key nope");

    // Store-managed fields passed in are ignored on create and kept on update.
    let mut sneaky = key("AK4", "a1");
    sneaky.successor = Some("AK1".into());
    sneaky.overlap_until = Some(5);
    sneaky.last_used_at = Some(5);
    let created = store.create_key(&sneaky, &secret("4")).await.unwrap();
    assert_eq!((created.successor, created.overlap_until, created.last_used_at), (None, None, None));

    let mut changed = k1.clone();
    changed.description = "changed".into();
    changed.scopes = vec!["x".into()];
    changed.rate_limit = Some(RateLimit { rate_per_sec: 0.5, burst: 1 });
    changed.created_by = "mallory".into();
    let updated = store.update_key(&changed).await.unwrap();
    assert_eq!(updated.created_by, "alice", "created_by is set once");
    assert_eq!(updated.description, "changed");
    assert_eq!(store.get_key("AK1").await.unwrap(), updated);
    assert_not_found(store.update_key(&key("nope", "a1")).await, "key nope");
    assert_not_found(store.update_key(&KeyRecord { app_id: "nope".into(), ..changed }).await, "app nope");

    // Secrets load with the keys, collected or streamed.
    let mut seen = Vec::new();
    assert_eq!(store.load_keys_with(|k| seen.push(k.record.access_key)).await.unwrap(), 4);
    assert_eq!(seen, ["AK1", "AK2", "AK3", "AK4"]);
    let loaded = store.load_keys().await.unwrap();
    assert_eq!(loaded.len(), 4);
    let ak2 = loaded.iter().find(|k| k.record.access_key == "AK2").unwrap();
    assert_eq!(ak2.secret.expose_secret(), b"short");
    assert_eq!(ak2.record, k2);

    // Deletes: a tenant with apps is refused, an app takes its keys along.
    store.delete_key("AK4").await.unwrap();
    assert_not_found(store.delete_key("AK4").await, "key AK4");
    assert_conflict(store.delete_tenant("t1").await);
    store.delete_app("a1").await.unwrap();
    assert_not_found(store.get_key("AK1").await, "key AK1");
    assert_eq!(store.list_keys(None).await.unwrap().len(), 1);
    store.delete_tenant("t1").await.unwrap();
    assert_not_found(store.delete_tenant("t1").await, "tenant t1");
    assert_not_found(store.delete_app("a1").await, "app a1");
    assert_eq!(store.list_tenants().await.unwrap(), vec![renamed]);
}

async fn validation_errors_name_the_field_and_write_nothing(db: TestDb) {
    let store = seeded(&db).await;
    store.create_key(&key("AK1", "a1"), &secret("1")).await.unwrap();
    let counter = store.change_counter().await.unwrap();
    let audit_rows = store.list_admin_audit(1000, 0).await.unwrap().len();

    let with = |f: &dyn Fn(&mut KeyRecord)| {
        let mut k = key("AKNEW", "a1");
        f(&mut k);
        k
    };
    let s = secret("x");
    let cases: Vec<(KeyRecord, &str)> = vec![
        (with(&|k| k.access_key = "has space".into()), "key.access_key"),
        (with(&|k| k.access_key = String::new()), "key.access_key"),
        (with(&|k| k.access_key = "x".repeat(129)), "key.access_key"),
        (with(&|k| k.app_id = "bad\napp".into()), "key.app_id"),
        (with(&|k| k.scheme = "Bad Scheme".into()), "key.scheme"),
        (with(&|k| k.scheme_settings = serde_json::json!([1])), "key.scheme_settings"),
        (with(&|k| k.scheme_settings = serde_json::json!({"x": "y".repeat(17_000)})), "key.scheme_settings"),
        (with(&|k| k.valid_to = Some(1_600_000_000)), "key.valid_to"),
        (with(&|k| k.valid_from = Some(-1)), "key.valid_from"),
        (with(&|k| k.timestamp_window_secs = 0), "key.timestamp_window_secs"),
        (with(&|k| k.description = "d".repeat(1025)), "key.description"),
        (with(&|k| k.description = "nul\0byte".into()), "key.description"),
        (with(&|k| k.created_by = "c".repeat(257)), "key.created_by"),
        (with(&|k| k.scopes = vec!["ok".into(), "has space".into()]), "key.scopes[1]"),
        (with(&|k| k.scopes = vec!["dup".into(), "dup".into()]), "key.scopes[1]"),
        (with(&|k| k.scopes = (0..257).map(|i| format!("s{i}")).collect()), "key.scopes"),
        (
            with(&|k| k.allowed_endpoints = vec!["GET /ok".into(), "get /lower".into()]),
            "key.allowed_endpoints[1]",
        ),
        (with(&|k| k.allowed_endpoints = vec!["GET /v1/../admin".into()]), "key.allowed_endpoints[0]"),
        (with(&|k| k.allowed_endpoints = vec!["GET /v1/orders*".into()]), "key.allowed_endpoints[0]"),
        (
            with(&|k| k.allowed_endpoints = vec![format!("GET /{}", "p".repeat(600))]),
            "key.allowed_endpoints[0]",
        ),
        (
            with(&|k| k.allowed_cidrs = vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()]),
            "key.allowed_cidrs[1]",
        ),
        (with(&|k| k.allowed_cidrs = vec!["10.1.2.3/8".into()]), "key.allowed_cidrs[0]"),
        (with(&|k| k.allowed_cidrs = vec!["not-an-ip".into()]), "key.allowed_cidrs[0]"),
        (with(&|k| k.allowed_cidrs = vec!["2001:db8::1/32".into()]), "key.allowed_cidrs[0]"),
        (
            with(&|k| k.rate_limit = Some(RateLimit { rate_per_sec: 0.0, burst: 1 })),
            "key.rate_limit.rate_per_sec",
        ),
        (
            with(&|k| k.rate_limit = Some(RateLimit { rate_per_sec: f64::NAN, burst: 1 })),
            "key.rate_limit.rate_per_sec",
        ),
        (with(&|k| k.rate_limit = Some(RateLimit { rate_per_sec: 1.0, burst: 0 })), "key.rate_limit.burst"),
        (with(&|k| k.auth_policy = "tokens".into()), "key.auth_policy"),
    ];
    for (k, field) in &cases {
        assert_invalid(store.create_key(k, &s).await, field);
        assert_invalid(store.import_key(k, &s).await, field);
        assert_invalid(store.upsert_key(k, &s).await, field);
    }
    // Update validates the same way, with the same paths.
    assert_invalid(
        store.update_key(&KeyRecord { allowed_cidrs: vec!["300.1.1.1".into()], ..key("AK1", "a1") }).await,
        "key.allowed_cidrs[0]",
    );
    // Secrets: bounds only, and generated ones must be 256 bits.
    assert_invalid(store.create_key(&key("AKNEW", "a1"), b"too-short").await, "secret");
    assert_invalid(store.import_key(&key("AKNEW", "a1"), b"").await, "secret");
    assert_invalid(store.import_key(&key("AKNEW", "a1"), &[b'x'; 4097]).await, "secret");
    // Tenants and apps.
    assert_invalid(
        store.create_tenant(&TenantRecord { id: "t 2".into(), name: "x".into() }).await,
        "tenant.id",
    );
    assert_invalid(
        store.create_tenant(&TenantRecord { id: "t2".into(), name: String::new() }).await,
        "tenant.name",
    );
    assert_invalid(
        store.create_tenant(&TenantRecord { id: "t2".into(), name: "n".repeat(201) }).await,
        "tenant.name",
    );
    assert_invalid(store.create_app(&app(&"a".repeat(129), "t1")).await, "app.id");
    assert_invalid(
        store.create_app(&AppRecord { tenant_id: "é".into(), ..app("a2", "t1") }).await,
        "app.tenant_id",
    );
    assert_invalid(
        store.upsert_app(&AppRecord { name: "tab\there".into(), ..app("a2", "t1") }).await,
        "app.name",
    );
    // Rotation.
    assert_invalid(store.rotate_key("AK1", &key("AK2", "a1"), &s, 91 * 86_400).await, "overlap_secs");
    assert_invalid(store.rotate_key("AK1", &key("AK2", "other"), &s, 60).await, "new_key.app_id");
    assert_invalid(store.rotate_key("AK1", &key("AK1", "a1"), &s, 60).await, "new_key.access_key");
    assert_invalid(
        store
            .rotate_key("AK1", &KeyRecord { allowed_cidrs: vec!["x".into()], ..key("AK2", "a1") }, &s, 60)
            .await,
        "new_key.allowed_cidrs[0]",
    );
    assert_invalid(store.append_admin_audit("", "x", "y", None, None).await, "audit.actor");

    // Nothing was written by any of them.
    assert_eq!(store.change_counter().await.unwrap(), counter);
    assert_eq!(store.list_keys(None).await.unwrap().len(), 1);
    assert_eq!(store.list_tenants().await.unwrap().len(), 1);
    assert_eq!(store.list_apps().await.unwrap().len(), 1);
    assert_eq!(store.get_key("AK1").await.unwrap(), key("AK1", "a1"));
    assert_eq!(store.list_admin_audit(1000, 0).await.unwrap().len(), audit_rows);
}

async fn duplicates_are_conflicts(db: TestDb) {
    let store = seeded(&db).await;
    store.create_key(&key("AK1", "a1"), &secret("1")).await.unwrap();
    store.create_key(&key("AK2", "a1"), &secret("2")).await.unwrap();
    let counter = store.change_counter().await.unwrap();
    assert_conflict(store.create_key(&key("AK1", "a1"), &secret("other")).await);
    assert_conflict(store.import_key(&key("AK1", "a1"), b"imported").await);
    assert_conflict(store.rotate_key("AK1", &key("AK2", "a1"), &secret("n"), 60).await);
    assert_conflict(store.create_tenant(&tenant("t1")).await);
    assert_conflict(store.create_app(&app("a1", "t1")).await);
    // Access keys compare bytewise on every backend: case matters.
    store.create_key(&key("ak1", "a1"), &secret("lower")).await.unwrap();
    assert_eq!(store.change_counter().await.unwrap(), counter + 1);
    // The losing writes changed nothing, including the original secret.
    let loaded = store.load_keys().await.unwrap();
    let ak1 = loaded.iter().find(|k| k.record.access_key == "AK1").unwrap();
    assert_eq!(ak1.secret.expose_secret(), &secret("1")[..]);
    assert_eq!(loaded.len(), 3);
}

async fn sql_metacharacters_round_trip(db: TestDb) {
    let store = open(&db, &ring()).await;
    // Identifiers are printable ASCII without spaces; free text takes anything but controls.
    let id = r#"t';--%_\"`"#;
    let nasty = "'; DROP TABLE keys; -- \\ % _ \" ` $1 ? 租户 🔑 é";
    let t = TenantRecord { id: id.into(), name: nasty.into() };
    store.create_tenant(&t).await.unwrap();
    let a = AppRecord {
        id: r#"a';DROP/**/TABLE/**/apps;--%_\"#.into(),
        tenant_id: id.into(),
        name: nasty.into(),
        enabled: true,
    };
    store.create_app(&a).await.unwrap();
    let k = KeyRecord {
        access_key: r#"AK'%_\";--"#.into(),
        app_id: a.id.clone(),
        scheme_settings: serde_json::json!({"field": nasty, "nested": {"q": "'\\%_"}}),
        description: format!("{nasty}\nsecond line\twith tab"),
        scopes: vec![r#"orders:'read%_\"#.into(), "租户:读".into()],
        allowed_endpoints: vec![r#"GET /v1/o'r%d_e\rs/*"#.into()],
        created_by: nasty.into(),
        ..key("unused", "unused")
    };
    let secret = b"'; DROP TABLE keys; -- \\ % _ secret".to_vec();
    store.import_key(&k, &secret).await.unwrap();
    let k2 = KeyRecord { access_key: "AK_%".into(), ..k.clone() };
    store.import_key(&k2, b"plain").await.unwrap();

    assert_eq!(store.get_tenant(id).await.unwrap(), t);
    assert_eq!(store.list_tenants().await.unwrap(), vec![t.clone()]);
    assert_eq!(store.get_app(&a.id).await.unwrap(), a);
    assert_eq!(store.list_apps_of_tenant(id).await.unwrap(), vec![a.clone()]);
    assert_eq!(store.get_key(&k.access_key).await.unwrap(), k);
    assert_eq!(store.get_key("AK_%").await.unwrap(), k2);
    // `%` and `_` are not wildcards anywhere: exact lookups only.
    assert_not_found(store.get_key("AK__").await, "key AK__");
    let loaded = store.load_keys().await.unwrap();
    assert_eq!(loaded.len(), 2);
    let got = loaded.iter().find(|x| x.record.access_key == k.access_key).unwrap();
    assert_eq!(got.record, k);
    assert_eq!(got.secret.expose_secret(), &secret[..]);
    // Updates, rotation, touch, disable and audit with the same values.
    let updated = store.update_key(&KeyRecord { description: nasty.into(), ..k.clone() }).await.unwrap();
    assert_eq!(store.get_key(&k.access_key).await.unwrap(), updated);
    let new = KeyRecord { access_key: r#"AK2'%_\"#.into(), ..k.clone() };
    store.rotate_key(&k.access_key, &new, b"new", 60).await.unwrap();
    assert_eq!(
        store.get_key(&k.access_key).await.unwrap().successor.as_deref(),
        Some(new.access_key.as_str())
    );
    assert_eq!(store.touch_last_used(&[(k.access_key.as_str(), 1_700_000_000)]).await.unwrap(), 1);
    assert_eq!(store.disable_app(&a.id).await.unwrap(), 3);
    let audit = store.with_actor(nasty).list_admin_audit(100, 0).await.unwrap();
    assert!(audit.iter().any(|e| e.target == k.access_key));
    assert_eq!(
        audit.iter().find(|e| e.action == "tenant.create").unwrap().after.as_ref().unwrap()["name"],
        nasty
    );
    store.with_actor(nasty).append_admin_audit(nasty, nasty, nasty, None, None).await.unwrap();
    let last = &store.list_admin_audit(1, 0).await.unwrap()[0];
    assert_eq!((last.actor.as_str(), last.action.as_str(), last.target.as_str()), (nasty, nasty, nasty));
    // Every table is still there and whole.
    assert_eq!(store.list_keys(None).await.unwrap().len(), 3);
    store.delete_app(&a.id).await.unwrap();
    store.delete_tenant(id).await.unwrap();
    assert!(store.list_tenants().await.unwrap().is_empty());
}

/// Installs a trigger that makes the audit insert of `action` fail, i.e. the last statement of
/// the mutation's transaction.
async fn fail_audit_of(db: &TestDb, action: &str) {
    let sql = match db.kind {
        Kind::Sqlite => format!(
            "CREATE TRIGGER fail_audit BEFORE INSERT ON admin_audit WHEN NEW.action = '{action}' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
        ),
        Kind::Postgres => format!(
            "CREATE FUNCTION fail_audit() RETURNS trigger AS $$ BEGIN \
               IF NEW.action = '{action}' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; \
             END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER fail_audit BEFORE INSERT ON admin_audit FOR EACH ROW EXECUTE FUNCTION fail_audit();"
        ),
        Kind::Mysql => format!(
            "CREATE TRIGGER fail_audit BEFORE INSERT ON admin_audit FOR EACH ROW BEGIN \
               IF NEW.action = '{action}' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected failure'; \
               END IF; END"
        ),
    };
    db.exec(&sql).await;
}

async fn drop_fail_audit(db: &TestDb) {
    let sql = match db.kind {
        Kind::Sqlite => "DROP TRIGGER fail_audit",
        Kind::Postgres => "DROP TRIGGER fail_audit ON admin_audit; DROP FUNCTION fail_audit();",
        Kind::Mysql => "DROP TRIGGER fail_audit",
    };
    db.exec(sql).await;
}

async fn failed_transactions_leave_nothing_half_written(db: TestDb) {
    let store = seeded(&db).await;
    store.create_key(&key("AK1", "a1"), &secret("1")).await.unwrap();
    store.create_key(&key("AK2", "a1"), &secret("2")).await.unwrap();
    let before_keys = store.list_keys(None).await.unwrap();
    let counter = store.change_counter().await.unwrap();

    // Rotation writes the new key, the old key's successor and the counter before the audit row
    // fails: all of it must roll back.
    fail_audit_of(&db, "key.rotate").await;
    let r = store.rotate_key("AK1", &key("AK1-NEW", "a1"), &secret("n"), 60).await;
    assert!(matches!(r, Err(StoreError::Db(_))), "{r:?}");
    drop_fail_audit(&db).await;
    assert_not_found(store.get_key("AK1-NEW").await, "key AK1-NEW");
    assert_eq!(store.list_keys(None).await.unwrap(), before_keys);
    assert_eq!(store.change_counter().await.unwrap(), counter);

    // Disabling an app flips the app and all its keys, or nothing.
    fail_audit_of(&db, "app.disable").await;
    assert!(store.disable_app("a1").await.is_err());
    drop_fail_audit(&db).await;
    assert!(store.get_app("a1").await.unwrap().enabled);
    assert!(store.list_keys(Some("a1")).await.unwrap().iter().all(|k| k.enabled));
    assert_eq!(store.change_counter().await.unwrap(), counter);

    // Config import of an app under a new tenant creates both, or neither.
    fail_audit_of(&db, "app.create").await;
    assert!(store.upsert_app(&app("a9", "t9")).await.is_err());
    drop_fail_audit(&db).await;
    assert_not_found(store.get_tenant("t9").await, "tenant t9");
    assert_not_found(store.get_app("a9").await, "app a9");

    // Deleting an app with keys: the cascade rolls back too.
    fail_audit_of(&db, "app.delete").await;
    assert!(store.delete_app("a1").await.is_err());
    drop_fail_audit(&db).await;
    assert_eq!(store.list_keys(None).await.unwrap(), before_keys);
    assert_eq!(store.change_counter().await.unwrap(), counter);

    // And the same operations succeed afterwards.
    store.rotate_key("AK1", &key("AK1-NEW", "a1"), &secret("n"), 60).await.unwrap();
    assert_eq!(store.change_counter().await.unwrap(), counter + 1);
}

async fn change_counter_bumps_exactly_on_changes(db: TestDb) {
    let store = open(&db, &ring()).await;
    let mut last = store.change_counter().await.unwrap();
    macro_rules! step {
        ($delta:expr, $op:expr) => {{
            let _ = $op;
            let now = store.change_counter().await.unwrap();
            assert_eq!(now - last, $delta, "counter delta after `{}`", stringify!($op));
            last = now;
        }};
    }
    step!(1, store.create_tenant(&tenant("t1")).await.unwrap());
    step!(0, store.update_tenant(&tenant("t1")).await.unwrap());
    step!(1, store.update_tenant(&TenantRecord { name: "x".into(), ..tenant("t1") }).await.unwrap());
    step!(1, store.create_app(&app("a1", "t1")).await.unwrap());
    step!(0, store.upsert_app(&app("a1", "t1")).await.unwrap());
    step!(0, store.update_app(&app("a1", "t1")).await.unwrap());
    step!(1, store.upsert_app(&app("a2", "t-new")).await.unwrap());
    step!(1, store.create_key(&key("AK1", "a1"), &secret("1")).await.unwrap());
    step!(0, store.create_key(&key("AK1", "a1"), &secret("1")).await.unwrap_err());
    step!(0, store.create_key(&key("AK bad", "a1"), &secret("1")).await.unwrap_err());
    step!(0, store.update_key(&key("AK1", "a1")).await.unwrap());
    step!(1, store.update_key(&KeyRecord { description: "d".into(), ..key("AK1", "a1") }).await.unwrap());
    step!(1, store.upsert_key(&key("AK1", "a1"), &secret("1")).await.unwrap());
    step!(0, assert_eq!(store.upsert_key(&key("AK1", "a1"), &secret("1")).await.unwrap(), Upsert::Unchanged));
    step!(1, assert_eq!(store.upsert_key(&key("AK1", "a1"), &secret("2")).await.unwrap(), Upsert::Updated));
    step!(1, store.set_key_enabled("AK1", false).await.unwrap());
    step!(0, store.set_key_enabled("AK1", false).await.unwrap());
    step!(1, store.set_key_enabled("AK1", true).await.unwrap());
    step!(0, store.touch_last_used(&[("AK1", 1_700_000_000)]).await.unwrap());
    step!(0, store.append_admin_audit("ops", "login", "console", None, None).await.unwrap());
    step!(0, store.rewrap_all().await.unwrap());
    step!(1, store.rotate_key("AK1", &key("AK2", "a1"), &secret("2"), 60).await.unwrap());
    step!(1, store.disable_app("a1").await.unwrap());
    step!(0, store.disable_app("a1").await.unwrap());
    step!(0, store.get_key("AK1").await.unwrap());
    step!(0, store.list_admin_audit(10, 0).await.unwrap());
    step!(1, store.delete_key("AK2").await.unwrap());
    step!(1, store.delete_app("a1").await.unwrap());
    step!(0, store.delete_app("a1").await.unwrap_err());
    step!(1, store.update_app(&app("a2", "t1")).await.unwrap());
    step!(1, store.delete_app("a2").await.unwrap());
    step!(1, store.delete_tenant("t-new").await.unwrap());
    let _ = last;
}

async fn secrets_never_stored_in_clear(db: TestDb) {
    let store = seeded(&db).await;
    let marker = common::random_hex(8);
    let secrets: Vec<Vec<u8>> =
        (0..5).map(|i| format!("SK-{marker}-{i}-abcdefghijklmnopqrstuvwxyz012345").into_bytes()).collect();
    store.create_key(&key("AK1", "a1"), &secrets[0]).await.unwrap();
    store.import_key(&key("AK2", "a1"), &secrets[1]).await.unwrap();
    store.upsert_key(&key("AK3", "a1"), &secrets[2]).await.unwrap();
    store.upsert_key(&key("AK3", "a1"), &secrets[3]).await.unwrap();
    store.rotate_key("AK1", &key("AK4", "a1"), &secrets[4], 60).await.unwrap();
    store
        .append_admin_audit("ops", "key.reveal", "AK1", None, Some(&serde_json::json!({ "secret": "x" })))
        .await
        .unwrap();
    // The store can read them back, so they are in there somewhere.
    let loaded = store.load_keys().await.unwrap();
    assert_eq!(loaded.len(), 4);
    store.close().await;

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut needles: Vec<Vec<u8>> = vec![marker.clone().into_bytes()];
    for s in &secrets {
        needles.push(s.clone());
        needles.push(hex(s).into_bytes());
        needles.push(hex(s).to_uppercase().into_bytes());
    }
    let rows = db.raw_rows().await;
    assert!(rows.len() >= 8, "scanned {} rows", rows.len());
    for row in &rows {
        for n in &needles {
            assert!(!row.windows(n.len()).any(|w| w == n.as_slice()), "a secret is stored in clear");
        }
    }
    if let Some(dir) = db.sqlite_dir() {
        let mut scanned_main = false;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            // SQLite may remove its -wal/-shm side files while we list the directory.
            let Ok(bytes) = std::fs::read(&path) else { continue };
            scanned_main |= path.ends_with("kg.db");
            for n in &needles {
                assert!(!bytes.windows(n.len()).any(|w| w == n.as_slice()), "secret in {}", path.display());
            }
        }
        assert!(scanned_main);
    }
    // And a different master key cannot open them.
    let other =
        Arc::new(Keyring::new([keygate_store::MasterKey::from_bytes(1, &[3u8; 32]).unwrap()]).unwrap());
    let store = Store::open(&db.url, other).await.unwrap();
    assert!(matches!(store.load_keys().await, Err(StoreError::Crypto)));
    store.close().await;
}

async fn rotation_sets_successor_and_overlap(db: TestDb) {
    let store = seeded(&db).await;
    store.create_key(&key("OLD", "a1"), &secret("old")).await.unwrap();
    store.touch_last_used(&[("OLD", 1_700_000_123)]).await.unwrap();
    let t0 = now();
    let mut new = key("NEW", "a1");
    new.created_by = "rotator".into();
    let rot = store.rotate_key("OLD", &new, &secret("new"), 3600).await.unwrap();
    let t1 = now();
    assert_eq!(rot.old.successor.as_deref(), Some("NEW"));
    let until = rot.old.overlap_until.unwrap();
    assert!(until >= t0 + 3600 && until <= t1 + 3600, "{until}");
    assert_eq!(rot.old.last_used_at, Some(1_700_000_123));
    assert_eq!(rot.new, new);
    assert_eq!(store.get_key("OLD").await.unwrap(), rot.old);
    assert_eq!(store.get_key("NEW").await.unwrap(), rot.new);
    // Both verify during the overlap: both are in the snapshot with their own secrets.
    let loaded = store.load_keys().await.unwrap();
    let secret_of =
        |ak: &str| loaded.iter().find(|k| k.record.access_key == ak).unwrap().secret.expose_secret().to_vec();
    assert_eq!(secret_of("OLD"), secret("old"));
    assert_eq!(secret_of("NEW"), secret("new"));
    // A key already in rotation cannot start another one; unknown keys are not found.
    assert_conflict(store.rotate_key("OLD", &key("NEWER", "a1"), &secret("x"), 60).await);
    assert_not_found(store.rotate_key("GHOST", &key("NEWER", "a1"), &secret("x"), 60).await, "key GHOST");
    // Metadata updates and config re-imports keep the rotation state.
    store.update_key(&KeyRecord { description: "edited".into(), ..key("OLD", "a1") }).await.unwrap();
    assert_eq!(store.upsert_key(&key("OLD", "a1"), &secret("old")).await.unwrap(), Upsert::Updated);
    let old = store.get_key("OLD").await.unwrap();
    assert_eq!((old.successor.as_deref(), old.overlap_until), (Some("NEW"), Some(until)));
    // The successor can itself be rotated (a chain), and with no overlap the old key stops now.
    let rot2 = store.rotate_key("NEW", &key("NEWEST", "a1"), &secret("newest"), 0).await.unwrap();
    assert!(rot2.old.overlap_until.unwrap() <= now());
    // Deleting a successor leaves no dangling reference; the cut-off time stays.
    store.delete_key("NEWEST").await.unwrap();
    let new_now = store.get_key("NEW").await.unwrap();
    assert_eq!(new_now.successor, None);
    assert_eq!(new_now.overlap_until, rot2.old.overlap_until);
    let audit = store.list_admin_audit(100, 0).await.unwrap();
    let rotate = audit.iter().find(|e| e.action == "key.rotate" && e.target == "OLD").unwrap();
    assert_eq!(rotate.after.as_ref().unwrap()["new"]["access_key"], "NEW");
    assert_eq!(rotate.before.as_ref().unwrap()["successor"], serde_json::Value::Null);
}

async fn disable_app_revokes_every_key(db: TestDb) {
    let store = seeded(&db).await;
    store.create_app(&app("a2", "t1")).await.unwrap();
    for ak in ["K1", "K2", "K3"] {
        store.create_key(&key(ak, "a1"), &secret(ak)).await.unwrap();
    }
    store.create_key(&key("OTHER", "a2"), &secret("o")).await.unwrap();
    store.set_key_enabled("K3", false).await.unwrap();
    assert_eq!(store.disable_app("a1").await.unwrap(), 2);
    assert!(!store.get_app("a1").await.unwrap().enabled);
    assert!(store.list_keys(Some("a1")).await.unwrap().iter().all(|k| !k.enabled));
    assert!(store.get_key("OTHER").await.unwrap().enabled, "other apps are untouched");
    let counter = store.change_counter().await.unwrap();
    assert_eq!(store.disable_app("a1").await.unwrap(), 0);
    assert_eq!(store.change_counter().await.unwrap(), counter);
    assert_not_found(store.disable_app("nope").await, "app nope");
    // Re-enabling the app does not silently re-enable revoked keys.
    store.update_app(&app("a1", "t1")).await.unwrap();
    assert!(store.list_keys(Some("a1")).await.unwrap().iter().all(|k| !k.enabled));
    let entry = &store.list_admin_audit(10, 0).await.unwrap()[1];
    assert_eq!(entry.action, "app.disable");
    assert_eq!(entry.after.as_ref().unwrap()["keys_disabled"], 2);
}

async fn rewrap_all_moves_every_row_to_the_new_master_key(db: TestDb) {
    // 1203 rows under master key 1: three batches of 500 and a short one.
    let v1 = keyring_of(&[1]);
    let store = open(&db, &v1).await;
    store.create_tenant(&tenant("t1")).await.unwrap();
    store.create_app(&app("a1", "t1")).await.unwrap();
    store.close().await;
    db.bulk_seed(&v1, "a1", "BULK", 1203).await;
    let before = db.raw_ciphertexts().await;
    assert!(before.iter().all(|(_, v, _)| *v == 1));

    // Operator adds master key 2; new writes seal with it, old rows still open with key 1.
    let both = keyring_of(&[1, 2]);
    let store = open(&db, &both).await.with_actor("ops");
    store.create_key(&key("FRESH", "a1"), &secret("fresh")).await.unwrap();
    let counter = store.change_counter().await.unwrap();
    assert_eq!(store.rewrap_all().await.unwrap(), 1203, "rows already at v2 are skipped");
    assert_eq!(store.rewrap_all().await.unwrap(), 0, "idempotent");
    assert_eq!(store.change_counter().await.unwrap(), counter, "no configuration changed");
    let audit = &store.list_admin_audit(1, 0).await.unwrap()[0];
    assert_eq!((audit.action.as_str(), audit.actor.as_str()), ("master_key.rewrap", "ops"));
    assert_eq!(audit.after.as_ref().unwrap()["rewrapped"], 1203);
    store.close().await;

    let after = db.raw_ciphertexts().await;
    assert!(after.iter().all(|(_, v, _)| *v == 2));
    // Only the wrapped data key changed: the secret's ciphertext (nonce + body) is byte-identical,
    // i.e. no secret was decrypted and re-encrypted.
    let data_at = 1 + 12 + 32 + 16;
    for ((ak_b, _, b), (ak_a, _, a)) in before.iter().zip(after.iter().filter(|(ak, _, _)| ak != "FRESH")) {
        assert_eq!(ak_b, ak_a);
        assert_eq!(b[data_at..], a[data_at..]);
        assert_ne!(b[..data_at], a[..data_at]);
    }

    // Master key 1 is retired: everything opens with key 2 alone.
    let v2 = keyring_of(&[2]);
    let store = open(&db, &v2).await;
    let loaded = store.load_keys().await.unwrap();
    assert_eq!(loaded.len(), 1204);
    for k in &loaded {
        let expected = if k.record.access_key == "FRESH" {
            secret("fresh")
        } else {
            seed_secret(&k.record.access_key).into_bytes()
        };
        assert_eq!(k.secret.expose_secret(), &expected[..]);
    }
    // A keyring without the old version cannot rewrap rows it cannot open: clear error, no harm.
    store.close().await;
    db.bulk_seed(&v1, "a1", "LATE", 3).await;
    let store = open(&db, &v2).await;
    assert!(matches!(store.rewrap_all().await, Err(StoreError::UnknownMasterKeyVersion(1))));
    // Resuming with the right keyring finishes the job.
    let store = open(&db, &both).await;
    assert_eq!(store.rewrap_all().await.unwrap(), 3);
}

async fn touch_last_used_is_batched_and_monotonic(db: TestDb) {
    let store = seeded(&db).await;
    for ak in ["A", "B", "C"] {
        store.create_key(&key(ak, "a1"), &secret(ak)).await.unwrap();
    }
    let counter = store.change_counter().await.unwrap();
    let n = store.touch_last_used(&[("A", 100), ("B", 200), ("A", 150), ("GHOST", 5)]).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(store.get_key("A").await.unwrap().last_used_at, Some(150));
    assert_eq!(store.get_key("B").await.unwrap().last_used_at, Some(200));
    assert_eq!(store.get_key("C").await.unwrap().last_used_at, None);
    // Older observations (another replica flushing late) never move it backwards.
    assert_eq!(store.touch_last_used(&[("A", 120), ("B", 200)]).await.unwrap(), 0);
    assert_eq!(store.get_key("A").await.unwrap().last_used_at, Some(150));
    // A large batch (several MySQL chunks) of mostly unknown keys, owned Strings this time.
    let mut big: Vec<(String, i64)> = (0..2500).map(|i| (format!("UNKNOWN{i}"), 10)).collect();
    big.push(("C".into(), 300));
    big.push(("A".into(), 400));
    assert_eq!(store.touch_last_used(&big).await.unwrap(), 2);
    assert_eq!(store.get_key("C").await.unwrap().last_used_at, Some(300));
    assert_eq!(store.get_key("A").await.unwrap().last_used_at, Some(400));
    assert_eq!(store.touch_last_used::<&str>(&[]).await.unwrap(), 0);
    // Usage is not configuration: no reload for replicas, no admin audit rows.
    assert_eq!(store.change_counter().await.unwrap(), counter);
    assert!(store
        .list_admin_audit(1000, 0)
        .await
        .unwrap()
        .iter()
        .all(|e| e.target != "A" || e.action == "key.create"));
    // Updating metadata does not clobber the usage time.
    store.update_key(&KeyRecord { description: "x".into(), ..key("A", "a1") }).await.unwrap();
    assert_eq!(store.get_key("A").await.unwrap().last_used_at, Some(400));
}

async fn admin_audit_records_who_what_before_after(db: TestDb) {
    let base = open(&db, &ring()).await;
    let alice = base.with_actor("alice");
    assert_eq!(base.actor(), "system");
    alice.create_tenant(&tenant("t1")).await.unwrap();
    alice.create_app(&app("a1", "t1")).await.unwrap();
    let s = secret("audit");
    alice.create_key(&key("AK1", "a1"), &s).await.unwrap();
    base.with_actor("bob").set_key_enabled("AK1", false).await.unwrap();
    base.upsert_key(&key("AK1", "a1"), &secret("replaced")).await.unwrap();
    let id = base
        .append_admin_audit(
            "carol",
            "token.create",
            "token:42",
            None,
            Some(&serde_json::json!({"name": "ci", "token": "kgt_live_abcdef", "client_secret": "cs"})),
        )
        .await
        .unwrap();

    let all = base.list_admin_audit(100, 0).await.unwrap();
    let summary: Vec<(&str, &str, &str)> =
        all.iter().map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("carol", "token.create", "token:42"),
            ("system", "key.update", "AK1"),
            ("bob", "key.disable", "AK1"),
            ("alice", "key.create", "AK1"),
            ("alice", "app.create", "a1"),
            ("alice", "tenant.create", "t1"),
        ]
    );
    assert_eq!(all[0].id, id);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id && w[0].at >= w[1].at));
    let now = now();
    assert!(all.iter().all(|e| (now - 60..=now + 1).contains(&e.at)));
    // before/after are the records, minus secrets.
    assert_eq!(all[5].before, None);
    assert_eq!(all[5].after.as_ref().unwrap()["name"], "Tenant t1");
    let disable = &all[2];
    assert_eq!(disable.before.as_ref().unwrap()["enabled"], true);
    assert_eq!(disable.after.as_ref().unwrap()["enabled"], false);
    assert_eq!(all[1].after.as_ref().unwrap()["secret_replaced"], true);
    assert_eq!(all[0].after.as_ref().unwrap()["token"], "[redacted]");
    assert_eq!(all[0].after.as_ref().unwrap()["client_secret"], "[redacted]");
    assert_eq!(all[0].after.as_ref().unwrap()["name"], "ci");
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !text.contains("SECRET-audit") && !text.contains("SECRET-replaced") && !text.contains("kgt_live")
    );
    // Paging.
    let page = base.list_admin_audit(2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [all[2].id, all[3].id]);
    assert!(base.list_admin_audit(10, 100).await.unwrap().is_empty());
}

async fn admin_tokens_are_hashed_scoped_and_revocable(db: TestDb) {
    let store = seeded(&db).await.with_actor("root");
    store.create_tenant(&tenant("t2")).await.unwrap();
    store.create_app(&app("b1", "t2")).await.unwrap();

    let (ops, ops_token) =
        store.create_admin_token(&AdminTokenRecord::new("ops", AdminRole::GatewayAdmin, None)).await.unwrap();
    assert!(ops.id.starts_with("tok_") && ops_token.starts_with("kgadm_"));
    assert_eq!(ops.created_by, "root");
    let mut dev = AdminTokenRecord::new("dev", AdminRole::TenantDeveloper, Some("t1"));
    dev.app_grants = vec!["a1".into()];
    let (dev, dev_token) = store.create_admin_token(&dev).await.unwrap();

    // Authentication by token; unknown, malformed and foreign-prefix tokens are simply unknown.
    assert_eq!(store.authenticate_admin_token(&ops_token).await.unwrap().unwrap(), ops);
    assert_eq!(store.authenticate_admin_token(&dev_token).await.unwrap().unwrap().app_grants, ["a1"]);
    for bad in ["", "kgadm_", "kgadm_nope", "Bearer x", &ops_token[..ops_token.len() - 1]] {
        assert!(store.authenticate_admin_token(bad).await.unwrap().is_none(), "{bad}");
    }

    // Grants must be apps of the token's tenant; tenants must exist; nothing half-written.
    let mut wrong = AdminTokenRecord::new("x", AdminRole::TenantDeveloper, Some("t1"));
    wrong.app_grants = vec!["b1".into()];
    assert_invalid(store.create_admin_token(&wrong).await, "token.app_grants[0]");
    assert_not_found(
        store.create_admin_token(&AdminTokenRecord::new("x", AdminRole::TenantAdmin, Some("nope"))).await,
        "tenant nope",
    );
    assert_invalid(
        store.create_admin_token(&AdminTokenRecord::new("x", AdminRole::GatewayAdmin, Some("t1"))).await,
        "token.tenant_id",
    );
    assert_eq!(store.list_admin_tokens(None).await.unwrap().len(), 2);
    assert_eq!(store.list_admin_tokens(Some("t1")).await.unwrap(), std::slice::from_ref(&dev));
    assert!(store.list_admin_tokens(Some("t2")).await.unwrap().is_empty());

    // The stored form is a hash: the token text is nowhere in the database.
    let rows = db.raw_rows().await;
    assert!(rows.iter().any(|r| String::from_utf8_lossy(r).contains(&ops.id)), "dump covers admin_tokens");
    for t in [&ops_token, &dev_token] {
        assert!(!rows.iter().any(|r| r.windows(t.len() - 6).any(|w| w == t[6..].as_bytes())));
    }

    // Revocation is immediate and idempotent, and audited.
    let revoked = store.revoke_admin_token(&dev.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(store.authenticate_admin_token(&dev_token).await.unwrap().is_none());
    assert_eq!(store.revoke_admin_token(&dev.id).await.unwrap(), revoked);
    assert_not_found(store.revoke_admin_token("tok_missing").await, "admin token tok_missing");
    let actions: Vec<String> =
        store.list_admin_audit(10, 0).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions[..3], ["admin_token.revoke", "admin_token.create", "admin_token.create"]);
}

async fn concurrent_writers_do_not_lose_updates(db: TestDb) {
    let store = seeded(&db).await;
    let counter = store.change_counter().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.create_key(&key(&format!("C{i:02}"), "a1"), &secret("c")).await.unwrap();
            store.set_key_enabled(&format!("C{i:02}"), false).await.unwrap();
        }));
    }
    // Two writers racing for one access key: exactly one wins.
    let racers: Vec<_> = (0..2)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create_key(&key("SAME", "a1"), &secret(&format!("r{i}"))).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut wins = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.change_counter().await.unwrap(), counter + 25);
    assert_eq!(store.list_keys(Some("a1")).await.unwrap().len(), 13);
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

// ---- not per backend ----

#[tokio::test]
async fn unreachable_servers_fail_with_the_password_masked() {
    for url in [
        "postgres://kg:hunter2@127.0.0.1:1/keygate",
        "postgresql://kg:hunter2@127.0.0.1:1/keygate",
        "mysql://kg:hunter2@127.0.0.1:1/keygate",
        "mariadb://kg:hunter2@127.0.0.1:1/keygate",
        "sqlite:///nonexistent-dir-for-keygate/hunter2/kg.db",
    ] {
        let err = Store::open(url, ring()).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Connect { .. }), "{url}: {text}");
        if !url.starts_with("sqlite") {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("kg:***@127.0.0.1:1"), "{text}");
        }
    }
    let err = Store::open("redis://u:hunter2@h/0", ring()).await.unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)) && !err.to_string().contains("hunter2"));
}

#[tokio::test]
async fn store_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(&format!("sqlite://{}", dir.path().join("kg.db").display()), ring()).await.unwrap();
    // Axum handlers and spawned tasks need Send futures from every repository call.
    assert_send(&store.create_key(&key("A", "a"), b"s"));
    assert_send(&store.rotate_key("A", &key("B", "a"), b"s", 1));
    assert_send(&store.rewrap_all());
    assert_send(&store.touch_last_used(&[("A", 1)]));
    assert_send(&store.load_keys());
}

async fn providers_and_write_only_secrets(db: TestDb) {
    let store = seeded(&db).await.with_actor("ops");
    store.create_tenant(&tenant("t2")).await.unwrap();
    let doc = serde_json::json!({"base_url": "https://api.example.com", "paths": ["POST /v1/*"], "recipe": {"type": "hmac_header"}});
    let rec = ProviderRecord {
        id: "pay-1".into(),
        tenant_id: "t1".into(),
        config: doc.clone(),
        created_at: 0,
        updated_at: 0,
        updated_by: String::new(),
    };
    let c0 = store.change_counter().await.unwrap();
    let (saved, up) = store.put_provider(&rec).await.unwrap();
    assert_eq!(up, Upsert::Created);
    assert_eq!(saved.updated_by, "ops");
    assert!(store.change_counter().await.unwrap() > c0, "replicas must see the change");
    let mut moved = rec.clone();
    moved.tenant_id = "t2".into();
    assert_conflict(store.put_provider(&moved).await);
    let mut missing = rec.clone();
    missing.id = "pay-2".into();
    missing.tenant_id = "nope".into();
    assert_not_found(store.put_provider(&missing).await, "tenant nope");
    let mut bad = rec.clone();
    bad.id = "bad id".into();
    assert_invalid(store.put_provider(&bad).await, "provider.id");
    let mut updated = rec.clone();
    updated.config["timeout_ms"] = 500.into();
    let (after, up) = store.put_provider(&updated).await.unwrap();
    assert_eq!(up, Upsert::Updated);
    assert_eq!(after.created_at, saved.created_at);
    assert_eq!(store.get_provider("pay-1").await.unwrap().config["timeout_ms"], 500);
    assert_eq!(store.list_providers(Some("t1")).await.unwrap().len(), 1);
    assert!(store.list_providers(Some("t2")).await.unwrap().is_empty());

    let marker = common::random_hex(8);
    let sk = format!("PROVIDER-SECRET-{marker}-0123456789");
    let meta = store.put_provider_secret("pay-1", "secret", sk.as_bytes()).await.unwrap();
    assert_eq!(meta.byte_len, sk.len() as i64);
    store.put_provider_secret("pay-1", "key_id", b"kid-1").await.unwrap();
    store.put_provider_secret("pay-1", "key_id", b"kid-2").await.unwrap(); // replaced
    assert_invalid(store.put_provider_secret("pay-1", "bad name", b"x").await, "secret.name");
    assert_invalid(store.put_provider_secret("pay-1", "empty", b"").await, "secret.value");
    assert_not_found(store.put_provider_secret("ghost", "secret", b"x").await, "provider ghost");
    let names: Vec<_> =
        store.list_provider_secrets("pay-1").await.unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["key_id", "secret"]);
    let loaded = store.load_providers().await.unwrap();
    assert_eq!(loaded.len(), 1);
    let secrets: std::collections::BTreeMap<_, _> =
        loaded[0].secrets.iter().map(|(n, v)| (n.clone(), v.to_vec())).collect();
    assert_eq!(secrets["secret"], sk.as_bytes());
    assert_eq!(secrets["key_id"], b"kid-2");
    assert!(!format!("{loaded:?}").contains(&marker), "Debug shows names only");
    let audit = store.list_admin_audit(50, 0).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "provider.secret.put" && a.target == "pay-1/secret"));
    store.close().await;
    for row in db.raw_rows().await {
        assert!(
            !row.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "a provider secret is stored in clear"
        );
    }

    // Another master key cannot open them; rewrap moves them to a new key.
    let store = Store::open(&db.url, keyring_of(&[1, 2])).await.unwrap();
    assert!(store.rewrap_all().await.unwrap() >= 2);
    store.close().await;
    let store = Store::open(&db.url, keyring_of(&[2])).await.unwrap();
    let loaded = store.load_providers().await.unwrap();
    assert_eq!(loaded[0].secrets.len(), 2);
    store.close().await;
    let other =
        Arc::new(Keyring::new([keygate_store::MasterKey::from_bytes(2, &[9u8; 32]).unwrap()]).unwrap());
    let store = Store::open(&db.url, other).await.unwrap();
    assert!(matches!(store.load_providers().await, Err(StoreError::Crypto)));
    store.close().await;

    let store = Store::open(&db.url, keyring_of(&[2])).await.unwrap();
    store.delete_provider_secret("pay-1", "key_id").await.unwrap();
    assert_not_found(store.delete_provider_secret("pay-1", "key_id").await, "secret pay-1/key_id");
    store.delete_provider("pay-1").await.unwrap();
    assert_not_found(store.get_provider("pay-1").await, "provider pay-1");
    assert!(store.load_providers().await.unwrap().is_empty());
    store.close().await;
}

async fn config_versions_and_the_publish_fence(db: TestDb) {
    let store = seeded(&db).await.with_actor("alice");
    let doc1 = "version = 1\n[[tenants]]\nid = \"t1\"\nname = 'it''s \"quoted\" ü'\n";
    let v1 = store.add_config_version("t1", "first", doc1).await.unwrap().unwrap();
    assert_eq!((v1.version, v1.created_by.as_str(), v1.comment.as_str()), (1, "alice", "first"));
    // The same document again is no new version.
    assert!(store.add_config_version("t1", "again", doc1).await.unwrap().is_none());
    let big = format!("{doc1}# {}\n", "x".repeat(200_000));
    let v2 = store.add_config_version("t1", "", &big).await.unwrap().unwrap();
    assert_eq!(v2.version, 2);
    let all = store.list_config_versions("t1").await.unwrap();
    assert_eq!(all.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(all[0].document, doc1, "documents round-trip byte for byte");
    assert_eq!(all[1].document, big);
    assert!(store.list_config_versions("t2").await.unwrap().is_empty());
    assert_not_found(store.add_config_version("nope", "", doc1).await, "tenant nope");
    assert_invalid(store.add_config_version("t1", &"c".repeat(2000), "x").await, "version.comment");

    // The fence: one holder at a time; lowering it bumps the counter once.
    let (c0, up) = store.change_state().await.unwrap();
    assert!(!up);
    assert!(store.begin_publish(60).await.unwrap());
    assert!(!store.begin_publish(60).await.unwrap(), "a second publisher waits");
    let (c1, up) = store.change_state().await.unwrap();
    assert!(up);
    assert_eq!(c1, c0, "raising the fence is not a change");
    store.end_publish().await.unwrap();
    let (c2, up) = store.change_state().await.unwrap();
    assert!(!up);
    assert_eq!(c2, c0 + 1);
    // An expired fence (a publisher that died) does not block the next one.
    assert!(store.begin_publish(1).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(!store.change_state().await.unwrap().1, "expired");
    assert!(store.begin_publish(60).await.unwrap());
    store.end_publish().await.unwrap();
    store.close().await;
}

async fn tenant_objects_are_scoped_audited_and_counted(db: TestDb) {
    use keygate_store::{ObjectKind, TenantObject, Upsert};
    let store = seeded(&db).await.with_actor("alice");
    store.create_tenant(&tenant("t2")).await.unwrap();
    let obj = |t: &str, kind, name: &str, config| TenantObject {
        tenant_id: t.into(),
        kind,
        name: name.into(),
        config,
        created_at: 0,
        updated_at: 0,
        updated_by: String::new(),
    };
    let route = obj(
        "t1",
        ObjectKind::Route,
        "orders",
        serde_json::json!({"path_prefix": "/t1/orders", "upstream": "http://u:1"}),
    );
    let c0 = store.change_counter().await.unwrap();
    let (saved, up) = store.put_tenant_object(&route).await.unwrap();
    assert_eq!(up, Upsert::Created);
    assert_eq!(saved.updated_by, "alice");
    assert!(saved.created_at > 0);
    let c1 = store.change_counter().await.unwrap();
    assert!(c1 > c0, "a new object is a change");
    // The same document again writes nothing and is not a change.
    let (_, up) = store.put_tenant_object(&route).await.unwrap();
    assert_eq!(up, Upsert::Unchanged);
    assert_eq!(store.change_counter().await.unwrap(), c1);
    // Same name, other kind and other tenant: independent objects.
    let rule = obj(
        "t1",
        ObjectKind::AlertRule,
        "orders",
        serde_json::json!({"kind": "replays", "per": "app", "threshold": 3}),
    );
    store.put_tenant_object(&rule).await.unwrap();
    let other = obj(
        "t2",
        ObjectKind::Route,
        "orders",
        serde_json::json!({"path_prefix": "/t2/orders", "upstream": "http://u:1"}),
    );
    store.put_tenant_object(&other).await.unwrap();
    // Quotes and non-ASCII in documents round-trip.
    let mut updated = route.clone();
    updated.config = serde_json::json!({"path_prefix": "/t1/orders", "upstream": "http://u:2", "note": "it's \"ü\"; DROP TABLE x"});
    let (after, up) = store.put_tenant_object(&updated).await.unwrap();
    assert_eq!(up, Upsert::Updated);
    assert_eq!(after.created_at, saved.created_at);
    let got = store.get_tenant_object("t1", ObjectKind::Route, "orders").await.unwrap();
    assert_eq!(got.config, updated.config);

    let names = |v: Vec<TenantObject>| v.into_iter().map(|o| o.target()).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_tenant_objects(None, None).await.unwrap()),
        ["t1/alert_rule/orders", "t1/route/orders", "t2/route/orders"]
    );
    assert_eq!(
        names(store.list_tenant_objects(Some("t1"), Some(ObjectKind::Route)).await.unwrap()),
        ["t1/route/orders"]
    );
    assert_eq!(
        names(store.list_tenant_objects(None, Some(ObjectKind::Route)).await.unwrap()),
        ["t1/route/orders", "t2/route/orders"]
    );
    assert_eq!(names(store.list_tenant_objects(Some("t2"), None).await.unwrap()), ["t2/route/orders"]);

    // Refusals name the field or the object.
    assert_not_found(
        store.put_tenant_object(&obj("nope", ObjectKind::Route, "x", serde_json::json!({}))).await,
        "tenant nope",
    );
    assert_invalid(
        store.put_tenant_object(&obj("t1", ObjectKind::Route, "bad name", serde_json::json!({}))).await,
        "object.name",
    );
    assert_invalid(
        store.put_tenant_object(&obj("t1", ObjectKind::Route, "x", serde_json::json!([1]))).await,
        "object.config",
    );
    let huge = serde_json::json!({"x": "y".repeat(70_000)});
    assert_invalid(store.put_tenant_object(&obj("t1", ObjectKind::Route, "x", huge)).await, "object.config");
    assert_not_found(
        store.get_tenant_object("t2", ObjectKind::AlertRule, "orders").await,
        "alert_rule t2/orders",
    );
    assert_not_found(store.delete_tenant_object("t1", ObjectKind::Route, "ghost").await, "route t1/ghost");
    assert!("bogus".parse::<ObjectKind>().is_err());

    // Audit: who, what, before and after.
    let audit = store.list_admin_audit(50, 0).await.unwrap();
    let actions: Vec<_> =
        audit.iter().filter(|e| e.target.ends_with("/orders")).map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"route.create")
            && actions.contains(&"route.update")
            && actions.contains(&"alert_rule.create"),
        "{actions:?}"
    );

    let c2 = store.change_counter().await.unwrap();
    store.delete_tenant_object("t1", ObjectKind::Route, "orders").await.unwrap();
    assert!(store.change_counter().await.unwrap() > c2);
    assert_not_found(store.get_tenant_object("t1", ObjectKind::Route, "orders").await, "route t1/orders");
    assert!(store
        .list_admin_audit(5, 0)
        .await
        .unwrap()
        .iter()
        .any(|e| e.action == "route.delete" && e.target == "t1/route/orders"));

    // Objects go with their tenant.
    store.delete_tenant("t2").await.unwrap();
    assert!(store.list_tenant_objects(Some("t2"), None).await.unwrap().is_empty());
    store.close().await;
}
