// Decoding of stored rows into records, shared by the three backends (same column names).
// Read side only: nothing here writes, and ciphertext is opened only in `open_sealed`.

use secrecy::SecretBox;
use sqlx::{Decode, Type};

use crate::{
    AdminAuditEntry, AppRecord, KeyRecord, KeyWithSecret, Keyring, RateLimit, StoreError, TenantRecord,
};

/// A text column. MySQL flags `utf8mb4_bin` columns (used for bytewise-compared ids) as binary,
/// and sqlx then refuses to decode them as `String`; this accepts both forms on MySQL and is a
/// plain string elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(pub String);

impl Type<sqlx::Sqlite> for Text {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as Type<sqlx::Sqlite>>::type_info()
    }
    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <String as Type<sqlx::Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, sqlx::Sqlite> for Text {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        <String as Decode<sqlx::Sqlite>>::decode(value).map(Text)
    }
}

impl Type<sqlx::Postgres> for Text {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, sqlx::Postgres> for Text {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        <String as Decode<sqlx::Postgres>>::decode(value).map(Text)
    }
}

impl Type<sqlx::MySql> for Text {
    fn type_info() -> sqlx::mysql::MySqlTypeInfo {
        <String as Type<sqlx::MySql>>::type_info()
    }
    fn compatible(ty: &sqlx::mysql::MySqlTypeInfo) -> bool {
        <String as Type<sqlx::MySql>>::compatible(ty) || <Vec<u8> as Type<sqlx::MySql>>::compatible(ty)
    }
}

