// The declarative TOML config of `keygate serve --config`: parsing, defaults and validation,
// and its translation into store records and data-plane routes. It never logs a secret.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use keygate_inbound::{Route, RouteAuth};
use keygate_sign::legacy::LegacyConfig;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// Alert rules and delivery channels (docs/operations.md).
    #[serde(default)]
    pub alerts: keygate_alerts::AlertsConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// API token exchange (docs/tokens.md); off by default.
    #[serde(default)]
    pub tokens: TokensConfig,
    /// Routes tenants publish themselves (docs/tenant-routes.md): where they live and where they
    /// may forward to.
    #[serde(default)]
    pub tenant_routes: crate::tenant_objects::TenantRoutesConfig,
}

/// `[tokens]`: `POST <path>` signed with AK/SK issues a short-lived API token for keys whose
/// `auth_policy` is `token` or `both`. Tokens live in Redis when `[state] redis` is set (every
/// replica sees an issue or a revocation at once), else in this process's memory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_token_path")]
    pub path: String,
    #[serde(default = "default_token_ttl")]
    pub default_ttl_secs: u64,
    #[serde(default = "default_token_max_ttl")]
    pub max_ttl_secs: u64,
    /// Most live tokens the in-memory store holds (without Redis).
    #[serde(default = "default_token_capacity")]
    pub memory_capacity: usize,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            path: default_token_path(),
            default_ttl_secs: default_token_ttl(),
            max_ttl_secs: default_token_max_ttl(),
            memory_capacity: default_token_capacity(),
        }
    }
}

impl TokensConfig {
    pub fn validate(&self) -> Result<()> {
        if !self.path.starts_with('/') || self.path.contains(['?', '#', '*']) {
            bail!("[tokens] path must be an absolute path without query, fragment or wildcard");
        }
        if self.default_ttl_secs == 0 || self.max_ttl_secs == 0 || self.default_ttl_secs > self.max_ttl_secs {
            bail!("[tokens] need 0 < default_ttl_secs <= max_ttl_secs");
        }
        if self.max_ttl_secs > 7 * 86_400 {
            bail!("[tokens] max_ttl_secs is at most 604800 (7 days): tokens are meant to be short-lived");
        }
        Ok(())
    }
}

fn default_token_path() -> String {
    "/auth/token".into()
}
fn default_token_ttl() -> u64 {
    900
}
fn default_token_max_ttl() -> u64 {
    3600
}
fn default_token_capacity() -> usize {
    100_000
}

/// `[audit]`: one record per request, on by default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Audit database; default: the store's.
    pub url: Option<String>,
    /// Where records wait while the database is unreachable; default `audit-spill` beside the config.
    pub spill_dir: Option<PathBuf>,
    #[serde(default = "default_max_spill")]
    pub max_spill_bytes: u64,
    /// `reject` (503 audit_unavailable when the spill is full) or `drop` (count and serve).
    #[serde(default = "default_spill_policy")]
    pub on_spill_full: String,
    #[serde(default = "default_retention")]
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: None,
            spill_dir: None,
            max_spill_bytes: default_max_spill(),
            on_spill_full: default_spill_policy(),
            retention_days: default_retention(),
        }
    }
}

impl AuditConfig {
    pub fn policy(&self) -> Result<keygate_audit::SpillFullPolicy> {
        Ok(match self.on_spill_full.as_str() {
            "reject" => keygate_audit::SpillFullPolicy::Reject,
            "drop" => keygate_audit::SpillFullPolicy::Drop,
            other => bail!("[audit] on_spill_full must be \"reject\" or \"drop\", not {other:?}"),
        })
    }
}

