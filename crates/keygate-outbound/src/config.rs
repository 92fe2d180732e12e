// Owns the provider document: what an admin stores for a provider (JSON, no secrets) and its
// validation into the compiled form the dispatcher uses. Secrets live in bindings, by name.

use std::collections::BTreeSet;
use std::time::Duration;

use keygate_inbound::EndpointRule;
use serde::{Deserialize, Serialize};

/// A provider as stored (the `config` column) and as the admin API accepts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `https://api.example.com/base` — scheme, host, optional port and base path.
    pub base_url: String,
    /// Hosts besides the base URL's that the recipe may contact (token endpoints).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Let the provider resolve to loopback/private/link-local addresses (off: SSRF guard).
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// `"METHOD /path/pattern"` rules (keygate's endpoint syntax) relative to the base URL.
    /// At least one is required: nothing is forwarded by default.
    pub paths: Vec<String>,
    #[serde(default = "d_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Whole call including retries and token fetches.
    #[serde(default = "d_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Requests in flight to this provider from one replica (0: unlimited).
    #[serde(default)]
    pub max_concurrency: u32,
    /// Token bucket shared by every replica (through Redis when configured).
    #[serde(default)]
    pub rate_limit: Option<RateConfig>,
    #[serde(default)]
    pub breaker: BreakerConfig,
    #[serde(default = "d_max_body")]
    pub max_body_bytes: u64,
    /// Apps (of the provider's tenant) whose keys may call this provider.
    #[serde(default)]
    pub granted_apps: Vec<String>,
    pub recipe: RecipeConfig,
}

fn d_connect_ms() -> u64 {
    2_000
}
fn d_timeout_ms() -> u64 {
    10_000
}
fn d_max_body() -> u64 {
    1024 * 1024
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Total attempts, first included (1: never retry).
    #[serde(default = "d_attempts")]
    pub max_attempts: u32,
    /// Statuses that are retried (besides connect failures and timeouts).
    #[serde(default = "d_retry_statuses")]
    pub on_status: Vec<u16>,
    /// Retry non-idempotent methods too (only for calls the provider documents as safe to repeat).
    #[serde(default)]
    pub unsafe_methods: bool,
    /// Retries may add at most this share of the provider's request rate (plus 10 per second).
    #[serde(default = "d_budget")]
    pub budget_ratio: f64,
    #[serde(default = "d_backoff")]
    pub backoff_ms: u64,
}

fn d_attempts() -> u32 {
    2
}
fn d_retry_statuses() -> Vec<u16> {
    vec![502, 503, 504]
}
fn d_budget() -> f64 {
    0.2
}
fn d_backoff() -> u64 {
    50
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: d_attempts(),
            on_status: d_retry_statuses(),
            unsafe_methods: false,
            budget_ratio: d_budget(),
            backoff_ms: d_backoff(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    pub rate_per_sec: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures (connect errors, timeouts, 5xx) that open the circuit (0: never).
    #[serde(default = "d_failures")]
    pub failure_threshold: u32,
    /// How long the circuit stays open before one probe is let through.
    #[serde(default = "d_open_ms")]
    pub open_ms: u64,
}

fn d_failures() -> u32 {
    5
}
fn d_open_ms() -> u64 {
    10_000
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: d_failures(), open_ms: d_open_ms() }
    }
}

/// How requests to the provider are signed. Every field naming a `*_binding` is the name of a
/// secret stored for the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecipeConfig {
    /// A fixed credential in one header (map and search APIs): `<prefix><secret>`.
    StaticHeader(StaticHeaderConfig),
    /// HMAC-SHA256 over a configurable string, in headers.
    HmacHeader(HmacHeaderConfig),
    /// Sorted params + secret, MD5 or SHA-256, into a `sign` field.
    SortedParams(SortedParamsConfig),
    /// AES-CBC-PKCS5 or AES-256-GCM payload encryption, response decryption.
    AesPayload(AesPayloadConfig),
    /// Seed 000's flow: token (AES-encrypted app key, SHA-256 sign) + AES payload + SHA-256 sign.
    TokenAesSha256(TokenAesSha256Config),
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): cached bearer token.
    Oauth2ClientCredentials(OAuth2Config),
    /// AWS Signature Version 4, any service and region.
    AwsSigv4(SigV4Config),
    /// Alipay OpenAPI with RSA2, response signature verified.
    Alipay(AlipayConfig),
    /// WeChat Pay API v3: RSA Authorization, response verification, resource decryption.
    WechatpayV3(WechatPayConfig),
    /// A sandboxed JavaScript function (seed 000's custom mode).
    Script(ScriptConfig),
}

