//! Request state that must hold across the requests of one key: replay (nonce) protection today,
//! rate limits and idempotency next. Each concern is one trait with interchangeable backends.
//! Nothing here knows HTTP or the store; callers pass plain scopes and values.
#![forbid(unsafe_code)]

mod memory;
mod nonce;

pub use memory::MemoryNonceStore;
pub use nonce::{NonceClaim, NonceStore};

/// Why a state backend could not answer. Callers fail closed on every variant.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The in-memory store holds as many live entries as it may; it refuses rather than evict
    /// an entry that is still needed, since evicting one would let its replay through.
    #[error("nonce store is full ({capacity} live entries)")]
    Full { capacity: usize },
    /// A remote backend did not answer in time or at all.
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
}
