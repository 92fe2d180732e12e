// The data plane's read-only view of keys and routes, swapped atomically as a whole so no
// request sees half a change. Built by the binary from the store; never queried per request.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use keygate_sign::fields::{FieldKeyPair, FieldPath, FieldPublicKey};
use keygate_sign::legacy::{FieldLocation, LegacyConfig};

use crate::access::AccessPolicy;
use crate::mtls::{ClientCert, MtlsMode};
use keygate_state::BucketLimit;
use secrecy::SecretBox;

/// How a key signs its requests.
#[derive(Debug, Clone)]
pub enum KeyScheme {
    Kg1,
    Legacy(LegacyConfig),
    /// AWS Signature V4 as stock AWS signers produce it, for one region and service.
    SigV4 {
        region: String,
        service: String,
        allow_unsigned_payload: bool,
    },
    /// RFC 9421 HTTP Message Signatures: hmac-sha256 (secret) or ed25519 (the secret holds the
    /// raw public key), with the components every signature must cover.
    HttpSignature {
        ed25519: bool,
        required_components: Vec<String>,
    },
    /// A client certificate identity (mutual TLS): the certificate's SPKI fingerprint and/or its
    /// subject DN. Such a key signs nothing; its secret is unused.
    Mtls {
        spki_sha256: Option<[u8; 32]>,
        subject: Option<String>,
    },
    /// The app's RSA key pair for encrypted request fields, under version tag `kid` (the
    /// private key is the key's secret). Signs nothing.
    FieldKey {
        kid: String,
        pair: Arc<FieldKeyPair>,
    },
    /// The partner's public key, for encrypting configured response fields. Signs nothing.
    FieldPartner {
        kid: String,
        public: Arc<FieldPublicKey>,
    },
}

impl KeyScheme {
    /// Name used in config, the store and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Kg1 => "kg1-hmac-sha256",
            Self::Legacy(_) => "legacy-sorted",
            Self::SigV4 { .. } => "aws-sigv4",
            Self::HttpSignature { .. } => "http-signature",
            Self::Mtls { .. } => "mtls",
            Self::FieldKey { .. } => "field-rsa",
            Self::FieldPartner { .. } => "field-partner",
        }
    }
}

/// How a key's requests authenticate (the key's `auth_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthPolicy {
    /// Every request is signed; the key cannot obtain API tokens.
    #[default]
    Signature,
    /// A signed exchange (`POST /auth/token`) issues a short-lived token; later requests carry
    /// only the token. Signed requests without a token are refused (`token_required`).
    Token,
    /// Every request carries a token issued to this key *and* a valid signature.
    Both,
}

impl AuthPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "signature" => Some(Self::Signature),
            "token" => Some(Self::Token),
            "both" => Some(Self::Both),
            _ => None,
        }
    }
}

/// One access key as the verifier needs it.
pub struct KeyEntry {
    pub access_key: String,
    pub app_id: String,
    pub scheme: KeyScheme,
    pub enabled: bool,
    /// Unix seconds.
    pub valid_from: Option<i64>,
    /// Unix seconds.
    pub valid_to: Option<i64>,
    pub timestamp_window_secs: u32,
    /// Token bucket for all requests of this key, shared by every replica.
    pub rate_limit: Option<BucketLimit>,
    /// Client networks and endpoints this key may use (checked after the signature holds).
    pub access: AccessPolicy,
    /// Set while the key is being rotated: it stops verifying at this Unix second.
    pub overlap_until: Option<i64>,
    /// Signature, token, or both.
    pub auth_policy: AuthPolicy,
    pub secret: SecretBox<[u8]>,
    /// The secret prepared for its scheme's MAC on first use (HMAC pads, SigV4 signing keys),
    /// so a request does not redo that work. Boxed and lazy: keys never used cost one word each.
    pub prepared: PreparedSecret,
    /// Unix second of the last request this key signed successfully (0: none since this
    /// process loaded it). Written with one relaxed atomic per request; the binary flushes it to
    /// the store in batches, so `last_used_at` never costs a write per request.
    pub last_used: AtomicI64,
}

