// Crate root: the state traits' shared error and future types, and every backend's re-export.
// It must not know HTTP, the store or config files; callers pass plain scopes and values.

//! Request state that must hold across every replica of the gateway: replay (nonce) protection,
//! rate limits and idempotency. Each concern is one trait with a memory backend (single replica,
//! the embedded default) and a Redis backend (N replicas sharing one Redis). Nothing here knows
//! HTTP or the store; callers pass plain scopes, names and values.
//!
//! | concern | trait | memory | Redis |
//! |---|---|---|---|
//! | replay protection | [`NonceStore`] | [`MemoryNonceStore`] | [`RedisState`] (`SET NX PX`) |
//! | token buckets | [`RateLimiter`] | [`MemoryRateLimiter`] | [`RedisState`] (Lua, Redis `TIME`) |
//! | idempotency keys | [`IdempotencyStore`] | [`MemoryIdempotencyStore`] | [`RedisState`] (Lua) |
//! | API tokens (hashed) | [`TokenStore`] | [`MemoryTokenStore`] | [`RedisState`] (`SET PX` + app index) |
//! | nonce + buckets in one round trip | [`RequestGate`] | [`MemoryGate`] | [`RedisState`] (one Lua call) |
//!
//! [`ResilientGate`] wraps a [`RedisState`] and a [`MemoryGate`] and applies a [`FailurePolicy`]
//! when Redis is down or slow.
//!
//! # Redis deployment notes
//!
//! [`RedisState`] talks to one Redis node through a reconnecting multiplexed connection
//! (`redis::aio::ConnectionManager`). Supported: a standalone Redis (or Valkey) 6.2+; a
//! Sentinel-managed primary reached through a stable address (a VIP or proxy that follows the
//! primary). Not supported yet:
//!
//! - **Sentinel discovery** (`redis+sentinel://`): the `sentinel` feature of the `redis` crate is
//!   not enabled. After a failover behind a fixed address, writes to the old primary fail with
//!   `READONLY`; these count as backend failures and the [`FailurePolicy`] applies until the
//!   address points at the new primary.
//! - **Redis Cluster**: the connection does not follow `MOVED`/`ASK`. Independently of the client,
//!   every key one Lua call touches must hash to one slot. Keys are laid out with hash tags so
//!   that a nonce and the idempotency keys of one scope share the scope's slot
//!   (`…nonce:{<scope>}:<nonce>`, `…idem:{<scope>}:<key>`) and each bucket is its own slot
//!   (`…rl:{<bucket>}`). An [`Admission`] that combines a nonce and buckets of different names
//!   therefore spans slots; on a cluster it would need either bucket names carried under the
//!   scope's hash tag (which makes per-IP buckets per key) or one call per slot. A key prefix
//!   that itself contains a hash tag (e.g. `"{kg}:"`) pins every key to one slot, which works on
//!   a cluster at the cost of putting all gateway state on one shard.
#![forbid(unsafe_code)]

mod gate;
mod idempotency;
mod keys;
mod memory;
mod nonce;
mod rate;
mod redis_state;
mod resilient;
mod scripts;
mod tokens;

use std::future::Future;
use std::pin::Pin;

pub use gate::{Admission, AdmitOutcome, BucketCheck, MemoryGate, NonceCheck, RequestGate};
pub use idempotency::{IdemBegin, IdempotencyStore, MemoryIdempotencyStore, StoredResponse};
pub use memory::MemoryNonceStore;
pub use nonce::{NonceClaim, NonceStore};
pub use rate::{BucketLimit, MemoryRateLimiter, RateDecision, RateLimiter};
pub use redis_state::RedisState;
pub use resilient::{FailurePolicy, IdempotencyFailure, NonceFailure, RateFailure, ResilientGate};
pub use tokens::{new_token, token_hash, MemoryTokenStore, TokenGrant, TokenStore, TOKEN_PREFIX};

/// The future every state operation returns: boxed so the traits stay object safe
/// (`Arc<dyn RateLimiter>`), `Send` so it can run on a multi-threaded runtime.
pub type StateFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// Why a state backend could not answer. Callers fail closed on every variant.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The in-memory store holds as many live entries as it may; it refuses rather than evict
    /// an entry that is still needed, since evicting one would let its replay through.
    #[error("state store is full ({capacity} live entries)")]
    Full { capacity: usize },
    /// A remote backend did not answer in time, refused the connection, or returned an error.
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    /// A backend answered with data this crate did not write (a foreign value under our key, or a
    /// reply of an unexpected shape).
    #[error("state backend returned malformed data: {0}")]
    Corrupt(String),
    /// The caller passed an argument no backend can honour (e.g. a zero rate).
    #[error("invalid state request: {0}")]
    Invalid(String),
}

impl StateError {
    /// True when the backend itself failed (as opposed to a caller mistake or a full local
    /// store): the cases a [`FailurePolicy`] applies to.
    pub fn is_backend_failure(&self) -> bool {
        matches!(self, StateError::Unavailable(_) | StateError::Corrupt(_))
    }
}
