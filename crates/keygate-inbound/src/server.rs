// The data plane's own accept loop: TCP → optional TLS (rustls, optional client certificates) →
// HTTP/1.1 or HTTP/2 (h2c prior knowledge or ALPN). Owning the loop is what lets a connection's
// verified client certificate reach the pipeline, and lets certificates be swapped without a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::gateway::Gateway;
use crate::mtls::ClientCert;

/// Errors of setting up a listener.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Server certificate and key files (PEM), and the CA bundles client certificates are verified
/// against (none: no client certificates are asked for).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub client_ca: Vec<std::path::PathBuf>,
}

/// The TLS configuration in use, swappable while connections stay open.
#[derive(Debug)]
struct TlsState {
    files: TlsFiles,
    config: ArcSwap<rustls::ServerConfig>,
}

/// Reloads the listener's certificates and CA bundles from their files. New connections use the
/// new configuration; connections already open keep theirs (nothing is dropped). A reload that
/// fails (unreadable file, key not matching the certificate) keeps the previous configuration.
#[derive(Debug, Clone)]
pub struct TlsReloader(Arc<TlsState>);

impl TlsReloader {
    pub fn reload(&self) -> Result<(), ServerError> {
        let config = load_tls(&self.0.files)?;
        self.0.config.store(Arc::new(config));
        Ok(())
    }

    /// Every file the configuration is read from (to watch for changes).
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let f = &self.0.files;
        let mut all = vec![f.cert.clone(), f.key.clone()];
        all.extend(f.client_ca.iter().cloned());
        all
    }
}

/// A bound inbound listener, ready to serve.
pub struct InboundServer {
    listener: TcpListener,
    tls: Option<Arc<TlsState>>,
    gateway: Arc<Gateway>,
}

impl std::fmt::Debug for InboundServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundServer")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl InboundServer {
    /// Binds `addr` (e.g. `127.0.0.1:8080`; port 0 picks a free one).
    pub async fn bind(
        addr: &str,
        tls: Option<&TlsFiles>,
        gateway: Arc<Gateway>,
    ) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr: addr.to_string(), source })?;
        let tls = match tls {
            Some(files) => {
                let config = load_tls(files)?;
                Some(Arc::new(TlsState { files: files.clone(), config: ArcSwap::from_pointee(config) }))
            }
            None => None,
        };
        Ok(Self { listener, tls, gateway })
    }

    /// The handle to reload certificates, when the listener speaks TLS.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls.clone().map(TlsReloader)
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets open connections finish (up to 10 s).
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Slow-header clients (slowloris) are cut off instead of holding a connection forever.
            .header_read_timeout(Duration::from_secs(10))
            .max_buf_size(64 * 1024);
        builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
        let builder = Arc::new(builder);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let gateway = self.gateway.clone();
            let builder = builder.clone();
            match &self.tls {
                None => {
                    let service = service_fn(move |req| {
                        let gateway = gateway.clone();
                        async move { Ok::<_, std::convert::Infallible>(gateway.handle(req, peer).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(tcp), service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(client = %peer, error = %e, "connection closed with error");
                        }
                    });
                }
                Some(state) => {
                    let acceptor = TlsAcceptor::from(state.config.load_full());
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let tls =
                            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            };
                        // Verified by rustls against the client CAs; read once per connection.
                        let cert: Option<Arc<ClientCert>> = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|der| ClientCert::from_der(der))
                            .map(Arc::new);
                        let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                            let gateway = gateway.clone();
                            if let Some(c) = &cert {
                                req.extensions_mut().insert(c.clone());
                            }
                            async move { Ok::<_, std::convert::Infallible>(gateway.handle(req, peer).await) }
                        });
                        let conn = builder.serve_connection(TokioIo::new(tls), service).into_owned();
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(client = %peer, error = %e, "connection closed with error");
                        }
                    });
                }
            }
        }
        drop(self.listener);
        if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
            tracing::warn!("connections still open after 10 s; closing them");
        }
    }
}

fn load_tls(files: &TlsFiles) -> Result<rustls::ServerConfig, ServerError> {
    let certs = load_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let builder = if files.client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for path in &files.client_ca {
            for ca in load_certs(path)? {
                roots.add(ca).map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        // Client certificates are optional at the TLS layer: each route decides whether it needs
        // one. A certificate that is presented must chain to one of these CAs, or the handshake fails.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| ServerError::Tls(format!("client CA bundle: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!("{}: no certificate found", path.display())));
    }
    Ok(certs)
}
