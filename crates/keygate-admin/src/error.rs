// Every way the admin API refuses a call, mapped to the same JSON envelope the data plane uses:
// `{"code", "message", "request_id"}` plus `field` for validation errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keygate_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or invalid admin token")]
    Unauthorized,
    #[error("your role may not do this")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("request body is not valid JSON for this call: {0}")]
    BadJson(String),
    #[error("the store is unavailable")]
    StoreUnavailable,
    #[error("internal error")]
    Internal,
    #[error("the token store is unavailable")]
    StateUnavailable,
}

impl AdminError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Invalid { .. } => "invalid_request",
            Self::Conflict(_) => "conflict",
            Self::BadJson(_) => "invalid_json",
            Self::StoreUnavailable => "store_unavailable",
            Self::Internal => "internal_error",
            Self::StateUnavailable => "state_unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid { .. } | Self::BadJson(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::StoreUnavailable | Self::StateUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A token store failure: logged here, answered generically.
    pub fn state(e: keygate_state::StateError) -> Self {
        tracing::error!(error = %e, "admin call failed in the token store");
        Self::StateUnavailable
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.to_string(), reason: reason.into() }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid { field, reason } => Self::Invalid { field, reason },
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Conflict(what) => Self::Conflict(what),
            other => {
                // Store errors never carry a secret; log the cause, answer generically.
                tracing::error!(error = %other, "admin call failed in the store");
                match other {
                    StoreError::Db(_) | StoreError::Connect { .. } => Self::StoreUnavailable,
                    _ => Self::Internal,
                }
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "code": self.code(),
            "message": self.to_string(),
            "request_id": crate::request_id(),
        });
        if let Self::Invalid { field, .. } = &self {
            body["field"] = field.clone().into();
        }
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if let Self::Unauthorized = self {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"keygate-admin\""),
            );
        }
        resp
    }
}
