// `keygate tenants|apps|keys|tokens ...`: the admin API from the command line, human tables by
// default and `--json` for scripts. `keygate admin-token create` bootstraps the first token
// directly on the store (there is no token yet to call the API with).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct Conn {
    /// Admin API base URL.
    #[arg(long, global = true, env = "KEYGATE_ADMIN_URL", default_value = "http://127.0.0.1:9090")]
    admin_url: String,
    /// Admin token (kgadm_...). Prefer the environment variable over the flag: flags show in `ps`.
    #[arg(long, global = true, env = "KEYGATE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    List,
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Apps of a tenant.
    List {
        #[arg(long)]
        tenant: String,
    },
    Create {
        id: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: Option<String>,
    },
    Show {
        id: String,
    },
    /// Emergency revoke: disable the app and every key of it, on every replica within a second.
    Revoke {
        id: String,
    },
}

/// Policy flags shared by `keys create` and `keys import`.
#[derive(Debug, Args)]
pub struct KeyPolicy {
    #[arg(long)]
    app: String,
    /// Access key (default: generated).
    #[arg(long)]
    access_key: Option<String>,
    #[arg(long, default_value = "kg1-hmac-sha256")]
    scheme: String,
    #[arg(long, default_value = "")]
    description: String,
    /// Allowed client network (repeatable), e.g. 203.0.113.0/24 or 2001:db8::/32.
    #[arg(long = "cidr")]
    cidrs: Vec<String>,
    /// Allowed endpoint (repeatable), e.g. "GET /v1/orders/*".
    #[arg(long = "endpoint")]
    endpoints: Vec<String>,
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Requests per second for this key (token bucket, shared by all replicas).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, requires = "rate")]
    burst: Option<u32>,
    /// How requests authenticate: signature, token (exchange at /auth/token) or both.
    #[arg(long, default_value = "signature", value_parser = ["signature", "token", "both"])]
    auth_policy: String,
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    List {
        #[arg(long)]
        app: String,
    },
    Show {
        access_key: String,
    },
    /// Create a key with a generated secret (printed once).
    Create {
        #[command(flatten)]
        policy: KeyPolicy,
    },
    /// Import an existing secret (for integrators migrating from another gateway).
    Import {
        #[command(flatten)]
        policy: KeyPolicy,
        /// Read the secret from this environment variable.
        #[arg(long, conflicts_with = "secret_file")]
        secret_env: Option<String>,
        /// Read the secret from this file (trailing newline removed).
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// Start a rotation: a new key now, the old one keeps verifying for the overlap.
    Rotate {
        access_key: String,
        /// Overlap in seconds (default one day).
        #[arg(long, default_value_t = 86_400)]
        overlap_secs: u64,
    },
    /// Emergency revoke: the key stops verifying on every replica within a second.
    Revoke {
        access_key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProviderCmd {
    /// Providers of a tenant.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// One provider: document, secret names and sizes, missing bindings.
    Show { id: String },
    /// Saves a script file as the provider's next version and activates it.
    SaveScript {
        id: String,
        /// File holding `function (reqHeaders, reqParams, reqBody, …) { … }`.
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Saved script versions.
    Scripts { id: String },
    /// Makes an earlier script version active (rollback).
    Activate { id: String, version: i64 },
    /// Runs the provider's script on a sample request (JSON file with `request`, `mocks`,
    /// optional `source`): the outgoing request and a step trace; no provider is contacted.
    TestRun {
        id: String,
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    Create {
        #[arg(long)]
        name: String,
        /// gateway_admin, tenant_admin or tenant_developer.
        #[arg(long)]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        /// App a tenant developer may create keys for (repeatable).
        #[arg(long = "grant")]
        grants: Vec<String>,
    },
    Revoke {
        id: String,
    },
}

struct Api {
    base: String,
    token: String,
    client:
        Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>,
}

impl Api {
    fn new(conn: &Conn) -> Result<Self> {
        let token = conn.token.clone().context(
            "no admin token: set KEYGATE_ADMIN_TOKEN (create one with `keygate admin-token create`)",
        )?;
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            base: conn.admin_url.trim_end_matches('/').to_string(),
            token,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    async fn call(&self, method: http::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.token));
        let body = match body {
            Some(b) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(b.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = self.client.request(req.body(body)?).await.with_context(|| format!("calling {url}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let v: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if !status.is_success() {
            let code = v["code"].as_str().unwrap_or("error");
            let msg = v["message"].as_str().unwrap_or("");
            let field = v["field"].as_str().map(|f| format!(" (field {f})")).unwrap_or_default();
            bail!("{status} {code}: {msg}{field} [request {}]", v["request_id"].as_str().unwrap_or("-"));
        }
        Ok(v)
    }
}

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn print(conn: &Conn, v: &Value, columns: &[&str]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if conn.json {
        writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
        return Ok(());
    }
    let rows: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let cell = |r: &Value, c: &str| -> String {
        match &r[c] {
            Value::Null => "-".into(),
            Value::String(s) => s.clone(),
            Value::Array(a) if a.is_empty() => "-".into(),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        }
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| rows.iter().map(|r| cell(r, c).len()).max().unwrap_or(0).max(c.len()))
        .collect();
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(columns.iter().map(|c| c.to_uppercase()).collect()))?;
    for r in rows {
        writeln!(out, "{}", line(columns.iter().map(|c| cell(r, c)).collect()))?;
    }
    Ok(())
}

const KEY_COLUMNS: &[&str] = &[
    "access_key",
    "app_id",
    "scheme",
    "enabled",
    "allowed_cidrs",
    "allowed_endpoints",
    "auth_policy",
    "successor",
    "last_used_at",
];

fn policy_body(p: &KeyPolicy) -> Value {
    let mut b = json!({
        "scheme": p.scheme,
        "description": p.description,
        "allowed_cidrs": p.cidrs,
        "allowed_endpoints": p.endpoints,
        "scopes": p.scopes,
        "auth_policy": p.auth_policy,
    });
    if let Some(a) = &p.access_key {
        b["access_key"] = a.clone().into();
    }
    if let Some(rate) = p.rate {
        b["rate_limit"] =
            json!({"rate_per_sec": rate, "burst": p.burst.unwrap_or(rate.ceil().max(1.0) as u32)});
    }
    b
}

/// Prints a one-time secret on its own, clearly labelled, to stdout.
fn print_secret(conn: &Conn, v: &Value, what: &str) -> Result<()> {
    if conn.json {
        return print(conn, v, &[]);
    }
    let mut out = std::io::stdout().lock();
    if let Some(s) = v["secret"].as_str() {
        writeln!(out, "{what}")?;
        writeln!(out, "secret: {s}")?;
        writeln!(out, "Store it now: keygate never shows it again.")?;
    }
    Ok(())
}

pub async fn tenants(conn: &Conn, cmd: &TenantCmd) -> Result<()> {
    let api = Api::new(conn)?;
    let v = match cmd {
        TenantCmd::List => api.call(http::Method::GET, "/admin/tenants", None).await?,
        TenantCmd::Create { id, name } => {
            api.call(
                http::Method::POST,
                "/admin/tenants",
                Some(json!({"id": id, "name": name.clone().unwrap_or_else(|| id.clone())})),
            )
            .await?
        }
    };
    print(conn, &v, &["id", "name"])
}

pub async fn apps(conn: &Conn, cmd: &AppCmd) -> Result<()> {
    let api = Api::new(conn)?;
    let cols = &["id", "tenant_id", "name", "enabled"];
    match cmd {
        AppCmd::List { tenant } => print(
            conn,
            &api.call(http::Method::GET, &format!("/admin/tenants/{}/apps", enc(tenant)), None).await?,
            cols,
        ),
        AppCmd::Create { id, tenant, name } => {
            let body = json!({"id": id, "name": name});
            print(
                conn,
                &api.call(http::Method::POST, &format!("/admin/tenants/{}/apps", enc(tenant)), Some(body))
                    .await?,
                cols,
            )
        }
        AppCmd::Show { id } => {
            print(conn, &api.call(http::Method::GET, &format!("/admin/apps/{}", enc(id)), None).await?, cols)
        }
        AppCmd::Revoke { id } => {
            let v = api.call(http::Method::POST, &format!("/admin/apps/{}/revoke", enc(id)), None).await?;
            if conn.json {
                return print(conn, &v, &[]);
            }
            println!("app {id} disabled; {} key(s) revoked", v["keys_disabled"]);
            Ok(())
        }
    }
}

pub async fn keys(conn: &Conn, cmd: &KeyCmd) -> Result<()> {
    let api = Api::new(conn)?;
    match cmd {
        KeyCmd::List { app } => print(
            conn,
            &api.call(http::Method::GET, &format!("/admin/apps/{}/keys", enc(app)), None).await?,
            KEY_COLUMNS,
        ),
        KeyCmd::Show { access_key } => print(
            conn,
            &api.call(http::Method::GET, &format!("/admin/keys/{}", enc(access_key)), None).await?,
            KEY_COLUMNS,
        ),
        KeyCmd::Create { policy } => {
            let v = api
                .call(
                    http::Method::POST,
                    &format!("/admin/apps/{}/keys", enc(&policy.app)),
                    Some(policy_body(policy)),
                )
                .await?;
            if !conn.json {
                print(conn, &v["key"], KEY_COLUMNS)?;
            }
            print_secret(conn, &v, &format!("access key: {}", v["key"]["access_key"].as_str().unwrap_or("")))
        }
        KeyCmd::Import { policy, secret_env, secret_file } => {
            let secret = zeroize::Zeroizing::new(match (secret_env, secret_file) {
                (Some(var), _) => {
                    std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?
                }
                (None, Some(path)) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                (None, None) => bail!("give the secret with --secret-env VAR or --secret-file PATH"),
            });
            let mut body = policy_body(policy);
            body["secret"] = Value::String(secret.to_string());
            let v = api
                .call(http::Method::POST, &format!("/admin/apps/{}/keys", enc(&policy.app)), Some(body))
                .await?;
            print(conn, &v["key"], KEY_COLUMNS)
        }
        KeyCmd::Rotate { access_key, overlap_secs } => {
            let v = api
                .call(
                    http::Method::POST,
                    &format!("/admin/keys/{}/rotate", enc(access_key)),
                    Some(json!({"overlap_secs": overlap_secs})),
                )
                .await?;
            if conn.json {
                return print(conn, &v, &[]);
            }
            println!(
                "rotating {access_key} -> {}; the old key verifies until {}",
                v["new"]["access_key"].as_str().unwrap_or(""),
                v["old"]["overlap_until"]
            );
            print_secret(
                conn,
                &v,
                &format!("new access key: {}", v["new"]["access_key"].as_str().unwrap_or("")),
            )
        }
        KeyCmd::Revoke { access_key } => print(
            conn,
            &api.call(http::Method::POST, &format!("/admin/keys/{}/revoke", enc(access_key)), None).await?,
            KEY_COLUMNS,
        ),
    }
}

pub async fn tokens(conn: &Conn, cmd: &TokenCmd) -> Result<()> {
    let api = Api::new(conn)?;
    let cols = &["id", "name", "role", "tenant_id", "app_grants", "revoked_at"];
    match cmd {
        TokenCmd::List { tenant } => {
            let path = match tenant {
                Some(t) => format!("/admin/tokens?tenant={}", enc(t)),
                None => "/admin/tokens".into(),
            };
            print(conn, &api.call(http::Method::GET, &path, None).await?, cols)
        }
        TokenCmd::Create { name, role, tenant, grants } => {
            let body = json!({"name": name, "role": role, "tenant_id": tenant, "app_grants": grants});
            let v = api.call(http::Method::POST, "/admin/tokens", Some(body)).await?;
            print_token(conn, &v)
        }
        TokenCmd::Revoke { id } => print(
            conn,
            &api.call(http::Method::DELETE, &format!("/admin/tokens/{}", enc(id)), None).await?,
            cols,
        ),
    }
}

pub async fn providers(conn: &Conn, cmd: &ProviderCmd) -> Result<()> {
    let api = Api::new(conn)?;
    let m = http::Method::GET;
    match cmd {
        ProviderCmd::List { tenant } => {
            let v = api.call(m, &format!("/admin/tenants/{}/providers", enc(tenant)), None).await?;
            print(conn, &v, &["id", "tenant_id", "updated_at", "updated_by", "missing_bindings"])
        }
        ProviderCmd::Show { id } => {
            print(conn, &api.call(m, &format!("/admin/providers/{}", enc(id)), None).await?, &[])
        }
        ProviderCmd::SaveScript { id, file, comment } => {
            let source =
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let body = json!({"source": source, "comment": comment});
            let v = api
                .call(http::Method::POST, &format!("/admin/providers/{}/scripts", enc(id)), Some(body))
                .await?;
            if conn.json {
                return print(conn, &v, &[]);
            }
            println!("saved and activated version {} of {id}", v["version"]);
            Ok(())
        }
        ProviderCmd::Scripts { id } => {
            let v = api.call(m, &format!("/admin/providers/{}/scripts", enc(id)), None).await?;
            print(conn, &v, &["version", "active", "created_at", "created_by", "comment"])
        }
        ProviderCmd::Activate { id, version } => {
            let path = format!("/admin/providers/{}/scripts/{version}/activate", enc(id));
            let v = api.call(http::Method::POST, &path, None).await?;
            if conn.json {
                return print(conn, &v, &[]);
            }
            println!("version {version} of {id} is active");
            Ok(())
        }
        ProviderCmd::TestRun { id, file } => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let body: Value = serde_json::from_str(&text).context("the test-run file must be JSON")?;
            let v = api
                .call(http::Method::POST, &format!("/admin/providers/{}/test-run", enc(id)), Some(body))
                .await?;
            if conn.json {
                return print(conn, &v, &[]);
            }
            println!("ok: {}", v["ok"]);
            if !v["error"].is_null() {
                println!("error: {} — {}", v["error"]["code"], v["error"]["message"]);
            }
            if let Some(r) = v["request"].as_object() {
                println!("{} {}", r["method"].as_str().unwrap_or(""), r["url"].as_str().unwrap_or(""));
                for h in r["headers"].as_array().into_iter().flatten() {
                    println!("{}: {}", h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or(""));
                }
                println!();
                println!("{}", r["body"].as_str().unwrap_or(""));
            }
            println!("trace:");
            for step in v["trace"].as_array().into_iter().flatten() {
                println!("  {}", step.as_str().unwrap_or(""));
            }
            Ok(())
        }
    }
}

fn print_token(conn: &Conn, v: &Value) -> Result<()> {
    if conn.json {
        return print(conn, v, &[]);
    }
    println!(
        "admin token {} ({}) created",
        v["record"]["id"].as_str().unwrap_or(""),
        v["record"]["role"].as_str().unwrap_or("")
    );
    println!("token: {}", v["token"].as_str().unwrap_or(""));
    println!("Store it now: keygate never shows it again.");
    Ok(())
}

/// `keygate admin-token create`: straight to the store, for the first token.
pub async fn bootstrap_token(
    store: &keygate_store::Store,
    name: &str,
    role: &str,
    tenant: Option<&str>,
    grants: &[String],
    json: bool,
) -> Result<()> {
    let role = keygate_store::AdminRole::parse(role)
        .context("--role must be gateway_admin, tenant_admin or tenant_developer")?;
    let mut rec = keygate_store::AdminTokenRecord::new(name, role, tenant);
    rec.app_grants = grants.to_vec();
    let (rec, token) = store.with_actor("cli").create_admin_token(&rec).await?;
    let v = json!({"record": rec, "token": &*token});
    print_token(&Conn { admin_url: String::new(), token: None, json }, &v)
}
