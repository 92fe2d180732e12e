// Per-key access policy checked after the signature holds: which client networks may use a key
// and which endpoints it may call. Parsed once when a snapshot is built, matched per request
// without allocating.

use std::fmt;
use std::net::IpAddr;

/// One allowed network: `addr/prefix`, IPv4 or IPv6. IPv4 peers that arrive as IPv4-mapped IPv6
/// addresses (`::ffff:a.b.c.d`, as on a dual-stack socket) match IPv4 networks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    v4: bool,
    network: u128,
    mask: u128,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/prefix`. Host bits beyond the prefix are refused, as the store does.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address or CIDR"))?;
        let (v4, bits, max) = match ip {
            IpAddr::V4(a) => (true, u128::from(u32::from(a)), 32u8),
            IpAddr::V6(a) => (false, u128::from(a), 128u8),
        };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| format!("{s:?}: bad prefix length"))?
            }
            Some(_) => return Err(format!("{s:?}: bad prefix length")),
        };
        if prefix > max {
            return Err(format!("{s:?}: prefix length must be at most {max}"));
        }
        let mask = if prefix == 0 { 0 } else { (u128::MAX << (u32::from(max - prefix))) & width_mask(max) };
        if bits & !mask != 0 {
            return Err(format!("{s:?}: host bits are set beyond /{prefix}"));
        }
        Ok(Self { v4, network: bits, mask, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v4, bits) = match ip.to_canonical() {
            IpAddr::V4(a) => (true, u128::from(u32::from(a))),
            IpAddr::V6(a) => (false, u128::from(a)),
        };
        v4 == self.v4 && bits & self.mask == self.network
    }
}

fn width_mask(bits: u8) -> u128 {
    if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr: IpAddr = if self.v4 {
            IpAddr::from(std::net::Ipv4Addr::from(self.network as u32))
        } else {
            IpAddr::from(std::net::Ipv6Addr::from(self.network))
        };
        write!(f, "{addr}/{}", self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*` in the middle: exactly one segment.
    One,
    /// `*` as the last segment: one or more segments (a prefix match below the parent).
    Rest,
}

/// `"METHOD /path/pattern"`. METHOD is `*` or an exact method. In the path, `*` is a whole
/// segment: in the middle it matches exactly one segment, at the end one or more (so
/// `GET /v1/orders/*` allows `/v1/orders/7` and `/v1/orders/7/items`, not `/v1/orders`).
/// Anything else must match exactly, bytewise, on the raw (still percent-encoded) path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRule {
    method: Option<http::Method>,
    segments: Vec<Segment>,
}

