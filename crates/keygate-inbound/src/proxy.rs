// Forwarding to upstreams: pooled keep-alive clients (HTTP/1.1 and HTTP/2, plain or TLS) and
// the header hygiene of a proxy. It forwards exactly the verified path and query.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{BoxError, ResponseBody};
use crate::error::GatewayError;
use crate::h1pool::{H1Error, H1Pool};
use crate::snapshot::Route;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Connection pools to upstreams: plain HTTP/1.1 upstreams through the lean pool (driven from
/// the request task), TLS and HTTP/2 upstreams through hyper-util's pooled clients.
#[derive(Debug, Clone)]
pub struct UpstreamClients {
    http1: Client<Connector, ResponseBody>,
    http2: Client<Connector, ResponseBody>,
    lean: Option<H1Pool>,
}

/// Tunables of the upstream pools.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Plain-HTTP/1.1 upstreams through [`H1Pool`] (default) instead of hyper-util's client.
    pub lean_http1: bool,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 512,
            lean_http1: true,
        }
    }
}

impl UpstreamClients {
    /// Builds both pools. TLS upstreams are verified against the platform's trust store.
    pub fn new(opts: &UpstreamOptions) -> std::io::Result<Self> {
        let build = |h2_only: bool| -> std::io::Result<Client<Connector, ResponseBody>> {
            let mut http = HttpConnector::new();
            http.set_connect_timeout(Some(opts.connect_timeout));
            http.set_nodelay(true);
            http.enforce_http(false);
            let builder = hyper_rustls::HttpsConnectorBuilder::new().with_native_roots()?.https_or_http();
            let connector = if h2_only {
                builder.enable_http2().wrap_connector(http)
            } else {
                builder.enable_http1().wrap_connector(http)
            };
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(opts.pool_idle_timeout)
                .pool_max_idle_per_host(opts.pool_max_idle_per_host)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new());
            if h2_only {
                b.http2_only(true);
            }
            Ok(b.build(connector))
        };
        let lean = opts
            .lean_http1
            .then(|| H1Pool::new(opts.connect_timeout, opts.pool_idle_timeout, opts.pool_max_idle_per_host));
        Ok(Self { http1: build(false)?, http2: build(true)?, lean })
    }

    /// Sends `req` to the route's upstream and waits for the response head within the route's timeout.
    pub async fn send(
        &self,
        route: &Route,
        mut req: Request<ResponseBody>,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        if let Some(lean) = &self.lean {
            if !route.upstream_http2 && req.uri().scheme() == Some(&http::uri::Scheme::HTTP) {
                let deadline = tokio::time::Instant::now() + route.timeout;
                return match lean.send(req, deadline).await {
                    Err(H1Error::Timeout) => Err(GatewayError::UpstreamTimeout),
                    Err(e) => Err(unavailable(route, &e)),
                    Ok(mut resp) => {
                        strip_hop_by_hop(resp.headers_mut());
                        Ok(resp)
                    }
                };
            }
        }
        let client = if route.upstream_http2 {
            *req.version_mut() = Version::HTTP_2;
            &self.http2
        } else {
            *req.version_mut() = Version::HTTP_11;
            &self.http1
        };
        let resp = match tokio::time::timeout(route.timeout, client.request(req)).await {
            Err(_) => return Err(GatewayError::UpstreamTimeout),
            Ok(Err(e)) => return Err(unavailable(route, &e)),
            Ok(Ok(resp)) => resp,
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(
            parts,
            http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(body, BoxError::from)),
        ))
    }
}

/// Logs why the upstream gave no response (the client sees only the stable code).
fn unavailable(route: &Route, e: &dyn std::error::Error) -> GatewayError {
    tracing::warn!(upstream = %route.upstream, error = %error_chain(e), "upstream request failed");
    GatewayError::UpstreamUnavailable
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The upstream URI for a verified raw path and query: the upstream's base path joined with the
/// (optionally prefix-stripped) request path, query appended byte for byte.
pub fn upstream_uri(route: &Route, raw_path: &str, raw_query: Option<&str>) -> Result<Uri, GatewayError> {
    let mut path = raw_path;
    if route.strip_prefix && route.path_prefix != "/" {
        path = raw_path.strip_prefix(route.path_prefix.trim_end_matches('/')).unwrap_or(raw_path);
    }
    let base = route.upstream.path().trim_end_matches('/');
    let mut pq = String::with_capacity(base.len() + path.len() + raw_query.map_or(0, |q| q.len() + 1) + 1);
    pq.push_str(base);
    if !path.starts_with('/') {
        pq.push('/');
    }
    pq.push_str(path);
    if let Some(q) = raw_query {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = route.upstream.clone().into_parts();
    // From the `String` itself: `str::parse` would copy it into a new buffer.
    parts.path_and_query =
        Some(PathAndQuery::try_from(pq).map_err(|_| GatewayError::MalformedRequest("path"))?);
    Uri::from_parts(parts).map_err(|_| GatewayError::MalformedRequest("path"))
}

static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TRAILER,
];

/// Removes hop-by-hop headers, including any named in `Connection`. `TE: trailers` survives:
/// gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them (HTTP/1.1 keep-alive needs no `Connection` header): one
    // pass over the names is cheaper than a hashed removal per hop-by-hop name.
    if !headers.keys().any(|n| n == header::TE || HOP_BY_HOP.contains(n)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    let te_trailers = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().map(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case("trailers"))).unwrap_or(false)
    });
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::RouteAuth;

    fn route(prefix: &str, upstream: &str, strip: bool) -> Route {
        Route {
            path_prefix: prefix.into(),
            upstream: upstream.parse().unwrap(),
            strip_prefix: strip,
            max_body_bytes: 1,
            timeout: Duration::from_secs(1),
            auth: RouteAuth::Signature,
            upstream_http2: false,
            preserve_host: false,
            per_ip_rate_limit: None,
            capture: None,
            user_tokens: false,
            mtls: crate::mtls::MtlsMode::Off,
            fields: None,
            tenant: None,
        }
    }

    #[test]
    fn builds_upstream_uris() {
        let r = route("/api", "http://127.0.0.1:9000", false);
        assert_eq!(
            upstream_uri(&r, "/api/x", Some("b=2&a=1")).unwrap(),
            "http://127.0.0.1:9000/api/x?b=2&a=1"
        );
        let r = route("/api", "http://127.0.0.1:9000/base/", true);
        assert_eq!(upstream_uri(&r, "/api/x%20y", None).unwrap(), "http://127.0.0.1:9000/base/x%20y");
        assert_eq!(upstream_uri(&r, "/api", Some("")).unwrap(), "http://127.0.0.1:9000/base/?");
        let r = route("/", "http://u", true);
        assert_eq!(upstream_uri(&r, "/a//b", None).unwrap(), "http://u/a//b");
    }

    #[test]
    fn strips_hop_by_hop_but_keeps_te_trailers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert_eq!(h.get("x-keep").unwrap(), "1");

        // A lone TE is still reduced to `trailers` or removed.
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get(header::TE).is_none());
        assert_eq!(h.len(), 1);

        // Only custom hop-by-hop names present: still found.
        let mut h = HeaderMap::new();
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());

        // Nothing to strip: untouched.
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("1"));
        h.append("x-multi", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 3);
    }
}
