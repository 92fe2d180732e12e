// Tenant-owned routes and alert rules (issue 11): what a tenant may configure itself, checked
// against the operator's `[tenant_routes]` policy, and turned into data-plane routes and alert
// rules. The same checks run when an object is written (admin API, import, rollback) and when a
// replica loads it, so a change of operator policy cannot smuggle an object past them.

use std::collections::HashMap;

use keygate_inbound::{MtlsMode, Route, RouteAuth};
use keygate_store::{ObjectKind, TenantObject};
use serde::Deserialize;

use crate::config::RouteConfig;

/// `[tenant_routes]`: where tenants' own routes live and where they may forward to. Without
/// `upstream_hosts`, tenants cannot create routes at all (fail closed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRoutesConfig {
    /// Path every route of a tenant must start with; `{tenant}` is replaced by the tenant id.
    /// Each tenant gets its own subtree, so one tenant's route can never shadow another's.
    #[serde(default = "default_root")]
    pub path_root: String,
    /// Upstreams tenant routes may forward to: `host`, `host:port`, `*.example.com` (any
    /// subdomain), each optionally with `:*` or `:<port>`. Without a port only the scheme's
    /// default port (80/443) matches.
    #[serde(default)]
    pub upstream_hosts: Vec<String>,
    /// Whether a tenant may publish a route with `auth = "none"` (no caller check at all).
    #[serde(default)]
    pub allow_auth_none: bool,
    /// Largest `max_body_bytes` a tenant route may set.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Longest `timeout_ms` a tenant route may set.
    #[serde(default = "default_max_timeout")]
    pub max_timeout_ms: u64,
}

fn default_root() -> String {
    "/t/{tenant}".into()
}
fn default_max_body() -> u64 {
    10 * 1024 * 1024
}
fn default_max_timeout() -> u64 {
    60_000
}

impl Default for TenantRoutesConfig {
    fn default() -> Self {
        Self {
            path_root: default_root(),
            upstream_hosts: Vec::new(),
            allow_auth_none: false,
            max_body_bytes: default_max_body(),
            max_timeout_ms: default_max_timeout(),
        }
    }
}

impl TenantRoutesConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.path_root.starts_with('/') && self.path_root.contains("{tenant}"),
            "[tenant_routes] path_root must start with / and contain {{tenant}}"
        );
        for h in &self.upstream_hosts {
            HostPattern::parse(h).map_err(|e| anyhow::anyhow!("[tenant_routes] upstream_hosts: {e}"))?;
        }
        Ok(())
    }
}

/// One `upstream_hosts` entry.
#[derive(Debug, Clone, PartialEq)]
struct HostPattern {
    /// Lower case; for a wildcard, the suffix including its leading dot.
    host: String,
    wildcard: bool,
    /// `None`: the scheme's default port; `Some(None)`: any port.
    port: Option<Option<u16>>,
}

impl HostPattern {
    fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not host, host:port, host:* or *.domain[:port]");
        let (host, port) = match s.rsplit_once(':') {
            // A bracketed IPv6 literal carries colons of its own.
            Some((h, p)) if !p.contains(']') && (!h.contains(':') || h.ends_with(']')) => {
                let port =
                    if p == "*" { Some(None) } else { Some(Some(p.parse::<u16>().map_err(|_| bad())?)) };
                (h, port)
            }
            _ => (s, None),
        };
        let host = host.to_ascii_lowercase();
        let (host, wildcard) = match host.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && rest.len() > 1 => (rest.to_string(), true),
            Some(_) => return Err(bad()),
            None => (host, false),
        };
        if host.is_empty() || host.contains('/') || host.contains('*') || host.contains('@') {
            return Err(bad());
        }
        Ok(Self { host, wildcard, port })
    }

    fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = if self.wildcard {
            host.ends_with(&self.host) && host.len() > self.host.len()
        } else {
            host == self.host
        };
        let port_ok = match self.port {
            None => port == default_port,
            Some(None) => true,
            Some(Some(p)) => p == port,
        };
        host_ok && port_ok
    }
}

/// The operator's policy, ready to check tenant objects.
#[derive(Debug, Clone)]
pub struct Policy {
    cfg: TenantRoutesConfig,
    hosts: Vec<HostPattern>,
    /// Path prefixes of the operator's file routes: a tenant route may not take one over.
    file_prefixes: Vec<String>,
    /// Whether client certificates can be asked for (`[server] tls_client_ca`).
    client_certs: bool,
}

