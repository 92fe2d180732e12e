// SQLite queries behind the repository flows in repo.rs (the embedded default backend).
// SQL and binding only: no business rules, and every value is a bound parameter.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::repo::{AuditInsert, Tx};
use crate::rows::{
    bind_key_columns, bind_key_update, key_columns, open_row, unwrap_open_error, AppRow, AuditRow,
    CiphertextRow, KeyColumns, KeyRow, SealedKeyRow, StoredKey, TenantRow,
};
use crate::{
    connect_error, migrate_error, write_error, AdminAuditEntry, AppRecord, KeyRecord, KeyWithSecret, Keyring,
    StoreError, TenantRecord,
};

type R<T> = Result<T, StoreError>;

pub(crate) async fn open(url: &str) -> R<SqlitePool> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| connect_error(url, e))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|e| connect_error(url, e))?;
    sqlx::migrate!("migrations/sqlite").run(&pool).await.map_err(|e| migrate_error(url, e))?;
    Ok(pool)
}

/// `BEGIN IMMEDIATE` takes the write lock up front (waiting up to the busy timeout), so a
/// read-then-write flow never fails to upgrade a stale read snapshot.
pub(crate) async fn begin_write(pool: &SqlitePool) -> R<SqliteTx> {
    Ok(SqliteTx(pool.begin_with("BEGIN IMMEDIATE").await?))
}

pub(crate) async fn begin_read(pool: &SqlitePool) -> R<SqliteTx> {
    Ok(SqliteTx(pool.begin().await?))
}

/// Streams every key, decrypted, into `f`; returns how many.
pub(crate) async fn for_each_key(
    pool: &SqlitePool,
    keyring: &Keyring,
    f: &mut (dyn FnMut(KeyWithSecret) + Send),
) -> R<usize> {
    // Collecting `()` allocates nothing: each key lives only until `f` takes it.
    let done = sqlx::query(concat!(
        "SELECT ",
        key_columns!(),
        ", master_key_version, secret_ciphertext FROM keys ORDER BY access_key"
    ))
    .try_map(|row: sqlx::sqlite::SqliteRow| {
        f(open_row(row, keyring)?);
        Ok(())
    })
    .fetch_all(pool)
    .await
    .map_err(unwrap_open_error)?;
    Ok(done.len())
}