/// Per-key MAC state derived from the secret (see [`KeyEntry::kg1_key`]). As sensitive as the
/// secret; aws-lc wipes its keys on drop and `SigV4Secret` zeroizes its copy.
#[derive(Default)]
pub struct PreparedSecret {
    kg1: std::sync::OnceLock<Box<keygate_sign::kg1::Kg1Key>>,
    sigv4: std::sync::OnceLock<Box<keygate_sign::sigv4::SigV4Secret>>,
}

impl fmt::Debug for PreparedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreparedSecret(..)")
    }
}

impl KeyEntry {
    /// The KG1 HMAC key, prepared on first use.
    pub fn kg1_key(&self) -> &keygate_sign::kg1::Kg1Key {
        use secrecy::ExposeSecret as _;
        self.prepared
            .kg1
            .get_or_init(|| Box::new(keygate_sign::kg1::Kg1Key::new(self.secret.expose_secret())))
    }

    /// The SigV4 secret with its cache of derived signing keys, prepared on first use.
    pub fn sigv4_secret(&self) -> &keygate_sign::sigv4::SigV4Secret {
        use secrecy::ExposeSecret as _;
        self.prepared
            .sigv4
            .get_or_init(|| Box::new(keygate_sign::sigv4::SigV4Secret::new(self.secret.expose_secret())))
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("access_key", &self.access_key)
            .field("app_id", &self.app_id)
            .field("scheme", &self.scheme.name())
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// What a route demands of a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    /// A valid signature from a known key (the default).
    Signature,
    /// No authentication: a plain proxy route (health checks, public assets). Opt-in only.
    None,
}

/// Path prefix → upstream.
#[derive(Debug, Clone)]
pub struct Route {
    /// Matched on segment boundaries: `/api` matches `/api` and `/api/x`, not `/apix`.
    pub path_prefix: String,
    /// Scheme, authority and optional base path of the upstream.
    pub upstream: http::Uri,
    /// Remove `path_prefix` before forwarding.
    pub strip_prefix: bool,
    pub max_body_bytes: u64,
    /// Time allowed for the upstream's response head.
    pub timeout: Duration,
    pub auth: RouteAuth,
    /// Speak HTTP/2 to the upstream (prior knowledge for `http://`, ALPN for `https://`); needed for gRPC.
    pub upstream_http2: bool,
    /// Forward the client's Host header instead of the upstream's authority.
    pub preserve_host: bool,
    /// Token bucket per client IP on this route (after the signature holds).
    pub per_ip_rate_limit: Option<BucketLimit>,
    /// Opt-in: hand request/response bodies and listed headers to the observer (audit).
    pub capture: Option<Arc<Capture>>,
    /// Accept user tokens (bound to an app and a user id, issued through the admin API) on
    /// this route. Off by default: a user token carries no key, so no key policy applies.
    pub user_tokens: bool,
    /// Whether a client certificate is needed, enough, or needed along with a signature.
    pub mtls: MtlsMode,
    /// Encrypted JSON fields: decrypted before forwarding, and response fields encrypted for
    /// the partner.
    pub fields: Option<Arc<FieldRules>>,
    /// The tenant that published this route through the admin API (`None`: the operator's
    /// file route). Only that tenant's apps may call it.
    pub tenant: Option<Arc<str>>,
}

/// A route's encrypted fields (docs/encrypted-fields.md).
#[derive(Debug, Clone)]
pub struct FieldRules {
    /// Request fields that must arrive as `kge1` envelopes; decrypted before forwarding.
    pub decrypt: Vec<FieldPath>,
    /// Response fields encrypted with the calling app's partner public key.
    pub encrypt_response: Vec<FieldPath>,
    /// Longest envelope string accepted.
    pub max_envelope_bytes: usize,
    /// Longest response body buffered for encryption.
    pub max_response_bytes: usize,
}

/// What a route lets the audit log see besides the request line.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Bodies are recorded up to this many bytes (after masking).
    pub max_bytes: usize,
    /// JSON/form field names whose values are masked.
    pub mask_fields: Vec<String>,
    /// Request headers to record (credential headers never are).
    pub headers: Vec<http::HeaderName>,
    /// Responses are buffered for the record only up to this Content-Length.
    pub max_response_buffer: u64,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        let p = self.path_prefix.as_str();
        if p == "/" {
            return true;
        }
        match path.strip_prefix(p) {
            Some(rest) => p.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

/// Keys and routes at one point in time.
#[derive(Debug, Default)]
pub struct Snapshot {
    keys: Arc<HashMap<String, Arc<KeyEntry>>>,
    /// Longest prefix first.
    routes: Vec<Arc<Route>>,
    /// One legacy config per distinct (access key field, location): how to find the access key
    /// of a request that carries no KG1 headers.
    legacy_probes: Arc<Vec<LegacyConfig>>,
    /// Client certificate identities (SPKI fingerprint or subject) → access key of the `mtls` key.
    mtls_spki: Arc<HashMap<[u8; 32], String>>,
    mtls_subject: Arc<HashMap<String, String>>,
    /// App id → its field keys and partner keys (access keys), for encrypted fields.
    field_keys: Arc<HashMap<String, Vec<String>>>,
    /// App id → enabled, for user tokens (which name an app, not a key).
    apps: Arc<HashMap<String, bool>>,
    /// App id → owning tenant, for tenant routes.
    app_tenants: Arc<HashMap<String, Arc<str>>>,
    /// Store change counter this snapshot reflects.
    pub version: i64,
}

impl Snapshot {
    /// Builds a snapshot; later keys with the same access key replace earlier ones.
    pub fn new(keys: Vec<KeyEntry>, mut routes: Vec<Route>, version: i64) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        let mut legacy_probes: Vec<LegacyConfig> = Vec::new();
        for k in &keys {
            if let KeyScheme::Legacy(cfg) = &k.scheme {
                let seen = legacy_probes
                    .iter()
                    .any(|p| p.access_key_field == cfg.access_key_field && p.location == cfg.location);
                if !seen {
                    legacy_probes.push(cfg.clone());
                }
            }
        }
        let mut mtls_spki = HashMap::new();
        let mut mtls_subject = HashMap::new();
        let mut field_keys: HashMap<String, Vec<String>> = HashMap::new();
        for k in &keys {
            if matches!(k.scheme, KeyScheme::FieldKey { .. } | KeyScheme::FieldPartner { .. }) {
                field_keys.entry(k.app_id.clone()).or_default().push(k.access_key.clone());
            }
            if let KeyScheme::Mtls { spki_sha256, subject } = &k.scheme {
                if let Some(pin) = spki_sha256 {
                    mtls_spki.insert(*pin, k.access_key.clone());
                }
                if let Some(dn) = subject {
                    mtls_subject.insert(dn.clone(), k.access_key.clone());
                }
            }
        }
        Self {
            keys: Arc::new(keys.into_iter().map(|k| (k.access_key.clone(), Arc::new(k))).collect()),
            routes: routes.into_iter().map(Arc::new).collect(),
            legacy_probes: Arc::new(legacy_probes),
            mtls_spki: Arc::new(mtls_spki),
            mtls_subject: Arc::new(mtls_subject),
            field_keys: Arc::new(field_keys),
            apps: Arc::default(),
            app_tenants: Arc::default(),
            version,
        }
    }

    /// The same snapshot knowing which apps exist and are enabled (for user tokens).
    pub fn with_apps(mut self, apps: HashMap<String, bool>) -> Self {
        self.apps = Arc::new(apps);
        self
    }

    /// The same snapshot knowing which tenant owns each app (for tenant routes).
    pub fn with_app_tenants(mut self, tenants: HashMap<String, Arc<str>>) -> Self {
        self.app_tenants = Arc::new(tenants);
        self
    }

    /// The tenant owning the app, if the app is known.
    pub fn app_tenant(&self, app_id: &str) -> Option<&str> {
        self.app_tenants.get(app_id).map(|t| &**t)
    }

    /// Every known app with its tenant.
    pub fn app_tenants(&self) -> impl Iterator<Item = (&str, &str)> {
        self.app_tenants.iter().map(|(a, t)| (a.as_str(), &**t))
    }

    /// Whether a caller of `app_id` may use `route`: file routes are open to every app, a
    /// tenant's route only to that tenant's apps.
    pub fn route_open_to(&self, route: &Route, app_id: &str) -> bool {
        match &route.tenant {
            None => true,
            Some(t) => self.app_tenant(app_id) == Some(&**t),
        }
    }

    /// True when the app exists and is enabled.
    pub fn app_enabled(&self, app_id: &str) -> bool {
        self.apps.get(app_id).copied().unwrap_or(false)
    }

    /// The same keys (shared, not copied) with other routes: the outbound listener verifies
    /// callers with the keys of the inbound snapshot.
    pub fn with_routes(&self, mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        Self {
            keys: self.keys.clone(),
            routes: routes.into_iter().map(Arc::new).collect(),
            legacy_probes: self.legacy_probes.clone(),
            mtls_spki: self.mtls_spki.clone(),
            mtls_subject: self.mtls_subject.clone(),
            field_keys: self.field_keys.clone(),
            apps: self.apps.clone(),
            app_tenants: self.app_tenants.clone(),
            version: self.version,
        }
    }

    /// The key with this access key.
    pub fn key(&self, access_key: &str) -> Option<&Arc<KeyEntry>> {
        self.keys.get(access_key)
    }

    /// The `mtls` key a client certificate maps to: by SPKI fingerprint first, then by subject.
    pub fn mtls_key(&self, cert: &ClientCert) -> Option<&Arc<KeyEntry>> {
        let ak = self.mtls_spki.get(&cert.spki_sha256).or_else(|| self.mtls_subject.get(&cert.subject))?;
        self.keys.get(ak)
    }

    fn usable_field_keys<'a>(
        &'a self,
        app_id: &str,
        now: i64,
    ) -> impl Iterator<Item = &'a Arc<KeyEntry>> + 'a {
        self.field_keys.get(app_id).into_iter().flatten().filter_map(|ak| self.keys.get(ak)).filter(
            move |k| {
                k.enabled
                    && k.valid_from.is_none_or(|f| now >= f)
                    && k.valid_to.is_none_or(|t| now < t)
                    && k.overlap_until.is_none_or(|t| now < t)
            },
        )
    }

