// Owns the KG1-HMAC-SHA256 wire format: auth header parsing, the string to sign, HMAC sign/verify.
// Must not check freshness or replay (timestamp window, nonce store): that needs clocks and state.

use std::fmt;

use aws_lc_rs::hmac;
use http::HeaderMap;

use crate::error::SignError;
use crate::path::check_raw_path;
use crate::query::canonical_query;

/// First line of the string to sign; also the scheme's name in configuration.
pub const ALGORITHM: &str = "KG1-HMAC-SHA256";

/// Longest accepted access key, in bytes.
pub const MAX_ACCESS_KEY_LEN: usize = 128;
/// Shortest accepted nonce.
pub const NONCE_MIN_LEN: usize = 16;
/// Longest accepted nonce.
pub const NONCE_MAX_LEN: usize = 64;
/// Most digits accepted in `X-Kg-Timestamp` (Unix seconds; 12 digits last until year 33658).
pub const TIMESTAMP_MAX_DIGITS: usize = 12;

/// The KG1 header names, lowercase as `http::HeaderMap` stores them.
pub mod header {
    // Owns the spelling of the five KG1 header names shared by gateway, SDK and CLI.
    // Must not hold parsing rules: those live in the parent module.

    /// Access key.
    pub const KEY: &str = "x-kg-key";
    /// Unix time in seconds.
    pub const TIMESTAMP: &str = "x-kg-timestamp";
    /// Single-use random value.
    pub const NONCE: &str = "x-kg-nonce";
    /// Optional `;`-joined sorted lowercase names of the headers covered by the signature.
    pub const SIGNED_HEADERS: &str = "x-kg-signed-headers";
    /// Hex HMAC-SHA256 of the string to sign.
    pub const SIGNATURE: &str = "x-kg-signature";
    /// All five, in the order they are checked.
    pub const ALL: [&str; 5] = [KEY, TIMESTAMP, NONCE, SIGNED_HEADERS, SIGNATURE];
}

/// The KG1 authentication fields of one request, syntax-checked.
#[derive(Clone)]
pub struct Kg1Auth {
    /// Value of `X-Kg-Key`.
    pub access_key: String,
    /// Value of `X-Kg-Timestamp` (Unix seconds, no leading zeros).
    pub timestamp: i64,
    /// Value of `X-Kg-Nonce`.
    pub nonce: String,
    /// Names from `X-Kg-Signed-Headers` (lowercase, strictly sorted), empty if absent.
    pub signed_headers: Vec<String>,
    // Private so that it only leaves this module through the constant-time `verify`.
    signature: [u8; 32],
}

impl fmt::Debug for Kg1Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kg1Auth")
            .field("access_key", &self.access_key)
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .field("signed_headers", &self.signed_headers)
            .field("signature", &"<redacted>")
            .finish()
    }
}

