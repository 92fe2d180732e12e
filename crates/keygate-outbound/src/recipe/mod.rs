// Owns the recipe contract: the request a recipe edits (method, path, decoded query, headers,
// body), the bindings it reads, the token cache it may use, and the two steps of the seed's
// workflow — `prepare` (token, fill, sort, string to sign, sign, insert) and `on_response`
// (verify, decrypt, ask to drop the token). Each built-in lives in its own module.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
use secrecy::{ExposeSecret, SecretBox};

use crate::client::ProviderClient;
use crate::config::RecipeConfig;
use crate::error::OutboundError;
use crate::token::{Token, TokenManager};

mod basic;
mod scripted;
mod tokens;

/// The request as a recipe sees and edits it.
#[derive(Clone)]
pub struct OutRequest {
    pub method: Method,
    /// Path below the provider's base URL, starting with `/`, still percent-encoded.
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// An absolute URL set by a script (`reqHeaders.setURI`); its host must still be allowed.
    pub url_override: Option<String>,
}

impl fmt::Debug for OutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query_pairs", &self.query.len())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl OutRequest {
    /// The query as sent: RFC 3986 encoded, in order.
    pub fn encoded_query(&self) -> String {
        crate::crypto::encode_pairs(&self.query)
    }

    pub fn set_header(&mut self, recipe: &'static str, name: &str, value: &str) -> Result<(), OutboundError> {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| OutboundError::recipe(recipe, format!("invalid header name {name}")))?;
        let v = HeaderValue::from_str(value).map_err(|_| {
            OutboundError::recipe(recipe, format!("value for header {name} is not a valid header value"))
        })?;
        self.headers.insert(n, v);
        Ok(())
    }

    /// The body as a JSON object (an empty body is an empty object).
    pub fn json_object(
        &self,
        recipe: &'static str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, OutboundError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            _ => Err(OutboundError::recipe(recipe, "request body must be a JSON object")),
        }
    }

    pub fn set_json(&mut self, obj: serde_json::Map<String, serde_json::Value>) {
        self.body = Bytes::from(serde_json::Value::Object(obj).to_string());
        self.headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
}

/// A provider's named secrets, decrypted from the store when the snapshot was built. Parsed RSA
/// keys are cached (parsing costs more than signing).
#[derive(Default)]
pub struct Bindings {
    map: HashMap<String, SecretBox<[u8]>>,
    signers: std::sync::Mutex<HashMap<String, Arc<keygate_sign::rsa::RsaSigner>>>,
    verifiers: std::sync::Mutex<HashMap<String, Arc<keygate_sign::rsa::RsaVerifier>>>,
}

impl fmt::Debug for Bindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.map.keys().collect();
        names.sort();
        f.debug_struct("Bindings").field("names", &names).finish()
    }
}

impl Bindings {
    pub fn new(pairs: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        Self {
            map: pairs.into_iter().map(|(n, v)| (n, SecretBox::new(v.into_boxed_slice()))).collect(),
            signers: Default::default(),
            verifiers: Default::default(),
        }
    }

