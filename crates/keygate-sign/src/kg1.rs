// Owns the KG1-HMAC-SHA256 wire format: auth header parsing, the string to sign, HMAC sign/verify.
// Must not check freshness or replay (timestamp window, nonce store): that needs clocks and state.

use std::fmt;

use aws_lc_rs::hmac;
use http::HeaderMap;

use crate::digest::hex_lower;
use crate::error::SignError;
use crate::path::check_raw_path;
use crate::query::canonical_query_into;

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

/// Index in [`header::ALL`] of an auth header name without its `x-kg-` prefix.
fn auth_header_index(rest: &str) -> Option<usize> {
    match rest {
        "key" => Some(0),
        "timestamp" => Some(1),
        "nonce" => Some(2),
        "signed-headers" => Some(3),
        "signature" => Some(4),
        _ => None,
    }
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
        let mut repeated = [false; 5];
        // One pass over the headers: cheaper than five hashed lookups for the usual dozen.
        for (name, value) in headers {
            let Some(i) = name.as_str().strip_prefix("x-kg-").and_then(auth_header_index) else {
                continue;
            };
            repeated[i] |= values[i].is_some();
            values[i] = Some(value.as_bytes());
        }
        if let Some(i) = repeated.iter().position(|r| *r) {
            return Err(SignError::DuplicateField(header::ALL[i].to_owned()));
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
        hex_lower(&self.signature[..4])
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
    // The errors keep their order: the canonical query is built (and checked) straight into
    // the output buffer before the auth fields are checked; any error drops the buffer.
    check_method(req.method)?;
    let path = if req.raw_path.is_empty() { "/" } else { req.raw_path };
    check_raw_path(path)?;
    let raw_query = req.raw_query.unwrap_or("");

    let mut out: Vec<u8> = Vec::with_capacity(
        ALGORITHM.len()
            + req.method.len()
            + path.len()
            // The canonical query is usually as long as the raw one; escapes may add a few bytes.
            + raw_query.len()
            + 16
            + access_key.len()
            + nonce.len()
            + 64
            + 32
            + signed_headers.iter().map(|n| 2 * n.len() + 32).sum::<usize>(),
    );
    out.extend_from_slice(ALGORITHM.as_bytes());
    out.push(b'\n');
    out.extend(req.method.bytes().map(|b| b.to_ascii_uppercase()));
    out.push(b'\n');
    out.extend_from_slice(path.as_bytes());
    out.push(b'\n');
    canonical_query_into(&mut out, raw_query)?;
    out.push(b'\n');

    check_access_key(access_key.as_bytes())?;
    if !(0..=999_999_999_999).contains(&timestamp) {
        return Err(SignError::malformed(header::TIMESTAMP, "out of range"));
    }
    check_nonce(nonce.as_bytes())?;
    check_signed_header_list(signed_headers)?;
    if body_sha256_hex.len() != 64 || !body_sha256_hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(SignError::malformed("body_sha256", "not 64 lowercase hex digits"));
    }

    out.extend_from_slice(access_key.as_bytes());
    out.push(b'\n');
    // Checked above to be within 0..=999_999_999_999.
    push_decimal(&mut out, timestamp.unsigned_abs());
    out.push(b'\n');
    out.extend_from_slice(nonce.as_bytes());
    out.push(b'\n');
    for (i, name) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(b';');
        }
        out.extend_from_slice(name.as_bytes());
    }
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut values = req.headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_none() {
            match (name.as_str(), req.authority) {
                ("host", Some(authority)) => push_canonical_value(&mut out, name, authority.as_bytes())?,
                _ => return Err(SignError::SignedHeaderMissing(name.clone())),
            }
        }
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_canonical_value(&mut out, name, value.as_bytes())?;
        }
        out.push(b'\n');
    }
    out.extend_from_slice(body_sha256_hex.as_bytes());
    // Every byte written was checked to be visible ASCII, SP or LF above, so this cannot fail;
    // mapping the error keeps the function panic-free.
    String::from_utf8(out).map_err(|_| SignError::malformed("string to sign", "not ASCII"))
}