fn default_max_spill() -> u64 {
    1 << 30
}
fn default_spill_policy() -> String {
    "reject".into()
}
fn default_retention() -> u32 {
    180
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_inbound")]
    pub inbound: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA bundles (PEM) client certificates are verified against; routes with `mtls` need them.
    #[serde(default)]
    pub tls_client_ca: Vec<PathBuf>,
    /// How often the certificate, key and CA files are checked for changes (also on SIGHUP);
    /// a change is loaded without dropping connections. 0 turns polling off.
    #[serde(default = "default_tls_reload_ms")]
    pub tls_reload_interval_ms: u64,
    /// How often replicas poll the store's change counter.
    #[serde(default = "default_reload_ms")]
    pub reload_interval_ms: u64,
    /// Tokio worker threads (default: one per core).
    pub worker_threads: Option<usize>,
    /// Client for plain-HTTP/1.1 upstreams: `lean` (default; the request task drives its
    /// connection) or `hyper` (hyper-util's pooled client, a task per connection). TLS and HTTP/2
    /// upstreams always use hyper-util's client.
    #[serde(default)]
    pub upstream_pool: UpstreamPool,
    /// Admin API listener (`host:port`); off when unset. Keep it on a private interface.
    pub admin: Option<String>,
    /// Metrics and health listener (`host:port`): `/metrics`, `/healthz`, `/readyz`. Off when unset.
    pub metrics: Option<String>,
    /// Outbound gateway listener (`host:port`) for internal callers: `/out/<provider>/<path>`.
    /// Off when unset. Keep it on a private interface, like the admin listener.
    pub outbound: Option<String>,
    /// How often keys' last-use times are written to the store (batched).
    #[serde(default = "default_last_used_flush_ms")]
    pub last_used_flush_ms: u64,
    /// Where the last good snapshot is kept (sealed with the master key) so a restart during a
    /// store outage still serves. Default: next to a SQLite store, else off.
    pub snapshot_cache: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamPool {
    #[default]
    Lean,
    Hyper,
}

impl Config {
    /// Where the last good snapshot is cached: `[server] snapshot_cache`, else for a networked
    /// store (PostgreSQL, MySQL) `keygate-snapshot.cache` next to the config file; none for
    /// SQLite (the store is a local file already).
    pub fn snapshot_cache_path(&self, base_dir: &Path) -> Option<PathBuf> {
        if let Some(p) = &self.server.snapshot_cache {
            if p.as_os_str().is_empty() {
                return None; // `snapshot_cache = ""` turns it off
            }
            return Some(if p.is_absolute() { p.clone() } else { base_dir.join(p) });
        }
        match keygate_store::backend_kind(&self.store.url) {
            Some(keygate_store::BackendKind::Sqlite) | None => None,
            Some(_) => Some(base_dir.join("keygate-snapshot.cache")),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            inbound: default_inbound(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: Vec::new(),
            tls_reload_interval_ms: default_tls_reload_ms(),
            reload_interval_ms: default_reload_ms(),
            worker_threads: None,
            upstream_pool: UpstreamPool::default(),
            admin: None,
            metrics: None,
            outbound: None,
            last_used_flush_ms: default_last_used_flush_ms(),
            snapshot_cache: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_store_url")]
    pub url: String,
    /// Used when `KEYGATE_MASTER_KEY` is not set.
    pub master_key_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: default_store_url(), master_key_file: None }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Most live nonces the in-memory store holds; beyond it requests fail closed (503).
    #[serde(default = "default_nonce_capacity")]
    pub nonce_capacity: usize,
    /// Redis shared by all replicas (nonces, rate limits, idempotency). Without it, state is
    /// per process — correct for one replica only.
    pub redis: Option<String>,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Deadline of one Redis call; past it the failure policy applies.
    #[serde(default = "default_state_timeout_ms")]
    pub timeout_ms: u64,
    /// "closed" (503, default) or "local" (this replica's memory; replays across replicas
    /// are not detected while Redis is down).
    #[serde(default = "default_nonce_failure")]
    pub nonce_on_redis_failure: String,
    /// "local-scaled" (default: local buckets at rate/replicas), "closed" or "open".
    #[serde(default = "default_rate_failure")]
    pub rate_on_redis_failure: String,
    /// Number of replicas, for scaling local buckets while Redis is down.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    #[serde(default = "default_idem_ttl")]
    pub idempotency_ttl_secs: u64,
    #[serde(default = "default_idem_max_body")]
    pub idempotency_max_body_bytes: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            nonce_capacity: default_nonce_capacity(),
            redis: None,
            key_prefix: default_key_prefix(),
            timeout_ms: default_state_timeout_ms(),
            nonce_on_redis_failure: default_nonce_failure(),
            rate_on_redis_failure: default_rate_failure(),
            replicas: default_replicas(),
            idempotency_ttl_secs: default_idem_ttl(),
            idempotency_max_body_bytes: default_idem_max_body(),
        }
    }
}

impl StateConfig {
    pub fn failure_policy(&self) -> Result<keygate_state::FailurePolicy> {
        use keygate_state::{FailurePolicy, NonceFailure, RateFailure};
        let nonce = match self.nonce_on_redis_failure.as_str() {
            "closed" => NonceFailure::Closed,
            "local" => NonceFailure::LocalFallback,
            other => bail!("state.nonce_on_redis_failure must be \"closed\" or \"local\", not {other:?}"),
        };
        let rate = match self.rate_on_redis_failure.as_str() {
            "local-scaled" => RateFailure::LocalScaled { replicas: self.replicas.max(1) },
            "closed" => RateFailure::Closed,
            "open" => RateFailure::Open,
            other => bail!("state.rate_on_redis_failure must be local-scaled, closed or open, not {other:?}"),
        };
        Ok(FailurePolicy { nonce, rate, ..FailurePolicy::default() })
    }
}

/// A token bucket: `rate_per_sec` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub rate_per_sec: f64,
    pub burst: u32,
}

