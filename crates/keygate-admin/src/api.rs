// The admin API's JSON shapes: what callers send and get back. Kept apart from the store's
// records so the storage schema can change without breaking the API contract.

use keygate_store::{
    AdminAuditEntry, AdminRole, AdminTokenRecord, AppRecord, KeyRecord, RateLimit, TenantRecord,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
}

impl From<TenantRecord> for Tenant {
    fn from(t: TenantRecord) -> Self {
        Self { id: t.id, name: t.name }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct App {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub enabled: bool,
}

impl From<AppRecord> for App {
    fn from(a: AppRecord) -> Self {
        Self { id: a.id, tenant_id: a.tenant_id, name: a.name, enabled: a.enabled }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    pub id: String,
    pub name: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    pub name: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub rate_per_sec: f64,
    pub burst: u32,
}

/// Key metadata. The secret is never part of it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Key {
    pub access_key: String,
    pub app_id: String,
    pub scheme: String,
    #[schema(value_type = Object)]
    pub scheme_settings: serde_json::Value,
    pub enabled: bool,
    pub valid_from: Option<i64>,
    pub valid_to: Option<i64>,
    pub timestamp_window_secs: u32,
    pub description: String,
    pub scopes: Vec<String>,
    pub allowed_endpoints: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    pub rate_limit: Option<Rate>,
    pub created_by: String,
    pub last_used_at: Option<i64>,
    pub successor: Option<String>,
    pub overlap_until: Option<i64>,
    /// `signature`, `token` or `both`.
    pub auth_policy: String,
}

impl From<KeyRecord> for Key {
    fn from(k: KeyRecord) -> Self {
        Self {
            access_key: k.access_key,
            app_id: k.app_id,
            scheme: k.scheme,
            scheme_settings: k.scheme_settings,
            enabled: k.enabled,
            valid_from: k.valid_from,
            valid_to: k.valid_to,
            timestamp_window_secs: k.timestamp_window_secs,
            description: k.description,
            scopes: k.scopes,
            allowed_endpoints: k.allowed_endpoints,
            allowed_cidrs: k.allowed_cidrs,
            rate_limit: k.rate_limit.map(|r| Rate { rate_per_sec: r.rate_per_sec, burst: r.burst }),
            created_by: k.created_by,
            last_used_at: k.last_used_at,
            successor: k.successor,
            overlap_until: k.overlap_until,
            auth_policy: k.auth_policy,
        }
    }
}

/// A new key. Without `secret` keygate generates one (256 bits) and returns it once; with
/// `secret` (at least 16 bytes) an existing secret is imported and never echoed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Default: generated (`AK` + 20 hex digits).
    pub access_key: Option<String>,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub scheme_settings: serde_json::Value,
    /// Import an existing secret instead of generating one.
    #[schema(write_only)]
    pub secret: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub valid_from: Option<i64>,
    pub valid_to: Option<i64>,
    #[serde(default = "default_window")]
    pub timestamp_window_secs: u32,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub allowed_endpoints: Vec<String>,
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    pub rate_limit: Option<Rate>,
    /// `signature` (default), `token` or `both`: see docs/tokens.md.
    #[serde(default = "default_auth_policy")]
    pub auth_policy: String,
}

fn default_auth_policy() -> String {
    keygate_store::AUTH_POLICY_SIGNATURE.into()
}

/// A saved configuration version (without its document).
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: i64,
    pub created_at: i64,
    pub created_by: String,
    pub comment: String,
}

impl From<keygate_store::ConfigVersion> for VersionInfo {
    fn from(v: keygate_store::ConfigVersion) -> Self {
        Self { version: v.version, created_at: v.created_at, created_by: v.created_by, comment: v.comment }
    }
}

/// A version with its document (TOML, as `keygate config export` writes it).
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    #[serde(flatten)]
    pub info: VersionInfo,
    pub document: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DiffQuery {
    /// Version to compare with (default: the previous one; 0 = empty).
    pub from: Option<i64>,
}

