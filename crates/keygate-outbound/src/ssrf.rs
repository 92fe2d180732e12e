// Owns the SSRF guard: which addresses a provider may reach, applied after DNS resolution (so a
// name that resolves to 127.0.0.1 is caught) and to IP-literal hosts (which skip the resolver).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

/// True for addresses a provider may not reach unless it allows private addresses: loopback,
/// private (RFC 1918, ULA), link-local, CGNAT, unspecified, multicast, broadcast, documentation
/// and benchmark ranges, and IPv6 forms that embed such an IPv4 address (mapped, NAT64, 6to4).
pub fn is_restricted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || o[0] == 0                                   // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64)        // 100.64/10 CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)     // 192.0.0/24 IETF
        || (o[0] == 192 && o[1] == 0 && o[2] == 2)     // TEST-NET-1
        || (o[0] == 198 && (o[1] & 0xfe) == 18)        // 198.18/15 benchmarking
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)  // TEST-NET-2
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)   // TEST-NET-3
        || o[0] >= 240 // reserved
}

fn restricted_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return restricted_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00                   // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80                   // fe80::/10 link local
        || (s[0] & 0xffc0) == 0xfec0                   // fec0::/10 site local (deprecated)
        || (s[0] & 0xff00) == 0xff00                   // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8)          // documentation
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0) // v4-compatible
        || (s[0] == 0x0064 && s[1] == 0xff9b && restricted_v4(embedded(s[6], s[7]))) // NAT64
        || (s[0] == 0x2002 && restricted_v4(embedded(s[1], s[2]))) // 6to4
}

/// Whether `ip` may be contacted under a provider's policy.
pub fn allowed(ip: IpAddr, allow_private: bool) -> bool {
    allow_private || !is_restricted(ip)
}

/// DNS resolver for the provider client: resolves with the system resolver and drops every
/// address the policy refuses; fails if none is left.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> =
                addrs.into_iter().filter(|a| allowed(a.ip(), allow_private)).collect();
            if kept.is_empty() {
                return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, TargetBlocked));
            }
            Ok(kept.into_iter())
        })
    }
}

/// Marker error: every resolved address was refused by the SSRF guard.
#[derive(Debug)]
pub struct TargetBlocked;

impl std::fmt::Display for TargetBlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("every resolved address is in a restricted range")
    }
}

impl std::error::Error for TargetBlocked {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_and_special_ranges_are_restricted() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254", // cloud metadata
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
            "2002:7f00:1::",      // 6to4 of 127.0.0.1
            "::127.0.0.1",
            "2001:db8::1",
        ] {
            assert!(is_restricted(ip(s)), "{s} should be restricted");
            assert!(!allowed(ip(s), false), "{s}");
            assert!(allowed(ip(s), true), "{s} with allow_private");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::",
        ] {
            assert!(!is_restricted(ip(s)), "{s} should be allowed");
        }
    }

    #[tokio::test]
    async fn resolver_drops_restricted_results() {
        use tower::Service;
        let mut strict = GuardedResolver { allow_private: false };
        let name: Name = "localhost".parse().unwrap();
        let err = strict.call(name.clone()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        let mut open = GuardedResolver { allow_private: true };
        let addrs: Vec<_> = open.call(name).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        assert!(!addrs.is_empty());
    }
}