impl RateLimitConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.rate_per_sec > 0.0 && self.rate_per_sec <= 1_000_000.0) {
            bail!("rate_per_sec must be > 0 and <= 1000000");
        }
        if self.burst == 0 {
            bail!("burst must be >= 1");
        }
        Ok(())
    }

    pub fn bucket(&self) -> keygate_state::BucketLimit {
        keygate_state::BucketLimit { rate_per_sec: self.rate_per_sec, burst: self.burst }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub path_prefix: String,
    pub upstream: String,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_route_auth")]
    pub auth: String,
    #[serde(default)]
    pub upstream_http2: bool,
    #[serde(default)]
    pub preserve_host: bool,
    /// Token bucket per client IP on this route, checked after the signature.
    pub per_ip_rate_limit: Option<RateLimitConfig>,
    /// Opt-in: record bodies (masked, capped) and listed headers in the audit log.
    pub audit_capture: Option<CaptureConfig>,
    /// Accept user tokens (app + user id, issued through the admin API) on this route.
    #[serde(default)]
    pub user_tokens: bool,
    /// Client certificates: `off` (default), `optional`, `required` or `with_signature`.
    #[serde(default = "default_mtls")]
    pub mtls: String,
    /// Encrypted JSON fields (docs/encrypted-fields.md).
    pub encrypted_fields: Option<FieldsConfig>,
}

/// `encrypted_fields = { decrypt = [...], encrypt_response = [...] }` of a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsConfig {
    #[serde(default)]
    pub decrypt: Vec<String>,
    #[serde(default)]
    pub encrypt_response: Vec<String>,
    #[serde(default = "default_max_envelope")]
    pub max_envelope_bytes: usize,
    #[serde(default = "default_max_field_response")]
    pub max_response_bytes: usize,
}

fn default_max_envelope() -> usize {
    256 * 1024
}
fn default_max_field_response() -> usize {
    4 * 1024 * 1024
}

fn default_mtls() -> String {
    "off".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Longest body kept in a record, after masking.
    #[serde(default = "default_capture_bytes")]
    pub max_bytes: usize,
    /// JSON/form field names whose values are replaced by `***` (any depth, case-insensitive).
    #[serde(default)]
    pub mask_fields: Vec<String>,
    /// Request headers to record; credential headers (Authorization, Cookie, X-Kg-*, *token*,
    /// *secret*, *signature*, *api-key*) are never recorded, listed or not.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Responses are held for the record only up to this Content-Length.
    #[serde(default = "default_capture_buffer")]
    pub max_response_buffer: u64,
}

fn default_capture_bytes() -> usize {
    4096
}
fn default_capture_buffer() -> u64 {
    65_536
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub id: String,
    pub name: Option<String>,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub access_key: String,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// Inline secret: accepted for local experiments, warned about at startup.
    pub secret: Option<String>,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub valid_from: Option<TimeValue>,
    pub valid_to: Option<TimeValue>,
    #[serde(default = "default_window")]
    pub timestamp_window_secs: u32,
    #[serde(default)]
    pub description: String,
    pub legacy: Option<LegacySettings>,
    /// Credential scope for `scheme = "aws-sigv4"`.
    pub sigv4: Option<SigV4Settings>,
    /// Algorithm and required components for `scheme = "http-signature"`.
    pub http_signature: Option<HttpSigSettings>,
    /// The client certificate of `scheme = "mtls"` (no secret source then).
    pub mtls: Option<MtlsSettings>,
    /// `scheme = "field-rsa"` (secret = the PKCS#8 PEM private key) or `"field-partner"`.
    pub field_key: Option<FieldKeySettings>,
    /// Token bucket for every request of this key, shared across replicas.
    pub rate_limit: Option<RateLimitConfig>,
    /// Scopes granted to the key (free-form labels the upstream may check).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `"METHOD /path/pattern"` entries; empty allows every endpoint.
    #[serde(default)]
    pub allowed_endpoints: Vec<String>,
    /// Client networks (CIDR, IPv4 or IPv6); empty allows every address.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// `signature` (default), `token` or `both` (see docs/tokens.md).
    #[serde(default = "default_auth_policy")]
    pub auth_policy: String,
}

