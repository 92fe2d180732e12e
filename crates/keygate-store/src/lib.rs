//! Durable state of keygate: schema and migrations (SQLite, PostgreSQL, MySQL/MariaDB), the
//! tenant/app/key repositories, the admin audit trail, and envelope encryption of secrets at
//! rest. A decrypted secret leaves this crate only inside a `SecretBox` handed to the caller;
//! nothing here keeps one.
//!
//! Every mutation runs in one transaction that also bumps the change counter (replicas poll it)
//! and appends an admin audit row attributed to [`Store::with_actor`]. Runtime bookkeeping
//! ([`Store::touch_last_used`]) and master-key re-wrapping change no configuration, so they bump
//! nothing.
#![forbid(unsafe_code)]

pub mod admin_tokens;
pub mod crypto;
mod mysql;
pub mod objects;
mod postgres;
pub mod providers;
mod repo;
mod rows;
mod sqlite;
mod validate;
pub mod versions;

use std::sync::Arc;

use secrecy::SecretBox;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use admin_tokens::{AdminRole, AdminTokenRecord};
pub use crypto::{Keyring, MasterKey};
pub use objects::{ObjectKind, TenantObject};
pub use providers::{LoadedProvider, ProviderRecord, ProviderSecretMeta, ScriptVersion};
pub use validate::limits;
pub use versions::ConfigVersion;

/// Errors of the store. Messages never contain a secret or a full connection password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migrating store {url} failed: {source}")]
    Migrate { url: String, source: sqlx::migrate::MigrateError },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("unsupported store url {0} (expected sqlite:..., postgres://..., mysql://... or mariadb://...)")]
    UnsupportedUrl(String),
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("secret was sealed with master key version {0}, which is not configured")]
    UnknownMasterKeyVersion(u32),
    #[error("a secret failed to decrypt (wrong master key or tampered row)")]
    Crypto,
    #[error("{0} not found")]
    NotFound(String),
    /// A caller-supplied value is unacceptable; `field` is a path such as `key.allowed_cidrs[2]`.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The write collides with existing state (duplicate id or access key, rotation in progress,
    /// tenant still owning apps).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored row cannot be decoded (hand-edited or from a newer schema).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Deadlocks, serialization failures and SQLite lock contention: the transaction was rolled
    /// back and running it again may succeed.
    fn is_transient(&self) -> bool {
        let StoreError::Db(sqlx::Error::Database(e)) = self else { return false };
        // PostgreSQL: serialization failure, deadlock. MySQL reports its deadlock (1213) as
        // SQLSTATE 40001. SQLite: BUSY, LOCKED, BUSY_RECOVERY, BUSY_SNAPSHOT.
        matches!(e.code().as_deref(), Some("40001" | "40P01" | "5" | "6" | "261" | "517"))
    }
}

/// A tenant: the owner of apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: String,
    pub name: String,
}

/// An application: the owner of one or more keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub enabled: bool,
}

/// Token bucket settings of a key (enforced by the rate limiter, stored here).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub rate_per_sec: f64,
    pub burst: u32,
}

/// Everything about a key except its secret.
///
/// `last_used_at`, `successor` and `overlap_until` are maintained by the store
/// ([`Store::touch_last_used`], [`Store::rotate_key`]); create, import, update and upsert ignore
/// the values passed in and keep the stored ones. `created_by` is set once, at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub access_key: String,
    pub app_id: String,
    /// Scheme name, e.g. `kg1-hmac-sha256` or `legacy-sorted`.
    pub scheme: String,
    /// Scheme-specific settings as a JSON object (legacy field names, digest, ...).
    pub scheme_settings: serde_json::Value,
    pub enabled: bool,
    /// Unix seconds.
    pub valid_from: Option<i64>,
    /// Unix seconds.
    pub valid_to: Option<i64>,
    pub timestamp_window_secs: u32,
    pub description: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `"METHOD /path/pattern"`, e.g. `GET /v1/orders/*`; empty means no endpoint restriction.
    #[serde(default)]
    pub allowed_endpoints: Vec<String>,
    /// IPv4/IPv6 addresses or CIDRs; empty means any source address.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub created_by: String,
    /// Unix seconds; updated in batches by [`Store::touch_last_used`].
    #[serde(default)]
    pub last_used_at: Option<i64>,
    /// Access key that replaces this one during rotation.
    #[serde(default)]
    pub successor: Option<String>,
    /// Unix seconds; once past, a key with a successor stops verifying.
    #[serde(default)]
    pub overlap_until: Option<i64>,
    /// How requests of this key authenticate: `signature` (every request signed; no API
    /// tokens), `token` (a signed `POST /auth/token` exchange issues a short-lived token that
    /// alone authenticates later requests) or `both` (every request carries a token issued to
    /// this key and a valid signature: a stolen token without the secret is useless).
    #[serde(default = "default_auth_policy")]
    pub auth_policy: String,
}