impl<'r> Decode<'r, sqlx::MySql> for Text {
    fn decode(value: sqlx::mysql::MySqlValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let bytes = <&[u8] as Decode<sqlx::MySql>>::decode(value)?;
        Ok(Text(std::str::from_utf8(bytes)?.to_owned()))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: Text,
    name: Text,
}

impl From<TenantRow> for TenantRecord {
    fn from(r: TenantRow) -> Self {
        TenantRecord { id: r.id.0, name: r.name.0 }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AppRow {
    id: Text,
    tenant_id: Text,
    name: Text,
    enabled: bool,
}

impl From<AppRow> for AppRecord {
    fn from(r: AppRow) -> Self {
        AppRecord { id: r.id.0, tenant_id: r.tenant_id.0, name: r.name.0, enabled: r.enabled }
    }
}

/// Metadata columns of `keys`, in the order `bind_key_columns!` binds them. Same names on every
/// backend; only placeholders differ.
macro_rules! key_columns {
    () => {
        "access_key, app_id, scheme, scheme_settings, enabled, valid_from, valid_to, \
         timestamp_window_secs, description, scopes, allowed_endpoints, allowed_cidrs, rate_per_sec, \
         rate_burst, created_by, last_used_at, successor, overlap_until, auth_policy"
    };
}
pub(crate) use key_columns;

/// Binds a key's `key_columns!()` values (`$k: &KeyRecord`, `$c: &KeyColumns`) in order.
macro_rules! bind_key_columns {
    ($q:expr, $k:expr, $c:expr) => {
        $q.bind(&$k.access_key)
            .bind(&$k.app_id)
            .bind(&$k.scheme)
            .bind(&$c.scheme_settings)
            .bind($k.enabled)
            .bind($k.valid_from)
            .bind($k.valid_to)
            .bind($c.timestamp_window_secs)
            .bind(&$k.description)
            .bind(&$c.scopes)
            .bind(&$c.allowed_endpoints)
            .bind(&$c.allowed_cidrs)
            .bind($c.rate_per_sec)
            .bind($c.rate_burst)
            .bind(&$k.created_by)
            .bind($k.last_used_at)
            .bind(&$k.successor)
            .bind($k.overlap_until)
            .bind(&$k.auth_policy)
    };
}
pub(crate) use bind_key_columns;

/// Binds the values of a key UPDATE's SET list: `key_columns!()` minus `access_key` (the row
/// being updated, bound last by the caller) and `last_used_at` (owned by `touch`).
macro_rules! bind_key_update {
    ($q:expr, $k:expr, $c:expr) => {
        $q.bind(&$k.app_id)
            .bind(&$k.scheme)
            .bind(&$c.scheme_settings)
            .bind($k.enabled)
            .bind($k.valid_from)
            .bind($k.valid_to)
            .bind($c.timestamp_window_secs)
            .bind(&$k.description)
            .bind(&$c.scopes)
            .bind(&$c.allowed_endpoints)
            .bind(&$c.allowed_cidrs)
            .bind($c.rate_per_sec)
            .bind($c.rate_burst)
            .bind(&$k.created_by)
            .bind(&$k.successor)
            .bind($k.overlap_until)
            .bind(&$k.auth_policy)
    };
}
pub(crate) use bind_key_update;

/// Columns every key query selects (`key_columns!()`).
#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    access_key: Text,
    app_id: Text,
    scheme: Text,
    scheme_settings: Text,
    enabled: bool,
    valid_from: Option<i64>,
    valid_to: Option<i64>,
    timestamp_window_secs: i64,
    description: Text,
    scopes: Text,
    allowed_endpoints: Text,
    allowed_cidrs: Text,
    rate_per_sec: Option<f64>,
    rate_burst: Option<i64>,
    created_by: Text,
    last_used_at: Option<i64>,
    successor: Option<Text>,
    overlap_until: Option<i64>,
    auth_policy: Text,
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;

    fn try_from(r: KeyRow) -> Result<Self, StoreError> {
        let ak = r.access_key.0;
        let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of key {ak}"));
        let json_list = |s: &str, what: &str| -> Result<Vec<String>, StoreError> {
            serde_json::from_str(s).map_err(|_| corrupt(what))
        };
        let rate_limit = match (r.rate_per_sec, r.rate_burst) {
            (Some(rate_per_sec), Some(burst)) => Some(RateLimit {
                rate_per_sec,
                burst: u32::try_from(burst).map_err(|_| corrupt("rate_burst"))?,
            }),
            (None, None) => None,
            _ => return Err(corrupt("rate_per_sec/rate_burst")),
        };
        Ok(KeyRecord {
            app_id: r.app_id.0,
            scheme: r.scheme.0,
            scheme_settings: serde_json::from_str(&r.scheme_settings.0)
                .map_err(|_| corrupt("scheme_settings"))?,
            enabled: r.enabled,
            valid_from: r.valid_from,
            valid_to: r.valid_to,
            timestamp_window_secs: u32::try_from(r.timestamp_window_secs)
                .map_err(|_| corrupt("timestamp_window_secs"))?,
            description: r.description.0,
            scopes: json_list(&r.scopes.0, "scopes")?,
            allowed_endpoints: json_list(&r.allowed_endpoints.0, "allowed_endpoints")?,
            allowed_cidrs: json_list(&r.allowed_cidrs.0, "allowed_cidrs")?,
            rate_limit,
            created_by: r.created_by.0,
            last_used_at: r.last_used_at,
            successor: r.successor.map(|s| s.0),
            overlap_until: r.overlap_until,
            auth_policy: r.auth_policy.0,
            access_key: ak,
        })
    }
}

/// A key row with its envelope ciphertext.
#[derive(sqlx::FromRow)]
pub(crate) struct SealedKeyRow {
    #[sqlx(flatten)]
    pub key: KeyRow,
    pub master_key_version: i64,
    pub secret_ciphertext: Vec<u8>,
}

/// A key as stored: metadata plus the sealed secret (never decrypted unless asked).
pub(crate) struct StoredKey {
    pub record: KeyRecord,
    pub version: u32,
    pub blob: Vec<u8>,
}

impl TryFrom<SealedKeyRow> for StoredKey {
    type Error = StoreError;

