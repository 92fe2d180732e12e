// Owns canonicalization and every signing scheme (verify and sign) as pure functions.
// Must not do I/O, log, or know about HTTP servers: callers pass parsed parts in.

//! Signing and verification for keygate.
//!
//! - [`kg1`]: the native `KG1-HMAC-SHA256` scheme (auth header parsing, string to sign,
//!   HMAC sign/verify); [`Signer`] is its client side.
//! - [`legacy`]: the "sorted params + secret" family (MD5/SHA-1/SHA-256).
//! - [`query`], [`path`], [`digest`]: canonical query, raw path rules, body hash.
//! - Provider algorithms for the outbound gateway: [`sigv4`] (AWS), [`alipay`] (RSA2),
//!   [`wechatpay`] (API v3), on RSA keys from [`rsa`].
//! - [`fields`]: encrypted JSON fields (`kge1` envelopes: RSA-OAEP-SHA256 or hybrid
//!   RSA-OAEP + AES-256-GCM), specified in `docs/encrypted-fields.md`.
//!
//! The wire format is specified in `docs/signing.md`; the vectors in `docs/vectors/` are
//! checked by this crate's tests and by an independent Python signer (`tests/interop/`).

#![forbid(unsafe_code)]

pub mod alipay;
pub mod civil;
pub mod digest;
mod error;
pub mod fields;
pub mod kg1;
pub mod legacy;
pub mod path;
pub mod query;
pub mod rfc9421;
pub mod rsa;
mod signer;
pub mod sigv4;
pub mod wechatpay;

pub use error::SignError;
pub use signer::{SignedHeaders, Signer};