/// `-`/`+`/` ` lines (3 lines of context, `@@` between hunks).
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDiff {
    pub from: i64,
    pub to: i64,
    pub diff: Vec<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveVersion {
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    pub comment: String,
    /// Only report what would change.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RollbackResult {
    pub dry_run: bool,
    /// `+ create …`, `~ update …` (with changed fields), `- delete …`, `= unchanged …`.
    pub plan: Vec<String>,
    pub summary: String,
    pub warnings: Vec<String>,
    /// The version recorded by the rollback.
    pub version: Option<VersionInfo>,
}

/// A user token request (from a login service): the token is bound to the app and the user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserToken {
    /// 1–128 characters, no control characters; forwarded to upstreams as `X-Kg-User-Id`.
    pub user_id: String,
    /// Default and maximum: the gateway's `[tokens]` settings.
    pub ttl_secs: Option<u64>,
}

/// An issued token: shown once, stored only as its SHA-256.
#[derive(Serialize, ToSchema)]
pub struct IssuedToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub expires_at: i64,
    pub app_id: String,
    pub user_id: Option<String>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken").field("app_id", &self.app_id).finish_non_exhaustive()
    }
}

/// Revoke tokens of an app: all of them, or only one user's.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeAppTokens {
    pub user_id: Option<String>,
}

/// Revoke one token, named by its value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    #[schema(write_only)]
    pub token: String,
}

impl std::fmt::Debug for RevokeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevokeToken { .. }")
    }
}

/// How many tokens a revocation ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokensRevoked {
    pub revoked: u64,
}

impl std::fmt::Debug for CreateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateKey")
            .field("access_key", &self.access_key)
            .field("scheme", &self.scheme)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// Partial update; absent fields are left alone, `null` clears an optional one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub valid_from: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub valid_to: Option<Option<i64>>,
    pub timestamp_window_secs: Option<u32>,
    pub description: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub allowed_endpoints: Option<Vec<String>>,
    pub allowed_cidrs: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Rate>)]
    pub rate_limit: Option<Option<Rate>>,
    pub auth_policy: Option<String>,
}

impl UpdateKey {
    pub fn apply(self, k: &mut KeyRecord) {
        if let Some(v) = self.enabled {
            k.enabled = v;
        }
        if let Some(v) = self.valid_from {
            k.valid_from = v;
        }
        if let Some(v) = self.valid_to {
            k.valid_to = v;
        }
        if let Some(v) = self.timestamp_window_secs {
            k.timestamp_window_secs = v;
        }
        if let Some(v) = self.description {
            k.description = v;
        }
        if let Some(v) = self.scopes {
            k.scopes = v;
        }
        if let Some(v) = self.allowed_endpoints {
            k.allowed_endpoints = v;
        }
        if let Some(v) = self.allowed_cidrs {
            k.allowed_cidrs = v;
        }
        if let Some(v) = self.rate_limit {
            k.rate_limit = v.map(|r| RateLimit { rate_per_sec: r.rate_per_sec, burst: r.burst });
        }
        if let Some(v) = self.auth_policy {
            k.auth_policy = v;
        }
    }
}

