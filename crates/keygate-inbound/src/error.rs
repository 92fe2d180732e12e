// Every way the data plane refuses a request, and the one place that turns a refusal into the
// JSON error envelope. Messages name the cause, never a secret or an expected signature.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use keygate_sign::SignError;
use keygate_state::RateDecision;

use crate::body::ResponseBody;

/// A refusal of the data plane. `code()` is the stable machine-readable cause (docs/errors.md).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("unknown access key")]
    UnknownKey,
    #[error("access key is disabled")]
    KeyDisabled,
    #[error("access key has expired")]
    KeyExpired,
    #[error("access key is not valid yet")]
    KeyNotYetValid,
    #[error("access key was rotated and its overlap window has ended")]
    KeyRotated,
    #[error("this key may not be used from the client's address")]
    IpNotAllowed,
    #[error("this key may not call this endpoint")]
    EndpointNotAllowed,
    #[error("access key is not configured for the {0} scheme")]
    SchemeMismatch(&'static str),
    #[error("request timestamp is outside the allowed window of {window_secs} s")]
    TimestampOutOfWindow { window_secs: u32, server_time: i64 },
    #[error("nonce was already used")]
    NonceReplayed,
    #[error("replay protection is unavailable")]
    StateUnavailable,
    #[error("the audit log cannot record requests right now")]
    AuditUnavailable,
    #[error("rate limit exceeded")]
    RateLimited(RateDecision),
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInFlight,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("invalid Idempotency-Key: {0}")]
    InvalidIdempotencyKey(&'static str),
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("request body could not be read")]
    BodyRead,
    #[error("conflicting or invalid message framing headers")]
    MalformedRequest(&'static str),
    #[error("no route for this path")]
    RouteNotFound,
    #[error("upstream is unavailable")]
    UpstreamUnavailable,
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    /// Encrypted fields: the partner's mistake (400) or the gateway's configuration (500).
    #[error(transparent)]
    Field(#[from] keygate_sign::fields::FieldError),
    #[error("this route requires a client certificate")]
    ClientCertRequired,
    /// The message names the certificate so an operator can map it (neither is a secret).
    #[error("client certificate is not mapped to an app (spki_sha256 {spki_sha256}, subject \"{subject}\")")]
    ClientCertUnknown { spki_sha256: String, subject: String },
    #[error("the client certificate and the signing key belong to different apps")]
    ClientCertMismatch,
    #[error("API token is unknown, expired or revoked")]
    TokenInvalid,
    #[error("this key requires an API token (Authorization: Bearer or X-Kg-Token)")]
    TokenRequired,
    #[error("API tokens are not allowed here: {0}")]
    TokenNotAllowed(&'static str),
    #[error("the API token was issued to a different access key")]
    TokenKeyMismatch,
    #[error("invalid token request: {0}")]
    InvalidTokenRequest(&'static str),
    #[error("method not allowed; use {0}")]
    MethodNotAllowed(&'static str),
    /// A refusal of a [`crate::Dispatch`] handler (the outbound gateway), with its own code.
    #[error("{message}")]
    Dispatch { status: StatusCode, code: &'static str, message: String, retry_after: Option<u64> },
}

impl GatewayError {
    /// Stable code of the envelope.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Sign(e) => e.code(),
            Self::UnknownKey => "unknown_key",
            Self::KeyDisabled => "key_disabled",
            Self::KeyExpired => "key_expired",
            Self::KeyNotYetValid => "key_not_yet_valid",
            Self::KeyRotated => "key_rotated",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::EndpointNotAllowed => "endpoint_not_allowed",
            Self::SchemeMismatch(_) => "scheme_mismatch",
            Self::TimestampOutOfWindow { .. } => "timestamp_out_of_window",
            Self::NonceReplayed => "nonce_replayed",
            Self::StateUnavailable => "state_unavailable",
            Self::AuditUnavailable => "audit_unavailable",
            Self::RateLimited(_) => "rate_limited",
            Self::IdempotencyInFlight => "idempotency_in_flight",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyRead => "body_read_failed",
            Self::MalformedRequest(_) => "malformed_request",
            Self::RouteNotFound => "route_not_found",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Field(e) => e.code(),
            Self::ClientCertRequired => "client_cert_required",
            Self::ClientCertUnknown { .. } => "client_cert_unknown",
            Self::ClientCertMismatch => "client_cert_mismatch",
            Self::TokenInvalid => "token_invalid",
            Self::TokenRequired => "token_required",
            Self::TokenNotAllowed(_) => "token_not_allowed",
            Self::TokenKeyMismatch => "token_key_mismatch",
            Self::InvalidTokenRequest(_) => "invalid_token_request",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Dispatch { code, .. } => code,
        }
    }

    /// HTTP status for the code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Sign(e) => match e.code() {
                "missing_auth"
                | "signature_mismatch"
                | "scope_mismatch"
                | "unsigned_payload_not_allowed"
                | "payload_hash_mismatch" => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            },
            Self::UnknownKey
            | Self::KeyDisabled
            | Self::KeyExpired
            | Self::KeyNotYetValid
            | Self::KeyRotated
            | Self::SchemeMismatch(_)
            | Self::TimestampOutOfWindow { .. }
            | Self::NonceReplayed
            | Self::ClientCertRequired
            | Self::ClientCertUnknown { .. }
            | Self::ClientCertMismatch
            | Self::TokenInvalid
            | Self::TokenRequired
            | Self::TokenKeyMismatch => StatusCode::UNAUTHORIZED,
            Self::TokenNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::Field(e) => match e.code() {
                "field_encryption_misconfigured" => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            },
            Self::InvalidTokenRequest(_) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::IpNotAllowed | Self::EndpointNotAllowed => StatusCode::FORBIDDEN,
            Self::StateUnavailable | Self::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::IdempotencyInFlight => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidIdempotencyKey(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead | Self::MalformedRequest(_) => StatusCode::BAD_REQUEST,
            Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Dispatch { status, .. } => *status,
        }
    }

    /// The JSON envelope `{"code","message","request_id"}` (plus `server_time` when the
    /// client's clock is the problem, so SDKs can correct their skew and retry once).
    /// The envelope's JSON, written field by field (a `json!` map and its `to_string` cost
    /// about 5 % of the rejection path); byte-identical to `json!({code, message, request_id,
    /// server_time?}).to_string()`, which a test checks.
    fn envelope(&self, request_id: &str) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            // Serializing a &str into a Vec cannot fail.
            if serde_json::to_writer(&mut *out, s).is_err() {
                out.extend_from_slice(b"\"\"");
            }
        }
        let message = self.to_string();
        let mut out = Vec::with_capacity(48 + message.len() + request_id.len());
        out.extend_from_slice(b"{\"code\":");
        string(&mut out, self.code());
        out.extend_from_slice(b",\"message\":");
        string(&mut out, &message);
        out.extend_from_slice(b",\"request_id\":");
        string(&mut out, request_id);
        if let Self::TimestampOutOfWindow { server_time, .. } = self {
            out.extend_from_slice(b",\"server_time\":");
            out.extend_from_slice(server_time.to_string().as_bytes());
        }
        out.push(b'}');
        out
    }

    pub fn to_response(&self, request_id: &str) -> Response<ResponseBody> {
        let bytes = Bytes::from(self.envelope(request_id));
        let mut resp = Response::new(crate::body::full(bytes));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(crate::X_REQUEST_ID, v);
        }
        if let Self::RateLimited(d) = self {
            let secs = d.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            crate::gateway::add_rate_headers(&mut resp, Some(d));
        }
        if let Self::Dispatch { retry_after: Some(secs), .. } = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*secs));
        }
        let h = resp.headers_mut();
        if self.status() == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("KG1-HMAC-SHA256"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_byte_identical_to_the_json_map() {
        let errors = [
            GatewayError::RouteNotFound,
            GatewayError::Sign(keygate_sign::SignError::SignatureMismatch),
            GatewayError::TimestampOutOfWindow { window_secs: 300, server_time: 1_764_000_000 },
            GatewayError::TimestampOutOfWindow { window_secs: 300, server_time: -5 },
            GatewayError::MalformedRequest("x-kg-\"quoted\"\\ \u{1} ünïcode"),
            GatewayError::BodyTooLarge { limit: 1024 },
        ];
        for e in errors {
            for rid in ["abc", "q\"u\\o\u{7f}te ü"] {
                let mut want =
                    serde_json::json!({"code": e.code(), "message": e.to_string(), "request_id": rid});
                if let GatewayError::TimestampOutOfWindow { server_time, .. } = &e {
                    want["server_time"] = (*server_time).into();
                }
                assert_eq!(String::from_utf8(e.envelope(rid)).unwrap(), want.to_string(), "{e:?}");
            }
        }
    }
}