/// A scripted recipe: `function (reqHeaders, reqParams, reqBody, Name1, Name2, …) { … }`. Each
/// parameter after the third is the binding of that name, or else the `vars` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    pub source: String,
    /// Optional `function (respHeaders, respBody, status, bindings…)`: decrypt or reshape the
    /// response, or return `"clear_token"` to drop the cached token and retry once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_source: Option<String>,
    /// Non-secret values passed by parameter name (e.g. `PrefixUrl`, `TokenUrl`).
    #[serde(default)]
    pub vars: std::collections::BTreeMap<String, String>,
    /// CPU time per execution (host calls such as `http_post_json` do not count).
    #[serde(default = "d_cpu_ms")]
    pub cpu_ms: u64,
    #[serde(default = "d_memory_mb")]
    pub memory_mb: u64,
    /// The saved version this source is (set by the admin API's script endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

fn d_cpu_ms() -> u64 {
    50
}
fn d_memory_mb() -> u64 {
    16
}

impl RecipeConfig {
    pub fn name(&self) -> &'static str {
        match self {
            Self::StaticHeader(_) => "static_header",
            Self::HmacHeader(_) => "hmac_header",
            Self::SortedParams(_) => "sorted_params",
            Self::AesPayload(_) => "aes_payload",
            Self::TokenAesSha256(_) => "token_aes_sha256",
            Self::Oauth2ClientCredentials(_) => "oauth2_client_credentials",
            Self::AwsSigv4(_) => "aws_sigv4",
            Self::Alipay(_) => "alipay",
            Self::WechatpayV3(_) => "wechatpay_v3",
            Self::Script(_) => "script",
        }
    }

    /// The binding names this recipe reads (for the admin API's "missing bindings" report).
    pub fn bindings(&self) -> Vec<&str> {
        match self {
            Self::StaticHeader(c) => vec![&c.binding],
            Self::HmacHeader(c) => {
                let mut v = vec![c.secret_binding.as_str()];
                if let Some(k) = &c.key_id_binding {
                    v.push(k);
                }
                v
            }
            Self::SortedParams(c) => vec![&c.secret_binding, &c.app_key_binding],
            Self::AesPayload(c) => {
                let mut v = vec![c.key_binding.as_str()];
                if c.mode == AesMode::Cbc {
                    v.push(&c.iv_binding);
                }
                v
            }
            Self::TokenAesSha256(c) => vec![&c.app_key_binding, &c.aes_key_binding, &c.aes_iv_binding],
            Self::Oauth2ClientCredentials(c) => vec![&c.client_id_binding, &c.client_secret_binding],
            Self::AwsSigv4(c) => {
                let mut v = vec![c.access_key_binding.as_str(), &c.secret_key_binding];
                if let Some(s) = &c.session_token_binding {
                    v.push(s);
                }
                v
            }
            Self::Alipay(c) => vec![&c.private_key_binding, &c.alipay_public_key_binding],
            Self::WechatpayV3(c) => {
                let mut v = vec![c.private_key_binding.as_str(), &c.apiv3_key_binding];
                v.extend(c.platform_keys.iter().map(|p| p.binding.as_str()));
                v
            }
            Self::Script(c) => {
                let names: Vec<&str> = script_parameter_slices(&c.source);
                names.into_iter().skip(3).filter(|n| !c.vars.contains_key(*n)).collect()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticHeaderConfig {
    pub header: String,
    #[serde(default = "d_api_key")]
    pub binding: String,
    #[serde(default)]
    pub prefix: String,
}

fn d_api_key() -> String {
    "api_key".into()
}
fn d_secret() -> String {
    "secret".into()
}
fn d_key_id() -> Option<String> {
    Some("key_id".into())
}
fn d_app_key() -> String {
    "app_key".into()
}

/// Output encoding of a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MacEncoding {
    #[default]
    Hex,
    HexUpper,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TimeUnit {
    #[serde(rename = "s")]
    #[default]
    Seconds,
    #[serde(rename = "ms")]
    Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacHeaderConfig {
    #[serde(default = "d_secret")]
    pub secret_binding: String,
    /// Binding holding the public key id sent in `key_id_header` (none: no key id header).
    #[serde(default = "d_key_id")]
    pub key_id_binding: Option<String>,
    #[serde(default = "d_key_id_header")]
    pub key_id_header: String,
    #[serde(default = "d_ts_header")]
    pub timestamp_header: String,
    /// Empty: no nonce.
    #[serde(default = "d_nonce_header")]
    pub nonce_header: String,
    #[serde(default = "d_sig_header")]
    pub signature_header: String,
    /// Text before the MAC in the signature header (e.g. `HMAC-SHA256 `).
    #[serde(default)]
    pub signature_prefix: String,
    /// Placeholders: `{method} {path} {query} {timestamp} {nonce} {body_sha256} {body} {key_id}
    /// {header:<name>}`; `\n` is a newline.
    #[serde(default = "d_template")]
    pub template: String,
    #[serde(default)]
    pub encoding: MacEncoding,
    #[serde(default)]
    pub timestamp_unit: TimeUnit,
}

fn d_key_id_header() -> String {
    "x-api-key".into()
}
fn d_ts_header() -> String {
    "x-timestamp".into()
}
fn d_nonce_header() -> String {
    "x-nonce".into()
}
fn d_sig_header() -> String {
    "x-signature".into()
}
fn d_template() -> String {
    "{method}\n{path}\n{query}\n{timestamp}\n{nonce}\n{body_sha256}".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ParamsDigest {
    #[default]
    Md5,
    Sha256,
}

/// How the sorted params and the secret become the signed string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ParamsStyle {
    /// `k1v1k2v2…<secret>` (the seed 001 family, keygate's `legacy-sorted` scheme).
    #[default]
    Concat,
    /// `k1=v1&k2=v2&<secret_field>=<secret>` (WeChat Pay v2 style).
    Query,
}

/// Where the params live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ParamsLocation {
    /// The URL query.
    #[default]
    Query,
    /// An `application/x-www-form-urlencoded` body.
    Form,
    /// Top-level fields of a JSON object body.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SortedParamsConfig {
    #[serde(default)]
    pub digest: ParamsDigest,
    #[serde(default)]
    pub style: ParamsStyle,
    #[serde(default)]
    pub location: ParamsLocation,
    #[serde(default = "d_true")]
    pub uppercase: bool,
    #[serde(default = "d_secret")]
    pub secret_binding: String,
    #[serde(default = "d_app_key")]
    pub app_key_binding: String,
    #[serde(default = "d_app_key_field")]
    pub app_key_field: String,
    #[serde(default = "d_timestamp_field")]
    pub timestamp_field: String,
    #[serde(default = "d_ms")]
    pub timestamp_unit: TimeUnit,
    #[serde(default = "d_nonce_field")]
    pub nonce_field: String,
    #[serde(default = "d_sign_field")]
    pub sign_field: String,
    /// Name of the secret's pair in the `query` style.
    #[serde(default = "d_secret_field")]
    pub secret_field: String,
}

fn d_true() -> bool {
    true
}
fn d_app_key_field() -> String {
    "appId".into()
}
fn d_timestamp_field() -> String {
    "timeStamp".into()
}
fn d_ms() -> TimeUnit {
    TimeUnit::Millis
}
fn d_nonce_field() -> String {
    "nonce".into()
}
fn d_sign_field() -> String {
    "sign".into()
}
fn d_secret_field() -> String {
    "key".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AesMode {
    /// AES-CBC with PKCS#5/7 padding and a fixed IV binding (what many providers ask for).
    #[default]
    Cbc,
    /// AES-GCM; the wire value is `base64(nonce12 ‖ ciphertext ‖ tag16)` with a fresh nonce.
    Gcm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AesPayloadConfig {
    #[serde(default)]
    pub mode: AesMode,
    #[serde(default = "d_aes_key")]
    pub key_binding: String,
    #[serde(default = "d_aes_iv")]
    pub iv_binding: String,
    /// JSON fields of the request body encrypted in place (string values; others are
    /// serialised first). Empty: the whole body becomes `{"<wrap_field>": "<base64>"}`.
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default = "d_data")]
    pub wrap_field: String,
    /// Decrypt the same fields (or the wrap field) of JSON responses.
    #[serde(default = "d_true")]
    pub decrypt_response: bool,
}

fn d_aes_key() -> String {
    "aes_key".into()
}
fn d_aes_iv() -> String {
    "aes_iv".into()
}
fn d_data() -> String {
    "data".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAesSha256Config {
    /// Absolute URL of the token endpoint (its host must be allowed).
    pub token_url: String,
    #[serde(default = "d_app_key")]
    pub app_key_binding: String,
    #[serde(default = "d_aes_key")]
    pub aes_key_binding: String,
    #[serde(default = "d_aes_iv")]
    pub aes_iv_binding: String,
    /// Body field that is encrypted.
    #[serde(default = "d_data")]
    pub data_field: String,
    /// Fetch a new token this long before the old one expires.
    #[serde(default = "d_refresh")]
    pub refresh_before_secs: u64,
    /// Provider error codes (`code` field of a JSON response) that mean "token invalid".
    #[serde(default)]
    pub token_error_codes: Vec<String>,
}

fn d_refresh() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1, preferred).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub token_url: String,
    #[serde(default = "d_client_id")]
    pub client_id_binding: String,
    #[serde(default = "d_client_secret")]
    pub client_secret_binding: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default = "d_refresh")]
    pub refresh_before_secs: u64,
}

