// `keygate sign` and `keygate curl`: sign a request with keygate-sign — the same code the
// gateway verifies with — and print the headers or send it. The secret is read from an env
// var or a file, never from the command line (where `ps` would show it).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keygate_sign::Signer;
use secrecy::SecretBox;

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Access key.
    #[arg(long)]
    pub key: String,
    /// Environment variable holding the secret key.
    #[arg(long, conflicts_with = "secret_file")]
    pub secret_env: Option<String>,
    /// File holding the secret key (a trailing newline is ignored).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// HTTP method (default GET, or POST when --data is given).
    #[arg(short = 'X', long = "request")]
    pub method: Option<String>,
    /// Extra header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body; "@path" reads a file, "@-" stdin. Sent byte for byte.
    #[arg(short = 'd', long = "data")]
    pub data: Option<String>,
    /// Headers to sign, comma-separated (default: host, plus content-type when set).
    #[arg(long, value_delimiter = ',')]
    pub signed_headers: Option<Vec<String>>,
    /// Print the string to sign to stderr (it contains no secret).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// URL to sign, e.g. http://127.0.0.1:8080/v1/orders?id=1
    pub url: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SignFormat {
    /// `Name: value` lines.
    Headers,
    /// `-H 'Name: value'` arguments for curl.
    Curl,
    /// A JSON object.
    Json,
}

/// A signed request ready to print or send.
#[derive(Debug)]
pub struct Prepared {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub signed: Vec<(HeaderName, HeaderValue)>,
}

pub fn prepare(args: &SignArgs) -> Result<Prepared> {
    let secret = read_secret(args)?;
    let uri: Uri = args.url.parse().with_context(|| format!("{:?} is not a URL", args.url))?;
    let authority = uri.authority().context("URL needs a host, e.g. http://127.0.0.1:8080/path")?.clone();
    let body = match &args.data {
        None => Bytes::new(),
        Some(d) if d == "@-" => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
            Bytes::from(v)
        }
        Some(d) => match d.strip_prefix('@') {
            Some(path) => Bytes::from(std::fs::read(path).with_context(|| format!("reading {path}"))?),
            None => Bytes::from(d.clone()),
        },
    };
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes()).context("invalid method")?,
        None if args.data.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, HeaderValue::from_str(authority.as_str())?);
    for h in &args.headers {
        let (name, value) =
            h.split_once(':').with_context(|| format!("header {h:?} is not \"Name: value\""))?;
        headers.append(HeaderName::from_bytes(name.trim().as_bytes())?, HeaderValue::from_str(value.trim())?);
    }
    if args.data.is_some() && !headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let signed_names: Vec<String> = match &args.signed_headers {
        Some(list) => list.iter().map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect(),
        None => {
            let mut v = vec!["host".to_string()];
            if headers.contains_key(http::header::CONTENT_TYPE) {
                v.push("content-type".into());
            }
            v
        }
    };
    let signer = Signer::new(args.key.clone(), secret).with_signed_headers(signed_names)?;
    let signed = signer.sign(method.as_str(), &args.url, &headers, &body)?;
    if args.verbose {
        let field = |name: &str| {
            signed
                .0
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let ts: i64 = field(keygate_sign::kg1::header::TIMESTAMP).parse()?;
        let nonce = field(keygate_sign::kg1::header::NONCE);
        let sts = signer.string_to_sign(method.as_str(), &args.url, &headers, &body, ts, &nonce)?;
        eprintln!("--- string to sign ---\n{sts}\n----------------------");
    }
    Ok(Prepared { method, uri, headers, body, signed: signed.0 })
}

pub fn print_signed(p: &Prepared, format: SignFormat) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        SignFormat::Headers => {
            for (n, v) in &p.signed {
                writeln!(out, "{}: {}", n, v.to_str()?)?;
            }
        }
        SignFormat::Curl => {
            let args: Vec<String> =
                p.signed.iter().map(|(n, v)| format!("-H '{}: {}'", n, v.to_str().unwrap_or(""))).collect();
            writeln!(out, "{}", args.join(" "))?;
        }
        SignFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> =
                p.signed.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").into())).collect();
            writeln!(out, "{}", serde_json::Value::Object(map))?;
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct CurlArgs {
    #[command(flatten)]
    pub sign: SignArgs,
    /// Print the response status line and headers too.
    #[arg(short = 'i', long)]
    pub include: bool,
    /// Exit with status 22 when the response status is 400 or above.
    #[arg(short = 'f', long)]
    pub fail: bool,
    /// Use HTTP/2 (prior knowledge for http://, ALPN for https://).
    #[arg(long)]
    pub http2: bool,
    /// Extra PEM CA bundle to trust for https:// (e.g. a self-signed gateway).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; needs --cert-key.
    #[arg(long, requires = "cert_key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    pub cert_key: Option<PathBuf>,
}

/// Sends the signed request; returns the process exit code.
pub async fn curl(args: &CurlArgs) -> Result<i32> {
    let p = prepare(&args.sign)?;
    let mut req = http::Request::builder().method(p.method.clone()).uri(p.uri.clone());
    for (n, v) in p.headers.iter().chain(p.signed.iter().map(|(n, v)| (n, v))) {
        req = req.header(n, v);
    }
    let mut req = req.body(Full::new(p.body.clone()))?;
    if args.http2 {
        *req.version_mut() = http::Version::HTTP_2;
        req.headers_mut().remove(http::header::HOST);
    }
    let client_cert = match (&args.cert, &args.cert_key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        _ => None,
    };
    let tls = tls_config(args.cacert.as_deref(), client_cert)?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
    let connector = if args.http2 { builder.enable_http2().build() } else { builder.enable_http1().build() };
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).http2_only(args.http2).build(connector);
    let resp = client.request(req).await.with_context(|| format!("sending to {}", p.uri))?;
    let status = resp.status();
    let mut out = std::io::stdout().lock();
    if args.include {
        writeln!(out, "{:?} {}", resp.version(), status)?;
        for (n, v) in resp.headers() {
            writeln!(out, "{}: {}", n, v.to_str().unwrap_or("<binary>"))?;
        }
        writeln!(out)?;
    }
    let body = resp.into_body().collect().await?.to_bytes();
    out.write_all(&body)?;
    if !body.ends_with(b"\n") {
        writeln!(out)?;
    }
    Ok(if args.fail && status.as_u16() >= 400 { 22 } else { 0 })
}

fn tls_config(
    cacert: Option<&std::path::Path>,
    client_cert: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_roots() {
        let _ = roots.add(cert);
    }
    if let Some(path) = cacert {
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading {}", path.display()))?
        {
            roots.add(cert.with_context(|| format!("parsing {}", path.display()))?)?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("parsing {}", cert.display()))?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading the private key {}", key.display()))?;
            builder.with_client_auth_cert(chain, key).context("client certificate and key do not match")?
        }
    })
}

fn rustls_native_roots() -> Vec<rustls_pki_types::CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

fn read_secret(args: &SignArgs) -> Result<SecretBox<[u8]>> {
    let bytes = if let Some(var) = &args.secret_env {
        std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?.into_bytes()
    } else if let Some(path) = &args.secret_file {
        let mut v = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            v.pop();
        }
        v
    } else if let Ok(v) = std::env::var("KEYGATE_SECRET_KEY") {
        v.into_bytes()
    } else {
        bail!("give the secret with --secret-env VAR, --secret-file PATH, or KEYGATE_SECRET_KEY");
    };
    if bytes.is_empty() {
        bail!("the secret is empty");
    }
    Ok(SecretBox::new(bytes.into_boxed_slice()))
}
