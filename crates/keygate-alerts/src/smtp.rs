// A small SMTP client for alert mail: EHLO, optional STARTTLS (rustls, system roots), optional
// AUTH PLAIN, one message. Enough for a relay or a provider's submission port; no pipelining.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// `[[alerts.channels]] type = "email"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub from: String,
    pub to: Vec<String>,
    /// Upgrade with STARTTLS before authenticating (required when `username` is set).
    #[serde(default)]
    pub starttls: bool,
    pub username: Option<String>,
    /// Environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("starttls", &self.starttls)
            .finish_non_exhaustive()
    }
}

fn default_port() -> u16 {
    25
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("server said {code} to {step}")]
    Rejected { step: &'static str, code: u16 },
    #[error("{0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Conn {
    io: BufReader<Box<dyn Stream>>,
}

impl Conn {
    /// Reads a (possibly multi-line) reply; returns its code.
    async fn reply(&mut self) -> Result<u16, SmtpError> {
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await? == 0 {
                return Err(SmtpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
    }

    async fn cmd(&mut self, line: &str, step: &'static str, ok: &[u16]) -> Result<(), SmtpError> {
        self.io.get_mut().write_all(line.as_bytes()).await?;
        self.io.get_mut().write_all(b"\r\n").await?;
        self.io.get_mut().flush().await?;
        let code = self.reply().await?;
        if ok.contains(&code) {
            Ok(())
        } else {
            Err(SmtpError::Rejected { step, code })
        }
    }
}

/// Header-safe text: no CR/LF (no header injection through a subject or address).
fn clean(s: &str) -> String {
    s.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

pub async fn send(cfg: &EmailConfig, subject: &str, body: &str) -> Result<(), SmtpError> {
    if cfg.to.is_empty() {
        return Err(SmtpError::Config("no recipients".into()));
    }
    if cfg.username.is_some() && !cfg.starttls {
        return Err(SmtpError::Config("refusing to send a password without starttls".into()));
    }
    let tcp =
        tokio::time::timeout(Duration::from_secs(10), TcpStream::connect((cfg.host.as_str(), cfg.port)))
            .await
            .map_err(|_| SmtpError::Io(std::io::ErrorKind::TimedOut.into()))??;
    let mut c = Conn { io: BufReader::new(Box::new(tcp) as Box<dyn Stream>) };
    let greeting = c.reply().await?;
    if greeting != 220 {
        return Err(SmtpError::Rejected { step: "greeting", code: greeting });
    }
    c.cmd("EHLO keygate", "EHLO", &[250]).await?;
    if cfg.starttls {
        c.cmd("STARTTLS", "STARTTLS", &[220]).await?;
        let plain = c.io.into_inner();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in webpki_roots() {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SmtpError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(cfg.host.clone())
            .map_err(|e| SmtpError::Tls(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, plain)
            .await
            .map_err(|e| SmtpError::Tls(e.to_string()))?;
        c = Conn { io: BufReader::new(Box::new(stream) as Box<dyn Stream>) };
        c.cmd("EHLO keygate", "EHLO", &[250]).await?;
    }
    if let Some(user) = &cfg.username {
        let var = cfg
            .password_env
            .as_deref()
            .ok_or_else(|| SmtpError::Config("username without password_env".into()))?;
        let pass =
            zeroize_string(std::env::var(var).map_err(|_| SmtpError::Config(format!("{var} is not set")))?);
        let raw = Wiped(format!("\0{user}\0{}", pass.as_str()));
        let token = base64_encode(raw.as_str().as_bytes());
        let line = Wiped(format!("AUTH PLAIN {}", token.as_str()));
        c.cmd(line.as_str(), "AUTH", &[235]).await?;
    }
    c.cmd(&format!("MAIL FROM:<{}>", clean(&cfg.from)), "MAIL FROM", &[250]).await?;
    for to in &cfg.to {
        c.cmd(&format!("RCPT TO:<{}>", clean(to)), "RCPT TO", &[250, 251]).await?;
    }
    c.cmd("DATA", "DATA", &[354]).await?;
    let mut msg = format!(
        "From: <{}>\r\nTo: {}\r\nSubject: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        clean(&cfg.from),
        cfg.to.iter().map(|t| format!("<{}>", clean(t))).collect::<Vec<_>>().join(", "),
        clean(subject)
    );
    for line in body.lines() {
        // Dot-stuffing: a line starting with "." gets another, so it cannot end the message.
        if line.starts_with('.') {
            msg.push('.');
        }
        msg.push_str(line);
        msg.push_str("\r\n");
    }
    msg.push('.');
    c.cmd(&msg, "message", &[250]).await?;
    let _ = c.cmd("QUIT", "QUIT", &[221]).await;
    Ok(())
}

fn webpki_roots() -> Vec<rustls_pki_types::CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

struct Wiped(String);
impl Wiped {
    fn as_str(&self) -> &str {
        &self.0
    }
}
impl Drop for Wiped {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

fn zeroize_string(s: String) -> Wiped {
    Wiped(s)
}

fn base64_encode(b: &[u8]) -> Wiped {
    use base64::Engine as _;
    Wiped(base64::engine::general_purpose::STANDARD.encode(b))
}
