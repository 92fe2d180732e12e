// Owns the client side of KG1: turning (method, uri, headers, body) into the x-kg-* headers.
// Must not send anything or touch the network; the caller's HTTP client does that.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretBox};

use crate::digest::sha256_hex;
use crate::error::SignError;
use crate::kg1::{self, check_header_name, header, RequestParts};

/// The `x-kg-*` headers to add to a request.
pub struct SignedHeaders(pub Vec<(HeaderName, HeaderValue)>);

impl SignedHeaders {
    /// Inserts the headers into `headers`, replacing any earlier `x-kg-*` values.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.0 {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// The headers in a fixed order: key, timestamp, nonce, signed headers (if any), signature.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> + '_ {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// The value of one of the headers.
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl fmt::Debug for SignedHeaders {
    // A full signature never goes to a log, even the caller's own.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (n, v) in &self.0 {
            if n == header::SIGNATURE {
                m.entry(n, &"<redacted>");
            } else {
                m.entry(n, v);
            }
        }
        m.finish()
    }
}

/// Signs requests with one access key (a small KG1 SDK).
#[derive(Clone)]
pub struct Signer {
    access_key: String,
    secret: SecretBox<[u8]>,
    signed_headers: Vec<String>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("access_key", &self.access_key)
            .field("secret", &"<redacted>")
            .field("signed_headers", &self.signed_headers)
            .finish()
    }
}

impl Signer {
    /// A signer that signs no headers (see [`Signer::with_signed_headers`]).
    pub fn new(access_key: impl Into<String>, secret: SecretBox<[u8]>) -> Self {
        Signer { access_key: access_key.into(), secret, signed_headers: Vec::new() }
    }

    /// Sets the headers to sign (`host` and `content-type` are recommended). Names are
    /// lowercased, sorted and deduplicated; an empty name, a non-token character or an
    /// `x-kg-*` name is refused with [`SignError::Malformed`].
    pub fn with_signed_headers<I, S>(mut self, names: I) -> Result<Self, SignError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<String> = names.into_iter().map(|n| n.as_ref().to_ascii_lowercase()).collect();
        list.sort_unstable();
        list.dedup();
        for name in &list {
            check_header_name(name)?;
        }
        self.signed_headers = list;
        Ok(self)
    }

    /// The access key sent in `X-Kg-Key`.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The names that will be signed.
    pub fn signed_header_names(&self) -> &[String] {
        &self.signed_headers
    }

    /// Signs with the current time and a fresh random nonce.
    ///
    /// `uri` is `/path?query` or an absolute `http(s)://host[:port]/path?query`; in the
    /// latter case the authority is the value of `host` when `host` is signed and `headers`
    /// has none (lowercased, userinfo and the scheme's default port dropped, as HTTP
    /// clients send it). A `#fragment` is ignored: clients never send it.
    pub fn sign(
        &self,
        method: &str,
        uri: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<SignedHeaders, SignError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| SignError::Unavailable("system clock before 1970"))?;
        let timestamp =
            i64::try_from(now.as_secs()).map_err(|_| SignError::Unavailable("system clock out of range"))?;
        let nonce = new_nonce()?;
        self.sign_at(method, uri, headers, body, timestamp, &nonce)
    }

    /// Signs with the given timestamp and nonce (tests, replays of a recorded request).
    pub fn sign_at(
        &self,
        method: &str,
        uri: &str,
        headers: &HeaderMap,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
    ) -> Result<SignedHeaders, SignError> {
        let sts = self.string_to_sign(method, uri, headers, body, timestamp, nonce)?;
        let signature = kg1::sign_string(self.secret.expose_secret(), &sts);
        // string_to_sign has checked every value against the header-value grammar.
        let value = |s: &str, field: &'static str| {
            HeaderValue::from_str(s).map_err(|_| SignError::malformed(field, "not visible ASCII"))
        };
        let mut out = vec![
            (HeaderName::from_static(header::KEY), value(&self.access_key, header::KEY)?),
            (HeaderName::from_static(header::TIMESTAMP), value(&timestamp.to_string(), header::TIMESTAMP)?),
            (HeaderName::from_static(header::NONCE), value(nonce, header::NONCE)?),
        ];
        if !self.signed_headers.is_empty() {
            out.push((
                HeaderName::from_static(header::SIGNED_HEADERS),
                value(&self.signed_headers.join(";"), header::SIGNED_HEADERS)?,
            ));
        }
        out.push((HeaderName::from_static(header::SIGNATURE), value(&signature, header::SIGNATURE)?));
        Ok(SignedHeaders(out))
    }

    /// The string to sign for these inputs (for `--verbose` output and debugging).
    pub fn string_to_sign(
        &self,
        method: &str,
        uri: &str,
        headers: &HeaderMap,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
    ) -> Result<String, SignError> {
        let target = Target::parse(uri)?;
        let req = RequestParts {
            method,
            raw_path: target.path,
            raw_query: target.query,
            headers,
            authority: target.authority.as_deref(),
        };
        kg1::string_to_sign(&req, &self.access_key, timestamp, nonce, &self.signed_headers, &sha256_hex(body))
    }
}

