// Repository behaviour on a real SQLite file: idempotent upserts, secrets encrypted at rest.

#![allow(clippy::unwrap_used)]
use std::str::FromStr;
use std::sync::Arc;

use keygate_store::{AppRecord, KeyRecord, Keyring, MasterKey, Store, Upsert};
use secrecy::ExposeSecret;

fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::new([MasterKey::from_bytes(1, &[9u8; 32]).unwrap()]).unwrap())
}

fn key(secret_marker: &str) -> (KeyRecord, Vec<u8>) {
    (
        KeyRecord {
            access_key: "AKIDTEST0001".into(),
            app_id: "acme".into(),
            scheme: "kg1-hmac-sha256".into(),
            scheme_settings: serde_json::json!({}),
            enabled: true,
            valid_from: None,
            valid_to: Some(4_102_444_800),
            timestamp_window_secs: 300,
            description: "test key".into(),
            ..Default::default()
        },
        format!("secret-{secret_marker}-0123456789abcdef").into_bytes(),
    )
}

#[tokio::test]
async fn upserts_are_idempotent_and_secrets_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kg.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url, keyring()).await.unwrap();

    let app =
        AppRecord { id: "acme".into(), tenant_id: "default".into(), name: "Acme".into(), enabled: true };
    assert_eq!(store.upsert_app(&app).await.unwrap(), Upsert::Created);
    assert_eq!(store.upsert_app(&app).await.unwrap(), Upsert::Unchanged);
    let c0 = store.change_counter().await.unwrap();

    let (rec, secret) = key("FINDME");
    assert_eq!(store.upsert_key(&rec, &secret).await.unwrap(), Upsert::Created);
    assert_eq!(store.upsert_key(&rec, &secret).await.unwrap(), Upsert::Unchanged);
    let c1 = store.change_counter().await.unwrap();
    assert_eq!(c1, c0 + 1);

    // Metadata change and secret change are both updates.
    let mut rec2 = rec.clone();
    rec2.enabled = false;
    assert_eq!(store.upsert_key(&rec2, &secret).await.unwrap(), Upsert::Updated);
    let (_, secret2) = key("OTHER");
    assert_eq!(store.upsert_key(&rec2, &secret2).await.unwrap(), Upsert::Updated);
    assert!(store.change_counter().await.unwrap() > c1);

    let keys = store.load_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].record, rec2);
    assert_eq!(keys[0].secret.expose_secret(), &secret2[..]);
    store.close().await;

    // Neither secret appears anywhere in the database files.
    let mut scanned_main = false;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        // SQLite may remove its -wal/-shm side files while we list the directory.
        let Ok(bytes) = std::fs::read(&path) else { continue };
        scanned_main |= path == dir.path().join("kg.db");
        for s in [&secret[..], &secret2[..], b"FINDME", b"OTHER-0123"] {
            assert!(!bytes.windows(s.len()).any(|w| w == s), "secret found in database file");
        }
    }
    assert!(scanned_main, "the database file itself was not scanned");

    // A different master key cannot open the rows.
    let other = Arc::new(Keyring::new([MasterKey::from_bytes(1, &[8u8; 32]).unwrap()]).unwrap());
    let store = Store::open(&url, other).await.unwrap();
    assert!(store.load_keys().await.is_err());
}

#[tokio::test]
async fn key_for_unknown_app_is_rejected_by_foreign_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kg.db").display());
    let store = Store::open(&url, keyring()).await.unwrap();
    let (rec, secret) = key("x");
    assert!(store.upsert_key(&rec, &secret).await.is_err());
    assert!(store.load_keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn databases_from_the_first_schema_upgrade_in_place() {
    // A database migrated by the previous release (0001 only), with an app and a key in it.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kg.db").display());
    let old = dir.path().join("old-migrations");
    std::fs::create_dir(&old).unwrap();
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(manifest.join("migrations/sqlite/0001_init.sql"), old.join("0001_init.sql")).unwrap();
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
    let ring = keyring();
    let (version, blob) = ring.seal(b"AKOLD0001", b"old-secret").unwrap();
    sqlx::query(
        "INSERT INTO apps (id, tenant_id, name, enabled, created_at, updated_at) VALUES ('acme', 'default', 'Acme', 1, 0, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO keys (access_key, app_id, scheme, scheme_settings, enabled, valid_from, valid_to, \
         timestamp_window_secs, secret_ciphertext, master_key_version, description, created_at, updated_at) \
         VALUES ('AKOLD0001', 'acme', 'kg1-hmac-sha256', '{}', 1, NULL, NULL, 300, ?, ?, 'old', 0, 0)",
    )
    .bind(blob)
    .bind(i64::from(version))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    // This release applies 0002 on open: the tenant appears, the key gains empty policies.
    let store = Store::open(&url, ring).await.unwrap();
    assert_eq!(
        store.list_tenants().await.unwrap(),
        vec![keygate_store::TenantRecord { id: "default".into(), name: "default".into() }]
    );
    let keys = store.load_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].secret.expose_secret(), b"old-secret");
    let k = &keys[0].record;
    assert!(k.scopes.is_empty() && k.allowed_cidrs.is_empty() && k.rate_limit.is_none());
    assert_eq!((k.successor.as_deref(), k.created_by.as_str(), k.description.as_str()), (None, "", "old"));
    // The tenant guard that replaces a foreign key on SQLite holds.
    assert!(store.delete_tenant("default").await.is_err());
    let orphan = AppRecord { id: "x".into(), tenant_id: "nope".into(), name: "x".into(), enabled: true };
    assert!(matches!(store.create_app(&orphan).await, Err(keygate_store::StoreError::NotFound(_))));
    store.close().await;
    // Below the repository too: the triggers refuse an orphan app and a tenant delete.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let err = sqlx::query("INSERT INTO apps (id, tenant_id, name, enabled, created_at, updated_at) VALUES ('x', 'nope', 'x', 1, 0, 0)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
    assert!(sqlx::query("DELETE FROM tenants WHERE id = 'default'").execute(&pool).await.is_err());
    assert!(sqlx::query("UPDATE apps SET tenant_id = 'nope' WHERE id = 'acme'")
        .execute(&pool)
        .await
        .is_err());
}
