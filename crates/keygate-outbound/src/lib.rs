// Crate root of the outbound gateway: services call third-party APIs through keygate, which holds
// the keys. It must not log or return a binding, a token or a signature.

//! Outbound gateway: `POST|GET|… /out/<provider>/<path>` from an authenticated caller becomes a
//! signed (and possibly encrypted) request to the provider; the caller never sees a key.
//!
//! - [`config`]: the provider document (base URL, hosts, path allowlist, timeouts, retries,
//!   limits, breaker, recipe) and its validation.
//! - [`recipe`]: built-in recipes implementing the signing workflow (token → fill → sort →
//!   string to sign → sign → insert → handle response).
//! - [`token`]: token cache with single flight, refresh ahead and invalidation on 401.
//! - [`dispatch`]: the call itself, plugged into the data plane as a [`keygate_inbound::Dispatch`].
//! - [`ssrf`]: which addresses a provider may reach.
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod crypto;
pub mod dispatch;
mod error;
pub mod recipe;
pub mod resilience;
pub mod script;
pub mod ssrf;
pub mod token;

pub use config::{ProviderConfig, RecipeConfig};
pub use dispatch::{LoadReport, Outbound, Provider, ProviderSpec, TestReport, TestRequest, PREFIX};
pub use error::OutboundError;
pub use token::{Sealer, SharedTokens, TokenManager};