impl Policy {
    pub fn new(cfg: &TenantRoutesConfig, file_routes: &[Route], client_certs: bool) -> anyhow::Result<Self> {
        cfg.validate()?;
        let hosts = cfg
            .upstream_hosts
            .iter()
            .map(|h| HostPattern::parse(h).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            hosts,
            file_prefixes: file_routes.iter().map(|r| r.path_prefix.clone()).collect(),
            client_certs,
        })
    }

    /// The subtree a tenant's routes live in; `None` for tenant ids that cannot name a path
    /// segment safely.
    pub fn root(&self, tenant: &str) -> Option<String> {
        let ok = !tenant.is_empty()
            && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && tenant != "."
            && tenant != "..";
        ok.then(|| self.cfg.path_root.replace("{tenant}", tenant))
    }

    /// Parses and checks one route document of `tenant`.
    pub fn route(&self, tenant: &str, doc: &serde_json::Value) -> Result<Route, String> {
        let rc: RouteConfig = serde_json::from_value(doc.clone()).map_err(|e| format!("route: {e}"))?;
        let mut route = rc.to_route().map_err(|e| format!("route: {e:#}"))?;
        let root = self
            .root(tenant)
            .ok_or_else(|| format!("tenant id {tenant:?} cannot own routes (use [A-Za-z0-9._-])"))?;
        let p = route.path_prefix.as_str();
        let inside = p == root || p.strip_prefix(root.as_str()).is_some_and(|rest| rest.starts_with('/'));
        if !inside {
            return Err(format!("path_prefix must be {root} or start with {root}/"));
        }
        if self.file_prefixes.iter().any(|f| f == p) {
            return Err(format!("path_prefix {p} is an operator route"));
        }
        if self.hosts.is_empty() {
            return Err(
                "the operator allows no upstream for tenant routes ([tenant_routes] upstream_hosts)".into()
            );
        }
        let default_port = if route.upstream.scheme_str() == Some("https") { 443 } else { 80 };
        let host = route.upstream.host().unwrap_or("");
        let port = route.upstream.port_u16().unwrap_or(default_port);
        if !self.hosts.iter().any(|h| h.matches(host, port, default_port)) {
            return Err(format!(
                "upstream {}:{port} is not allowed for tenant routes ([tenant_routes] upstream_hosts)",
                host
            ));
        }
        if route.auth == RouteAuth::None && !self.cfg.allow_auth_none {
            return Err("auth = \"none\" is not allowed for tenant routes".into());
        }
        if route.max_body_bytes > self.cfg.max_body_bytes {
            return Err(format!("max_body_bytes may be at most {}", self.cfg.max_body_bytes));
        }
        if route.timeout.as_millis() > u128::from(self.cfg.max_timeout_ms) {
            return Err(format!("timeout_ms may be at most {}", self.cfg.max_timeout_ms));
        }
        if route.mtls != MtlsMode::Off && !self.client_certs {
            return Err("mtls needs the operator's [server] tls_client_ca".into());
        }
        route.tenant = Some(tenant.into());
        Ok(route)
    }

    /// Checks an object about to be written; `siblings` are the tenant's other objects of the
    /// same kind (a route's prefix must be unique within its tenant).
    pub fn check(&self, obj: &TenantObject, siblings: &[TenantObject]) -> Result<(), String> {
        match obj.kind {
            ObjectKind::Route => {
                let route = self.route(&obj.tenant_id, &obj.config)?;
                for s in siblings.iter().filter(|s| s.name != obj.name) {
                    if s.config.get("path_prefix").and_then(|v| v.as_str())
                        == Some(route.path_prefix.as_str())
                    {
                        return Err(format!(
                            "route {} already uses path_prefix {}",
                            s.name, route.path_prefix
                        ));
                    }
                }
                Ok(())
            }
            ObjectKind::AlertRule => alert_rule(&obj.name, &obj.config).map(|_| ()),
        }
    }

    /// The data-plane routes of every tenant object that passes; refused ones (after an
    /// operator policy change) are returned with the reason, never loaded.
    pub fn routes(&self, objects: &[TenantObject]) -> (Vec<Route>, Refused) {
        let mut out: Vec<Route> = Vec::new();
        let mut refused = Vec::new();
        for o in objects.iter().filter(|o| o.kind == ObjectKind::Route) {
            match self.route(&o.tenant_id, &o.config) {
                Ok(r) if out.iter().any(|x| x.path_prefix == r.path_prefix) => {
                    refused.push((o.target(), format!("path_prefix {} is used twice", r.path_prefix)));
                }
                Ok(r) => out.push(r),
                Err(e) => refused.push((o.target(), e)),
            }
        }
        (out, refused)
    }
}

