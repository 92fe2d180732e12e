// Outbound providers: the provider document (JSON the outbound crate validates; the store keeps it
// opaque) and the provider's named secrets, sealed with the keyring like a key's secret. Secrets
// are write-only: the store returns their names and sizes, and decrypts them only for the
// data plane's snapshot load.

use serde::{Deserialize, Serialize};

use crate::validate::{identifier, invalid};
use crate::StoreError;

/// A provider's document and ownership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// Used in `/out/<id>/…`.
    pub id: String,
    pub tenant_id: String,
    /// The provider document (validated by the outbound gateway before it is stored).
    pub config: serde_json::Value,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
    #[serde(default)]
    pub updated_by: String,
}

/// What is shown about a provider secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSecretMeta {
    pub name: String,
    pub byte_len: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

/// A provider with its decrypted secrets (for the data plane only).
pub struct LoadedProvider {
    pub record: ProviderRecord,
    pub secrets: Vec<(String, zeroize::Zeroizing<Vec<u8>>)>,
}

impl std::fmt::Debug for LoadedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedProvider")
            .field("record", &self.record)
            .field("secrets", &self.secrets.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish()
    }
}

/// A sealed secret row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SealedSecret {
    pub provider_id: crate::rows::Text,
    pub name: crate::rows::Text,
    pub master_key_version: i64,
    pub ciphertext: Vec<u8>,
    pub byte_len: i64,
    pub updated_at: i64,
    pub updated_by: crate::rows::Text,
}

impl SealedSecret {
    pub(crate) fn meta(&self) -> ProviderSecretMeta {
        ProviderSecretMeta {
            name: self.name.0.clone(),
            byte_len: self.byte_len,
            updated_at: self.updated_at,
            updated_by: self.updated_by.0.clone(),
        }
    }
}

/// AAD of a provider secret: moving a ciphertext to another provider or name fails to open.
pub(crate) fn aad(provider_id: &str, name: &str) -> Vec<u8> {
    format!("provider-secret\0{provider_id}\0{name}").into_bytes()
}

/// Largest secret (RSA-4096 PEM keys and certificate chains fit easily).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
/// Largest provider document.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

pub(crate) fn validate(rec: &ProviderRecord) -> Result<(), StoreError> {
    identifier("provider.id", &rec.id)?;
    identifier("provider.tenant_id", &rec.tenant_id)?;
    if !rec.config.is_object() {
        return Err(invalid("provider.config", "must be a JSON object"));
    }
    if rec.config.to_string().len() > MAX_CONFIG_BYTES {
        return Err(invalid("provider.config", format!("at most {MAX_CONFIG_BYTES} bytes")));
    }
    Ok(())
}

pub(crate) fn validate_secret_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid("secret.name", "1 to 64 of [A-Za-z0-9_.:-]"))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ProviderRow {
    id: crate::rows::Text,
    tenant_id: crate::rows::Text,
    config: crate::rows::Text,
    created_at: i64,
    updated_at: i64,
    updated_by: crate::rows::Text,
}

impl TryFrom<ProviderRow> for ProviderRecord {
    type Error = StoreError;

    fn try_from(r: ProviderRow) -> Result<Self, StoreError> {
        Ok(Self {
            config: serde_json::from_str(&r.config.0)
                .map_err(|_| StoreError::Corrupt(format!("provider {}", r.id.0)))?,
            id: r.id.0,
            tenant_id: r.tenant_id.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
            updated_by: r.updated_by.0,
        })
    }
}

/// One saved version of a provider's script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ScriptVersion {
    #[sqlx(try_from = "crate::rows::Text")]
    pub provider_id: String,
    pub version: i64,
    #[sqlx(try_from = "crate::rows::Text")]
    pub source: String,
    #[sqlx(try_from = "crate::rows::Text")]
    pub comment: String,
    pub created_at: i64,
    #[sqlx(try_from = "crate::rows::Text")]
    pub created_by: String,
}