fn default_auth_policy() -> String {
    "signature".into()
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyConfig")
            .field("access_key", &self.access_key)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// A point in time: a TOML datetime (`2027-01-01T00:00:00Z`) or Unix seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TimeValue {
    Unix(i64),
    Datetime(toml::value::Datetime),
}

impl TimeValue {
    pub fn unix(&self) -> Result<i64> {
        match self {
            Self::Unix(s) => Ok(*s),
            Self::Datetime(dt) => crate::time::datetime_to_unix(dt),
        }
    }
}

/// The `[apps.keys.legacy]` table; also the JSON stored as the key's scheme settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LegacySettings {
    #[serde(default = "d_digest")]
    pub digest: String,
    #[serde(default = "d_case")]
    pub hex_case: String,
    #[serde(default = "d_location")]
    pub location: String,
    #[serde(default = "d_ak")]
    pub access_key_field: String,
    #[serde(default = "d_ts")]
    pub timestamp_field: String,
    #[serde(default = "d_nonce")]
    pub nonce_field: String,
    #[serde(default = "d_sign")]
    pub sign_field: String,
    #[serde(default = "d_unit")]
    pub timestamp_unit: String,
    #[serde(default = "d_nonce_min")]
    pub nonce_min_len: usize,
}

impl Default for LegacySettings {
    fn default() -> Self {
        Self {
            digest: d_digest(),
            hex_case: d_case(),
            location: d_location(),
            access_key_field: d_ak(),
            timestamp_field: d_ts(),
            nonce_field: d_nonce(),
            sign_field: d_sign(),
            timestamp_unit: d_unit(),
            nonce_min_len: d_nonce_min(),
        }
    }
}

impl LegacySettings {
    pub fn to_config(&self) -> Result<LegacyConfig> {
        let field = |name: &str, v: &str| -> Result<String> {
            if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                bail!("legacy.{name} must be 1-64 visible ASCII characters");
            }
            Ok(v.to_string())
        };
        let cfg = LegacyConfig {
            digest: self
                .digest
                .parse()
                .map_err(|_| anyhow::anyhow!("legacy.digest must be md5, sha1 or sha256"))?,
            hex_case: self
                .hex_case
                .parse()
                .map_err(|_| anyhow::anyhow!("legacy.hex_case must be upper or lower"))?,
            location: self
                .location
                .parse()
                .map_err(|_| anyhow::anyhow!("legacy.location must be params or headers"))?,
            access_key_field: field("access_key_field", &self.access_key_field)?,
            timestamp_field: field("timestamp_field", &self.timestamp_field)?,
            nonce_field: field("nonce_field", &self.nonce_field)?,
            sign_field: field("sign_field", &self.sign_field)?,
            timestamp_unit: self
                .timestamp_unit
                .parse()
                .map_err(|_| anyhow::anyhow!("legacy.timestamp_unit must be s or ms"))?,
            nonce_min_len: self.nonce_min_len,
        };
        if !(1..=64).contains(&cfg.nonce_min_len) {
            bail!("legacy.nonce_min_len must be between 1 and 64");
        }
        let names = [&cfg.access_key_field, &cfg.timestamp_field, &cfg.nonce_field, &cfg.sign_field];
        for (i, a) in names.iter().enumerate() {
            if names[i + 1..].contains(a) {
                bail!("legacy field names must be distinct ({a} used twice)");
            }
        }
        Ok(cfg)
    }
}

pub const SCHEME_KG1: &str = "kg1-hmac-sha256";
pub const SCHEME_LEGACY: &str = "legacy-sorted";
pub const SCHEME_SIGV4: &str = "aws-sigv4";
pub const SCHEME_HTTPSIG: &str = "http-signature";

/// Settings of an `http-signature` (RFC 9421) key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpSigSettings {
    /// `hmac-sha256` (the key's secret is the shared secret) or `ed25519` (the key's secret is
    /// the base64 raw 32-byte public key; keygate never holds the private key).
    pub alg: String,
    /// Components every signature must cover (`content-digest` is added for requests with a body).
    #[serde(default = "default_httpsig_components")]
    pub required_components: Vec<String>,
}

fn default_httpsig_components() -> Vec<String> {
    vec!["@method".into(), "@target-uri".into()]
}