/// Checks an object with the operator's policy when the caller has it (the gateway), else its
/// syntax only (`keygate config import` without `-c`: replicas still refuse what breaks the
/// policy when they load it).
pub fn check_object(
    policy: Option<&Policy>,
    obj: &TenantObject,
    siblings: &[TenantObject],
) -> Result<(), String> {
    match (policy, obj.kind) {
        (Some(p), _) => p.check(obj, siblings),
        (None, ObjectKind::Route) => {
            let rc: RouteConfig =
                serde_json::from_value(obj.config.clone()).map_err(|e| format!("route: {e}"))?;
            rc.to_route().map(|_| ()).map_err(|e| format!("route: {e:#}"))
        }
        (None, ObjectKind::AlertRule) => alert_rule(&obj.name, &obj.config).map(|_| ()),
    }
}

/// Parses one alert-rule document; its name is the object's name.
pub fn alert_rule(name: &str, doc: &serde_json::Value) -> Result<keygate_alerts::RuleConfig, String> {
    let mut doc = doc.clone();
    let map = doc.as_object_mut().ok_or("alert rule must be an object")?;
    match map.get("name") {
        None => {
            map.insert("name".into(), name.into());
        }
        Some(n) if n.as_str() == Some(name) => {}
        Some(_) => return Err(format!("alert rule name must be {name:?} (the object's name)")),
    }
    let rule: keygate_alerts::RuleConfig =
        serde_json::from_value(doc).map_err(|e| format!("alert rule: {e}"))?;
    keygate_alerts::validate_tenant_rules(std::slice::from_ref(&rule)).map_err(|e| e.to_string())?;
    Ok(rule)
}

/// Objects a load refused: (`tenant/kind/name`, reason).
pub type Refused = Vec<(String, String)>;

