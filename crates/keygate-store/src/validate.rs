// Input validation for every record the repositories write, with field paths and size limits.
// Pure functions only: no I/O, and no secret value is ever echoed into an error message.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::{AppRecord, KeyRecord, StoreError, TenantRecord};

/// Size and range limits enforced before anything reaches the database. Byte lengths are UTF-8
/// bytes, so the same record fits every backend's column types.
pub mod limits {
    /// Tenant, app and access-key identifiers, and successor references.
    pub const MAX_ID_LEN: usize = 128;
    /// Tenant and app display names.
    pub const MAX_NAME_LEN: usize = 200;
    pub const MAX_DESCRIPTION_LEN: usize = 1024;
    pub const MAX_CREATED_BY_LEN: usize = 256;
    pub const MAX_SCHEME_LEN: usize = 64;
    /// Serialized JSON of `scheme_settings`.
    pub const MAX_SCHEME_SETTINGS_LEN: usize = 16 * 1024;
    /// Items in each of `scopes`, `allowed_endpoints`, `allowed_cidrs`.
    pub const MAX_LIST_ITEMS: usize = 256;
    pub const MAX_SCOPE_LEN: usize = 128;
    /// One `"METHOD /path/pattern"` entry.
    pub const MAX_ENDPOINT_LEN: usize = 512;
    pub const MAX_METHOD_LEN: usize = 16;
    pub const MAX_TIMESTAMP_WINDOW_SECS: u32 = 86_400;
    pub const MAX_RATE_PER_SEC: f64 = 1_000_000.0;
    /// Any `u32` burst is storable; the config file accepts the same range.
    pub const MAX_BURST: u32 = u32::MAX;
    pub const MAX_SECRET_LEN: usize = 4096;
    /// Secrets handed to `create_key` are platform-generated, so anything shorter is a bug.
    pub const MIN_GENERATED_SECRET_LEN: usize = 32;
    /// Longest rotation overlap window (90 days).
    pub const MAX_OVERLAP_SECS: u64 = 90 * 86_400;
    /// Actor, action and target of an admin audit row.
    pub const MAX_AUDIT_FIELD_LEN: usize = 256;
    /// Serialized `before`/`after` JSON of an admin audit row.
    pub const MAX_AUDIT_JSON_LEN: usize = 1024 * 1024;
}

use limits::*;

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid { field: field.into(), reason: reason.into() }
}

/// Identifiers travel in headers, URLs and logs: printable ASCII without whitespace, compared
/// bytewise on every backend.
pub(crate) fn identifier(field: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(invalid(field, format!("must be at most {MAX_ID_LEN} bytes, got {}", value.len())));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(field, "must be printable ASCII without spaces"));
    }
    Ok(())
}

