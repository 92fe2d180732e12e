// Repository behaviour on a real SQLite file: idempotent upserts, secrets encrypted at rest.

#![allow(clippy::unwrap_used)]
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