fn default_auth_policy() -> String {
    AUTH_POLICY_SIGNATURE.to_string()
}

/// [`KeyRecord::auth_policy`] values.
pub const AUTH_POLICY_SIGNATURE: &str = "signature";
pub const AUTH_POLICY_TOKEN: &str = "token";
pub const AUTH_POLICY_BOTH: &str = "both";

impl Default for KeyRecord {
    fn default() -> Self {
        Self {
            access_key: String::new(),
            app_id: String::new(),
            scheme: "kg1-hmac-sha256".into(),
            scheme_settings: serde_json::Value::Object(serde_json::Map::new()),
            enabled: true,
            valid_from: None,
            valid_to: None,
            timestamp_window_secs: 300,
            description: String::new(),
            scopes: Vec::new(),
            allowed_endpoints: Vec::new(),
            allowed_cidrs: Vec::new(),
            rate_limit: None,
            created_by: String::new(),
            last_used_at: None,
            successor: None,
            overlap_until: None,
            auth_policy: default_auth_policy(),
        }
    }
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

/// Both halves of a rotation, as stored after [`Store::rotate_key`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    /// The old key, now carrying `successor` and `overlap_until`.
    pub old: KeyRecord,
    pub new: KeyRecord,
}

/// One row of the admin audit trail. `before`/`after` never contain a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminAuditEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
    Mysql,
}

/// Handle to the configured store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    keyring: Arc<Keyring>,
    actor: Arc<str>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

/// Attempts per write transaction when the database reports a deadlock or serialization failure.
const WRITE_ATTEMPTS: u32 = 5;

/// Runs `$body` (a repo flow taking the transaction `$tx` by value) on the right backend,
/// retrying transient failures. A flow re-runs from scratch, so it must not have side effects
/// outside its transaction.
macro_rules! write_tx {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let mut attempt = 1;
        loop {
            let result = match &$self.backend {
                Backend::Sqlite(p) => {
                    let $tx = sqlite::begin_write(p).await?;
                    $body.await
                }
                Backend::Postgres(p) => {
                    let $tx = postgres::begin(p).await?;
                    $body.await
                }
                Backend::Mysql(p) => {
                    let $tx = mysql::begin(p).await?;
                    $body.await
                }
            };
            match result {
                Err(e) if attempt < WRITE_ATTEMPTS && e.is_transient() => {
                    tracing::debug!(attempt, error = %e, "retrying store transaction");
                    // Staggered so the transactions that collided do not collide again.
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt) * 7)).await;
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}

/// Like `write_tx!` for read-only flows (no retry, no write lock on SQLite).
macro_rules! read_tx {
    ($self:ident, |$tx:ident| $body:expr) => {{
        match &$self.backend {
            Backend::Sqlite(p) => {
                let $tx = sqlite::begin_read(p).await?;
                $body.await
            }
            Backend::Postgres(p) => {
                let $tx = postgres::begin(p).await?;
                $body.await
            }
            Backend::Mysql(p) => {
                let $tx = mysql::begin(p).await?;
                $body.await
            }
        }
    }};
}

impl Store {
    /// Opens the store at `url` and runs pending migrations. The scheme picks the backend:
    /// `sqlite:` (file created if missing), `postgres://`/`postgresql://`,
    /// `mysql://`/`mariadb://`. Errors name the URL with its password masked.
    pub async fn open(url: &str, keyring: Arc<Keyring>) -> Result<Self, StoreError> {
        let backend = match backend_kind(url) {
            Some(BackendKind::Sqlite) => Backend::Sqlite(sqlite::open(url).await?),
            Some(BackendKind::Postgres) => Backend::Postgres(postgres::open(url).await?),
            Some(BackendKind::Mysql) => Backend::Mysql(mysql::open(url).await?),
            None => return Err(StoreError::UnsupportedUrl(redact_url(url))),
        };
        Ok(Self { backend, keyring, actor: Arc::from("system") })
    }