/// 16 random bytes as 32 lowercase hex characters (within the 16..=64 `[A-Za-z0-9_-]` rule).
fn new_nonce() -> Result<String, SignError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SignError::Unavailable("random generator failed"))?;
    Ok(hex::encode(bytes))
}

/// The parts of a request target that the string to sign needs.
struct Target<'a> {
    path: &'a str,
    query: Option<&'a str>,
    authority: Option<String>,
}

impl<'a> Target<'a> {
    fn parse(uri: &'a str) -> Result<Self, SignError> {
        let (rest, authority) = match split_scheme(uri) {
            Some((default_port, after)) => {
                let end = after.find(['/', '?', '#']).unwrap_or(after.len());
                let authority = &after[..end];
                let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                if host_port.is_empty() {
                    return Err(SignError::malformed("uri", "absolute URL without host"));
                }
                let host_port =
                    host_port.strip_suffix(default_port).unwrap_or(host_port).to_ascii_lowercase();
                (&after[end..], Some(host_port))
            }
            None => (uri, None),
        };
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        Ok(Target { path, query, authority })
    }
}

/// For `http://` / `https://` (any case): the default port suffix and the text after `//`.
fn split_scheme(uri: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    if scheme.eq_ignore_ascii_case("http") {
        Some((":80", rest))
    } else if scheme.eq_ignore_ascii_case("https") {
        Some((":443", rest))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parsing() {
        let t = Target::parse("/a/b?x=1#frag").expect("relative");
        assert_eq!((t.path, t.query, t.authority), ("/a/b", Some("x=1"), None));
        let t = Target::parse("https://User:pw@API.Example.com:443?q").expect("absolute");
        assert_eq!(t.path, "");
        assert_eq!(t.query, Some("q"));
        assert_eq!(t.authority.as_deref(), Some("api.example.com"));
        let t = Target::parse("http://h:8080/p").expect("port");
        assert_eq!(t.authority.as_deref(), Some("h:8080"));
        let t = Target::parse("HTTP://h:80/p?").expect("default port");
        assert_eq!((t.path, t.query), ("/p", Some("")));
        assert_eq!(t.authority.as_deref(), Some("h"));
        let t = Target::parse("https://[::1]:8443/").expect("ipv6");
        assert_eq!(t.authority.as_deref(), Some("[::1]:8443"));
        assert!(Target::parse("http:///p").is_err());
    }

    #[test]
    fn nonce_is_fresh_and_valid() {
        let a = new_nonce().expect("rng");
        let b = new_nonce().expect("rng");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn debug_redacts() {
        let s = Signer::new("ak", SecretBox::from(b"topsecret".to_vec()));
        assert!(!format!("{s:?}").contains("topsecret"));
        let h = s.sign_at("GET", "/", &HeaderMap::new(), b"", 1, "abcdefghijklmnop").expect("sign");
        let sig = h.get(header::SIGNATURE).expect("signature").to_str().expect("ascii").to_owned();
        assert!(!format!("{h:?}").contains(&sig));
    }
}
