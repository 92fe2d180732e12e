//! Audit log: one record per request (who, what, when, decision, latency, bytes — never a
//! secret, signature, token or body), written off the request path in batched multi-row inserts
//! to SQLite, PostgreSQL or MySQL; spilled to a checksummed local file while the database is
//! unreachable and replayed in order, exactly once, when it returns; retention in small batches;
//! search and JSON-lines export.
#![forbid(unsafe_code)]

pub mod db;
pub mod mask;
pub mod record;
pub mod spill;
pub mod writer;

pub use db::{AuditDb, DbError, Query};
pub use record::{clip_path, new_id, AuditRecord};
pub use spill::{Spill, SpillError};
pub use writer::{AuditSink, AuditStats, SinkConfig, SpillFullPolicy, StartError};