impl Kg1Auth {
    /// Parses the auth headers.
    ///
    /// Errors, in the order they are checked:
    /// - [`SignError::MissingAuth`] when none of the five `x-kg-*` headers is present;
    /// - [`SignError::DuplicateField`] when any of them appears more than once;
    /// - [`SignError::MissingField`] when `x-kg-key`, `x-kg-timestamp`, `x-kg-nonce` or
    ///   `x-kg-signature` is absent;
    /// - [`SignError::Malformed`] when the access key is empty, longer than 128 bytes or not
    ///   visible ASCII; the timestamp is not 1..=12 ASCII digits or has a leading zero; the
    ///   nonce is not 16..=64 chars of `[A-Za-z0-9_-]`; the signature is not exactly 64 hex
    ///   digits (either case); the signed-headers list is not lowercase, not strictly sorted,
    ///   has an empty name, a non-token character or an `x-kg-*` name.
    ///
    /// An empty `X-Kg-Signed-Headers` value means no signed headers.
    pub fn from_headers(headers: &HeaderMap) -> Result<Kg1Auth, SignError> {
        let mut values: [Option<&[u8]>; 5] = [None; 5];
        for (slot, name) in values.iter_mut().zip(header::ALL) {
            let mut all = headers.get_all(name).iter();
            if let Some(v) = all.next() {
                if all.next().is_some() {
                    return Err(SignError::DuplicateField(name.to_owned()));
                }
                *slot = Some(v.as_bytes());
            }
        }
        let [key, timestamp, nonce, signed, signature] = values;
        if values.iter().all(Option::is_none) {
            return Err(SignError::MissingAuth);
        }
        let key = key.ok_or(SignError::MissingField(header::KEY))?;
        let timestamp = timestamp.ok_or(SignError::MissingField(header::TIMESTAMP))?;
        let nonce = nonce.ok_or(SignError::MissingField(header::NONCE))?;
        let signature = signature.ok_or(SignError::MissingField(header::SIGNATURE))?;

        let access_key = parse_access_key(key)?;
        let timestamp = parse_timestamp(timestamp)?;
        let nonce = parse_nonce(nonce)?;
        let signed_headers = match signed {
            Some(list) => parse_signed_headers(list)?,
            None => Vec::new(),
        };
        let signature = parse_signature(signature)?;
        Ok(Kg1Auth { access_key, timestamp, nonce, signed_headers, signature })
    }

    /// The string to sign of `req` with these auth fields.
    pub fn string_to_sign(&self, req: &RequestParts<'_>, body_sha256_hex: &str) -> Result<String, SignError> {
        string_to_sign(
            req,
            &self.access_key,
            self.timestamp,
            &self.nonce,
            &self.signed_headers,
            body_sha256_hex,
        )
    }

    /// Builds the string to sign of `req` and checks the signature against it.
    pub fn verify_request(
        &self,
        secret: &[u8],
        req: &RequestParts<'_>,
        body_sha256_hex: &str,
    ) -> Result<(), SignError> {
        let sts = self.string_to_sign(req, body_sha256_hex)?;
        verify(secret, &sts, self)
    }

    /// First 8 hex digits of the received signature: enough to correlate an audit record
    /// with a client log, too little to replay anything.
    pub fn signature_prefix(&self) -> String {
        hex::encode(&self.signature[..4])
    }
}

/// The request as verified/signed.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// HTTP method (uppercased in the string to sign).
    pub method: &'a str,
    /// Path exactly as sent on the wire, without `?query`; `""` is treated as `/`.
    pub raw_path: &'a str,
    /// Query without the `?`; `None` when the target has no `?`.
    pub raw_query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Used as the value of `host` when `host` is signed and `headers` has no Host (HTTP/2 `:authority`).
    pub authority: Option<&'a str>,
}