impl HttpSigSettings {
    pub fn check(&self) -> Result<()> {
        if self.alg != "hmac-sha256" && self.alg != "ed25519" {
            bail!("http_signature.alg must be hmac-sha256 or ed25519");
        }
        if self
            .required_components
            .iter()
            .any(|c| c.is_empty() || c.bytes().any(|b| b.is_ascii_uppercase() || b == b'"'))
        {
            bail!("http_signature.required_components must be lowercase component names");
        }
        Ok(())
    }
}

/// Settings of an `aws-sigv4` key: the credential scope it accepts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SigV4Settings {
    pub region: String,
    pub service: String,
    /// Accept `x-amz-content-sha256: UNSIGNED-PAYLOAD` (the body is then not signed).
    #[serde(default)]
    pub allow_unsigned_payload: bool,
}

impl SigV4Settings {
    pub fn check(&self) -> Result<()> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !ok(&self.region) || !ok(&self.service) {
            bail!("sigv4 region and service must be 1-64 of [a-z0-9-]");
        }
        Ok(())
    }
}

pub const SCHEME_MTLS: &str = "mtls";
pub const SCHEME_FIELD_RSA: &str = "field-rsa";
pub const SCHEME_FIELD_PARTNER: &str = "field-partner";

/// Settings of a `field-rsa` key (the app's key pair for encrypted fields; the private key is
/// the key's secret, PKCS#8 PEM) or a `field-partner` key (the partner's public key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FieldKeySettings {
    /// Version tag partners put in envelopes (`kge1.o.<kid>.…`): 1-32 of `[A-Za-z0-9_-]`.
    pub kid: String,
    /// SPKI PEM. For `field-rsa` filled in by keygate from the private key (downloadable);
    /// for `field-partner` the partner's key, required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    /// For a key pair generated by the admin API: 2048 (default) or 3072.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<usize>,
}

impl FieldKeySettings {
    pub fn check(&self, partner: bool) -> Result<()> {
        if !keygate_sign::fields::valid_kid(&self.kid) {
            bail!("field_key.kid must be 1-32 characters of [A-Za-z0-9_-]");
        }
        match (&self.public_key_pem, partner) {
            (None, true) => bail!("a field-partner key needs field_key.public_key_pem"),
            (Some(pem), _) => {
                keygate_sign::fields::FieldPublicKey::from_pem(pem.as_bytes())
                    .map_err(|e| anyhow::anyhow!("field_key.public_key_pem: {e}"))?;
            }
            (None, false) => {}
        }
        if self.bits.is_some_and(|b| b != 2048 && b != 3072) {
            bail!("field_key.bits must be 2048 or 3072");
        }
        Ok(())
    }
}

/// Settings of an `mtls` key: which client certificate it stands for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MtlsSettings {
    /// SHA-256 of the certificate's SubjectPublicKeyInfo, 64 hex digits (`:` separators allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spki_sha256: Option<String>,
    /// Subject DN, attributes in certificate order: `CN=client-1, O=Acme`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl MtlsSettings {
    pub fn check(&self) -> Result<()> {
        if self.spki_sha256.is_none() && self.subject.is_none() {
            bail!("mtls needs spki_sha256 or subject");
        }
        if let Some(p) = &self.spki_sha256 {
            if keygate_inbound::mtls::parse_spki_hex(p).is_none() {
                bail!("mtls.spki_sha256 must be 64 hex digits");
            }
        }
        if let Some(s) = &self.subject {
            if s.trim().is_empty() || s.len() > 512 || s.chars().any(char::is_control) {
                bail!("mtls.subject must be 1-512 characters without control characters");
            }
        }
        Ok(())
    }

    /// The key's stand-in secret: an mtls key signs nothing, but every key row holds a secret.
    /// Derived from the settings so re-importing the same config changes nothing.
    pub fn placeholder_secret(&self) -> Vec<u8> {
        let text = format!("{:?}|{:?}", self.spki_sha256, self.subject);
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
        format!("mtls-unused-{}", hex::encode(d.as_ref())).into_bytes()
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: Config = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        cfg.validate().with_context(|| format!("invalid config {}", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        for (i, r) in self.routes.iter().enumerate() {
            let route = r.to_route().with_context(|| format!("routes[{i}]"))?;
            if route.mtls != keygate_inbound::MtlsMode::Off && self.server.tls_client_ca.is_empty() {
                bail!("routes[{i}]: mtls = {:?} needs [server] tls_cert, tls_key and tls_client_ca", r.mtls);
            }
        }
        self.tenant_routes.validate()?;
        if !self.server.tls_client_ca.is_empty() && self.server.tls_cert.is_none() {
            bail!("[server] tls_client_ca needs tls_cert and tls_key");
        }
        self.state.failure_policy().context("[state]")?;
        let mut seen = std::collections::HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            check_id(&app.id).with_context(|| format!("apps[{i}].id"))?;
            for (j, k) in app.keys.iter().enumerate() {
                let at = || format!("apps[{i}].keys[{j}] ({})", k.access_key);
                check_access_key(&k.access_key).with_context(at)?;
                if !seen.insert(k.access_key.clone()) {
                    bail!("{}: access key listed twice", at());
                }
                k.scheme_settings().with_context(at)?;
                let sources = [k.secret.is_some(), k.secret_env.is_some(), k.secret_file.is_some()];
                let n = sources.iter().filter(|s| **s).count();
                if k.scheme == SCHEME_MTLS || k.scheme == SCHEME_FIELD_PARTNER {
                    if n != 0 {
                        bail!("{}: an mtls key has no secret (remove secret_env/secret_file/secret)", at());
                    }
                } else if n != 1 {
                    bail!("{}: set exactly one of secret_env, secret_file, secret", at());
                }
                let (from, to) = k.validity().with_context(at)?;
                if let (Some(f), Some(t)) = (from, to) {
                    if f >= t {
                        bail!("{}: valid_from must be before valid_to", at());
                    }
                }
                if let Some(rl) = &k.rate_limit {
                    rl.validate().with_context(|| format!("{}.rate_limit", at()))?;
                }
                if !(1..=86_400).contains(&k.timestamp_window_secs) {
                    bail!("{}: timestamp_window_secs must be 1..=86400", at());
                }
            }
        }
        Ok(())
    }
}

