// Owns the HTTP client of one provider: its connect timeout, its SSRF policy (resolver filter and
// IP-literal check), its host allowlist, and buffered responses (recipes verify and decrypt whole
// bodies). Rebuilt when the provider's settings change, so timeouts are adjustable live.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::OutboundError;
use crate::ssrf::{self, GuardedResolver, TargetBlocked};

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// Largest provider response keygate buffers.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A pooled client bound to one provider's policy.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    client: Client<Connector, Full<Bytes>>,
    allow_private: bool,
    hosts: std::collections::BTreeSet<String>,
}

impl ProviderClient {
    pub fn new(
        connect_timeout: Duration,
        allow_private: bool,
        hosts: std::collections::BTreeSet<String>,
    ) -> Result<Self, OutboundError> {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow_private });
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| OutboundError::Unavailable(format!("no TLS trust roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Self { client, allow_private, hosts })
    }

    /// Refuses URLs whose host is not allowed or is a restricted IP literal (literals never reach
    /// the resolver, so the resolver's filter cannot catch them).
    pub fn check_target(&self, uri: &Uri) -> Result<(), OutboundError> {
        let auth = uri.authority().ok_or_else(|| OutboundError::HostNotAllowed(String::new()))?;
        let host_port = auth.as_str().to_ascii_lowercase();
        if !self.hosts.contains(&host_port) {
            return Err(OutboundError::HostNotAllowed(host_port));
        }
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !ssrf::allowed(ip, self.allow_private) {
                return Err(OutboundError::TargetNotAllowed(host_port));
            }
        }
        Ok(())
    }

    /// Sends `req` and buffers the response, all within `timeout`.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, OutboundError> {
        self.check_target(req.uri())?;
        let host = req.uri().authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let work = async {
            let resp = self.client.request(req).await.map_err(|e| classify(&e, &host))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|_| OutboundError::Unavailable("response body unreadable or too large".into()))?
                .to_bytes();
            Ok(Response::from_parts(parts, body))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(OutboundError::Timeout(ms)),
        }
    }
}

fn classify(e: &hyper_util::client::legacy::Error, host: &str) -> OutboundError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut chain = String::new();
    while let Some(err) = cur {
        if err.is::<TargetBlocked>() {
            return OutboundError::TargetNotAllowed(host.to_string());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|inner| inner.is::<TargetBlocked>()) {
                return OutboundError::TargetNotAllowed(host.to_string());
            }
        }
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&err.to_string());
        cur = err.source();
    }
    if e.is_connect() {
        OutboundError::Unavailable(format!("cannot connect to {host}"))
    } else {
        tracing::debug!(host, error = %chain, "provider request failed");
        OutboundError::Unavailable(format!("request to {host} failed"))
    }
}