/// Every tenant's valid alert rules, by tenant; refused ones with the reason.
pub fn alert_rules(objects: &[TenantObject]) -> (HashMap<String, Vec<keygate_alerts::RuleConfig>>, Refused) {
    let mut out: HashMap<String, Vec<keygate_alerts::RuleConfig>> = HashMap::new();
    let mut refused = Vec::new();
    for o in objects.iter().filter(|o| o.kind == ObjectKind::AlertRule) {
        match alert_rule(&o.name, &o.config) {
            Ok(r) => out.entry(o.tenant_id.clone()).or_default().push(r),
            Err(e) => refused.push((o.target(), e)),
        }
    }
    (out, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(hosts: &[&str]) -> Policy {
        let cfg = TenantRoutesConfig {
            upstream_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ..TenantRoutesConfig::default()
        };
        let file: RouteConfig =
            serde_json::from_value(json!({"path_prefix": "/api", "upstream": "http://127.0.0.1:9000"}))
                .unwrap();
        let file = file.to_route().unwrap();
        Policy::new(&cfg, &[file], false).unwrap()
    }

    fn obj(tenant: &str, kind: ObjectKind, name: &str, config: serde_json::Value) -> TenantObject {
        TenantObject {
            tenant_id: tenant.into(),
            kind,
            name: name.into(),
            config,
            created_at: 0,
            updated_at: 0,
            updated_by: String::new(),
        }
    }

    #[test]
    fn host_patterns() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("api.example.com").matches("API.example.com", 443, 443));
        assert!(!p("api.example.com").matches("api.example.com", 8443, 443), "default port only");
        assert!(p("api.example.com:8443").matches("api.example.com", 8443, 443));
        assert!(p("127.0.0.1:*").matches("127.0.0.1", 5555, 80));
        assert!(p("*.svc.internal").matches("orders.svc.internal", 80, 80));
        assert!(!p("*.svc.internal").matches("svc.internal", 80, 80), "the bare domain is not a subdomain");
        assert!(!p("*.svc.internal").matches("evilsvc.internal", 80, 80));
        assert!(p("[::1]:8080").matches("[::1]", 8080, 80));
        for bad in ["", "*", "*.", "a/b", "h:port", "user@h", "*x.com", "a.*.com"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn routes_stay_in_the_tenant_subtree_and_on_allowed_upstreams() {
        let p = policy(&["127.0.0.1:*", "*.svc.internal"]);
        let ok = json!({"path_prefix": "/t/acme/orders", "upstream": "http://127.0.0.1:7000"});
        let r = p.route("acme", &ok).unwrap();
        assert_eq!(r.tenant.as_deref(), Some("acme"));
        assert!(p
            .route("acme", &json!({"path_prefix": "/t/acme", "upstream": "https://x.svc.internal"}))
            .is_ok());
        let refusals = [
            (
                json!({"path_prefix": "/t/other/orders", "upstream": "http://127.0.0.1:7000"}),
                "start with /t/acme/",
            ),
            (json!({"path_prefix": "/t/acmex", "upstream": "http://127.0.0.1:7000"}), "start with /t/acme/"),
            (json!({"path_prefix": "/api", "upstream": "http://127.0.0.1:7000"}), "start with /t/acme/"),
            (json!({"path_prefix": "/t/acme/x", "upstream": "http://169.254.169.254"}), "not allowed"),
            (json!({"path_prefix": "/t/acme/x", "upstream": "http://svc.internal"}), "not allowed"),
            (json!({"path_prefix": "/t/acme/x", "upstream": "http://127.0.0.1:1", "auth": "none"}), "auth"),
            (
                json!({"path_prefix": "/t/acme/x", "upstream": "http://127.0.0.1:1", "max_body_bytes": 1u64 << 40}),
                "max_body_bytes",
            ),
            (
                json!({"path_prefix": "/t/acme/x", "upstream": "http://127.0.0.1:1", "timeout_ms": 3_600_000}),
                "timeout_ms",
            ),
            (
                json!({"path_prefix": "/t/acme/x", "upstream": "http://127.0.0.1:1", "mtls": "required"}),
                "tls_client_ca",
            ),
            (
                json!({"path_prefix": "/t/acme/x", "upstream": "http://127.0.0.1:1", "bogus": 1}),
                "unknown field",
            ),
            (json!({"path_prefix": "/t/acme/x"}), "upstream"),
        ];
        for (doc, want) in refusals {
            let e = p.route("acme", &doc).unwrap_err();
            assert!(e.contains(want), "{doc}: {e}");
        }
        assert!(p.route("a/b", &ok).unwrap_err().contains("cannot own routes"));
        assert!(policy(&[]).route("acme", &ok).unwrap_err().contains("allows no upstream"));
    }

    #[test]
    fn prefixes_are_unique_within_a_tenant() {
        let p = policy(&["127.0.0.1:*"]);
        let a = obj(
            "acme",
            ObjectKind::Route,
            "a",
            json!({"path_prefix": "/t/acme/x", "upstream": "http://127.0.0.1:1"}),
        );
        let b = obj(
            "acme",
            ObjectKind::Route,
            "b",
            json!({"path_prefix": "/t/acme/x", "upstream": "http://127.0.0.1:2"}),
        );
        assert!(p.check(&b, std::slice::from_ref(&a)).unwrap_err().contains("already uses"));
        assert!(p.check(&a, std::slice::from_ref(&a)).is_ok(), "an object does not collide with itself");
        let (routes, refused) = p.routes(&[a, b]);
        assert_eq!(routes.len(), 1);
        assert_eq!(refused.len(), 1);
    }

    #[test]
    fn alert_rules_take_the_object_name() {
        let r = alert_rule("burst", &json!({"kind": "replays", "per": "app", "threshold": 3})).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap()["name"], "burst");
        assert!(alert_rule("burst", &json!({"kind": "replays", "per": "app", "threshold": 3, "name": "x"}))
            .is_err());
        assert!(alert_rule(
            "g",
            &json!({"kind": "gauge_above", "gauge": "audit_spill_bytes", "threshold": 1.0})
        )
        .is_err());
        assert!(alert_rule("x", &json!({"kind": "nope"})).is_err());
        let objs = [
            obj("acme", ObjectKind::AlertRule, "ok", json!({"kind": "replays", "per": "ip", "threshold": 2})),
            obj("acme", ObjectKind::AlertRule, "bad", json!({"kind": "replays"})),
            obj("acme", ObjectKind::Route, "r", json!({})),
        ];
        let (rules, refused) = alert_rules(&objs);
        assert_eq!(rules["acme"].len(), 1);
        assert_eq!(refused.len(), 1);
    }
}
