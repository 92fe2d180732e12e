//! Durable state of keygate: schema and migrations, app/key repositories, and envelope
//! encryption of secrets at rest. A decrypted secret leaves this crate only inside a
//! `SecretBox` handed to the caller; nothing here keeps one.
#![forbid(unsafe_code)]

pub mod crypto;
mod sqlite;

use std::str::FromStr;
use std::sync::Arc;

use secrecy::SecretBox;
use serde::{Deserialize, Serialize};

pub use crypto::{Keyring, MasterKey};

/// Errors of the store. Messages never contain a secret or a full connection password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("unsupported store url {0} (expected sqlite://...)")]
    UnsupportedUrl(String),
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("secret was sealed with master key version {0}, which is not configured")]
    UnknownMasterKeyVersion(u32),
    #[error("a secret failed to decrypt (wrong master key or tampered row)")]
    Crypto,
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid stored data: {0}")]
    Invalid(String),
}

/// An application: the owner of one or more keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub enabled: bool,
}

/// Everything about a key except its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub access_key: String,
    pub app_id: String,
    /// Scheme name, e.g. `kg1-hmac-sha256` or `legacy-sorted`.
    pub scheme: String,
    /// Scheme-specific settings as JSON (legacy field names, digest, ...).
    pub scheme_settings: serde_json::Value,
    pub enabled: bool,
    /// Unix seconds.
    pub valid_from: Option<i64>,
    /// Unix seconds.
    pub valid_to: Option<i64>,
    pub timestamp_window_secs: u32,
    pub description: String,
}

/// A key with its decrypted secret, for building the data plane's snapshot.
#[derive(Debug)]
pub struct KeyWithSecret {
    pub record: KeyRecord,
    pub secret: SecretBox<[u8]>,
}

/// What an idempotent upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
    Unchanged,
}

/// Handle to the configured store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    keyring: Arc<Keyring>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlx::SqlitePool),
}

impl Store {
    /// Opens (creating if needed) the store at `url` and runs pending migrations.
    pub async fn open(url: &str, keyring: Arc<Keyring>) -> Result<Self, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .map_err(|source| StoreError::Connect { url: redact_url(url), source })?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(std::time::Duration::from_secs(5));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts)
                .await
                .map_err(|source| StoreError::Connect { url: redact_url(url), source })?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
            Backend::Sqlite(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        Ok(Self { backend, keyring })
    }

    /// Inserts or updates an app; bumps the change counter only when something changed.
    pub async fn upsert_app(&self, app: &AppRecord) -> Result<Upsert, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::upsert_app(p, app).await,
        }
    }

    /// Inserts or updates a key and its secret. The secret is compared with the stored one
    /// (decrypted, constant time) so re-importing the same config is a no-op.
    pub async fn upsert_key(&self, key: &KeyRecord, secret: &[u8]) -> Result<Upsert, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::upsert_key(p, &self.keyring, key, secret).await,
        }
    }

    /// All keys with decrypted secrets. The caller owns the secrets from here on.
    pub async fn load_keys(&self) -> Result<Vec<KeyWithSecret>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::load_keys(p, &self.keyring).await,
        }
    }

    /// All apps.
    pub async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::list_apps(p).await,
        }
    }

    /// Monotonic counter bumped by every change; replicas poll it to know when to reload.
    pub async fn change_counter(&self) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::change_counter(p).await,
        }
    }

    /// Closes the pool (flushes SQLite's WAL).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(p) => p.close().await,
        }
    }
}

/// `scheme://user:password@host/db` → `scheme://user:***@host/db`, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("postgres://kg:pw@db:5432/x"), "postgres://kg:***@db:5432/x");
        assert_eq!(redact_url("postgres://kg@db/x"), "postgres://kg@db/x");
        assert_eq!(redact_url("sqlite://keygate.db"), "sqlite://keygate.db");
    }
}
