// Integration tests of the Redis backend against a real Redis: the shared one on 127.0.0.1:6379
// (unique key prefix per test, cleaned up) and private redis-server children for failure tests.
// A test fails, never skips, when Redis is missing.

mod admit;
mod common;
mod failure;
mod idempotency;
mod measure;
mod nonce;
mod rate;
mod tokens;