impl RouteConfig {
    pub fn to_route(&self) -> Result<Route> {
        if !self.path_prefix.starts_with('/') {
            bail!("path_prefix must start with /");
        }
        keygate_sign::path::check_raw_path(&self.path_prefix)
            .map_err(|e| anyhow::anyhow!("path_prefix: {e}"))?;
        let upstream: http::Uri =
            self.upstream.parse().with_context(|| format!("upstream {:?} is not a URL", self.upstream))?;
        match upstream.scheme_str() {
            Some("http") | Some("https") => {}
            _ => bail!("upstream must be an http:// or https:// URL"),
        }
        if upstream.authority().is_none() {
            bail!("upstream has no host");
        }
        if upstream.query().is_some() {
            bail!("upstream must not have a query");
        }
        let auth = match self.auth.as_str() {
            "signature" => RouteAuth::Signature,
            "none" => RouteAuth::None,
            other => bail!("auth must be \"signature\" or \"none\", not {other:?}"),
        };
        if self.timeout_ms == 0 {
            bail!("timeout_ms must be > 0");
        }
        if let Some(rl) = &self.per_ip_rate_limit {
            rl.validate().context("per_ip_rate_limit")?;
        }
        Ok(Route {
            path_prefix: self.path_prefix.clone(),
            upstream,
            strip_prefix: self.strip_prefix,
            max_body_bytes: self.max_body_bytes,
            timeout: Duration::from_millis(self.timeout_ms),
            auth,
            upstream_http2: self.upstream_http2,
            preserve_host: self.preserve_host,
            per_ip_rate_limit: self.per_ip_rate_limit.map(|r| r.bucket()),
            user_tokens: self.user_tokens,
            mtls: keygate_inbound::MtlsMode::parse(&self.mtls)
                .context("mtls must be off, optional, required or with_signature")?,
            fields: match &self.encrypted_fields {
                None => None,
                Some(f) => {
                    let parse =
                        |list: &[String], what: &str| -> Result<Vec<keygate_sign::fields::FieldPath>> {
                            list.iter()
                                .enumerate()
                                .map(|(i, p)| {
                                    keygate_sign::fields::FieldPath::parse(p)
                                        .map_err(|e| anyhow::anyhow!("encrypted_fields.{what}[{i}]: {e}"))
                                })
                                .collect()
                        };
                    Some(std::sync::Arc::new(keygate_inbound::FieldRules {
                        decrypt: parse(&f.decrypt, "decrypt")?,
                        encrypt_response: parse(&f.encrypt_response, "encrypt_response")?,
                        max_envelope_bytes: f.max_envelope_bytes,
                        max_response_bytes: f.max_response_bytes,
                    }))
                }
            },
            capture: match &self.audit_capture {
                None => None,
                Some(c) => {
                    let mut headers = Vec::new();
                    for h in &c.headers {
                        if keygate_audit::mask::is_secret_header(h) {
                            bail!("audit_capture.headers: {h:?} carries credentials and is never recorded");
                        }
                        headers.push(
                            http::HeaderName::from_bytes(h.as_bytes())
                                .with_context(|| format!("audit_capture.headers: {h:?}"))?,
                        );
                    }
                    Some(std::sync::Arc::new(keygate_inbound::Capture {
                        max_bytes: c.max_bytes,
                        mask_fields: c.mask_fields.clone(),
                        headers,
                        max_response_buffer: c.max_response_buffer,
                    }))
                }
            },
            tenant: None,
        })
    }
}

