// Every way an outbound call is refused or fails, with its stable envelope code and status.
// Messages name providers, bindings, rules and steps — never a key, a token or a signature.

use http::StatusCode;

/// An outbound refusal or failure. `code()` is the stable envelope code (docs/errors.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("no provider named {0}")]
    ProviderNotFound(String),
    #[error("this app is not granted provider {0}")]
    ProviderNotGranted(String),
    #[error("{method} {path} is not in the provider's path allowlist")]
    PathNotAllowed { method: String, path: String },
    /// The recipe could not build or read a request. The reason names the step, never a value.
    #[error("recipe {recipe} failed: {reason}")]
    RecipeFailed { recipe: &'static str, reason: String },
    #[error("provider binding {0} is not set")]
    BindingMissing(String),
    #[error("provider did not answer within {0} ms")]
    Timeout(u64),
    #[error("provider is unavailable: {0}")]
    Unavailable(String),
    #[error("provider circuit is open after repeated failures; retry in {retry_after_secs} s")]
    CircuitOpen { retry_after_secs: u64 },
    #[error("provider rejected keygate's credentials")]
    AuthFailed,
    #[error("provider's request budget is exhausted")]
    RateLimited { retry_after_secs: u64 },
    #[error("provider already has its maximum number of requests in flight")]
    Busy,
    /// The URL resolved only to addresses the provider may not reach (SSRF guard).
    #[error("target address of {0} is not allowed")]
    TargetNotAllowed(String),
    /// A host outside the provider's allowed hosts.
    #[error("host {0} is not an allowed host of this provider")]
    HostNotAllowed(String),
    /// The provider's response failed verification (signature, decryption).
    #[error("provider response failed verification: {0}")]
    ResponseInvalid(String),
    #[error("request body exceeds the provider's limit of {0} bytes")]
    BodyTooLarge(u64),
    /// Shared state (token cache, rate limiter) could not answer.
    #[error("outbound state is unavailable")]
    StateUnavailable,
}

impl OutboundError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::ProviderNotFound(_) => "provider_not_found",
            Self::ProviderNotGranted(_) => "provider_not_granted",
            Self::PathNotAllowed { .. } => "path_not_allowed",
            Self::RecipeFailed { .. } => "recipe_failed",
            Self::BindingMissing(_) => "binding_missing",
            Self::Timeout(_) => "provider_timeout",
            Self::Unavailable(_) => "provider_unavailable",
            Self::CircuitOpen { .. } => "provider_circuit_open",
            Self::AuthFailed => "provider_auth_failed",
            Self::RateLimited { .. } => "provider_rate_limited",
            Self::Busy => "provider_busy",
            Self::TargetNotAllowed(_) => "target_not_allowed",
            Self::HostNotAllowed(_) => "host_not_allowed",
            Self::ResponseInvalid(_) => "provider_response_invalid",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::StateUnavailable => "state_unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::ProviderNotFound(_) => StatusCode::NOT_FOUND,
            Self::ProviderNotGranted(_) | Self::PathNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::RecipeFailed { .. } | Self::BindingMissing(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_)
            | Self::AuthFailed
            | Self::TargetNotAllowed(_)
            | Self::HostNotAllowed(_)
            | Self::ResponseInvalid(_) => StatusCode::BAD_GATEWAY,
            Self::CircuitOpen { .. } | Self::Busy | Self::StateUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// Seconds for a `Retry-After` header, when waiting helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::CircuitOpen { retry_after_secs } | Self::RateLimited { retry_after_secs } => {
                Some((*retry_after_secs).max(1))
            }
            Self::Busy => Some(1),
            _ => None,
        }
    }

    /// Shorthand for a recipe failure.
    pub fn recipe(recipe: &'static str, reason: impl Into<String>) -> Self {
        Self::RecipeFailed { recipe, reason: reason.into() }
    }
}
