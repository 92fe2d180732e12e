// The inbound verify pipeline, top to bottom in one place: cheap checks first, nothing stateful
// before the signature holds. It reads keys from the in-memory snapshot, never from the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use keygate_sign::kg1::{self, Kg1Auth, RequestParts};
use keygate_sign::legacy::{self, LegacyAuth, LegacyConfig};
use keygate_sign::{path, SignError};
use keygate_state::{NonceClaim, NonceStore, StateError};
use secrecy::ExposeSecret;

use crate::body::{self, BoxError, BufferedBody, ResponseBody};
use crate::error::GatewayError;
use crate::proxy::{self, UpstreamClients};
use crate::snapshot::{KeyEntry, KeyScheme, Route, RouteAuth, Snapshot};
use crate::{X_KG_APP_ID, X_KG_KEY_ID, X_REQUEST_ID};

/// Extra time a nonce is remembered past the end of its timestamp window, so a replay that
/// arrives exactly at the edge of the window still meets its nonce.
const NONCE_SLACK: Duration = Duration::from_secs(5);

/// Who the caller turned out to be.
#[derive(Debug, Clone)]
pub struct Caller {
    pub app_id: String,
    pub access_key: String,
}

/// The inbound gateway: snapshot + replay store + upstream pools.
#[derive(Debug)]
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    nonces: Arc<dyn NonceStore>,
    upstream: UpstreamClients,
}

/// Parsed auth of either scheme.
enum Auth {
    Kg1(Kg1Auth),
    Legacy(LegacyAuth, LegacyConfig),
}

impl Gateway {
    pub fn new(snapshot: Snapshot, nonces: Arc<dyn NonceStore>, upstream: UpstreamClients) -> Self {
        Self { snapshot: ArcSwap::from_pointee(snapshot), nonces, upstream }
    }