/// Appends the decimal digits of `n` (no sign, no padding).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Lowercase hex HMAC-SHA256 of `string_to_sign` keyed with `secret`.
pub fn sign_string(secret: &[u8], string_to_sign: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex_lower(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

/// Checks `auth`'s signature over `string_to_sign` in constant time.
///
/// Errors: [`SignError::SignatureMismatch`] on any mismatch.
pub fn verify(secret: &[u8], string_to_sign: &str, auth: &Kg1Auth) -> Result<(), SignError> {
    verify_with(&Kg1Key::new(secret), string_to_sign, auth)
}

/// A KG1 secret prepared for HMAC-SHA256 once: building it hashes the inner and outer key
/// pads (two SHA-256 blocks plus context setup, 8–10% of a 1 KiB verify in `benches/sign.rs`),
/// which [`verify`] otherwise repeats for every request. As sensitive as the secret; aws-lc
/// wipes it on drop.
#[derive(Clone)]
pub struct Kg1Key(hmac::Key);

impl Kg1Key {
    /// Prepares `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Kg1Key(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }
}

impl fmt::Debug for Kg1Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kg1Key(<redacted>)")
    }
}

/// [`verify`] with a secret prepared by [`Kg1Key::new`]; same result, same constant-time
/// comparison.
///
/// Errors: [`SignError::SignatureMismatch`] on any mismatch.
pub fn verify_with(key: &Kg1Key, string_to_sign: &str, auth: &Kg1Auth) -> Result<(), SignError> {
    hmac::verify(&key.0, string_to_sign.as_bytes(), &auth.signature).map_err(|_| SignError::SignatureMismatch)
}

