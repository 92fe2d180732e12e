// SQLite queries for the repositories in lib.rs. One module per backend keeps each dialect's
// SQL readable; the public API and its tests are shared.

use secrecy::SecretBox;
use sqlx::{Row, SqlitePool};
use subtle::ConstantTimeEq;

use crate::{now_secs, AppRecord, KeyRecord, KeyWithSecret, Keyring, StoreError, Upsert};

pub(crate) async fn upsert_app(pool: &SqlitePool, app: &AppRecord) -> Result<Upsert, StoreError> {
    let mut tx = pool.begin().await?;
    let existing = sqlx::query("SELECT tenant_id, name, enabled FROM apps WHERE id = ?")
        .bind(&app.id)
        .fetch_optional(&mut *tx)
        .await?;
    let now = now_secs();
    let outcome = match existing {
        None => {
            sqlx::query("INSERT INTO apps (id, tenant_id, name, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(&app.id)
                .bind(&app.tenant_id)
                .bind(&app.name)
                .bind(app.enabled)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            Upsert::Created
        }
        Some(row) => {
            let same = row.try_get::<String, _>("tenant_id")? == app.tenant_id
                && row.try_get::<String, _>("name")? == app.name
                && row.try_get::<bool, _>("enabled")? == app.enabled;
            if same {
                Upsert::Unchanged
            } else {
                sqlx::query("UPDATE apps SET tenant_id = ?, name = ?, enabled = ?, updated_at = ? WHERE id = ?")
                    .bind(&app.tenant_id)
                    .bind(&app.name)
                    .bind(app.enabled)
                    .bind(now)
                    .bind(&app.id)
                    .execute(&mut *tx)
                    .await?;
                Upsert::Updated
            }
        }
    };
    if outcome != Upsert::Unchanged {
        bump(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(outcome)
}

pub(crate) async fn upsert_key(
    pool: &SqlitePool,
    keyring: &Keyring,
    key: &KeyRecord,
    secret: &[u8],
) -> Result<Upsert, StoreError> {
    let aad = key.access_key.as_bytes();
    let settings = serde_json::to_string(&key.scheme_settings).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut tx = pool.begin().await?;
    let existing = sqlx::query("SELECT * FROM keys WHERE access_key = ?")
        .bind(&key.access_key)
        .fetch_optional(&mut *tx)
        .await?;
    let now = now_secs();
    let outcome = match existing {
        None => {
            let (version, blob) = keyring.seal(aad, secret)?;
            sqlx::query(
                "INSERT INTO keys (access_key, app_id, scheme, scheme_settings, enabled, valid_from, valid_to, \
                 timestamp_window_secs, secret_ciphertext, master_key_version, description, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&key.access_key)
            .bind(&key.app_id)
            .bind(&key.scheme)
            .bind(&settings)
            .bind(key.enabled)
            .bind(key.valid_from)
            .bind(key.valid_to)
            .bind(i64::from(key.timestamp_window_secs))
            .bind(blob)
            .bind(i64::from(version))
            .bind(&key.description)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Upsert::Created
        }
        Some(row) => {
            let stored = row_to_record(&row)?;
            let version = u32::try_from(row.try_get::<i64, _>("master_key_version")?)
                .map_err(|_| StoreError::Invalid("master_key_version".into()))?;
            let blob: Vec<u8> = row.try_get("secret_ciphertext")?;
            let old_secret = keyring.open(version, aad, &blob)?;
            let same_secret: bool = old_secret.as_slice().ct_eq(secret).into();
            if stored == *key && same_secret {
                Upsert::Unchanged
            } else {
                let (version, blob) = if same_secret { (version, blob) } else { keyring.seal(aad, secret)? };
                sqlx::query(
                    "UPDATE keys SET app_id = ?, scheme = ?, scheme_settings = ?, enabled = ?, valid_from = ?, \
                     valid_to = ?, timestamp_window_secs = ?, secret_ciphertext = ?, master_key_version = ?, \
                     description = ?, updated_at = ? WHERE access_key = ?",
                )
                .bind(&key.app_id)
                .bind(&key.scheme)
                .bind(&settings)
                .bind(key.enabled)
                .bind(key.valid_from)
                .bind(key.valid_to)
                .bind(i64::from(key.timestamp_window_secs))
                .bind(blob)
                .bind(i64::from(version))
                .bind(&key.description)
                .bind(now)
                .bind(&key.access_key)
                .execute(&mut *tx)
                .await?;
                Upsert::Updated
            }
        }
    };
    if outcome != Upsert::Unchanged {
        bump(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(outcome)
}

pub(crate) async fn load_keys(pool: &SqlitePool, keyring: &Keyring) -> Result<Vec<KeyWithSecret>, StoreError> {
    let rows = sqlx::query("SELECT * FROM keys ORDER BY access_key").fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let record = row_to_record(&row)?;
        let version = u32::try_from(row.try_get::<i64, _>("master_key_version")?)
            .map_err(|_| StoreError::Invalid("master_key_version".into()))?;
        let blob: Vec<u8> = row.try_get("secret_ciphertext")?;
        let plain = keyring.open(version, record.access_key.as_bytes(), &blob)?;
        let secret = SecretBox::new(plain.to_vec().into_boxed_slice());
        out.push(KeyWithSecret { record, secret });
    }
    Ok(out)
}

pub(crate) async fn list_apps(pool: &SqlitePool) -> Result<Vec<AppRecord>, StoreError> {
    let rows = sqlx::query("SELECT id, tenant_id, name, enabled FROM apps ORDER BY id").fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            Ok(AppRecord {
                id: r.try_get("id")?,
                tenant_id: r.try_get("tenant_id")?,
                name: r.try_get("name")?,
                enabled: r.try_get("enabled")?,
            })
        })
        .collect()
}

pub(crate) async fn change_counter(pool: &SqlitePool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT value FROM change_counter WHERE id = 1").fetch_one(pool).await?)
}

async fn bump(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>) -> Result<(), StoreError> {
    sqlx::query("UPDATE change_counter SET value = value + 1 WHERE id = 1").execute(&mut **tx).await?;
    Ok(())
}

fn row_to_record(row: &sqlx::sqlite::SqliteRow) -> Result<KeyRecord, StoreError> {
    let settings: String = row.try_get("scheme_settings")?;
    Ok(KeyRecord {
        access_key: row.try_get("access_key")?,
        app_id: row.try_get("app_id")?,
        scheme: row.try_get("scheme")?,
        scheme_settings: serde_json::from_str(&settings).map_err(|e| StoreError::Invalid(e.to_string()))?,
        enabled: row.try_get("enabled")?,
        valid_from: row.try_get("valid_from")?,
        valid_to: row.try_get("valid_to")?,
        timestamp_window_secs: u32::try_from(row.try_get::<i64, _>("timestamp_window_secs")?)
            .map_err(|_| StoreError::Invalid("timestamp_window_secs".into()))?,
        description: row.try_get("description")?,
    })
}