impl KeyConfig {
    /// The secret's bytes, from wherever the config says. Errors name the source, never the value.
    pub fn secret_bytes(&self, base_dir: &Path) -> Result<Zeroizing<Vec<u8>>> {
        if let (SCHEME_MTLS, Some(m)) = (self.scheme.as_str(), &self.mtls) {
            return Ok(Zeroizing::new(m.placeholder_secret()));
        }
        if let (SCHEME_FIELD_PARTNER, Some(f)) = (self.scheme.as_str(), &self.field_key) {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{f:?}").as_bytes());
            return Ok(Zeroizing::new(
                format!("field-partner-unused-{}", hex::encode(d.as_ref())).into_bytes(),
            ));
        }
        if let Some(var) = &self.secret_env {
            let v = std::env::var(var).with_context(|| {
                format!("environment variable {var} (secret_env of {}) is not set", self.access_key)
            })?;
            return Ok(Zeroizing::new(v.into_bytes()));
        }
        if let Some(file) = &self.secret_file {
            let path = if file.is_absolute() { file.clone() } else { base_dir.join(file) };
            let v =
                std::fs::read(&path).with_context(|| format!("reading secret_file {}", path.display()))?;
            let v = Zeroizing::new(v);
            let trimmed = v.strip_suffix(b"\n").unwrap_or(&v);
            let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
            return Ok(Zeroizing::new(trimmed.to_vec()));
        }
        if let Some(s) = &self.secret {
            tracing::warn!(access_key = %self.access_key, "secret is inline in the config file; prefer secret_env or secret_file");
            return Ok(Zeroizing::new(s.as_bytes().to_vec()));
        }
        bail!("no secret source")
    }

    pub fn scheme_settings(&self) -> Result<serde_json::Value> {
        match self.scheme.as_str() {
            SCHEME_KG1 => {
                if self.legacy.is_some() || self.sigv4.is_some() {
                    bail!("[legacy] and [sigv4] tables only apply to their schemes");
                }
                Ok(serde_json::json!({}))
            }
            SCHEME_HTTPSIG => {
                let s = self
                    .http_signature
                    .clone()
                    .context("scheme = \"http-signature\" needs http_signature = { alg }")?;
                s.check()?;
                Ok(serde_json::to_value(s)?)
            }
            SCHEME_SIGV4 => {
                let s =
                    self.sigv4.clone().context("scheme = \"aws-sigv4\" needs sigv4 = { region, service }")?;
                s.check()?;
                Ok(serde_json::to_value(s)?)
            }
            SCHEME_LEGACY => {
                let s = self.legacy.clone().unwrap_or_default();
                s.to_config()?;
                Ok(serde_json::to_value(s)?)
            }
            SCHEME_MTLS => {
                let s = self
                    .mtls
                    .clone()
                    .context("scheme = \"mtls\" needs mtls = { spki_sha256 } or { subject }")?;
                s.check()?;
                Ok(serde_json::to_value(s)?)
            }
            SCHEME_FIELD_RSA | SCHEME_FIELD_PARTNER => {
                let s = self.field_key.clone().context("this scheme needs field_key = { kid, … }")?;
                s.check(self.scheme == SCHEME_FIELD_PARTNER)?;
                Ok(serde_json::to_value(s)?)
            }
            other => {
                bail!("unknown scheme {other:?} (expected {SCHEME_KG1}, {SCHEME_LEGACY}, {SCHEME_SIGV4}, {SCHEME_HTTPSIG} or {SCHEME_MTLS})")
            }
        }
    }

    pub fn validity(&self) -> Result<(Option<i64>, Option<i64>)> {
        Ok((
            self.valid_from.as_ref().map(TimeValue::unix).transpose().context("valid_from")?,
            self.valid_to.as_ref().map(TimeValue::unix).transpose().context("valid_to")?,
        ))
    }
}

pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        bail!("must be 1-64 characters of [A-Za-z0-9._-]");
    }
    Ok(())
}

pub fn check_access_key(ak: &str) -> Result<()> {
    if ak.len() < 3 || ak.len() > 128 || !ak.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        bail!("access key must be 3-128 characters of [A-Za-z0-9._-]");
    }
    Ok(())
}