/// Builds the exact KG1 string to sign:
///
/// ```text
/// KG1-HMAC-SHA256\n<METHOD>\n<raw path>\n<canonical query>\n<access key>\n<timestamp>\n
/// <nonce>\n<signed names joined by ;>\n[<name>:<canonical value>\n]*<body sha256 hex>
/// ```
///
/// Header values are trimmed of SP/HTAB, inner SP/HTAB runs become one space, and the
/// values of a repeated header are joined with `,` in order. Errors:
/// [`SignError::SignedHeaderMissing`] for a signed header absent from the request;
/// [`SignError::Malformed`] for a header value that is not visible ASCII/SP/HTAB, a method
/// that is not an HTTP token, or inputs that `from_headers` would refuse;
/// [`SignError::InvalidPath`] for a path refused by [`check_raw_path`];
/// [`SignError::InvalidPercentEncoding`] from the query.
pub fn string_to_sign(
    req: &RequestParts<'_>,
    access_key: &str,
    timestamp: i64,
    nonce: &str,
    signed_headers: &[String],
    body_sha256_hex: &str,
) -> Result<String, SignError> {
    // Every input is re-checked here because the signer side feeds user strings in, and a
    // stray `\n` in any of them would let two different requests share one string to sign.
    check_method(req.method)?;
    let path = if req.raw_path.is_empty() { "/" } else { req.raw_path };
    check_raw_path(path)?;
    let query = canonical_query(req.raw_query.unwrap_or(""))?;
    parse_access_key(access_key.as_bytes())?;
    if !(0..=999_999_999_999).contains(&timestamp) {
        return Err(SignError::malformed(header::TIMESTAMP, "out of range"));
    }
    parse_nonce(nonce.as_bytes())?;
    check_signed_header_list(signed_headers)?;
    if body_sha256_hex.len() != 64 || !body_sha256_hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(SignError::malformed("body_sha256", "not 64 lowercase hex digits"));
    }

    let mut out = String::with_capacity(
        ALGORITHM.len()
            + req.method.len()
            + path.len()
            + query.len()
            + access_key.len()
            + nonce.len()
            + 64
            + 32
            + signed_headers.iter().map(|n| 2 * n.len() + 32).sum::<usize>(),
    );
    out.push_str(ALGORITHM);
    out.push('\n');
    for b in req.method.bytes() {
        out.push(char::from(b.to_ascii_uppercase()));
    }
    out.push('\n');
    out.push_str(path);
    out.push('\n');
    out.push_str(&query);
    out.push('\n');
    out.push_str(access_key);
    out.push('\n');
    out.push_str(&timestamp.to_string());
    out.push('\n');
    out.push_str(nonce);
    out.push('\n');
    for (i, name) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        let mut values = req.headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_none() {
            match (name.as_str(), req.authority) {
                ("host", Some(authority)) => push_canonical_value(&mut out, name, authority.as_bytes())?,
                _ => return Err(SignError::SignedHeaderMissing(name.clone())),
            }
        }
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_canonical_value(&mut out, name, value.as_bytes())?;
        }
        out.push('\n');
    }
    out.push_str(body_sha256_hex);
    Ok(out)
}

/// Lowercase hex HMAC-SHA256 of `string_to_sign` keyed with `secret`.
pub fn sign_string(secret: &[u8], string_to_sign: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex::encode(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

/// Checks `auth`'s signature over `string_to_sign` in constant time.
///
/// Errors: [`SignError::SignatureMismatch`] on any mismatch.
pub fn verify(secret: &[u8], string_to_sign: &str, auth: &Kg1Auth) -> Result<(), SignError> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, string_to_sign.as_bytes(), &auth.signature).map_err(|_| SignError::SignatureMismatch)
}

/// Appends a header value trimmed of SP/HTAB with inner runs collapsed to one space.
fn push_canonical_value(out: &mut String, name: &str, value: &[u8]) -> Result<(), SignError> {
    let mut pending_space = false;
    let mut wrote = false;
    for &b in value {
        match b {
            b' ' | b'\t' => pending_space = wrote,
            0x21..=0x7e => {
                if pending_space {
                    out.push(' ');
                    pending_space = false;
                }
                out.push(char::from(b));
                wrote = true;
            }
            _ => return Err(SignError::malformed(name, "header value is not visible ASCII")),
        }
    }
    Ok(())
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn check_method(method: &str) -> Result<(), SignError> {
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(SignError::malformed("method", "not an HTTP token"));
    }
    Ok(())
}

fn parse_access_key(v: &[u8]) -> Result<String, SignError> {
    if v.is_empty() {
        return Err(SignError::malformed(header::KEY, "empty"));
    }
    if v.len() > MAX_ACCESS_KEY_LEN {
        return Err(SignError::malformed(header::KEY, "longer than 128 bytes"));
    }
    if !v.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(SignError::malformed(header::KEY, "not visible ASCII"));
    }
    String::from_utf8(v.to_vec()).map_err(|_| SignError::malformed(header::KEY, "not visible ASCII"))
}