    /// The app's enabled field key pair with version `kid` (disabled, expired or rotated-out
    /// keys decrypt nothing).
    pub fn field_key(&self, app_id: &str, kid: &str, now: i64) -> Option<&FieldKeyPair> {
        self.usable_field_keys(app_id, now).find_map(|k| match &k.scheme {
            KeyScheme::FieldKey { kid: k_kid, pair } if k_kid == kid => Some(pair.as_ref()),
            _ => None,
        })
    }

    /// The app's partner public key to encrypt responses with: the enabled one that became
    /// valid last (ties: the greatest kid).
    pub fn partner_key(&self, app_id: &str, now: i64) -> Option<(&str, &FieldPublicKey)> {
        self.usable_field_keys(app_id, now)
            .filter_map(|k| match &k.scheme {
                KeyScheme::FieldPartner { kid, public } => {
                    Some((k.valid_from.unwrap_or(0), kid.as_str(), public.as_ref()))
                }
                _ => None,
            })
            .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
            .map(|(_, kid, pk)| (kid, pk))
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<KeyEntry>> {
        self.keys.values()
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The most specific route for a raw path.
    pub fn route(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(path))
    }

    /// Legacy configurations to try, in order, for a request without KG1 headers.
    pub fn legacy_probes(&self) -> &[LegacyConfig] {
        &self.legacy_probes
    }

    /// True if some legacy key expects its auth fields in form bodies.
    pub fn legacy_uses_params(&self) -> bool {
        self.legacy_probes.iter().any(|p| p.location == FieldLocation::Params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str) -> Route {
        Route {
            path_prefix: prefix.into(),
            upstream: "http://127.0.0.1:1".parse().unwrap(),
            strip_prefix: false,
            max_body_bytes: 1,
            timeout: Duration::from_secs(1),
            auth: RouteAuth::Signature,
            upstream_http2: false,
            preserve_host: false,
            per_ip_rate_limit: None,
            capture: None,
            user_tokens: false,
            mtls: MtlsMode::Off,
            fields: None,
            tenant: None,
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let s = Snapshot::new(vec![], vec![route("/"), route("/api"), route("/api/v2/")], 0);
        assert_eq!(s.route("/api").unwrap().path_prefix, "/api");
        assert_eq!(s.route("/api/x").unwrap().path_prefix, "/api");
        assert_eq!(s.route("/apix").unwrap().path_prefix, "/");
        assert_eq!(s.route("/api/v2/x").unwrap().path_prefix, "/api/v2/");
        assert_eq!(s.route("/api/v2").unwrap().path_prefix, "/api");
        let none = Snapshot::new(vec![], vec![route("/api")], 0);
        assert!(none.route("/other").is_none());
    }
}