    /// The RSA private key in binding `name` (PEM or base64 DER, PKCS#8 or PKCS#1), parsed once.
    pub fn rsa_signer(
        &self,
        recipe: &'static str,
        name: &str,
    ) -> Result<Arc<keygate_sign::rsa::RsaSigner>, OutboundError> {
        if let Some(k) = self.signers.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(k.clone());
        }
        let k = Arc::new(
            keygate_sign::rsa::RsaSigner::from_text(self.get(name)?)
                .map_err(|e| OutboundError::recipe(recipe, format!("binding {name}: {e}")))?,
        );
        self.signers.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), k.clone());
        Ok(k)
    }

    /// The RSA public key (PEM key or certificate, or base64 SPKI) in binding `name`, parsed once.
    pub fn rsa_verifier(
        &self,
        recipe: &'static str,
        name: &str,
    ) -> Result<Arc<keygate_sign::rsa::RsaVerifier>, OutboundError> {
        if let Some(k) = self.verifiers.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(k.clone());
        }
        let k = Arc::new(
            keygate_sign::rsa::RsaVerifier::from_text(self.get(name)?)
                .map_err(|e| OutboundError::recipe(recipe, format!("binding {name}: {e}")))?,
        );
        self.verifiers.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), k.clone());
        Ok(k)
    }

    pub fn get(&self, name: &str) -> Result<&[u8], OutboundError> {
        self.map
            .get(name)
            .map(|s| s.expose_secret())
            .ok_or_else(|| OutboundError::BindingMissing(name.to_string()))
    }

    /// A binding that must be UTF-8 text (ids, PEM keys).
    pub fn text(&self, recipe: &'static str, name: &str) -> Result<&str, OutboundError> {
        std::str::from_utf8(self.get(name)?)
            .map_err(|_| OutboundError::recipe(recipe, format!("binding {name} is not UTF-8 text")))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What a recipe may use while it runs.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub provider_id: &'a str,
    /// Scheme and authority of the provider (`https://api.example.com`).
    pub origin: &'a str,
    /// Base path of the provider (no trailing slash, may be empty).
    pub base_path: &'a str,
    pub bindings: &'a Bindings,
    pub tokens: &'a Arc<TokenManager>,
    /// Script workers (scripted recipes only).
    pub scripts: Option<&'a crate::script::ScriptPool>,
    /// Set for test runs: mocked host calls and a step trace.
    pub test: Option<&'a TestHooks>,
    /// For token endpoints: the same host allowlist and SSRF policy as the provider.
    pub client: &'a ProviderClient,
    pub deadline: Instant,
    /// Unix milliseconds when this attempt started.
    pub now_ms: i64,
}

impl Ctx<'_> {
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Full path as sent: base path + request path.
    pub fn full_path(&self, req: &OutRequest) -> String {
        format!("{}{}", self.base_path, req.path)
    }

    pub fn token_key(&self, what: &str) -> String {
        format!("{}:{what}", self.provider_id)
    }
}

/// What a test run gives a recipe instead of the network.
#[derive(Debug, Default)]
pub struct TestHooks {
    pub mocks: Vec<crate::script::Mock>,
    pub trace: Arc<std::sync::Mutex<Vec<String>>>,
}

/// State carried from `prepare` to `on_response`.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The token the request carries, if any (dropped if the provider refuses it).
    pub token: Option<(String, Arc<Token>)>,
    /// Recipe-specific context for response handling (e.g. Alipay's method name).
    pub note: Option<String>,
}

/// What the dispatcher should do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Done,
    /// The provider refused the token: drop it and try once more with a fresh one.
    TokenRejected,
}

/// Steps 1–6 of the workflow: edits `req` into what the provider expects.
pub async fn prepare(
    recipe: &RecipeConfig,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    match recipe {
        RecipeConfig::StaticHeader(c) => basic::static_header(c, ctx, req),
        RecipeConfig::HmacHeader(c) => basic::hmac_header(c, ctx, req),
        RecipeConfig::SortedParams(c) => basic::sorted_params(c, ctx, req),
        RecipeConfig::AesPayload(c) => basic::aes_payload(c, ctx, req),
        RecipeConfig::TokenAesSha256(c) => tokens::seed_prepare(c, ctx, req).await,
        RecipeConfig::Oauth2ClientCredentials(c) => tokens::oauth2_prepare(c, ctx, req).await,
        RecipeConfig::AwsSigv4(c) => providers::sigv4_prepare(c, ctx, req),
        RecipeConfig::Alipay(c) => providers::alipay_prepare(c, ctx, req),
        RecipeConfig::WechatpayV3(c) => providers::wechatpay_prepare(c, ctx, req),
        RecipeConfig::Script(c) => scripted::prepare(c, ctx, req).await,
    }
}

