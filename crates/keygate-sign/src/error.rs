// Owns the one error type every scheme returns and its mapping to envelope codes.
// Must not carry a secret, an expected signature or a received signature in any variant.

use thiserror::Error;

/// Why a request could not be signed or verified.
///
/// The messages are safe to show to callers and to log: they name fields and
/// rules, never values that could help forge a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    /// No authentication field of the scheme is present at all.
    #[error("no authentication fields present")]
    MissingAuth,
    /// Some fields of a KG1 request are present but this header is absent.
    #[error("missing authentication field {0}")]
    MissingField(&'static str),
    /// Some legacy fields are present but this (per-key configured) parameter is absent.
    ///
    /// Separate from [`SignError::MissingField`] because legacy field names come
    /// from configuration and so cannot be `&'static str`.
    #[error("missing authentication parameter {0}")]
    MissingParam(String),
    /// An authentication header or parameter was given more than once.
    #[error("field {0} given more than once")]
    DuplicateField(String),
    /// A field is present but breaks a syntax rule.
    #[error("malformed {field}: {reason}")]
    Malformed {
        /// Header or parameter name, never its value.
        field: String,
        /// The rule that was broken.
        reason: &'static str,
    },
    /// A `%` not followed by two hex digits, or (legacy form decoding) bytes that are not UTF-8.
    #[error("invalid percent-encoding")]
    InvalidPercentEncoding,
    /// The raw request path could be routed differently by another parser.
    #[error("invalid request path: {0}")]
    InvalidPath(&'static str),
    /// A header named in the signed-headers list is not in the request.
    #[error("signed header {0} is not present in the request")]
    SignedHeaderMissing(String),
    /// An AWS SigV4 credential scope names another region or service than the key allows.
    #[error("credential scope region/service is not the one configured for this key")]
    ScopeMismatch,
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD` for a key that requires a signed body.
    #[error("UNSIGNED-PAYLOAD is not allowed for this key")]
    UnsignedPayload,
    /// `x-amz-content-sha256` is not the SHA-256 of the body.
    #[error("x-amz-content-sha256 does not match the body")]
    PayloadHashMismatch,
    /// The signature does not match the request.
    #[error("signature does not match")]
    SignatureMismatch,
    /// The signing side could not read the clock or the random generator.
    ///
    /// Only [`crate::Signer::sign`] returns it; verification never does.
    #[error("signing environment unavailable: {0}")]
    Unavailable(&'static str),
}

impl SignError {
    /// The stable code of the JSON error envelope for this error.
    pub fn code(&self) -> &'static str {
        match self {
            SignError::MissingAuth => "missing_auth",
            SignError::SignatureMismatch => "signature_mismatch",
            SignError::ScopeMismatch => "scope_mismatch",
            SignError::UnsignedPayload => "unsigned_payload_not_allowed",
            SignError::PayloadHashMismatch => "payload_hash_mismatch",
            SignError::InvalidPath(_) => "invalid_path",
            SignError::MissingField(_)
            | SignError::MissingParam(_)
            | SignError::DuplicateField(_)
            | SignError::Malformed { .. }
            | SignError::InvalidPercentEncoding
            | SignError::SignedHeaderMissing(_)
            | SignError::Unavailable(_) => "malformed_auth",
        }
    }

    pub(crate) fn malformed(field: impl Into<String>, reason: &'static str) -> Self {
        SignError::Malformed { field: field.into(), reason }
    }
}