pub(crate) const SCRIPT_COLUMNS: &str = "provider_id, version, source, comment, created_at, created_by";

pub(crate) const COLUMNS: &str = "id, tenant_id, config, created_at, updated_at, updated_by";
pub(crate) const SECRET_COLUMNS: &str =
    "provider_id, name, master_key_version, ciphertext, byte_len, updated_at, updated_by";

/// The provider queries of `repo::Tx`, written once for every backend (placeholder closure
/// `usize -> String` as in `admin_token_methods!`).
macro_rules! provider_methods {
    ($ph:expr) => {
        async fn provider_get(
            &mut self,
            id: &str,
        ) -> Result<Option<crate::providers::ProviderRecord>, crate::StoreError> {
            let ph = $ph;
            let sql = format!("SELECT {} FROM providers WHERE id = {}", crate::providers::COLUMNS, ph(1));
            let row = sqlx::query_as::<_, crate::providers::ProviderRow>(&sql)
                .bind(id)
                .fetch_optional(&mut *self.0)
                .await?;
            row.map(crate::providers::ProviderRecord::try_from).transpose()
        }

        async fn provider_list(
            &mut self,
            tenant_id: Option<&str>,
        ) -> Result<Vec<crate::providers::ProviderRecord>, crate::StoreError> {
            let ph = $ph;
            let filter =
                if tenant_id.is_some() { format!(" WHERE tenant_id = {}", ph(1)) } else { String::new() };
            let sql = format!("SELECT {} FROM providers{filter} ORDER BY id", crate::providers::COLUMNS);
            let mut q = sqlx::query_as::<_, crate::providers::ProviderRow>(&sql);
            if let Some(t) = tenant_id {
                q = q.bind(t);
            }
            let rows = q.fetch_all(&mut *self.0).await?;
            rows.into_iter().map(crate::providers::ProviderRecord::try_from).collect()
        }

        async fn provider_write(
            &mut self,
            p: &crate::providers::ProviderRecord,
            insert: bool,
        ) -> Result<(), crate::StoreError> {
            let ph = $ph;
            let config = p.config.to_string();
            if insert {
                let sql = format!(
                    "INSERT INTO providers ({}) VALUES ({})",
                    crate::providers::COLUMNS,
                    (1..=6).map(ph).collect::<Vec<_>>().join(", ")
                );
                sqlx::query(&sql)
                    .bind(&p.id)
                    .bind(&p.tenant_id)
                    .bind(&config)
                    .bind(p.created_at)
                    .bind(p.updated_at)
                    .bind(&p.updated_by)
                    .execute(&mut *self.0)
                    .await
                    .map_err(|e| {
                        crate::write_error(
                            e,
                            || format!("provider {} already exists", p.id),
                            || format!("tenant {}", p.tenant_id),
                        )
                    })?;
            } else {
                let sql = format!(
                    "UPDATE providers SET config = {}, updated_at = {}, updated_by = {} WHERE id = {}",
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4)
                );
                sqlx::query(&sql)
                    .bind(&config)
                    .bind(p.updated_at)
                    .bind(&p.updated_by)
                    .bind(&p.id)
                    .execute(&mut *self.0)
                    .await?;
            }
            Ok(())
        }

        async fn provider_delete(&mut self, id: &str) -> Result<(), crate::StoreError> {
            let ph = $ph;
            let sql = format!("DELETE FROM provider_secrets WHERE provider_id = {}", ph(1));
            sqlx::query(&sql).bind(id).execute(&mut *self.0).await?;
            let sql = format!("DELETE FROM providers WHERE id = {}", ph(1));
            sqlx::query(&sql).bind(id).execute(&mut *self.0).await?;
            Ok(())
        }

        async fn provider_secret_put(
            &mut self,
            provider_id: &str,
            name: &str,
            version: i64,
            ciphertext: &[u8],
            byte_len: i64,
            now: i64,
            actor: &str,
        ) -> Result<(), crate::StoreError> {
            let ph = $ph;
            let sql =
                format!("DELETE FROM provider_secrets WHERE provider_id = {} AND name = {}", ph(1), ph(2));
            sqlx::query(&sql).bind(provider_id).bind(name).execute(&mut *self.0).await?;
            let sql = format!(
                "INSERT INTO provider_secrets ({}) VALUES ({})",
                crate::providers::SECRET_COLUMNS,
                (1..=7).map(ph).collect::<Vec<_>>().join(", ")
            );
            sqlx::query(&sql)
                .bind(provider_id)
                .bind(name)
                .bind(version)
                .bind(ciphertext)
                .bind(byte_len)
                .bind(now)
                .bind(actor)
                .execute(&mut *self.0)
                .await
                .map_err(|e| {
                    crate::write_error(
                        e,
                        || format!("secret {name} was written concurrently"),
                        || format!("provider {provider_id}"),
                    )
                })?;
            Ok(())
        }

        async fn provider_secret_delete(
            &mut self,
            provider_id: &str,
            name: &str,
        ) -> Result<u64, crate::StoreError> {
            let ph = $ph;
            let sql =
                format!("DELETE FROM provider_secrets WHERE provider_id = {} AND name = {}", ph(1), ph(2));
            Ok(sqlx::query(&sql).bind(provider_id).bind(name).execute(&mut *self.0).await?.rows_affected())
        }

        async fn provider_secrets(
            &mut self,
            provider_id: Option<&str>,
        ) -> Result<Vec<crate::providers::SealedSecret>, crate::StoreError> {
            let ph = $ph;
            let filter =
                if provider_id.is_some() { format!(" WHERE provider_id = {}", ph(1)) } else { String::new() };
            let sql = format!(
                "SELECT {} FROM provider_secrets{filter} ORDER BY provider_id, name",
                crate::providers::SECRET_COLUMNS
            );
            let mut q = sqlx::query_as::<_, crate::providers::SealedSecret>(&sql);
            if let Some(p) = provider_id {
                q = q.bind(p);
            }
            Ok(q.fetch_all(&mut *self.0).await?)
        }
    };
}
pub(crate) use provider_methods;