/// A created key: its metadata, and the secret exactly once when keygate generated it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    pub key: Key,
    /// Present only when keygate generated the secret. Store it now: it is never shown again.
    #[schema(value_type = Option<String>)]
    pub secret: Option<OnceSecret>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps verifying (default 1 day, at most 90 days).
    #[serde(default = "default_overlap")]
    pub overlap_secs: u64,
    /// Default: generated.
    pub new_access_key: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Rotated {
    pub old: Key,
    pub new: Key,
    /// The new key's secret, shown once.
    #[schema(value_type = String)]
    pub secret: OnceSecret,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppRevoked {
    pub app: App,
    /// Keys that were enabled and are now disabled.
    pub keys_disabled: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminToken {
    pub id: String,
    pub name: String,
    /// `gateway_admin`, `tenant_admin` or `tenant_developer`.
    pub role: String,
    pub tenant_id: Option<String>,
    pub app_grants: Vec<String>,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<AdminTokenRecord> for AdminToken {
    fn from(t: AdminTokenRecord) -> Self {
        Self {
            id: t.id,
            name: t.name,
            role: t.role.as_str().to_string(),
            tenant_id: t.tenant_id,
            app_grants: t.app_grants,
            created_at: t.created_at,
            created_by: t.created_by,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdminToken {
    pub name: String,
    pub role: String,
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub app_grants: Vec<String>,
    pub expires_at: Option<i64>,
}

impl CreateAdminToken {
    pub fn role(&self) -> Result<AdminRole, crate::AdminError> {
        AdminRole::parse(&self.role).ok_or_else(|| {
            crate::AdminError::invalid("role", "must be gateway_admin, tenant_admin or tenant_developer")
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedAdminToken {
    pub record: AdminToken,
    /// The bearer token, shown once.
    #[schema(value_type = String)]
    pub token: OnceSecret,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

impl From<AdminAuditEntry> for AuditEntry {
    fn from(e: AdminAuditEntry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            before: e.before,
            after: e.after,
        }
    }
}

/// The error envelope every refusal uses.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub code: String,
    pub message: String,
    pub request_id: String,
    /// For `invalid_request`: the path of the offending field, e.g. `key.allowed_cidrs[1]`.
    pub field: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub token: AdminToken,
}

/// A secret that travels once in a creation response: serialized as a plain string, never
/// shown by `Debug`, wiped when dropped.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct OnceSecret(pub zeroize::Zeroizing<String>);

impl OnceSecret {
    pub fn new(s: String) -> Self {
        Self(zeroize::Zeroizing::new(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for OnceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

fn yes() -> bool {
    true
}
fn default_scheme() -> String {
    "kg1-hmac-sha256".into()
}
fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}
fn default_window() -> u32 {
    300
}
fn default_overlap() -> u64 {
    86_400
}

/// `Some(None)` for an explicit `null`, `Some(Some(v))` for a value, `None` (via default) when
/// the field is absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// ---- tenant routes and alert rules ----

/// A route or alert rule a tenant owns.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantObjectView {
    pub tenant_id: String,
    /// `route` or `alert_rule`.
    pub kind: String,
    pub name: String,
    /// The route (fields of a `[[routes]]` entry) or the alert rule.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

impl From<keygate_store::TenantObject> for TenantObjectView {
    fn from(o: keygate_store::TenantObject) -> Self {
        Self {
            tenant_id: o.tenant_id,
            kind: o.kind.as_str().to_string(),
            name: o.name,
            config: o.config,
            created_at: o.created_at,
            updated_at: o.updated_at,
            updated_by: o.updated_by,
        }
    }
}

/// Body of `PUT /admin/tenants/{tenant}/routes/{name}` and `…/alert-rules/{name}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutTenantObject {
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

// ---- outbound providers ----

/// A provider: its document (no secrets) and what is known about its secrets.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Provider {
    pub id: String,
    pub tenant_id: String,
    /// The provider document (base URL, hosts, paths, timeouts, retry, limits, breaker, recipe).
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
    /// Names and sizes of the stored secrets (values are write-only).
    pub secrets: Vec<ProviderSecret>,
    /// Bindings the recipe reads that are not stored yet: calls fail with `binding_missing`.
    pub missing_bindings: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderSecret {
    pub name: String,
    pub byte_len: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

impl From<keygate_store::ProviderSecretMeta> for ProviderSecret {
    fn from(m: keygate_store::ProviderSecretMeta) -> Self {
        Self { name: m.name, byte_len: m.byte_len, updated_at: m.updated_at, updated_by: m.updated_by }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutProvider {
    pub tenant_id: String,
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

/// A secret value to store. Never returned by any call.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    #[schema(value_type = String)]
    pub value: OnceSecret,
    /// `utf8` (default; PEM keys, ids), `base64` or `hex` (raw AES keys and IVs).
    #[serde(default)]
    pub encoding: Option<String>,
}

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecret").field("encoding", &self.encoding).finish_non_exhaustive()
    }
}

// ---- scripted recipes ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveScript {
    /// `function (reqHeaders, reqParams, reqBody, Binding1, …) { … }`
    pub source: String,
    #[serde(default)]
    pub comment: String,
    /// Non-secret values by parameter name; only used when the provider had no script yet.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub vars: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScriptVersionView {
    pub version: i64,
    pub comment: String,
    pub created_at: i64,
    pub created_by: String,
    pub source: String,
    /// The version the provider uses now.
    pub active: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SavedScript {
    pub version: i64,
    pub provider: Provider,
}