fn d_client_id() -> String {
    "client_id".into()
}
fn d_client_secret() -> String {
    "client_secret".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Config {
    pub region: String,
    pub service: String,
    #[serde(default = "d_aws_ak")]
    pub access_key_binding: String,
    #[serde(default = "d_aws_sk")]
    pub secret_key_binding: String,
    #[serde(default)]
    pub session_token_binding: Option<String>,
    /// Send `x-amz-content-sha256` (S3 requires it).
    #[serde(default)]
    pub content_sha256_header: bool,
}

fn d_aws_ak() -> String {
    "access_key_id".into()
}
fn d_aws_sk() -> String {
    "secret_access_key".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlipayConfig {
    pub app_id: String,
    #[serde(default = "d_app_private_key")]
    pub private_key_binding: String,
    #[serde(default = "d_alipay_public_key")]
    pub alipay_public_key_binding: String,
    /// Verify the `sign` of responses with the Alipay public key (on by default).
    #[serde(default = "d_true")]
    pub verify_response: bool,
}

fn d_app_private_key() -> String {
    "app_private_key".into()
}
fn d_alipay_public_key() -> String {
    "alipay_public_key".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatPayConfig {
    pub mchid: String,
    /// Serial number of the merchant API certificate.
    pub serial_no: String,
    #[serde(default = "d_merchant_key")]
    pub private_key_binding: String,
    #[serde(default = "d_apiv3")]
    pub apiv3_key_binding: String,
    /// WeChat Pay platform certificates or public keys, by serial (`Wechatpay-Serial`).
    pub platform_keys: Vec<PlatformKey>,
    /// Verify response signatures (on by default).
    #[serde(default = "d_true")]
    pub verify_response: bool,
    /// Replace each `AEAD_AES_256_GCM` resource of a JSON response by its plaintext.
    #[serde(default)]
    pub decrypt_resources: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformKey {
    pub serial: String,
    /// Binding holding a PEM certificate or a PEM public key.
    pub binding: String,
}

fn d_merchant_key() -> String {
    "merchant_private_key".into()
}
fn d_apiv3() -> String {
    "apiv3_key".into()
}

/// The provider after validation: parsed URL, rules, durations.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub base: http::Uri,
    pub base_path: String,
    pub hosts: BTreeSet<String>,
    pub rules: Vec<EndpointRule>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> String {
    format!("{field}: {why}")
}

/// Lowercase `host[:port]` of an absolute http(s) URL.
pub fn url_host(url: &str) -> Result<(http::Uri, String), String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a valid URL".to_string())?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("scheme must be http or https".into()),
    }
    let auth = uri.authority().ok_or("no host")?;
    if auth.as_str().contains('@') {
        return Err("user info is not allowed in the URL".into());
    }
    Ok((uri.clone(), auth.as_str().to_ascii_lowercase()))
}

impl ProviderConfig {
    /// Parses and validates a stored or submitted document. Errors name the field.
    pub fn parse(json: &serde_json::Value) -> Result<Self, String> {
        let cfg: ProviderConfig = serde_json::from_value(json.clone()).map_err(|e| e.to_string())?;
        cfg.compile()?;
        Ok(cfg)
    }

    /// Checks every field and returns the compiled form.
    pub fn compile(&self) -> Result<Compiled, String> {
        let (base, base_host) = url_host(&self.base_url).map_err(|e| invalid("base_url", e))?;
        if base.query().is_some() {
            return Err(invalid("base_url", "must not have a query"));
        }
        let mut hosts = BTreeSet::from([base_host]);
        for (i, h) in self.allowed_hosts.iter().enumerate() {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains('/') || h.contains('@') || h.chars().any(char::is_whitespace) {
                return Err(invalid(&format!("allowed_hosts[{i}]"), "must be host or host:port"));
            }
            hosts.insert(h);
        }
        if self.paths.is_empty() {
            return Err(invalid("paths", "at least one \"METHOD /path\" rule is required"));
        }
        let mut rules = Vec::with_capacity(self.paths.len());
        for (i, p) in self.paths.iter().enumerate() {
            rules.push(EndpointRule::parse(p).map_err(|e| invalid(&format!("paths[{i}]"), e))?);
        }
        if self.connect_timeout_ms == 0 || self.connect_timeout_ms > 60_000 {
            return Err(invalid("connect_timeout_ms", "must be 1 to 60000"));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 300_000 {
            return Err(invalid("timeout_ms", "must be 1 to 300000"));
        }
        if self.retry.max_attempts == 0 || self.retry.max_attempts > 5 {
            return Err(invalid("retry.max_attempts", "must be 1 to 5"));
        }
        if !(0.0..=1.0).contains(&self.retry.budget_ratio) {
            return Err(invalid("retry.budget_ratio", "must be between 0 and 1"));
        }
        if let Some(r) = &self.rate_limit {
            if !(r.rate_per_sec > 0.0 && r.rate_per_sec.is_finite()) || r.burst == 0 {
                return Err(invalid("rate_limit", "rate_per_sec and burst must be positive"));
            }
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > 64 * 1024 * 1024 {
            return Err(invalid("max_body_bytes", "must be 1 to 67108864"));
        }
        for (i, b) in self.recipe.bindings().iter().enumerate() {
            if !valid_binding_name(b) {
                return Err(invalid(&format!("recipe binding {i}"), "names are 1-64 of [A-Za-z0-9_.:-]"));
            }
        }
        crate::recipe::validate(&self.recipe, &hosts)?;
        let base_path = base.path().trim_end_matches('/').to_string();
        Ok(Compiled {
            base,
            base_path,
            hosts,
            rules,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

/// Parameter names of a script's function, borrowed from its source (empty if it has none).
fn script_parameter_slices(source: &str) -> Vec<&str> {
    let s = crate::script::after_comments(source);
    let Some(rest) = s.strip_prefix("function") else { return Vec::new() };
    let (Some(open), Some(close)) = (rest.find('('), rest.find(')')) else { return Vec::new() };
    if close < open {
        return Vec::new();
    }
    rest[open + 1..close].split(',').map(str::trim).filter(|p| !p.is_empty()).collect()
}

/// Binding names: 1–64 of `[A-Za-z0-9_.:-]`.
pub fn valid_binding_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(recipe: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "base_url": "https://api.example.com/v2",
            "paths": ["POST /orders/*"],
            "recipe": recipe,
        })
    }

    #[test]
    fn defaults_fill_in_and_unknown_fields_are_refused() {
        let c = ProviderConfig::parse(&doc(serde_json::json!({"type": "hmac_header"}))).unwrap();
        assert_eq!(c.timeout_ms, 10_000);
        assert_eq!(c.retry.max_attempts, 2);
        let compiled = c.compile().unwrap();
        assert_eq!(compiled.base_path, "/v2");
        assert!(compiled.hosts.contains("api.example.com"));
        let mut bad = doc(serde_json::json!({"type": "hmac_header"}));
        bad["extra"] = 1.into();
        assert!(ProviderConfig::parse(&bad).unwrap_err().contains("extra"));
        let bad = doc(serde_json::json!({"type": "hmac_header", "secret": "x"}));
        assert!(ProviderConfig::parse(&bad).is_err());
        let bad = doc(serde_json::json!({"type": "nope"}));
        assert!(ProviderConfig::parse(&bad).is_err());
    }

    #[test]
    fn paths_are_required_and_checked() {
        let mut d = doc(serde_json::json!({"type": "static_header", "header": "x-key"}));
        d["paths"] = serde_json::json!([]);
        assert!(ProviderConfig::parse(&d).unwrap_err().starts_with("paths"));
        d["paths"] = serde_json::json!(["FETCH"]);
        assert!(ProviderConfig::parse(&d).unwrap_err().starts_with("paths[0]"));
        d["paths"] = serde_json::json!(["GET /a"]);
        d["base_url"] = "ftp://x".into();
        assert!(ProviderConfig::parse(&d).unwrap_err().starts_with("base_url"));
        d["base_url"] = "https://user:pw@x".into();
        assert!(ProviderConfig::parse(&d).unwrap_err().starts_with("base_url"));
    }
}
