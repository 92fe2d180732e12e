//! Inbound data plane: accepts connections, runs the verify pipeline (parse → key → window →
//! signature → nonce → forward), maps every refusal to the error envelope, proxies to upstreams.
//! It reads keys only from the in-memory [`Snapshot`], never from the store on the hot path.
#![forbid(unsafe_code)]

pub mod access;
pub mod body;
pub mod error;
pub mod gateway;
pub mod h1pool;
pub mod mtls;
pub mod observe;
pub mod proxy;
pub mod server;
pub mod snapshot;

pub use access::{AccessPolicy, Cidr, EndpointRule};
pub use error::GatewayError;
pub use gateway::{Caller, Dispatch, Dispatched, Gateway, IdempotencySettings, StateHandles, TokenSettings};
pub use mtls::{ClientCert, MtlsMode};
pub use observe::{NoopObserver, Observer, RequestOutcome};
pub use proxy::{UpstreamClients, UpstreamOptions};
pub use server::{InboundServer, ServerError, TlsFiles, TlsReloader};
pub use snapshot::{
    AuthPolicy, Capture, FieldRules, KeyEntry, KeyScheme, PreparedSecret, Route, RouteAuth, Snapshot,
};

/// Header naming the verified app, added for the upstream.
pub const X_KG_APP_ID: &str = "x-kg-app-id";
/// Header naming the verified access key, added for the upstream.
pub const X_KG_KEY_ID: &str = "x-kg-key-id";
/// The end user a user token is bound to, added for the upstream.
pub const X_KG_USER_ID: &str = "x-kg-user-id";
/// Header carrying an API token next to a signature (`auth_policy = "both"`); `Authorization:
/// Bearer` works too when the scheme does not use `Authorization` itself.
pub const X_KG_TOKEN: &str = "x-kg-token";
/// Request id, sent to the upstream and returned to the client.
pub const X_REQUEST_ID: &str = "x-request-id";