fn parse_timestamp(v: &[u8]) -> Result<i64, SignError> {
    if v.is_empty() || v.len() > TIMESTAMP_MAX_DIGITS {
        return Err(SignError::malformed(header::TIMESTAMP, "not 1 to 12 digits"));
    }
    if !v.iter().all(u8::is_ascii_digit) {
        return Err(SignError::malformed(header::TIMESTAMP, "not 1 to 12 digits"));
    }
    // The string to sign holds the number; a zero-padded header would sign differently.
    if v.len() > 1 && v[0] == b'0' {
        return Err(SignError::malformed(header::TIMESTAMP, "leading zero"));
    }
    Ok(v.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
}

pub(crate) fn is_nonce_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn parse_nonce(v: &[u8]) -> Result<String, SignError> {
    if v.len() < NONCE_MIN_LEN || v.len() > NONCE_MAX_LEN {
        return Err(SignError::malformed(header::NONCE, "not 16 to 64 characters"));
    }
    if !v.iter().copied().all(is_nonce_char) {
        return Err(SignError::malformed(header::NONCE, "character outside [A-Za-z0-9_-]"));
    }
    String::from_utf8(v.to_vec())
        .map_err(|_| SignError::malformed(header::NONCE, "character outside [A-Za-z0-9_-]"))
}

fn parse_signature(v: &[u8]) -> Result<[u8; 32], SignError> {
    let mut sig = [0u8; 32];
    if v.len() != 64 {
        return Err(SignError::malformed(header::SIGNATURE, "not 64 hex digits"));
    }
    hex::decode_to_slice(v, &mut sig)
        .map_err(|_| SignError::malformed(header::SIGNATURE, "not 64 hex digits"))?;
    Ok(sig)
}

/// Checks one name of a signed-headers list (shared with the signer).
pub(crate) fn check_header_name(name: &str) -> Result<(), SignError> {
    let field = header::SIGNED_HEADERS;
    if name.is_empty() {
        return Err(SignError::malformed(field, "empty header name"));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(SignError::malformed(field, "header name not lowercase"));
    }
    if !name.bytes().all(is_tchar) {
        return Err(SignError::malformed(field, "invalid character in header name"));
    }
    if name.starts_with("x-kg-") {
        return Err(SignError::malformed(field, "x-kg-* headers cannot be signed"));
    }
    Ok(())
}

fn check_signed_header_list(names: &[String]) -> Result<(), SignError> {
    for (i, name) in names.iter().enumerate() {
        check_header_name(name)?;
        if i > 0 && names[i - 1].as_bytes() >= name.as_bytes() {
            return Err(SignError::malformed(header::SIGNED_HEADERS, "names not strictly sorted"));
        }
    }
    Ok(())
}

fn parse_signed_headers(v: &[u8]) -> Result<Vec<String>, SignError> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    let list = std::str::from_utf8(v)
        .map_err(|_| SignError::malformed(header::SIGNED_HEADERS, "invalid character in header name"))?;
    let names: Vec<String> = list.split(';').map(str::to_owned).collect();
    check_signed_header_list(&names)?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_print_signature() {
        let mut h = HeaderMap::new();
        h.insert(header::KEY, http::HeaderValue::from_static("ak"));
        h.insert(header::TIMESTAMP, http::HeaderValue::from_static("1700000000"));
        h.insert(header::NONCE, http::HeaderValue::from_static("abcdefghijklmnop"));
        h.insert(
            header::SIGNATURE,
            http::HeaderValue::from_static(
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        );
        let auth = Kg1Auth::from_headers(&h).expect("valid headers");
        let dbg = format!("{auth:?}");
        assert!(!dbg.contains("0123456789abcdef"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert_eq!(auth.signature_prefix(), "01234567");
    }

    #[test]
    fn canonical_value_trims_and_collapses() {
        let mut s = String::new();
        push_canonical_value(&mut s, "x", b" \t a \t\t b  c \t").expect("ascii");
        assert_eq!(s, "a b c");
        let mut s = String::new();
        push_canonical_value(&mut s, "x", b"  \t ").expect("ascii");
        assert_eq!(s, "");
        let mut s = String::new();
        assert!(push_canonical_value(&mut s, "x", b"caf\xc3\xa9").is_err());
    }
}