    /// Replaces keys and routes atomically; requests in flight finish on the old snapshot.
    pub fn swap_snapshot(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Handles one request end to end; never fails: refusals become error envelopes.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let request_id = new_request_id();
        let method = req.method().clone();
        let result = self.process(req, peer, &request_id).await;
        match result {
            Ok((mut resp, caller)) => {
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    resp.headers_mut().insert(X_REQUEST_ID, v);
                }
                tracing::debug!(
                    request_id, %method, status = resp.status().as_u16(),
                    app = caller.as_ref().map(|c| c.app_id.as_str()),
                    key = caller.as_ref().map(|c| c.access_key.as_str()),
                    latency_us = started.elapsed().as_micros() as u64, "forwarded"
                );
                resp
            }
            Err((err, caller)) => {
                tracing::info!(
                    request_id, %method, code = err.code(), status = err.status().as_u16(), client = %peer.ip(),
                    key = caller.as_deref(), latency_us = started.elapsed().as_micros() as u64, "rejected: {err}"
                );
                err.to_response(&request_id)
            }
        }
    }

    async fn process<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
        request_id: &str,
    ) -> Result<(Response<ResponseBody>, Option<Caller>), (GatewayError, Option<String>)>
    where
        B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let fail = |e: GatewayError| (e, None);
        let snapshot = self.snapshot.load();
        let (parts, body) = req.into_parts();
        let raw_path = parts.uri.path();
        let raw_query = parts.uri.query();
        path::check_raw_path(raw_path).map_err(|e| fail(e.into()))?;
        let route = snapshot.route(raw_path).ok_or_else(|| fail(GatewayError::RouteNotFound))?.clone();
        if let Some(len) = content_length(&parts.headers) {
            if len > route.max_body_bytes {
                return Err(fail(GatewayError::BodyTooLarge { limit: route.max_body_bytes }));
            }
        }

        if route.auth == RouteAuth::None {
            // Streamed, not buffered: nothing needs the whole body; the limit still applies.
            let limit = usize::try_from(route.max_body_bytes).unwrap_or(usize::MAX);
            let body = http_body_util::Limited::new(body, limit).boxed();
            let resp = self.forward(&route, parts, body, peer, request_id, None).await.map_err(fail)?;
            return Ok((resp, None));
        }

        // 1. Parse auth fields: KG1 when any X-Kg-* auth header is present, else a legacy probe.
        //    Legacy keys may carry their fields in a form body, which then has to be read first.
        let has_kg1 = kg1::header::ALL.iter().any(|h| parts.headers.contains_key(*h));
        let mut body = Some(body);
        let mut buffered: Option<(BufferedBody, String)> = None;
        let auth = if has_kg1 || snapshot.legacy_probes().is_empty() {
            Auth::Kg1(Kg1Auth::from_headers(&parts.headers).map_err(|e| fail(e.into()))?)
        } else {
            if is_form(&parts.headers) && snapshot.legacy_uses_params() {
                if let Some(b) = body.take() {
                    buffered = Some(body::read_limited(b, route.max_body_bytes).await.map_err(fail)?);
                }
            }
            let form = buffered.as_ref().map(|(b, _)| b.contiguous());
            let (auth, cfg) =
                probe_legacy(&snapshot, &parts.headers, raw_query, form.as_deref()).map_err(fail)?;
            Auth::Legacy(auth, cfg)
        };
        let access_key = match &auth {
            Auth::Kg1(a) => a.access_key.clone(),
            Auth::Legacy(a, _) => a.access_key.clone(),
        };
        let with_key = |e: GatewayError| (e, Some(access_key.clone()));

        // 2. Key lookup and validity.
        let key = snapshot.key(&access_key).ok_or_else(|| with_key(GatewayError::UnknownKey))?.clone();
        let now = unix_now();
        check_key(&key, now).map_err(with_key)?;
        let auth = match (auth, &key.scheme) {
            (Auth::Kg1(a), KeyScheme::Kg1) => Auth::Kg1(a),
            (Auth::Legacy(a, probe), KeyScheme::Legacy(cfg)) => {
                if probe == *cfg {
                    Auth::Legacy(a, probe)
                } else {
                    // The probe found the key; its own settings decide how the rest is read.
                    let form = buffered.as_ref().map(|(b, _)| b.contiguous());
                    let a = legacy::extract(cfg, &parts.headers, raw_query, form.as_deref())
                        .map_err(|e| with_key(e.into()))?;
                    Auth::Legacy(a, cfg.clone())
                }
            }
            (Auth::Kg1(_), KeyScheme::Legacy(_)) => {
                return Err(with_key(GatewayError::SchemeMismatch("kg1-hmac-sha256")))
            }
            (Auth::Legacy(..), KeyScheme::Kg1) => {
                return Err(with_key(GatewayError::SchemeMismatch("legacy-sorted")))
            }
        };

        // 3. Timestamp window (before any body is read for KG1).
        let ts = match &auth {
            Auth::Kg1(a) => a.timestamp,
            Auth::Legacy(a, cfg) => a.timestamp_secs(cfg.timestamp_unit),
        };
        let window = i64::from(key.timestamp_window_secs);
        if (now - ts).abs() > window {
            return Err(with_key(GatewayError::TimestampOutOfWindow {
                window_secs: key.timestamp_window_secs,
                server_time: now,
            }));
        }

        // 4. Body: read once under the route's limit, hashed as it streams in.
        let (buffered, body_hash) = match (buffered, body.take()) {
            (Some(b), _) => b,
            (None, Some(b)) => body::read_limited(b, route.max_body_bytes).await.map_err(with_key)?,
            (None, None) => return Err(with_key(GatewayError::BodyRead)),
        };

        // 5. Signature, compared in constant time by keygate-sign.
        let secret = key.secret.expose_secret();
        let nonce = match &auth {
            Auth::Kg1(a) => {
                let req = RequestParts {
                    method: parts.method.as_str(),
                    raw_path,
                    raw_query,
                    headers: &parts.headers,
                    authority: parts.uri.authority().map(|a| a.as_str()),
                };
                let sts = kg1::string_to_sign(
                    &req,
                    &a.access_key,
                    a.timestamp,
                    &a.nonce,
                    &a.signed_headers,
                    &body_hash,
                )
                .map_err(|e| with_key(e.into()))?;
                kg1::verify(secret, &sts, a).map_err(|e| with_key(e.into()))?;
                a.nonce.as_str()
            }
            Auth::Legacy(a, cfg) => {
                legacy::verify(cfg, a, secret).map_err(|e| with_key(e.into()))?;
                a.nonce.as_str()
            }
        };

        // 6. Nonce: remembered until the request's timestamp leaves the window everywhere.
        let ttl = Duration::from_secs(u64::try_from(ts + window - now).unwrap_or(0)) + NONCE_SLACK;
        match self.nonces.claim(&key.access_key, nonce, ttl).await {
            Ok(NonceClaim::Fresh) => {}
            Ok(NonceClaim::Replayed) => return Err(with_key(GatewayError::NonceReplayed)),
            Err(e) => {
                log_state_error(&e);
                return Err(with_key(GatewayError::StateUnavailable));
            }
        }

        // 10. Forward the verified request.
        let caller = Caller { app_id: key.app_id.clone(), access_key: key.access_key.clone() };
        let resp = self
            .forward(&route, parts, buffered.boxed(), peer, request_id, Some(&caller))
            .await
            .map_err(with_key)?;
        Ok((resp, Some(caller)))
    }

    async fn forward(
        &self,
        route: &Route,
        mut parts: http::request::Parts,
        body: ResponseBody,
        peer: SocketAddr,
        request_id: &str,
        caller: Option<&Caller>,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        let uri = proxy::upstream_uri(route, parts.uri.path(), parts.uri.query())?;
        let headers = &mut parts.headers;
        proxy::strip_hop_by_hop(headers);
        // Framing is ours to set from the body we forward; identity headers are ours alone.
        headers.remove(header::CONTENT_LENGTH);
        let client_kg: Vec<_> = headers.keys().filter(|n| n.as_str().starts_with("x-kg-")).cloned().collect();
        for n in client_kg {
            headers.remove(n);
        }
        headers.remove(X_REQUEST_ID);
        if !route.preserve_host || route.upstream_http2 {
            headers.remove(header::HOST);
        }
        if let Some(c) = caller {
            if let Ok(v) = HeaderValue::from_str(&c.app_id) {
                headers.insert(X_KG_APP_ID, v);
            }
            if let Ok(v) = HeaderValue::from_str(&c.access_key) {
                headers.insert(X_KG_KEY_ID, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert(X_REQUEST_ID, v);
        }
        append_forwarded_for(headers, peer);
        let mut req = Request::from_parts(parts, body);
        *req.uri_mut() = uri;
        self.upstream.send(route, req).await
    }
}

/// Tries each legacy configuration of the snapshot until one finds its access key field.
fn probe_legacy(
    snapshot: &Snapshot,
    headers: &http::HeaderMap,
    raw_query: Option<&str>,
    form: Option<&[u8]>,
) -> Result<(LegacyAuth, LegacyConfig), GatewayError> {
    let mut first_err: Option<SignError> = None;
    for cfg in snapshot.legacy_probes() {
        match legacy::extract(cfg, headers, raw_query, form) {
            Ok(a) => return Ok((a, cfg.clone())),
            Err(SignError::MissingAuth) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(SignError::MissingAuth).into())
}

fn check_key(key: &KeyEntry, now: i64) -> Result<(), GatewayError> {
    if !key.enabled {
        return Err(GatewayError::KeyDisabled);
    }
    if key.valid_from.is_some_and(|f| now < f) {
        return Err(GatewayError::KeyNotYetValid);
    }
    if key.valid_to.is_some_and(|t| now >= t) {
        return Err(GatewayError::KeyExpired);
    }
    Ok(())
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

fn append_forwarded_for(headers: &mut http::HeaderMap, peer: SocketAddr) {
    let ip = peer.ip().to_string();
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", v);
    }
}

fn log_state_error(e: &StateError) {
    tracing::warn!(error = %e, "nonce store refused; failing closed");
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A request id: 32 lowercase hex characters, unique per process run. Ids need to be unique,
/// not unpredictable, so a random per-process prefix plus a counter replaces a CSPRNG call per
/// request (which showed up at ~1.6% of the request path in profiles).
pub fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        // If the RNG ever failed, the start time still separates runs.
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            b = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                .to_be_bytes();
        }
        u64::from_be_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn request_ids_are_unique_hex() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}