    /// The same store, with audit rows of its mutations attributed to `actor` (an admin token's
    /// principal, `config-import`, ...). Without it they are attributed to `system`.
    pub fn with_actor(&self, actor: &str) -> Self {
        Self { backend: self.backend.clone(), keyring: self.keyring.clone(), actor: Arc::from(actor) }
    }

    /// Who the audit rows of this handle's mutations name.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub fn backend_kind(&self) -> BackendKind {
        match &self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
            Backend::Mysql(_) => BackendKind::Mysql,
        }
    }

    // ---- tenants ----

    /// Creates a tenant. Duplicate id → [`StoreError::Conflict`].
    pub async fn create_tenant(&self, tenant: &TenantRecord) -> Result<TenantRecord, StoreError> {
        validate::tenant(tenant)?;
        write_tx!(self, |tx| repo::create_tenant(tx, &self.actor, tenant))
    }

    pub async fn get_tenant(&self, id: &str) -> Result<TenantRecord, StoreError> {
        read_tx!(self, |tx| repo::get_tenant(tx, id))
    }

    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        read_tx!(self, |tx| repo::list_tenants(tx))
    }

    /// Renames a tenant. Unknown id → [`StoreError::NotFound`].
    pub async fn update_tenant(&self, tenant: &TenantRecord) -> Result<TenantRecord, StoreError> {
        validate::tenant(tenant)?;
        write_tx!(self, |tx| repo::update_tenant(tx, &self.actor, tenant))
    }

    /// Deletes a tenant that owns no apps; one that still does → [`StoreError::Conflict`].
    pub async fn delete_tenant(&self, id: &str) -> Result<(), StoreError> {
        write_tx!(self, |tx| repo::delete_tenant(tx, &self.actor, id))
    }

    // ---- apps ----

    /// Inserts or updates an app (config import); creates its tenant if missing. Bumps the
    /// change counter only when something changed.
    pub async fn upsert_app(&self, app: &AppRecord) -> Result<Upsert, StoreError> {
        validate::app(app)?;
        // A Conflict here means another replica importing the same config inserted the row
        // first; running again sees it and compares instead.
        match write_tx!(self, |tx| repo::upsert_app(tx, &self.actor, app)) {
            Err(StoreError::Conflict(_)) => write_tx!(self, |tx| repo::upsert_app(tx, &self.actor, app)),
            other => other,
        }
    }

    /// Creates an app under an existing tenant. Unknown tenant → NotFound, duplicate → Conflict.
    pub async fn create_app(&self, app: &AppRecord) -> Result<AppRecord, StoreError> {
        validate::app(app)?;
        write_tx!(self, |tx| repo::create_app(tx, &self.actor, app))
    }

    pub async fn get_app(&self, id: &str) -> Result<AppRecord, StoreError> {
        read_tx!(self, |tx| repo::get_app(tx, id))
    }

    /// All apps.
    pub async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        read_tx!(self, |tx| repo::list_apps(tx, None))
    }

    pub async fn list_apps_of_tenant(&self, tenant_id: &str) -> Result<Vec<AppRecord>, StoreError> {
        read_tx!(self, |tx| repo::list_apps(tx, Some(tenant_id)))
    }

    /// Updates name, tenant and enabled flag of an existing app.
    pub async fn update_app(&self, app: &AppRecord) -> Result<AppRecord, StoreError> {
        validate::app(app)?;
        write_tx!(self, |tx| repo::update_app(tx, &self.actor, app))
    }

    /// Deletes an app and all its keys.
    pub async fn delete_app(&self, id: &str) -> Result<(), StoreError> {
        write_tx!(self, |tx| repo::delete_app(tx, &self.actor, id))
    }

    /// Emergency revoke of a whole app: disables the app and every key of it in one transaction.
    /// Returns how many keys were switched off. Re-enabling the app does not re-enable its keys.
    pub async fn disable_app(&self, id: &str) -> Result<u64, StoreError> {
        write_tx!(self, |tx| repo::disable_app(tx, &self.actor, id))
    }

    // ---- keys ----

    /// Inserts or updates a key and its secret (config import). The secret is compared with the
    /// stored one (decrypted, constant time) so re-importing the same config is a no-op.
    pub async fn upsert_key(&self, key: &KeyRecord, secret: &[u8]) -> Result<Upsert, StoreError> {
        validate::key("key", key)?;
        validate::secret("secret", secret, 1)?;
        // See upsert_app: a Conflict is a concurrent importer winning the insert race.
        match write_tx!(self, |tx| repo::upsert_key(tx, &self.actor, &self.keyring, key, secret)) {
            Err(StoreError::Conflict(_)) => {
                write_tx!(self, |tx| repo::upsert_key(tx, &self.actor, &self.keyring, key, secret))
            }
            other => other,
        }
    }

    /// Creates a key with a platform-generated secret (see [`generate_secret`]; at least
    /// [`limits::MIN_GENERATED_SECRET_LEN`] bytes). Returns the stored record.
    pub async fn create_key(&self, key: &KeyRecord, secret: &[u8]) -> Result<KeyRecord, StoreError> {
        validate::key("key", key)?;
        validate::secret("secret", secret, limits::MIN_GENERATED_SECRET_LEN)?;
        write_tx!(self, |tx| repo::create_key(tx, &self.actor, &self.keyring, key, secret, "key.create"))
    }

    /// Creates a key with a caller-supplied secret (integrators migrating existing secrets).
    pub async fn import_key(&self, key: &KeyRecord, secret: &[u8]) -> Result<KeyRecord, StoreError> {
        validate::key("key", key)?;
        validate::secret("secret", secret, 1)?;
        write_tx!(self, |tx| repo::create_key(tx, &self.actor, &self.keyring, key, secret, "key.import"))
    }

    pub async fn get_key(&self, access_key: &str) -> Result<KeyRecord, StoreError> {
        read_tx!(self, |tx| repo::get_key(tx, access_key))
    }

    /// Key metadata (no secrets), of one app or of all apps, ordered by access key.
    pub async fn list_keys(&self, app_id: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        read_tx!(self, |tx| repo::list_keys(tx, app_id))
    }

    /// Updates a key's metadata; the secret and the store-maintained fields are kept.
    pub async fn update_key(&self, key: &KeyRecord) -> Result<KeyRecord, StoreError> {
        validate::key("key", key)?;
        write_tx!(self, |tx| repo::update_key(tx, &self.actor, key))
    }

    /// Deletes a key; a key naming it as successor keeps its `overlap_until` (so it still
    /// stops verifying then) but loses the dangling reference.
    pub async fn delete_key(&self, access_key: &str) -> Result<(), StoreError> {
        write_tx!(self, |tx| repo::delete_key(tx, &self.actor, access_key))
    }

    /// Enables or revokes one key. A no-op when already in that state (no counter bump).
    pub async fn set_key_enabled(&self, access_key: &str, enabled: bool) -> Result<KeyRecord, StoreError> {
        write_tx!(self, |tx| repo::set_key_enabled(tx, &self.actor, access_key, enabled))
    }

    /// Starts a rotation in one transaction: creates `new_key` (same app) with `new_secret` and
    /// sets the old key's `successor` and `overlap_until = now + overlap_secs`. A key already
    /// being rotated → Conflict.
    pub async fn rotate_key(
        &self,
        old_access_key: &str,
        new_key: &KeyRecord,
        new_secret: &[u8],
        overlap_secs: u64,
    ) -> Result<Rotation, StoreError> {
        validate::key("new_key", new_key)?;
        validate::secret("new_secret", new_secret, 1)?;
        if overlap_secs > limits::MAX_OVERLAP_SECS {
            return Err(validate::invalid(
                "overlap_secs",
                format!("must be at most {} seconds", limits::MAX_OVERLAP_SECS),
            ));
        }
        let overlap = overlap_secs as i64; // bounded above, cannot wrap
        write_tx!(self, |tx| repo::rotate_key(
            tx,
            &self.actor,
            &self.keyring,
            old_access_key,
            new_key,
            new_secret,
            overlap
        ))
    }

    /// Records when keys were last used: a batch of `(access_key, unix_secs)` from the data plane,
    /// written with one statement per batch (MySQL: per 1000 entries) in one transaction.
    /// `last_used_at` never moves backwards; unknown keys are ignored. Returns rows changed.
    pub async fn touch_last_used<S: AsRef<str>>(&self, batch: &[(S, i64)]) -> Result<u64, StoreError> {
        let batch = repo::dedupe_touches(batch);
        if batch.is_empty() {
            return Ok(0);
        }
        write_tx!(self, |tx| repo::touch_last_used(tx, &batch))
    }

    /// All keys with decrypted secrets, in one query. The caller owns the secrets from here on.
    pub async fn load_keys(&self) -> Result<Vec<KeyWithSecret>, StoreError> {
        let mut out = Vec::new();
        self.load_keys_with(|k| out.push(k)).await?;
        Ok(out)
    }

    /// The same bulk query as [`Store::load_keys`], handing each decrypted key to `f` as its row
    /// arrives, so a snapshot builder can keep only its own compact entries (a reload of 100k
    /// keys then never holds 100k `KeyRecord`s). Returns how many keys were delivered. On error
    /// the keys already delivered are a partial set: discard them.
    pub async fn load_keys_with<F: FnMut(KeyWithSecret) + Send>(
        &self,
        mut f: F,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::for_each_key(p, &self.keyring, &mut f).await,
            Backend::Postgres(p) => postgres::for_each_key(p, &self.keyring, &mut f).await,
            Backend::Mysql(p) => mysql::for_each_key(p, &self.keyring, &mut f).await,
        }
    }

    /// Monotonic counter bumped by every change; replicas poll it to know when to reload.
    pub async fn change_counter(&self) -> Result<i64, StoreError> {
        read_tx!(self, |tx| repo::change_counter(tx))
    }

    /// Re-wraps every data key sealed under an older master key with the keyring's current one,
    /// 500 rows per transaction. Secrets are never decrypted (only their data keys, for one row
    /// at a time); rows at the current version are skipped, so it is idempotent and can resume
    /// after an interruption. Returns how many rows were re-wrapped.
    pub async fn rewrap_all(&self) -> Result<usize, StoreError> {
        let mut after = String::new();
        let mut total = 0usize;
        let mut from_versions = std::collections::BTreeSet::new();
        loop {
            let step =
                write_tx!(self, |tx| repo::rewrap_batch(tx, &self.keyring, &after, repo::REWRAP_BATCH))?;
            total += step.rewrapped;
            from_versions.extend(step.from_versions);
            match step.last {
                Some(last) => after = last,
                None => break,
            }
        }
        // Provider secrets are few (tens to hundreds): one transaction.
        total += write_tx!(self, |tx| repo::rewrap_provider_secrets(tx, &self.keyring))?;
        if total > 0 {
            let after = serde_json::json!({
                "rewrapped": total,
                "from_versions": from_versions,
                "to_version": self.keyring.current_version(),
            });
            write_tx!(self, |tx| repo::append_audit(
                tx,
                &self.actor,
                "master_key.rewrap",
                "keys",
                None,
                Some(&after)
            ))?;
        }
        Ok(total)
    }

    // ---- admin audit ----

    /// Appends an admin audit row for an action outside the store's own mutations (which audit
    /// themselves). Values under secret-looking names in `before`/`after` are replaced by
    /// `"[redacted]"`. Returns the row id.
    pub async fn append_admin_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
    ) -> Result<i64, StoreError> {
        validate::audit_field("audit.actor", actor)?;
        validate::audit_field("audit.action", action)?;
        validate::audit_field("audit.target", target)?;
        write_tx!(self, |tx| repo::append_audit(tx, actor, action, target, before, after))
    }

    /// Newest first; `limit` is capped at 1000.
    pub async fn list_admin_audit(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<AdminAuditEntry>, StoreError> {
        let limit = i64::from(limit.min(1000));
        let offset = i64::try_from(offset).map_err(|_| validate::invalid("offset", "too large"))?;
        read_tx!(self, |tx| repo::list_audit(tx, limit, offset))
    }

    // ---- admin tokens ----

    /// Creates an admin token; returns its record and the token itself, which exists nowhere
    /// else (only its SHA-256 is stored): show it once. Tenant and granted apps must exist.
    pub async fn create_admin_token(
        &self,
        rec: &AdminTokenRecord,
    ) -> Result<(AdminTokenRecord, Zeroizing<String>), StoreError> {
        let mut rec = rec.clone();
        rec.id = admin_tokens::new_id()?;
        rec.created_at = now_secs();
        rec.created_by = self.actor.to_string();
        rec.revoked_at = None;
        admin_tokens::validate(&rec)?;
        let token = admin_tokens::generate()?;
        let hash = admin_tokens::hash(&token);
        let rec = write_tx!(self, |tx| repo::create_admin_token(tx, &self.actor, &rec, &hash))?;
        Ok((rec, token))
    }

    /// The active token's record, or `None` for an unknown, revoked or expired token. The
    /// lookup is by SHA-256, so response time does not depend on how much of a guess matched.
    pub async fn authenticate_admin_token(
        &self,
        token: &str,
    ) -> Result<Option<AdminTokenRecord>, StoreError> {
        if !token.starts_with(admin_tokens::TOKEN_PREFIX) || token.len() > 256 {
            return Ok(None);
        }
        let hash = admin_tokens::hash(token);
        let rec = read_tx!(self, |tx| repo::admin_token_by_hash(tx, &hash))?;
        Ok(rec.filter(|r| r.is_active(now_secs())))
    }

    pub async fn get_admin_token(&self, id: &str) -> Result<AdminTokenRecord, StoreError> {
        read_tx!(self, |tx| repo::get_admin_token(tx, id))
    }

    /// All tokens, or a tenant's; revoked ones included (with `revoked_at`).
    pub async fn list_admin_tokens(
        &self,
        tenant_id: Option<&str>,
    ) -> Result<Vec<AdminTokenRecord>, StoreError> {
        read_tx!(self, |tx| repo::list_admin_tokens(tx, tenant_id))
    }

    /// Revokes a token at once (idempotent). Returns the record as revoked.
    pub async fn revoke_admin_token(&self, id: &str) -> Result<AdminTokenRecord, StoreError> {
        write_tx!(self, |tx| repo::revoke_admin_token(tx, &self.actor, id, now_secs()))
    }

    // ---- outbound providers ----

    /// Creates or replaces a provider document (tenant must exist; a provider never moves between
    /// tenants). The document itself is validated by the caller (the outbound gateway's parser).
    pub async fn put_provider(&self, rec: &ProviderRecord) -> Result<(ProviderRecord, Upsert), StoreError> {
        providers::validate(rec)?;
        write_tx!(self, |tx| repo::put_provider(tx, &self.actor, rec))
    }

    /// Creates or replaces a tenant object (route or alert rule). The document is validated by
    /// the caller (the binary's route and alert-rule parsers); an identical document writes
    /// nothing and returns [`Upsert::Unchanged`].
    pub async fn put_tenant_object(&self, rec: &TenantObject) -> Result<(TenantObject, Upsert), StoreError> {
        objects::validate(rec)?;
        write_tx!(self, |tx| repo::put_object(tx, &self.actor, rec))
    }

    pub async fn get_tenant_object(
        &self,
        tenant_id: &str,
        kind: ObjectKind,
        name: &str,
    ) -> Result<TenantObject, StoreError> {
        read_tx!(self, |tx| repo::get_object(tx, tenant_id, kind, name))
    }

    /// Objects ordered by tenant, kind and name; `None` filters nothing.
    pub async fn list_tenant_objects(
        &self,
        tenant_id: Option<&str>,
        kind: Option<ObjectKind>,
    ) -> Result<Vec<TenantObject>, StoreError> {
        read_tx!(self, |tx| repo::list_objects(tx, tenant_id, kind))
    }

    pub async fn delete_tenant_object(
        &self,
        tenant_id: &str,
        kind: ObjectKind,
        name: &str,
    ) -> Result<(), StoreError> {
        objects::validate_name(name)?;
        write_tx!(self, |tx| repo::delete_object(tx, &self.actor, tenant_id, kind, name))
    }

    pub async fn get_provider(&self, id: &str) -> Result<ProviderRecord, StoreError> {
        read_tx!(self, |tx| repo::get_provider(tx, id))
    }

    pub async fn list_providers(&self, tenant_id: Option<&str>) -> Result<Vec<ProviderRecord>, StoreError> {
        read_tx!(self, |tx| repo::list_providers(tx, tenant_id))
    }

    /// Deletes a provider and its secrets.
    pub async fn delete_provider(&self, id: &str) -> Result<(), StoreError> {
        write_tx!(self, |tx| repo::delete_provider(tx, &self.actor, id))
    }

    /// Seals and stores (or replaces) a named secret of a provider. Write-only: nothing returns it
    /// except [`Store::load_providers`].
    pub async fn put_provider_secret(
        &self,
        provider_id: &str,
        name: &str,
        secret: &[u8],
    ) -> Result<ProviderSecretMeta, StoreError> {
        providers::validate_secret_name(name)?;
        if secret.is_empty() || secret.len() > providers::MAX_SECRET_BYTES {
            return Err(validate::invalid(
                "secret.value",
                format!("1 to {} bytes", providers::MAX_SECRET_BYTES),
            ));
        }
        write_tx!(self, |tx| repo::put_provider_secret(
            tx,
            &self.actor,
            &self.keyring,
            provider_id,
            name,
            secret
        ))
    }

    pub async fn delete_provider_secret(&self, provider_id: &str, name: &str) -> Result<(), StoreError> {
        write_tx!(self, |tx| repo::delete_provider_secret(tx, &self.actor, provider_id, name))
    }

    /// Names and sizes of a provider's secrets.
    pub async fn list_provider_secrets(
        &self,
        provider_id: &str,
    ) -> Result<Vec<ProviderSecretMeta>, StoreError> {
        read_tx!(self, |tx| repo::list_provider_secrets(tx, provider_id))
    }

    /// Saves a new version of a provider's script (numbered 1, 2, … per provider, audited). The
    /// caller validates the source and activates it in the provider document.
    pub async fn add_provider_script(
        &self,
        provider_id: &str,
        source: &str,
        comment: &str,
    ) -> Result<ScriptVersion, StoreError> {
        if source.is_empty() || source.len() > providers::MAX_CONFIG_BYTES {
            return Err(validate::invalid(
                "script.source",
                format!("1 to {} bytes", providers::MAX_CONFIG_BYTES),
            ));
        }
        if comment.len() > 1024 {
            return Err(validate::invalid("script.comment", "at most 1024 bytes"));
        }
        write_tx!(self, |tx| repo::add_script(tx, &self.actor, provider_id, source, comment))
    }

    /// Saves `document` (an exported configuration, secrets as references) as the tenant's next
    /// version, unless it equals the latest version (then `None`: nothing changed).
    pub async fn add_config_version(
        &self,
        tenant_id: &str,
        comment: &str,
        document: &str,
    ) -> Result<Option<ConfigVersion>, StoreError> {
        if document.len() > versions::MAX_DOCUMENT_BYTES {
            return Err(validate::invalid("version.document", "too large"));
        }
        if comment.len() > 1024 {
            return Err(validate::invalid("version.comment", "at most 1024 bytes"));
        }
        write_tx!(self, |tx| repo::add_version(tx, &self.actor, tenant_id, comment, document))
    }

    /// Every saved configuration version of a tenant, oldest first.
    pub async fn list_config_versions(&self, tenant_id: &str) -> Result<Vec<ConfigVersion>, StoreError> {
        read_tx!(self, |tx| repo::list_versions(tx, tenant_id))
    }

    /// Raises the publish fence for `ttl_secs`: while it is up, replicas keep their snapshot
    /// (they do not load a half-applied change). `false` when another publish holds it.
    pub async fn begin_publish(&self, ttl_secs: i64) -> Result<bool, StoreError> {
        let until = now_secs() + ttl_secs.max(1);
        write_tx!(self, |tx| repo::publish_begin(tx, until))
    }

    /// Lowers the fence and bumps the change counter: replicas load the whole change at once.
    pub async fn end_publish(&self) -> Result<(), StoreError> {
        write_tx!(self, |tx| repo::publish_end(tx))
    }

    /// The change counter and whether a publish fence is up (not expired), read together.
    pub async fn change_state(&self) -> Result<(i64, bool), StoreError> {
        let (v, until) = read_tx!(self, |tx| repo::change_state(tx))?;
        Ok((v, until.is_some_and(|u| u >= now_secs())))
    }

    /// Every saved version of a provider's script, oldest first.
    pub async fn list_provider_scripts(&self, provider_id: &str) -> Result<Vec<ScriptVersion>, StoreError> {
        read_tx!(self, |tx| repo::list_scripts(tx, provider_id))
    }

    /// Every provider with its decrypted secrets, for the outbound snapshot.
    pub async fn load_providers(&self) -> Result<Vec<LoadedProvider>, StoreError> {
        read_tx!(self, |tx| repo::load_providers(tx, &self.keyring))
    }

    /// Closes the pool (flushes SQLite's WAL).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(p) => p.close().await,
            Backend::Postgres(p) => p.close().await,
            Backend::Mysql(p) => p.close().await,
        }
    }
}