/// Appends a header value trimmed of SP/HTAB with inner runs collapsed to one space.
fn push_canonical_value(out: &mut Vec<u8>, name: &str, value: &[u8]) -> Result<(), SignError> {
    // Most values (hosts, media types, tokens) have no SP/HTAB at all: copied in one go.
    if value.iter().all(|b| (0x21..=0x7e).contains(b)) {
        out.extend_from_slice(value);
        return Ok(());
    }
    let mut pending_space = false;
    let mut wrote = false;
    for &b in value {
        match b {
            b' ' | b'\t' => pending_space = wrote,
            0x21..=0x7e => {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                out.push(b);
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

fn check_access_key(v: &[u8]) -> Result<(), SignError> {
    if v.is_empty() {
        return Err(SignError::malformed(header::KEY, "empty"));
    }
    if v.len() > MAX_ACCESS_KEY_LEN {
        return Err(SignError::malformed(header::KEY, "longer than 128 bytes"));
    }
    if !v.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(SignError::malformed(header::KEY, "not visible ASCII"));
    }
    Ok(())
}

fn parse_access_key(v: &[u8]) -> Result<String, SignError> {
    check_access_key(v)?;
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

fn check_nonce(v: &[u8]) -> Result<(), SignError> {
    if v.len() < NONCE_MIN_LEN || v.len() > NONCE_MAX_LEN {
        return Err(SignError::malformed(header::NONCE, "not 16 to 64 characters"));
    }
    if !v.iter().copied().all(is_nonce_char) {
        return Err(SignError::malformed(header::NONCE, "character outside [A-Za-z0-9_-]"));
    }
    Ok(())
}

fn parse_nonce(v: &[u8]) -> Result<String, SignError> {
    check_nonce(v)?;
    String::from_utf8(v.to_vec())
        .map_err(|_| SignError::malformed(header::NONCE, "character outside [A-Za-z0-9_-]"))
}

/// Value of each byte as a hex digit (either case); `0xff` for anything else.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => 0xff,
        };
        c += 1;
    }
    t
};

fn parse_signature(v: &[u8]) -> Result<[u8; 32], SignError> {
    if v.len() != 64 {
        return Err(SignError::malformed(header::SIGNATURE, "not 64 hex digits"));
    }
    // Table lookups without a branch per digit: received signatures are random, and the
    // per-digit range checks of `hex::decode_to_slice` mispredicted often enough to cost ~2% of
    // the gateway's CPU on the rejection path (perf, bad-signature load).
    let mut sig = [0u8; 32];
    let mut invalid = 0u8;
    for (out, pair) in sig.iter_mut().zip(v.chunks_exact(2)) {
        let (h, l) = (HEX_VALUE[usize::from(pair[0])], HEX_VALUE[usize::from(pair[1])]);
        invalid |= h | l;
        *out = (h << 4) | (l & 0x0f);
    }
    if invalid > 0x0f {
        return Err(SignError::malformed(header::SIGNATURE, "not 64 hex digits"));
    }
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
    fn prepared_key_verifies_like_the_secret() {
        let secret = b"kg1-test-secret";
        let sts = "KG1-HMAC-SHA256\nGET\n/\n\nak\n1700000000\nabcdefghijklmnop\n\n\ne3b0";
        let mut h = HeaderMap::new();
        h.insert(header::KEY, http::HeaderValue::from_static("ak"));
        h.insert(header::TIMESTAMP, http::HeaderValue::from_static("1700000000"));
        h.insert(header::NONCE, http::HeaderValue::from_static("abcdefghijklmnop"));
        let good = sign_string(secret, sts);
        h.insert(header::SIGNATURE, http::HeaderValue::from_str(&good).expect("hex"));
        let auth = Kg1Auth::from_headers(&h).expect("valid headers");
        let key = Kg1Key::new(secret);
        assert_eq!(verify_with(&key, sts, &auth), Ok(()));
        assert_eq!(verify(secret, sts, &auth), Ok(()));
        assert_eq!(verify_with(&Kg1Key::new(b"other"), sts, &auth), Err(SignError::SignatureMismatch));
        assert_eq!(verify_with(&key, &format!("{sts}0"), &auth), Err(SignError::SignatureMismatch));
        assert_eq!(format!("{key:?}"), "Kg1Key(<redacted>)");
    }

    #[test]
    fn signature_hex_is_checked_digit_by_digit() {
        let lower: String = (0..32u8).map(|i| format!("{:02x}", i * 7)).collect();
        let want: Vec<u8> = (0..32u8).map(|i| i * 7).collect();
        assert_eq!(parse_signature(lower.as_bytes()).expect("lower").to_vec(), want);
        assert_eq!(parse_signature(lower.to_uppercase().as_bytes()).expect("upper").to_vec(), want);
        for i in 0..64 {
            for bad in [b'g', b'G', b' ', b'/', b':', b'@', b'`', 0x00, 0xff] {
                let mut v = lower.clone().into_bytes();
                v[i] = bad;
                assert!(parse_signature(&v).is_err(), "byte {bad:#x} at {i}");
            }
        }
        assert!(parse_signature(&lower.as_bytes()[..63]).is_err());
        assert!(parse_signature(format!("{lower}0").as_bytes()).is_err());
    }

    #[test]
    fn auth_header_indexes_follow_all() {
        for (i, name) in header::ALL.iter().enumerate() {
            assert_eq!(name.strip_prefix("x-kg-").and_then(auth_header_index), Some(i), "{name}");
        }
        assert_eq!(auth_header_index("token"), None);
    }

    #[test]
    fn duplicates_are_reported_in_check_order() {
        let mut h = HeaderMap::new();
        for name in [header::NONCE, header::KEY] {
            h.append(name, http::HeaderValue::from_static("abcdefghijklmnop"));
            h.append(name, http::HeaderValue::from_static("abcdefghijklmnop"));
        }
        assert_eq!(Kg1Auth::from_headers(&h).unwrap_err(), SignError::DuplicateField(header::KEY.into()));
    }

    #[test]
    fn canonical_value_trims_and_collapses() {
        let mut s = Vec::new();
        push_canonical_value(&mut s, "x", b" \t a \t\t b  c \t").expect("ascii");
        assert_eq!(s, b"a b c");
        let mut s = Vec::new();
        push_canonical_value(&mut s, "x", b"  \t ").expect("ascii");
        assert_eq!(s, b"");
        let mut s = Vec::new();
        push_canonical_value(&mut s, "x", b"text/plain").expect("ascii");
        assert_eq!(s, b"text/plain");
        let mut s = Vec::new();
        assert!(push_canonical_value(&mut s, "x", b"caf\xc3\xa9").is_err());
        assert!(push_canonical_value(&mut s, "x", b"a\x7fb").is_err());
    }
}