/// Step 7: verifies/decrypts the response in place and says whether the token was refused.
pub async fn on_response(
    recipe: &RecipeConfig,
    ctx: &Ctx<'_>,
    prepared: &Prepared,
    resp: &mut Response<Bytes>,
) -> Result<After, OutboundError> {
    match recipe {
        RecipeConfig::StaticHeader(_) | RecipeConfig::HmacHeader(_) | RecipeConfig::SortedParams(_) => {
            Ok(After::Done)
        }
        RecipeConfig::AwsSigv4(_) => Ok(After::Done),
        RecipeConfig::AesPayload(c) => basic::aes_response(c, ctx, resp),
        RecipeConfig::TokenAesSha256(c) => tokens::seed_response(c, resp),
        RecipeConfig::Oauth2ClientCredentials(_) => Ok(tokens::bearer_response(resp)),
        RecipeConfig::Alipay(c) => providers::alipay_response(c, ctx, prepared, resp),
        RecipeConfig::WechatpayV3(c) => providers::wechatpay_response(c, ctx, resp),
        RecipeConfig::Script(c) => scripted::on_response(c, ctx, resp).await,
    }
}

/// Recipe-specific checks beyond serde's (template placeholders, token URL hosts, key sizes).
pub fn validate(recipe: &RecipeConfig, hosts: &BTreeSet<String>) -> Result<(), String> {
    let token_host = |url: &str, field: &str| -> Result<(), String> {
        let (_, host) = crate::config::url_host(url).map_err(|e| format!("recipe.{field}: {e}"))?;
        if hosts.contains(&host) {
            Ok(())
        } else {
            Err(format!("recipe.{field}: host {host} must be the base URL's host or listed in allowed_hosts"))
        }
    };
    match recipe {
        RecipeConfig::StaticHeader(c) => {
            HeaderName::from_bytes(c.header.as_bytes())
                .map_err(|_| "recipe.header: invalid header name".to_string())?;
        }
        RecipeConfig::HmacHeader(c) => basic::validate_hmac(c)?,
        RecipeConfig::SortedParams(c) => {
            let names = [&c.app_key_field, &c.timestamp_field, &c.nonce_field, &c.sign_field];
            if names.iter().any(|n| n.is_empty()) {
                return Err("recipe: field names must not be empty".into());
            }
            let distinct: BTreeSet<_> = names.iter().collect();
            if distinct.len() != names.len() {
                return Err("recipe: app key, timestamp, nonce and sign fields must differ".into());
            }
        }
        RecipeConfig::AesPayload(c) => {
            if c.fields.is_empty() && c.wrap_field.is_empty() {
                return Err("recipe.wrap_field: required when fields is empty".into());
            }
        }
        RecipeConfig::TokenAesSha256(c) => token_host(&c.token_url, "token_url")?,
        RecipeConfig::Oauth2ClientCredentials(c) => token_host(&c.token_url, "token_url")?,
        RecipeConfig::AwsSigv4(c) => {
            let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok(&c.region) || !ok(&c.service) {
                return Err("recipe: region and service must be non-empty [a-z0-9-]".into());
            }
        }
        RecipeConfig::Alipay(c) => {
            if c.app_id.is_empty() || !c.app_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err("recipe.app_id: must be alphanumeric".into());
            }
        }
        RecipeConfig::Script(c) => {
            if c.cpu_ms == 0 || c.cpu_ms > 5_000 {
                return Err("recipe.cpu_ms: must be 1 to 5000".into());
            }
            if c.memory_mb == 0 || c.memory_mb > 256 {
                return Err("recipe.memory_mb: must be 1 to 256".into());
            }
            crate::script::check_syntax(&c.source).map_err(|e| format!("recipe.source: {e}"))?;
            if let Some(r) = &c.response_source {
                crate::script::check_syntax(r).map_err(|e| format!("recipe.response_source: {e}"))?;
            }
        }
        RecipeConfig::WechatpayV3(c) => {
            if c.mchid.is_empty() || c.serial_no.is_empty() {
                return Err("recipe: mchid and serial_no are required".into());
            }
            if c.platform_keys.is_empty() && c.verify_response {
                return Err("recipe.platform_keys: at least one is required to verify responses".into());
            }
        }
    }
    Ok(())
}

mod providers;
