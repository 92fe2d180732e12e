// The nonce contract: one atomic claim per (scope, nonce) for as long as the caller asks.
// Backends decide storage; they must never report `Fresh` twice for a live claim.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::StateError;

/// Outcome of claiming a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceClaim {
    /// First sighting within its lifetime: the request may proceed.
    Fresh,
    /// Seen before and still remembered: a replay.
    Replayed,
}

/// Atomic set-if-absent with a time to live, keyed by scope (the access key) and nonce.
pub trait NonceStore: Send + Sync + std::fmt::Debug {
    /// Claims `nonce` within `scope` for `ttl`. The TTL must cover the whole window in which the
    /// request's timestamp is still acceptable, or a replay after expiry would pass.
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        nonce: &'a str,
        ttl: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<NonceClaim, StateError>> + Send + 'a>>;
}