/// Free text on one line: any Unicode except control characters (PostgreSQL rejects NUL in text).
fn line(field: &str, value: &str, max: usize, allow_empty: bool) -> Result<(), StoreError> {
    if value.is_empty() && !allow_empty {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, format!("must be at most {max} bytes, got {}", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Multi-line free text: tabs and newlines are allowed, other control characters are not.
fn text(field: &str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.len() > max {
        return Err(invalid(field, format!("must be at most {max} bytes, got {}", value.len())));
    }
    if value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(invalid(field, "must not contain control characters other than tab and newline"));
    }
    Ok(())
}

pub(crate) fn tenant(t: &TenantRecord) -> Result<(), StoreError> {
    identifier("tenant.id", &t.id)?;
    line("tenant.name", &t.name, MAX_NAME_LEN, false)
}

pub(crate) fn app(a: &AppRecord) -> Result<(), StoreError> {
    identifier("app.id", &a.id)?;
    identifier("app.tenant_id", &a.tenant_id)?;
    line("app.name", &a.name, MAX_NAME_LEN, false)
}

/// Validates a key's metadata; `prefix` is the field path of the record (`key`, `new_key`).
pub(crate) fn key(prefix: &str, k: &KeyRecord) -> Result<(), StoreError> {
    let f = |name: &str| format!("{prefix}.{name}");
    identifier(&f("access_key"), &k.access_key)?;
    identifier(&f("app_id"), &k.app_id)?;
    scheme(&f("scheme"), &k.scheme)?;
    if !k.scheme_settings.is_object() {
        return Err(invalid(f("scheme_settings"), "must be a JSON object"));
    }
    let settings_len = k.scheme_settings.to_string().len();
    if settings_len > MAX_SCHEME_SETTINGS_LEN {
        return Err(invalid(
            f("scheme_settings"),
            format!("must serialize to at most {MAX_SCHEME_SETTINGS_LEN} bytes, got {settings_len}"),
        ));
    }
    for (name, v) in [("valid_from", k.valid_from), ("valid_to", k.valid_to)] {
        if v.is_some_and(|v| v < 0) {
            return Err(invalid(f(name), "must be a Unix time in seconds, not negative"));
        }
    }
    if let (Some(from), Some(to)) = (k.valid_from, k.valid_to) {
        if to <= from {
            return Err(invalid(f("valid_to"), "must be later than valid_from"));
        }
    }
    if k.timestamp_window_secs == 0 || k.timestamp_window_secs > MAX_TIMESTAMP_WINDOW_SECS {
        return Err(invalid(
            f("timestamp_window_secs"),
            format!("must be between 1 and {MAX_TIMESTAMP_WINDOW_SECS}"),
        ));
    }
    if ![crate::AUTH_POLICY_SIGNATURE, crate::AUTH_POLICY_TOKEN, crate::AUTH_POLICY_BOTH]
        .contains(&k.auth_policy.as_str())
    {
        return Err(invalid(f("auth_policy"), "must be \"signature\", \"token\" or \"both\"".to_string()));
    }
    text(&f("description"), &k.description, MAX_DESCRIPTION_LEN)?;
    line(&f("created_by"), &k.created_by, MAX_CREATED_BY_LEN, true)?;

    list_len(&f("scopes"), k.scopes.len())?;
    let mut seen = HashSet::new();
    for (i, s) in k.scopes.iter().enumerate() {
        let field = format!("{prefix}.scopes[{i}]");
        scope(&field, s)?;
        if !seen.insert(s.as_str()) {
            return Err(invalid(field, "duplicate scope"));
        }
    }
    list_len(&f("allowed_endpoints"), k.allowed_endpoints.len())?;
    for (i, e) in k.allowed_endpoints.iter().enumerate() {
        endpoint(&format!("{prefix}.allowed_endpoints[{i}]"), e)?;
    }
    list_len(&f("allowed_cidrs"), k.allowed_cidrs.len())?;
    for (i, c) in k.allowed_cidrs.iter().enumerate() {
        cidr(c).map_err(|reason| invalid(format!("{prefix}.allowed_cidrs[{i}]"), reason))?;
    }
    if let Some(rl) = &k.rate_limit {
        if !rl.rate_per_sec.is_finite() || rl.rate_per_sec <= 0.0 || rl.rate_per_sec > MAX_RATE_PER_SEC {
            return Err(invalid(
                f("rate_limit.rate_per_sec"),
                format!("must be a number above 0 and at most {MAX_RATE_PER_SEC}"),
            ));
        }
        if rl.burst == 0 {
            return Err(invalid(f("rate_limit.burst"), "must be at least 1"));
        }
    }
    if let Some(s) = &k.successor {
        identifier(&f("successor"), s)?;
        if *s == k.access_key {
            return Err(invalid(f("successor"), "a key cannot be its own successor"));
        }
    }
    if k.overlap_until.is_some_and(|v| v < 0) {
        return Err(invalid(f("overlap_until"), "must be a Unix time in seconds, not negative"));
    }
    if k.last_used_at.is_some_and(|v| v < 0) {
        return Err(invalid(f("last_used_at"), "must be a Unix time in seconds, not negative"));
    }
    Ok(())
}

/// Bounds only: the secret's bytes are never inspected or echoed.
pub(crate) fn secret(field: &str, secret: &[u8], min: usize) -> Result<(), StoreError> {
    if secret.len() < min.max(1) {
        return Err(invalid(field, format!("must be at least {} bytes", min.max(1))));
    }
    if secret.len() > MAX_SECRET_LEN {
        return Err(invalid(field, format!("must be at most {MAX_SECRET_LEN} bytes")));
    }
    Ok(())
}

pub(crate) fn audit_field(field: &str, value: &str) -> Result<(), StoreError> {
    line(field, value, MAX_AUDIT_FIELD_LEN, false)
}

fn list_len(field: &str, n: usize) -> Result<(), StoreError> {
    if n > MAX_LIST_ITEMS {
        return Err(invalid(field, format!("must have at most {MAX_LIST_ITEMS} items, got {n}")));
    }
    Ok(())
}

fn scheme(field: &str, s: &str) -> Result<(), StoreError> {
    if s.is_empty() || s.len() > MAX_SCHEME_LEN {
        return Err(invalid(field, format!("must be 1 to {MAX_SCHEME_LEN} bytes")));
    }
    let first_ok = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !first_ok || !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)) {
        return Err(invalid(field, "must be lowercase letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

fn scope(field: &str, s: &str) -> Result<(), StoreError> {
    if s.is_empty() || s.len() > MAX_SCOPE_LEN {
        return Err(invalid(field, format!("must be 1 to {MAX_SCOPE_LEN} bytes")));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(field, "must not contain whitespace or control characters"));
    }
    Ok(())
}

/// `"METHOD /path/pattern"`: METHOD is `*` or an uppercase token; the path starts with `/`, has
/// no query, fragment, whitespace or dot segments, and uses `*` only as a whole segment.
fn endpoint(field: &str, e: &str) -> Result<(), StoreError> {
    if e.len() > MAX_ENDPOINT_LEN {
        return Err(invalid(field, format!("must be at most {MAX_ENDPOINT_LEN} bytes")));
    }
    let Some((method, path)) = e.split_once(' ') else {
        return Err(invalid(field, "must look like \"METHOD /path\", e.g. \"GET /v1/orders/*\""));
    };
    let method_ok = method == "*"
        || (!method.is_empty()
            && method.len() <= MAX_METHOD_LEN
            && method.bytes().all(|b| b.is_ascii_uppercase()));
    if !method_ok {
        return Err(invalid(field, "method must be * or an uppercase HTTP method such as GET"));
    }
    if !path.starts_with('/') {
        return Err(invalid(field, "path must start with /"));
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(field, "path must not contain whitespace or control characters"));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(field, "path must not contain a query or fragment"));
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() && i + 1 < segments.len() {
            return Err(invalid(field, "path must not contain empty segments (//)"));
        }
        if *seg == "." || *seg == ".." {
            return Err(invalid(field, "path must not contain . or .. segments"));
        }
        if seg.contains('*') && *seg != "*" {
            return Err(invalid(field, "* is allowed only as a whole path segment"));
        }
    }
    Ok(())
}

/// `addr` or `addr/prefix`, IPv4 or IPv6, with no host bits set beyond the prefix.
pub(crate) fn cidr(s: &str) -> Result<(), String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| "not an IPv4 or IPv6 address or CIDR".to_string())?;
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err("prefix length must be a decimal number".into());
            }
            p.parse::<u8>().map_err(|_| "prefix length must be a decimal number".to_string())?
        }
    };
    if prefix > max {
        return Err(format!("prefix length must be at most {max}"));
    }
    let (bits, network) = match ip {
        IpAddr::V4(v4) => {
            let bits = u128::from(u32::from(v4));
            let mask = if prefix == 0 { 0 } else { u128::from(u32::MAX << (32 - u32::from(prefix))) };
            (bits, IpAddr::from(std::net::Ipv4Addr::from((bits & mask) as u32)))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            (bits, IpAddr::from(std::net::Ipv6Addr::from(bits & mask)))
        }
    };
    let network_bits = match network {
        IpAddr::V4(n) => u128::from(u32::from(n)),
        IpAddr::V6(n) => u128::from(n),
    };
    if bits != network_bits {
        return Err(format!("host bits are set; the network is {network}/{prefix}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        for ok in ["10.0.0.0/8", "192.168.1.7", "0.0.0.0/0", "2001:db8::/32", "::1", "::/0", "::ffff:1.2.3.4"]
        {
            assert!(cidr(ok).is_ok(), "{ok}");
        }
        for bad in
            ["10.0.0.1/8", "10.0.0.0/33", "2001:db8::1/32", "10.0.0.0/", "10.0.0.0/+8", "host", "1.2.3"]
        {
            assert!(cidr(bad).is_err(), "{bad}");
        }
        assert!(cidr("10.1.2.3/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(cidr("fe80::1%eth0").is_err());
    }

    #[test]
    fn endpoints() {
        for ok in ["GET /v1/orders/*", "* /", "POST /v1/orders", "DELETE /v1/*/items/*", "GET /a/"] {
            assert!(endpoint("e", ok).is_ok(), "{ok}");
        }
        for bad in ["GET", "get /x", "GET x", "GET /a//b", "GET /a/../b", "GET /a*", "GET /a?b=1", "GET  /a"]
        {
            assert!(endpoint("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(identifier("id", "AK';--%_\\\"").is_ok());
        assert!(identifier("id", "a b").is_err());
        assert!(identifier("id", "").is_err());
        assert!(identifier("id", "é").is_err());
        assert!(identifier("id", &"x".repeat(MAX_ID_LEN + 1)).is_err());
    }
}
