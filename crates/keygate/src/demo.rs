// `keygate serve --demo`: a self-contained setup on a fresh machine — data dir with a generated
// master key and demo secret (files, mode 0600), an echo upstream, one app and key.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::config::{AppConfig, Config, KeyConfig, RouteConfig, SCHEME_KG1};

pub const DEMO_ACCESS_KEY: &str = "AKDEMO0000000001";

/// Starts an HTTP/1.1 + h2c echo upstream on a free loopback port: it answers every request
/// with JSON describing what arrived, including the identity headers keygate adds.
pub async fn start_echo_upstream() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let h = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
                    let json = serde_json::json!({
                        "upstream": "keygate demo echo",
                        "method": parts.method.as_str(),
                        "path": parts.uri.path(),
                        "query": parts.uri.query().unwrap_or(""),
                        "app_id": h("x-kg-app-id"),
                        "key_id": h("x-kg-key-id"),
                        "request_id": h("x-request-id"),
                        "body_bytes": body.len(),
                    });
                    let mut resp = hyper::Response::new(Full::new(Bytes::from(json.to_string())));
                    resp.headers_mut()
                        .insert("content-type", http::HeaderValue::from_static("application/json"));
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Creates the demo data dir (idempotent) and returns the config to serve.
pub fn prepare(data_dir: &Path, listen: &str, upstream: SocketAddr) -> Result<Config> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let master = data_dir.join("master.key");
    if !master.exists() {
        let (_, text) = keygate_store::MasterKey::generate(1)?;
        write_private(&master, text.as_bytes())?;
    }
    let secret_file = secret_path(data_dir);
    if !secret_file.exists() {
        let mut raw = zeroize::Zeroizing::new([0u8; 32]);
        keygate_store::crypto::random(&mut raw[..])?;
        let text = zeroize::Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw[..]));
        write_private(&secret_file, text.as_bytes())?;
    }
    let mut cfg = Config::default();
    cfg.server.inbound = listen.to_string();
    cfg.store.url = format!("sqlite://{}", data_dir.join("keygate.db").display());
    cfg.store.master_key_file = Some(master);
    cfg.routes.push(RouteConfig {
        path_prefix: "/".into(),
        upstream: format!("http://{upstream}"),
        strip_prefix: false,
        max_body_bytes: 1024 * 1024,
        timeout_ms: 10_000,
        auth: "signature".into(),
        upstream_http2: false,
        preserve_host: false,
        per_ip_rate_limit: None,
        audit_capture: None,
        user_tokens: false,
        mtls: "off".into(),
        encrypted_fields: None,
    });
    cfg.apps.push(AppConfig {
        id: "demo".into(),
        name: Some("Demo app".into()),
        tenant: "default".into(),
        enabled: true,
        keys: vec![KeyConfig {
            access_key: DEMO_ACCESS_KEY.into(),
            secret_env: None,
            secret_file: Some(secret_file),
            secret: None,
            scheme: SCHEME_KG1.into(),
            enabled: true,
            valid_from: None,
            valid_to: None,
            timestamp_window_secs: 300,
            description: "created by keygate serve --demo".into(),
            legacy: None,
            sigv4: None,
            http_signature: None,
            mtls: None,
            field_key: None,
            rate_limit: None,
            scopes: Vec::new(),
            allowed_endpoints: Vec::new(),
            allowed_cidrs: Vec::new(),
            auth_policy: "signature".into(),
        }],
    });
    Ok(cfg)
}

pub fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("demo.secret")
}

/// The lines printed once the demo gateway listens.
pub fn banner(addr: SocketAddr, upstream: SocketAddr, data_dir: &Path) -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| {
            let cwd = std::env::current_dir().ok()?;
            Some(p.strip_prefix(&cwd).map(|r| r.to_path_buf()).unwrap_or(p))
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "keygate".into());
    let secret = secret_path(data_dir);
    format!(
        "\nkeygate demo: gateway on http://{addr} → echo upstream on http://{upstream}\n\
         app \"demo\", access key {DEMO_ACCESS_KEY}, secret in {} (never printed)\n\n\
         Send a signed request (accepted):\n  {exe} curl --key {DEMO_ACCESS_KEY} --secret-file {} 'http://{addr}/hello?name=world'\n\n\
         Send it unsigned (refused with missing_auth):\n  curl -i 'http://{addr}/hello?name=world'\n",
        secret.display(),
        secret.display(),
    )
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