/// The script-version queries of `repo::Tx`, once for every backend.
macro_rules! script_methods {
    ($ph:expr) => {
        async fn script_insert(
            &mut self,
            v: &crate::providers::ScriptVersion,
        ) -> Result<(), crate::StoreError> {
            let ph = $ph;
            let sql = format!(
                "INSERT INTO provider_scripts ({}) VALUES ({})",
                crate::providers::SCRIPT_COLUMNS,
                (1..=6).map(ph).collect::<Vec<_>>().join(", ")
            );
            sqlx::query(&sql)
                .bind(&v.provider_id)
                .bind(v.version)
                .bind(&v.source)
                .bind(&v.comment)
                .bind(v.created_at)
                .bind(&v.created_by)
                .execute(&mut *self.0)
                .await
                .map_err(|e| {
                    crate::write_error(
                        e,
                        || format!("script version {} was saved concurrently", v.version),
                        || format!("provider {}", v.provider_id),
                    )
                })?;
            Ok(())
        }

        async fn script_list(
            &mut self,
            provider_id: &str,
        ) -> Result<Vec<crate::providers::ScriptVersion>, crate::StoreError> {
            let ph = $ph;
            let sql = format!(
                "SELECT {} FROM provider_scripts WHERE provider_id = {} ORDER BY version",
                crate::providers::SCRIPT_COLUMNS,
                ph(1)
            );
            Ok(sqlx::query_as::<_, crate::providers::ScriptVersion>(&sql)
                .bind(provider_id)
                .fetch_all(&mut *self.0)
                .await?)
        }
    };
}
pub(crate) use script_methods;
