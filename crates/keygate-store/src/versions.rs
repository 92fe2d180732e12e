// Config versions (issue 11): each change set of a tenant's configuration kept as a numbered
// document (secrets as references only), and the publish fence that lets a multi-object apply
// (rollback, import) become visible to every replica at once.

use serde::{Deserialize, Serialize};

/// One saved version of a tenant's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ConfigVersion {
    #[sqlx(try_from = "crate::rows::Text")]
    pub tenant_id: String,
    pub version: i64,
    pub created_at: i64,
    #[sqlx(try_from = "crate::rows::Text")]
    pub created_by: String,
    #[sqlx(try_from = "crate::rows::Text")]
    pub comment: String,
    /// The exported configuration (TOML), secrets as references.
    #[sqlx(try_from = "crate::rows::Text")]
    pub document: String,
}

/// Largest document kept (a tenant's whole configuration).
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

pub(crate) const COLUMNS: &str = "tenant_id, version, created_at, created_by, comment, document";

/// The version and fence queries of `repo::Tx`, once for every backend.
macro_rules! version_methods {
    ($ph:expr) => {
        async fn version_insert(&mut self, v: &crate::versions::ConfigVersion) -> Result<(), crate::StoreError> {
            let ph = $ph;
            let sql = format!(
                "INSERT INTO config_versions ({}) VALUES ({})",
                crate::versions::COLUMNS,
                (1..=6).map(ph).collect::<Vec<_>>().join(", ")
            );
            sqlx::query(&sql)
                .bind(&v.tenant_id)
                .bind(v.version)
                .bind(v.created_at)
                .bind(&v.created_by)
                .bind(&v.comment)
                .bind(&v.document)
                .execute(&mut *self.0)
                .await
                .map_err(|e| {
                    crate::write_error(
                        e,
                        || format!("config version {} was saved concurrently", v.version),
                        || format!("tenant {}", v.tenant_id),
                    )
                })?;
            Ok(())
        }

        async fn version_list(
            &mut self,
            tenant_id: &str,
        ) -> Result<Vec<crate::versions::ConfigVersion>, crate::StoreError> {
            let ph = $ph;
            let sql = format!(
                "SELECT {} FROM config_versions WHERE tenant_id = {} ORDER BY version",
                crate::versions::COLUMNS,
                ph(1)
            );
            Ok(sqlx::query_as::<_, crate::versions::ConfigVersion>(&sql).bind(tenant_id).fetch_all(&mut *self.0).await?)
        }

        async fn publish_begin(&mut self, until: i64, now: i64) -> Result<bool, crate::StoreError> {
            let ph = $ph;
            let sql = format!(
                "UPDATE change_counter SET publishing_until = {} WHERE id = 1 AND (publishing_until IS NULL OR publishing_until < {})",
                ph(1),
                ph(2)
            );
            let n = sqlx::query(&sql).bind(until).bind(now).execute(&mut *self.0).await?.rows_affected();
            Ok(n == 1)
        }

        async fn publish_end(&mut self) -> Result<(), crate::StoreError> {
            sqlx::query("UPDATE change_counter SET publishing_until = NULL, value = value + 1 WHERE id = 1")
                .execute(&mut *self.0)
                .await?;
            Ok(())
        }

        async fn change_state(&mut self) -> Result<(i64, Option<i64>), crate::StoreError> {
            Ok(sqlx::query_as::<_, (i64, Option<i64>)>(
                "SELECT value, publishing_until FROM change_counter WHERE id = 1",
            )
            .fetch_one(&mut *self.0)
            .await?)
        }
    };
}
pub(crate) use version_methods;
