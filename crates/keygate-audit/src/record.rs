// One audit record per request. Owned, serializable, and free of secrets by construction: it
// has no field for a header, a signature, a token or a body.

use serde::{Deserialize, Serialize};

/// Longest path kept (longer ones are cut, marked with a trailing `…`).
pub const MAX_PATH: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 32 hex digits: 48-bit millisecond time, then 80 random bits. Unique, time-ordered, and
    /// the idempotency key of replays.
    pub id: String,
    /// Unix milliseconds when the request arrived.
    pub at_ms: i64,
    pub request_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub app: Option<String>,
    /// The access key id (never its secret).
    pub key_id: Option<String>,
    pub scheme: Option<String>,
    pub client_ip: String,
    pub method: String,
    /// Route prefix, or `-`.
    pub route: String,
    pub path: String,
    pub status: u16,
    /// `ok` or the stable error code.
    pub code: String,
    pub latency_us: i64,
    pub upstream_latency_us: Option<i64>,
    pub bytes_in: i64,
    pub bytes_out: i64,
    /// Opt-in per route: the request body, masked and capped (docs/audit.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Opt-in per route: the listed request headers as a JSON object (credentials never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<String>,
}

/// A new record id for a request that arrived at `at_ms`.
pub fn new_id(at_ms: i64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut raw = [0u8; 16];
    let ms = (at_ms.max(0) as u64) & 0xFFFF_FFFF_FFFF;
    raw[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    // A failing system RNG leaves zeros: the id still orders by time, and a replayed record
    // keeps the id it was given, so deduplication never depends on fresh randomness.
    let _ = aws_lc_rs::rand::fill(&mut raw[6..]);
    let mut out = String::with_capacity(32);
    for b in raw {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Cuts `path` to [`MAX_PATH`] bytes on a character boundary.
pub fn clip_path(path: &str) -> String {
    if path.len() <= MAX_PATH {
        return path.to_string();
    }
    let mut end = MAX_PATH - 3;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_time_ordered() {
        assert!(new_id(0x0123_4567_89ab).starts_with("0123456789ab"));
        let a = new_id(1_700_000_000_000);
        let b = new_id(1_700_000_000_001);
        assert_eq!(a.len(), 32);
        assert!(a < b);
        assert_ne!(new_id(5), new_id(5));
    }

    #[test]
    fn long_paths_are_clipped() {
        assert_eq!(clip_path("/a"), "/a");
        let long = "é".repeat(MAX_PATH);
        let c = clip_path(&long);
        assert!(c.len() <= MAX_PATH && c.ends_with('…'));
    }
}