/// A new inbound secret: 32 random bytes (256 bits) as base64url text without padding (43 bytes),
/// in a buffer that is wiped on drop.
pub fn generate_secret() -> Result<Zeroizing<Vec<u8>>, StoreError> {
    use base64::Engine as _;
    let mut raw = Zeroizing::new([0u8; 32]);
    crypto::random(&mut raw[..])?;
    let mut text = Zeroizing::new(vec![0u8; 43]);
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode_slice(&raw[..], &mut text[..])
        .map_err(|_| StoreError::Crypto)?;
    text.truncate(n);
    Ok(text)
}

/// The backend a store URL selects, by scheme.
pub fn backend_kind(url: &str) -> Option<BackendKind> {
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase())?;
    match scheme.as_str() {
        "sqlite" => Some(BackendKind::Sqlite),
        "postgres" | "postgresql" => Some(BackendKind::Postgres),
        "mysql" | "mariadb" => Some(BackendKind::Mysql),
        _ => None,
    }
}

/// `scheme://user:password@host/db` → `scheme://user:***@host/db`, for error messages and logs.
/// A `password=` query parameter (which sqlx also accepts) is masked the same way.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_string(),
            },
            None => base.to_string(),
        },
        None => base.to_string(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Maps a failed INSERT/UPDATE: unique violations (a concurrent writer won the race the flow's
/// own check could not see) are conflicts, foreign-key violations a missing parent.
pub(crate) fn write_error(
    e: sqlx::Error,
    conflict: impl FnOnce() -> String,
    missing: impl FnOnce() -> String,
) -> StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StoreError::Conflict(conflict()),
        Some(d) if d.is_foreign_key_violation() => StoreError::NotFound(missing()),
        _ => StoreError::Db(e),
    }
}