#[derive(Debug)]
pub(crate) struct SqliteTx(Transaction<'static, Sqlite>);

impl Tx for SqliteTx {
    async fn tenant_get(&mut self, id: &str, _lock: bool) -> R<Option<TenantRecord>> {
        let row = sqlx::query_as::<_, TenantRow>("SELECT id, name FROM tenants WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.0)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn tenant_list(&mut self) -> R<Vec<TenantRecord>> {
        let rows = sqlx::query_as::<_, TenantRow>("SELECT id, name FROM tenants ORDER BY id")
            .fetch_all(&mut *self.0)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn tenant_insert(&mut self, t: &TenantRecord, now: i64) -> R<()> {
        sqlx::query("INSERT INTO tenants (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(now)
            .bind(now)
            .execute(&mut *self.0)
            .await
            .map_err(|e| write_error(e, || format!("tenant {} already exists", t.id), String::new))?;
        Ok(())
    }

    async fn tenant_update(&mut self, t: &TenantRecord, now: i64) -> R<()> {
        sqlx::query("UPDATE tenants SET name = ?, updated_at = ? WHERE id = ?")
            .bind(&t.name)
            .bind(now)
            .bind(&t.id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn tenant_delete(&mut self, id: &str) -> R<()> {
        sqlx::query("DELETE FROM tenants WHERE id = ?").bind(id).execute(&mut *self.0).await?;
        Ok(())
    }

    async fn tenant_app_count(&mut self, id: &str) -> R<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM apps WHERE tenant_id = ?")
            .bind(id)
            .fetch_one(&mut *self.0)
            .await?)
    }

    async fn app_get(&mut self, id: &str, _lock: bool) -> R<Option<AppRecord>> {
        let row = sqlx::query_as::<_, AppRow>("SELECT id, tenant_id, name, enabled FROM apps WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.0)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn app_list(&mut self, tenant_id: Option<&str>) -> R<Vec<AppRecord>> {
        let rows = sqlx::query_as::<_, AppRow>(
            "SELECT id, tenant_id, name, enabled FROM apps WHERE (? IS NULL OR tenant_id = ?) ORDER BY id",
        )
        .bind(tenant_id)
        .bind(tenant_id)
        .fetch_all(&mut *self.0)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn app_insert(&mut self, a: &AppRecord, now: i64) -> R<()> {
        sqlx::query(
            "INSERT INTO apps (id, tenant_id, name, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.id)
        .bind(&a.tenant_id)
        .bind(&a.name)
        .bind(a.enabled)
        .bind(now)
        .bind(now)
        .execute(&mut *self.0)
        .await
        .map_err(|e| {
            write_error(e, || format!("app {} already exists", a.id), || format!("tenant {}", a.tenant_id))
        })?;
        Ok(())
    }

    async fn app_update(&mut self, a: &AppRecord, now: i64) -> R<()> {
        sqlx::query("UPDATE apps SET tenant_id = ?, name = ?, enabled = ?, updated_at = ? WHERE id = ?")
            .bind(&a.tenant_id)
            .bind(&a.name)
            .bind(a.enabled)
            .bind(now)
            .bind(&a.id)
            .execute(&mut *self.0)
            .await
            .map_err(|e| write_error(e, String::new, || format!("tenant {}", a.tenant_id)))?;
        Ok(())
    }

    async fn app_delete(&mut self, id: &str) -> R<()> {
        sqlx::query("DELETE FROM apps WHERE id = ?").bind(id).execute(&mut *self.0).await?;
        Ok(())
    }

    async fn app_disable_keys(&mut self, app_id: &str, now: i64) -> R<u64> {
        let done =
            sqlx::query("UPDATE keys SET enabled = 0, updated_at = ? WHERE app_id = ? AND enabled <> 0")
                .bind(now)
                .bind(app_id)
                .execute(&mut *self.0)
                .await?;
        Ok(done.rows_affected())
    }

    async fn key_get(&mut self, access_key: &str, _lock: bool) -> R<Option<StoredKey>> {
        let row = sqlx::query_as::<_, SealedKeyRow>(concat!(
            "SELECT ",
            key_columns!(),
            ", master_key_version, secret_ciphertext FROM keys WHERE access_key = ?"
        ))
        .bind(access_key)
        .fetch_optional(&mut *self.0)
        .await?;
        row.map(StoredKey::try_from).transpose()
    }

    async fn key_list(&mut self, app_id: Option<&str>) -> R<Vec<KeyRecord>> {
        let rows = sqlx::query_as::<_, KeyRow>(concat!(
            "SELECT ",
            key_columns!(),
            " FROM keys WHERE (? IS NULL OR app_id = ?) ORDER BY access_key"
        ))
        .bind(app_id)
        .bind(app_id)
        .fetch_all(&mut *self.0)
        .await?;
        rows.into_iter().map(KeyRecord::try_from).collect()
    }

    async fn key_insert(&mut self, k: &KeyRecord, version: u32, blob: &[u8], now: i64) -> R<()> {
        let c = KeyColumns::of(k)?;
        let q = sqlx::query(concat!(
            "INSERT INTO keys (",
            key_columns!(),
            ", master_key_version, secret_ciphertext, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ));
        bind_key_columns!(q, k, c)
            .bind(i64::from(version))
            .bind(blob)
            .bind(now)
            .bind(now)
            .execute(&mut *self.0)
            .await
            .map_err(|e| {
                write_error(
                    e,
                    || format!("key {} already exists", k.access_key),
                    || format!("app {}", k.app_id),
                )
            })?;
        Ok(())
    }

    async fn key_update(&mut self, k: &KeyRecord, now: i64) -> R<()> {
        let c = KeyColumns::of(k)?;
        let q = sqlx::query(
            "UPDATE keys SET app_id = ?, scheme = ?, scheme_settings = ?, enabled = ?, valid_from = ?, \
             valid_to = ?, timestamp_window_secs = ?, description = ?, scopes = ?, allowed_endpoints = ?, \
             allowed_cidrs = ?, rate_per_sec = ?, rate_burst = ?, created_by = ?, successor = ?, \
             overlap_until = ?, auth_policy = ?, updated_at = ? WHERE access_key = ?",
        );
        bind_key_update!(q, k, c)
            .bind(now)
            .bind(&k.access_key)
            .execute(&mut *self.0)
            .await
            .map_err(|e| write_error(e, String::new, || format!("app {}", k.app_id)))?;
        Ok(())
    }

    async fn key_set_ciphertext(&mut self, access_key: &str, version: u32, blob: &[u8], now: i64) -> R<()> {
        sqlx::query(
            "UPDATE keys SET master_key_version = ?, secret_ciphertext = ?, updated_at = ? WHERE access_key = ?",
        )
        .bind(i64::from(version))
        .bind(blob)
        .bind(now)
        .bind(access_key)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn key_delete(&mut self, access_key: &str) -> R<()> {
        sqlx::query("DELETE FROM keys WHERE access_key = ?").bind(access_key).execute(&mut *self.0).await?;
        Ok(())
    }

    async fn key_clear_successor_refs(&mut self, access_key: &str, now: i64) -> R<u64> {
        let done = sqlx::query("UPDATE keys SET successor = NULL, updated_at = ? WHERE successor = ?")
            .bind(now)
            .bind(access_key)
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected())
    }

    async fn keys_sealed_below(&mut self, version: u32, after: &str, limit: i64) -> R<Vec<CiphertextRow>> {
        Ok(sqlx::query_as::<_, CiphertextRow>(
            "SELECT access_key, master_key_version, secret_ciphertext FROM keys \
             WHERE master_key_version < ? AND access_key > ? ORDER BY access_key LIMIT ?",
        )
        .bind(i64::from(version))
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.0)
        .await?)
    }

    async fn key_swap_ciphertext(
        &mut self,
        access_key: &str,
        old_version: u32,
        old_blob: &[u8],
        new_version: u32,
        new_blob: &[u8],
    ) -> R<bool> {
        let done = sqlx::query(
            "UPDATE keys SET master_key_version = ?, secret_ciphertext = ? \
             WHERE access_key = ? AND master_key_version = ? AND secret_ciphertext = ?",
        )
        .bind(i64::from(new_version))
        .bind(new_blob)
        .bind(access_key)
        .bind(i64::from(old_version))
        .bind(old_blob)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch(&mut self, batch: &[(String, i64)]) -> R<u64> {
        // One statement for the whole batch: the pairs travel as one JSON array parameter.
        let json = serde_json::to_string(batch).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE keys SET last_used_at = v.t \
             FROM (SELECT json_extract(value, '$[0]') AS ak, json_extract(value, '$[1]') AS t \
                   FROM json_each(?)) AS v \
             WHERE keys.access_key = v.ak AND (keys.last_used_at IS NULL OR keys.last_used_at < v.t)",
        )
        .bind(json)
        .execute(&mut *self.0)
        .await?;
        Ok(done.rows_affected())
    }

    async fn bump(&mut self) -> R<()> {
        sqlx::query("UPDATE change_counter SET value = value + 1 WHERE id = 1").execute(&mut *self.0).await?;
        Ok(())
    }

    async fn counter(&mut self) -> R<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM change_counter WHERE id = 1")
            .fetch_one(&mut *self.0)
            .await?)
    }

    async fn audit_insert(&mut self, row: &AuditInsert<'_>) -> R<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO admin_audit (at, actor, action, target, before_json, after_json) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(row.at)
        .bind(row.actor)
        .bind(row.action)
        .bind(row.target)
        .bind(&row.before)
        .bind(&row.after)
        .fetch_one(&mut *self.0)
        .await?)
    }

    async fn audit_list(&mut self, limit: i64, offset: i64) -> R<Vec<AdminAuditEntry>> {
        let rows = sqlx::query_as::<_, AuditRow>(
            "SELECT id, at, actor, action, target, before_json, after_json FROM admin_audit \
             ORDER BY id DESC LIMIT ? OFFSET ?",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *self.0)
        .await?;
        rows.into_iter().map(AdminAuditEntry::try_from).collect()
    }

    crate::admin_tokens::admin_token_methods!(|_: usize| "?".to_string());
    crate::providers::provider_methods!(|_: usize| "?".to_string());
    crate::objects::object_methods!(|_: usize| "?".to_string());
    crate::providers::script_methods!(|_: usize| "?".to_string());
    crate::versions::version_methods!(|_: usize| "?".to_string());

    async fn commit(self) -> R<()> {
        Ok(self.0.commit().await?)
    }
}