    fn try_from(r: SealedKeyRow) -> Result<Self, StoreError> {
        let record = KeyRecord::try_from(r.key)?;
        let version = u32::try_from(r.master_key_version)
            .map_err(|_| StoreError::Corrupt(format!("master_key_version of key {}", record.access_key)))?;
        Ok(StoredKey { record, version, blob: r.secret_ciphertext })
    }
}

/// The per-row step of `load_keys`, run as each row arrives (`Query::try_map`), so a reload
/// never holds every raw row and every opened key at once. sqlx's map callback can only fail
/// with `sqlx::Error`; [`unwrap_open_error`] recovers the `StoreError` inside.
pub(crate) fn open_row<Row: sqlx::Row>(row: Row, keyring: &Keyring) -> Result<KeyWithSecret, sqlx::Error>
where
    for<'r> SealedKeyRow: sqlx::FromRow<'r, Row>,
{
    let sealed = <SealedKeyRow as sqlx::FromRow<'_, Row>>::from_row(&row)?;
    drop(row);
    open_sealed(sealed, keyring).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

pub(crate) fn unwrap_open_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Decode(inner) => match inner.downcast::<StoreError>() {
            Ok(store_error) => *store_error,
            Err(other) => StoreError::Db(sqlx::Error::Decode(other)),
        },
        other => StoreError::Db(other),
    }
}

/// Decrypts one row for the snapshot; the plaintext goes straight into the caller's `SecretBox`.
pub(crate) fn open_sealed(row: SealedKeyRow, keyring: &Keyring) -> Result<KeyWithSecret, StoreError> {
    let stored = StoredKey::try_from(row)?;
    let plain = keyring.open(stored.version, stored.record.access_key.as_bytes(), &stored.blob)?;
    let secret = SecretBox::new(Box::<[u8]>::from(&plain[..]));
    Ok(KeyWithSecret { record: stored.record, secret })
}

/// Row shape of the ciphertext-only scan used by master-key rotation.
#[derive(sqlx::FromRow)]
pub(crate) struct CiphertextRow {
    pub access_key: Text,
    pub master_key_version: i64,
    pub secret_ciphertext: Vec<u8>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    at: i64,
    actor: Text,
    action: Text,
    target: Text,
    before_json: Option<Text>,
    after_json: Option<Text>,
}

impl TryFrom<AuditRow> for AdminAuditEntry {
    type Error = StoreError;

    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        let parse = |t: Option<Text>| -> Result<Option<serde_json::Value>, StoreError> {
            t.map(|t| serde_json::from_str(&t.0))
                .transpose()
                .map_err(|_| StoreError::Corrupt(format!("admin audit row {}", r.id)))
        };
        Ok(AdminAuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor.0,
            action: r.action.0,
            target: r.target.0,
            before: parse(r.before_json)?,
            after: parse(r.after_json)?,
        })
    }
}

/// Column values of a key as bound by INSERT/UPDATE statements, computed once per write.
pub(crate) struct KeyColumns {
    pub scheme_settings: String,
    pub scopes: String,
    pub allowed_endpoints: String,
    pub allowed_cidrs: String,
    pub rate_per_sec: Option<f64>,
    pub rate_burst: Option<i64>,
    pub timestamp_window_secs: i64,
}

impl KeyColumns {
    pub fn of(k: &KeyRecord) -> Result<Self, StoreError> {
        Ok(Self {
            scheme_settings: to_json(&k.scheme_settings)?,
            scopes: to_json(&k.scopes)?,
            allowed_endpoints: to_json(&k.allowed_endpoints)?,
            allowed_cidrs: to_json(&k.allowed_cidrs)?,
            rate_per_sec: k.rate_limit.map(|r| r.rate_per_sec),
            rate_burst: k.rate_limit.map(|r| i64::from(r.burst)),
            timestamp_window_secs: i64::from(k.timestamp_window_secs),
        })
    }
}

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.0
    }
}