/// Wraps a connection failure so it names the URL with the password masked.
pub(crate) fn connect_error(url: &str, source: sqlx::Error) -> StoreError {
    StoreError::Connect { url: redact_url(url), source }
}

pub(crate) fn migrate_error(url: &str, source: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Migrate { url: redact_url(url), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("postgres://kg:pw@db:5432/x"), "postgres://kg:***@db:5432/x");
        assert_eq!(redact_url("postgres://kg@db/x"), "postgres://kg@db/x");
        assert_eq!(redact_url("sqlite://keygate.db"), "sqlite://keygate.db");
        assert_eq!(redact_url("mysql://root:p@ss:w@rd@h/db"), "mysql://root:***@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=kg&password=pw&sslmode=require"),
            "postgres://h/db?user=kg&password=***&sslmode=require"
        );
    }

    #[test]
    fn url_schemes_pick_backends() {
        assert_eq!(backend_kind("sqlite://x.db"), Some(BackendKind::Sqlite));
        assert_eq!(backend_kind("sqlite::memory:"), Some(BackendKind::Sqlite));
        assert_eq!(backend_kind("postgresql://h/db"), Some(BackendKind::Postgres));
        assert_eq!(backend_kind("postgres://h/db"), Some(BackendKind::Postgres));
        assert_eq!(backend_kind("mariadb://h/db"), Some(BackendKind::Mysql));
        assert_eq!(backend_kind("MYSQL://h/db"), Some(BackendKind::Mysql));
        assert_eq!(backend_kind("redis://h"), None);
        assert_eq!(backend_kind("keygate.db"), None);
    }

    #[test]
    fn generated_secrets_are_256_bit_base64url() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(*a, *b);
        assert!(a.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'));
    }

    #[test]
    fn key_record_json_defaults_new_fields() {
        let json = serde_json::json!({
            "access_key": "AK", "app_id": "app", "scheme": "kg1-hmac-sha256", "scheme_settings": {},
            "enabled": true, "valid_from": null, "valid_to": null, "timestamp_window_secs": 300,
            "description": ""
        });
        let k: KeyRecord = serde_json::from_value(json).unwrap();
        assert!(k.scopes.is_empty() && k.rate_limit.is_none() && k.successor.is_none());
    }
}