fn default_inbound() -> String {
    "127.0.0.1:8080".into()
}
fn default_last_used_flush_ms() -> u64 {
    10_000
}
fn default_tls_reload_ms() -> u64 {
    5000
}
fn default_reload_ms() -> u64 {
    1000
}
fn default_store_url() -> String {
    "sqlite://keygate.db".into()
}
fn default_nonce_capacity() -> usize {
    1_000_000
}
fn default_key_prefix() -> String {
    "keygate:".into()
}
fn default_state_timeout_ms() -> u64 {
    50
}
fn default_nonce_failure() -> String {
    "closed".into()
}
fn default_rate_failure() -> String {
    "local-scaled".into()
}
fn default_replicas() -> u32 {
    1
}
fn default_idem_ttl() -> u64 {
    24 * 3600
}
fn default_idem_max_body() -> usize {
    1024 * 1024
}
fn default_max_body() -> u64 {
    1024 * 1024
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_route_auth() -> String {
    "signature".into()
}
fn default_tenant() -> String {
    "default".into()
}
fn default_scheme() -> String {
    SCHEME_KG1.into()
}
fn default_window() -> u32 {
    300
}
fn yes() -> bool {
    true
}
fn d_digest() -> String {
    "md5".into()
}
fn d_case() -> String {
    "upper".into()
}
fn d_location() -> String {
    "params".into()
}
fn d_ak() -> String {
    "appId".into()
}
fn d_ts() -> String {
    "timeStamp".into()
}
fn d_nonce() -> String {
    "nonce".into()
}
fn d_sign() -> String {
    "sign".into()
}
fn d_unit() -> String {
    "ms".into()
}
fn d_nonce_min() -> usize {
    8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_shape() {
        let cfg: Config = toml::from_str(
            r#"
            [server]
            inbound = "127.0.0.1:8080"
            [store]
            url = "sqlite://keygate.db"
            [[routes]]
            path_prefix = "/"
            upstream = "http://127.0.0.1:9000"
            [[apps]]
            id = "acme"
            [[apps.keys]]
            access_key = "AKIDEXAMPLE0001"
            secret_env = "ACME_SK"
            scheme = "kg1-hmac-sha256"
            [[apps.keys]]
            access_key = "zs001"
            secret = "miyao"
            scheme = "legacy-sorted"
            valid_to = 2030-01-01T00:00:00Z
            [apps.keys.legacy]
            digest = "md5"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.apps[0].keys.len(), 2);
        assert_eq!(cfg.apps[0].keys[1].validity().unwrap().1, Some(1_893_456_000));
    }

    #[test]
    fn upstream_pool_defaults_to_lean_and_names_its_choices() {
        let pool = |t: &str| toml::from_str::<Config>(t).map(|c| c.server.upstream_pool);
        assert_eq!(pool("").unwrap(), UpstreamPool::Lean);
        assert_eq!(pool("[server]\nupstream_pool = \"hyper\"").unwrap(), UpstreamPool::Hyper);
        let err = pool("[server]\nupstream_pool = \"fast\"").unwrap_err().to_string();
        assert!(err.contains("lean") && err.contains("hyper"), "{err}");
    }

    #[test]
    fn rejects_bad_input_with_a_path() {
        let bad = [
            (
                r#"[[routes]]
                path_prefix = "api"
                upstream = "http://x""#,
                "routes[0]",
            ),
            (
                r#"[[routes]]
                path_prefix = "/"
                upstream = "ftp://x""#,
                "routes[0]",
            ),
            (
                r#"[[apps]]
                id = "a b""#,
                "apps[0].id",
            ),
            (
                r#"[[apps]]
                id = "a"
                [[apps.keys]]
                access_key = "AK1234"
                scheme = "kg1-hmac-sha256""#,
                "exactly one",
            ),
            (
                r#"[[apps]]
                id = "a"
                [[apps.keys]]
                access_key = "AK1234"
                secret = "x"
                scheme = "hmac-md5""#,
                "unknown scheme",
            ),
            (
                r#"[[apps]]
                id = "a"
                [[apps.keys]]
                access_key = "AK1234"
                secret = "x"
                valid_from = 20
                valid_to = 10"#,
                "valid_from",
            ),
        ];
        for (text, want) in bad {
            let cfg: Config = toml::from_str(text).unwrap();
            let err = format!("{:#}", cfg.validate().unwrap_err());
            assert!(err.contains(want), "{err} should mention {want}");
        }
        assert!(toml::from_str::<Config>("[server]\nbogus = 1").is_err());
    }
}
