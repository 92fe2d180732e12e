// What the data plane reports about every request it finishes, for metrics and the audit log.
// The gateway fills a `Trace` while it works and hands the finished `RequestOutcome` to one
// `Observer`; it never blocks on it (an observer must queue, not write).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::snapshot::Route;

/// One finished request. Borrowed: an observer copies what it keeps.
#[derive(Debug)]
pub struct RequestOutcome<'a> {
    pub request_id: &'a str,
    /// When the request arrived.
    pub at: SystemTime,
    pub method: &'a http::Method,
    /// Raw path as received (never a metric label: unbounded).
    pub path: &'a str,
    pub client_ip: IpAddr,
    /// The matched route (its `path_prefix` is a bounded label), if any.
    pub route: Option<&'a Route>,
    pub app_id: Option<&'a str>,
    pub access_key: Option<&'a str>,
    /// Scheme the request used, once known (`kg1-hmac-sha256`, `legacy-sorted`).
    pub scheme: Option<&'static str>,
    pub status: http::StatusCode,
    /// `ok`, or the stable error code of the refusal.
    pub code: &'static str,
    /// Total time in keygate, until the response head was ready.
    pub latency: Duration,
    /// Time the upstream took to answer with its response head, when it was called.
    pub upstream_latency: Option<Duration>,
    pub bytes_in: u64,
    /// From the response's Content-Length (streamed bodies without one count as 0).
    pub bytes_out: u64,
    /// With the route's `capture` on: the request body and its Content-Type (signed routes).
    pub request_body: Option<(&'a [u8], Option<&'a str>)>,
    /// With `capture` on: the upstream's response body (when it fit the buffer limit).
    pub response_body: Option<(&'a [u8], Option<&'a str>)>,
    /// With `capture` on: the listed request headers.
    pub headers: &'a [(String, String)],
}

/// Receives every finished request. Must be cheap and non-blocking.
pub trait Observer: Send + Sync + std::fmt::Debug {
    fn observe(&self, outcome: &RequestOutcome<'_>);

    /// False while requests must be refused because they could not be accounted for (the
    /// audit log's `reject` policy with its spill full): the gateway answers 503.
    fn accepting(&self) -> bool {
        true
    }
}

/// Observes nothing.
#[derive(Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    fn observe(&self, _: &RequestOutcome<'_>) {}
}

/// Filled in by the pipeline as it learns things.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub route: Option<Arc<Route>>,
    pub app_id: Option<String>,
    pub scheme: Option<&'static str>,
    pub upstream_latency: Option<Duration>,
    pub bytes_in: u64,
    pub request_body: Option<(bytes::Bytes, Option<String>)>,
    pub headers: Vec<(String, String)>,
}