impl EndpointRule {
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((method, path)) = s.split_once(' ') else {
            return Err(format!("{s:?} must look like \"METHOD /path\""));
        };
        let method = match method {
            "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
                Some(http::Method::from_bytes(m.as_bytes()).map_err(|_| format!("{s:?}: bad method"))?)
            }
            _ => return Err(format!("{s:?}: method must be * or an uppercase HTTP method")),
        };
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("{s:?}: path must start with /"));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        for (i, p) in parts.into_iter().enumerate() {
            segments.push(match p {
                "*" if i == last => Segment::Rest,
                "*" => Segment::One,
                p if p.contains('*') => return Err(format!("{s:?}: * must be a whole segment")),
                p => Segment::Literal(p.to_string()),
            });
        }
        Ok(Self { method, segments })
    }

    pub fn matches(&self, method: &http::Method, raw_path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        let Some(rest) = raw_path.strip_prefix('/') else { return false };
        let mut parts = rest.split('/');
        for seg in &self.segments {
            match seg {
                Segment::Rest => return parts.next().is_some_and(|p| !p.is_empty()),
                Segment::One => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

/// A key's access policy. Empty lists allow everything (the default for a new key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    pub allowed_cidrs: Vec<Cidr>,
    pub allowed_endpoints: Vec<EndpointRule>,
}

impl AccessPolicy {
    /// Parses the store's string lists; the first bad entry names its index.
    pub fn parse<S: AsRef<str>>(cidrs: &[S], endpoints: &[S]) -> Result<Self, String> {
        let allowed_cidrs = cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| Cidr::parse(c.as_ref()).map_err(|e| format!("allowed_cidrs[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        let allowed_endpoints = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| EndpointRule::parse(e.as_ref()).map_err(|e| format!("allowed_endpoints[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed_cidrs, allowed_endpoints })
    }

    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.allowed_cidrs.is_empty() || self.allowed_cidrs.iter().any(|c| c.contains(ip))
    }

    pub fn endpoint_allowed(&self, method: &http::Method, raw_path: &str) -> bool {
        self.allowed_endpoints.is_empty()
            || self.allowed_endpoints.iter().any(|e| e.matches(method, raw_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching_v4_v6_and_mapped() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped peers match IPv4 networks");
        assert!(!net.contains(ip("::1")));
        let host = Cidr::parse("192.0.2.7").unwrap();
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(ip("203.0.113.1")) && !all4.contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert_eq!(format!("{v6:?}"), "2001:db8::/32");
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "x", "1.2.3.4/", "1.2.3.4/+1", "::1/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_patterns() {
        let r = EndpointRule::parse("GET /v1/orders/*").unwrap();
        assert!(r.matches(&Method::GET, "/v1/orders/7"));
        assert!(r.matches(&Method::GET, "/v1/orders/7/items"));
        assert!(!r.matches(&Method::GET, "/v1/orders"));
        assert!(!r.matches(&Method::GET, "/v1/orders/"));
        assert!(!r.matches(&Method::POST, "/v1/orders/7"));
        assert!(!r.matches(&Method::GET, "/v1/ordersX/7"));

        let mid = EndpointRule::parse("* /v1/*/items").unwrap();
        assert!(mid.matches(&Method::DELETE, "/v1/a/items"));
        assert!(!mid.matches(&Method::DELETE, "/v1/a/b/items"));
        assert!(!mid.matches(&Method::DELETE, "/v1/a/items/x"));

        let exact = EndpointRule::parse("POST /v1/orders").unwrap();
        assert!(exact.matches(&Method::POST, "/v1/orders"));
        assert!(!exact.matches(&Method::POST, "/v1/orders/"));
        assert!(!exact.matches(&Method::POST, "/v1/orders/1"));

        let root = EndpointRule::parse("GET /").unwrap();
        assert!(root.matches(&Method::GET, "/") && !root.matches(&Method::GET, "/a"));

        for bad in ["GET", "get /a", "GET a", "GET /a*"] {
            assert!(EndpointRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_policy_allows_everything() {
        let p = AccessPolicy::default();
        assert!(p.ip_allowed(ip("203.0.113.9")));
        assert!(p.endpoint_allowed(&Method::PATCH, "/anything"));
        let p = AccessPolicy::parse(&["127.0.0.0/8"], &["GET /a/*"]).unwrap();
        assert!(p.ip_allowed(ip("127.0.0.1")) && !p.ip_allowed(ip("::2")));
        assert!(p.endpoint_allowed(&Method::GET, "/a/b") && !p.endpoint_allowed(&Method::GET, "/b"));
        let e = AccessPolicy::parse(&["127.0.0.0/8", "nope"], &[]).unwrap_err();
        assert!(e.starts_with("allowed_cidrs[1]"), "{e}");
    }

    /// Arbitrary input never panics the parsers or the matcher (a cheap, deterministic fuzz:
    /// 200k inputs built from the characters that matter).
    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet: Vec<char> = "0123456789abcdef:./*% GETPOSTx\u{e9}-_".chars().collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let len = (next() % 24) as usize;
            let s: String = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            if let Ok(c) = Cidr::parse(&s) {
                let _ = c.contains(IpAddr::from([10, 0, 0, 1]));
                let _ = format!("{c:?}");
            }
            if let Ok(r) = EndpointRule::parse(&s) {
                let path: String = s.chars().rev().collect();
                let _ = r.matches(&http::Method::GET, &path);
                let _ = r.matches(&http::Method::GET, "/");
            }
        }
    }
}
