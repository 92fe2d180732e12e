// Owns the legacy-sorted family: name+value concatenation of sorted params plus the secret, hashed.
// Must not check freshness or replay, and must not weaken KG1: this scheme is opt-in per key.

use std::fmt;
use std::str::FromStr;

use http::HeaderMap;
use md5::Digest as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::SignError;
use crate::kg1::is_nonce_char;
use crate::path::hex_val;

/// Longest accepted nonce for every legacy key.
pub const NONCE_MAX_LEN: usize = 64;
/// Most digits accepted in the timestamp field.
pub const TIMESTAMP_MAX_DIGITS: usize = 16;
/// Longest accepted access key, in bytes.
pub const MAX_ACCESS_KEY_LEN: usize = 128;

/// Hash applied to the concatenated string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// MD5 (the family's usual default; weak, kept for compatibility).
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl Digest {
    /// Digest length in bytes (the signature has twice as many hex digits).
    pub fn output_len(self) -> usize {
        match self {
            Digest::Md5 => 16,
            Digest::Sha1 => 20,
            Digest::Sha256 => 32,
        }
    }
}

/// Case of the hex signature; verification accepts only the configured one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexCase {
    /// `0-9A-F`.
    Upper,
    /// `0-9a-f`.
    Lower,
}

/// Where the four auth fields travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldLocation {
    /// In the query or form body, with the business params.
    Params,
    /// In request headers named like the fields (case-insensitive); still signed as params.
    Headers,
}

/// Unit of the timestamp field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    /// Unix seconds.
    Seconds,
    /// Unix milliseconds.
    Millis,
}

/// A setting name that none of the variants spells.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {setting} {value:?}, expected one of: {expected}")]
pub struct UnknownSetting {
    /// Which setting was being parsed.
    pub setting: &'static str,
    /// What was given.
    pub value: String,
    /// The accepted spellings.
    pub expected: &'static str,
}

macro_rules! named_enum {
    ($ty:ident, $setting:literal, $($variant:ident => $name:literal),+) => {
        impl $ty {
            /// The configuration spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = UnknownSetting;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s.eq_ignore_ascii_case($name) { return Ok($ty::$variant); })+
                Err(UnknownSetting {
                    setting: $setting,
                    value: s.to_owned(),
                    expected: concat!($($name, " "),+).trim_ascii_end(),
                })
            }
        }
    };
}

named_enum!(Digest, "digest", Md5 => "md5", Sha1 => "sha1", Sha256 => "sha256");
named_enum!(HexCase, "hex case", Upper => "upper", Lower => "lower");
named_enum!(FieldLocation, "field location", Params => "params", Headers => "headers");
named_enum!(TimestampUnit, "timestamp unit", Seconds => "s", Millis => "ms");

/// Per-key settings of a legacy-sorted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyConfig {
    /// Hash of the concatenated string.
    pub digest: Digest,
    /// Case of the hex signature.
    pub hex_case: HexCase,
    /// Where the auth fields travel.
    pub location: FieldLocation,
    /// Name of the access key field (default `appId`).
    pub access_key_field: String,
    /// Name of the timestamp field (default `timeStamp`).
    pub timestamp_field: String,
    /// Name of the nonce field (default `nonce`).
    pub nonce_field: String,
    /// Name of the signature field (default `sign`); never part of the signed string.
    pub sign_field: String,
    /// Unit of the timestamp field.
    pub timestamp_unit: TimestampUnit,
    /// Shortest accepted nonce (default 8; the longest is always 64).
    pub nonce_min_len: usize,
}

impl Default for LegacyConfig {
    fn default() -> Self {
        LegacyConfig {
            digest: Digest::Md5,
            hex_case: HexCase::Upper,
            location: FieldLocation::Params,
            access_key_field: "appId".to_owned(),
            timestamp_field: "timeStamp".to_owned(),
            nonce_field: "nonce".to_owned(),
            sign_field: "sign".to_owned(),
            timestamp_unit: TimestampUnit::Millis,
            nonce_min_len: 8,
        }
    }
}

impl LegacyConfig {
    /// Checks the settings themselves (for the control plane, before a key is saved):
    /// four distinct non-empty field names, valid as header names when they travel in
    /// headers, and `1 <= nonce_min_len <= 64`.
    pub fn validate(&self) -> Result<(), SignError> {
        let names = self.field_names();
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(SignError::malformed("legacy_config", "empty field name"));
            }
            if names[..i].contains(name) {
                return Err(SignError::malformed("legacy_config", "field names not distinct"));
            }
            if self.location == FieldLocation::Headers
                && http::HeaderName::from_bytes(name.as_bytes()).is_err()
            {
                return Err(SignError::malformed("legacy_config", "field name is not a valid header name"));
            }
        }
        if self.nonce_min_len == 0 || self.nonce_min_len > NONCE_MAX_LEN {
            return Err(SignError::malformed("legacy_config", "nonce_min_len not in 1..=64"));
        }
        Ok(())
    }

    fn field_names(&self) -> [&str; 4] {
        [&self.access_key_field, &self.timestamp_field, &self.nonce_field, &self.sign_field]
    }
}

/// The legacy auth fields of one request plus every param that is signed.
#[derive(Clone)]
pub struct LegacyAuth {
    /// Value of the access key field.
    pub access_key: String,
    /// Value of the timestamp field, in the configured unit.
    pub timestamp: i64,
    /// Value of the nonce field.
    pub nonce: String,
    /// Signed params: sorted by name, sign field and empty values removed.
    pub params: Vec<(String, String)>,
    // Private so that it only leaves this module through the constant-time `verify`.
    signature: String,
}

impl fmt::Debug for LegacyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyAuth")
            .field("access_key", &self.access_key)
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .field("params", &self.params)
            .field("signature", &"<redacted>")
            .finish()
    }
}

impl LegacyAuth {
    /// The timestamp in Unix seconds, given the unit it was sent in (floored).
    pub fn timestamp_secs(&self, unit: TimestampUnit) -> i64 {
        match unit {
            TimestampUnit::Seconds => self.timestamp,
            TimestampUnit::Millis => self.timestamp.div_euclid(1000),
        }
    }

    /// First 8 characters of the received signature, for audit correlation.
    pub fn signature_prefix(&self) -> String {
        self.signature.chars().take(8).collect()
    }
}

/// Collects and checks the params of a legacy-sorted request.
///
/// Params are the query pairs, plus the `application/x-www-form-urlencoded` pairs of
/// `form_body` when given, plus (when `cfg.location` is `Headers`) the four auth fields
/// read from request headers with those names (case-insensitive, values taken verbatim).
/// Query and body use form decoding: `+` is a space, `%XX` is decoded, the result must be
/// UTF-8.
///
/// Errors: [`SignError::InvalidPercentEncoding`] (bad `%` escape or non-UTF-8);
/// [`SignError::DuplicateField`] for a name occurring twice anywhere (the upstream could
/// read the other one); [`SignError::MissingAuth`] when neither the access key nor the sign
/// field is present; [`SignError::MissingParam`] for one missing of the four (an empty value
/// counts as missing); [`SignError::Malformed`] for an access key that is longer than 128
/// bytes or not visible ASCII, a timestamp that is not 1..=16 digits, a nonce that is not
/// `nonce_min_len..=64` chars of `[A-Za-z0-9_-]`, or a signature that is not hex of the
/// digest's length (either case here; `verify` enforces the configured case).
pub fn extract(
    cfg: &LegacyConfig,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    form_body: Option<&[u8]>,
) -> Result<LegacyAuth, SignError> {
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(q) = raw_query {
        parse_form(q.as_bytes(), &mut params)?;
    }
    if let Some(body) = form_body {
        parse_form(body, &mut params)?;
    }
    if cfg.location == FieldLocation::Headers {
        for name in cfg.field_names() {
            let mut values = headers.get_all(name.to_ascii_lowercase().as_str()).iter();
            if let Some(v) = values.next() {
                if values.next().is_some() {
                    return Err(SignError::DuplicateField(name.to_owned()));
                }
                let v = v
                    .to_str()
                    .ok()
                    .filter(|s| !s.bytes().any(|b| b.is_ascii_control()))
                    .ok_or_else(|| SignError::malformed(name, "header value is not visible ASCII"))?;
                params.push((name.to_owned(), v.to_owned()));
            }
        }
    }
    // Stable sort keeps same-name pairs adjacent, so duplicates show up as neighbours.
    params.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if let Some(w) = params.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(SignError::DuplicateField(w[0].0.clone()));
    }
    let field = |name: &str| -> Option<&str> {
        params
            .binary_search_by(|p| p.0.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| params[i].1.as_str())
            .filter(|v| !v.is_empty())
    };
    let access_key = field(&cfg.access_key_field);
    let signature = field(&cfg.sign_field);
    if access_key.is_none() && signature.is_none() {
        return Err(SignError::MissingAuth);
    }
    let missing = |name: &str| SignError::MissingParam(name.to_owned());
    let access_key = access_key.ok_or_else(|| missing(&cfg.access_key_field))?;
    let timestamp = field(&cfg.timestamp_field).ok_or_else(|| missing(&cfg.timestamp_field))?;
    let nonce = field(&cfg.nonce_field).ok_or_else(|| missing(&cfg.nonce_field))?;
    let signature = signature.ok_or_else(|| missing(&cfg.sign_field))?;

    if access_key.len() > MAX_ACCESS_KEY_LEN {
        return Err(SignError::malformed(&cfg.access_key_field, "longer than 128 bytes"));
    }
    if !access_key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(SignError::malformed(&cfg.access_key_field, "not visible ASCII"));
    }
    if timestamp.len() > TIMESTAMP_MAX_DIGITS || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignError::malformed(&cfg.timestamp_field, "not 1 to 16 digits"));
    }
    let ts = timestamp.bytes().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    if nonce.len() < cfg.nonce_min_len || nonce.len() > NONCE_MAX_LEN {
        return Err(SignError::malformed(&cfg.nonce_field, "length out of range"));
    }
    if !nonce.bytes().all(is_nonce_char) {
        return Err(SignError::malformed(&cfg.nonce_field, "character outside [A-Za-z0-9_-]"));
    }
    if signature.len() != cfg.digest.output_len() * 2 || !signature.bytes().all(|b| hex_val(b).is_some()) {
        return Err(SignError::malformed(&cfg.sign_field, "not hex of the digest length"));
    }

    let access_key = access_key.to_owned();
    let nonce = nonce.to_owned();
    let signature = signature.to_owned();
    params.retain(|(n, v)| !v.is_empty() && *n != cfg.sign_field);
    Ok(LegacyAuth { access_key, timestamp: ts, nonce, params, signature })
}

/// `name1value1name2value2…secret`: params sorted by name (then value) bytewise, empty
/// values left out. The caller leaves the sign field out (this function has no config).
///
/// For display and debugging only: it holds the secret, hence `Zeroizing`. A secret that is
/// not UTF-8 is shown lossily here; [`sign`] always hashes the exact bytes.
pub fn string_to_sign(params: &[(String, String)], secret: &[u8]) -> Zeroizing<String> {
    let sorted = sorted_signed(params, None);
    let len = sorted.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>() + secret.len();
    let mut out = Zeroizing::new(String::with_capacity(len));
    for (n, v) in sorted {
        out.push_str(n);
        out.push_str(v);
    }
    out.push_str(&String::from_utf8_lossy(secret));
    out
}

/// The signature of `params` (sign field and empty values are skipped): the configured
/// digest of [`string_to_sign`], hex in the configured case.
pub fn sign(cfg: &LegacyConfig, params: &[(String, String)], secret: &[u8]) -> String {
    let mut buf = [0u8; 64];
    let n = signature_hex(cfg, params, secret, &mut buf);
    buf[..n].iter().map(|&b| char::from(b)).collect()
}

/// Recomputes the signature of `auth.params` and compares it with the received one in
/// constant time. Only the configured hex case is accepted.
///
/// Errors: [`SignError::SignatureMismatch`] on any mismatch.
pub fn verify(cfg: &LegacyConfig, auth: &LegacyAuth, secret: &[u8]) -> Result<(), SignError> {
    let mut buf = Zeroizing::new([0u8; 64]);
    let n = signature_hex(cfg, &auth.params, secret, &mut buf);
    if bool::from(buf[..n].ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(SignError::SignatureMismatch)
    }
}

/// Everything a client sends for `params`: the params, the three auth fields and the sign
/// field last. For the CLI and outbound recipes; place the pairs in the query/body, or the
/// auth fields in headers when `cfg.location` is `Headers`.
///
/// Errors: [`SignError::DuplicateField`] when `params` already holds an auth field name.
pub fn sign_params(
    cfg: &LegacyConfig,
    access_key: &str,
    timestamp: i64,
    nonce: &str,
    params: &[(String, String)],
    secret: &[u8],
) -> Result<Vec<(String, String)>, SignError> {
    if let Some((n, _)) = params.iter().find(|(n, _)| cfg.field_names().contains(&n.as_str())) {
        return Err(SignError::DuplicateField(n.clone()));
    }
    let mut all = params.to_vec();
    all.push((cfg.access_key_field.clone(), access_key.to_owned()));
    all.push((cfg.timestamp_field.clone(), timestamp.to_string()));
    all.push((cfg.nonce_field.clone(), nonce.to_owned()));
    let signature = sign(cfg, &all, secret);
    all.push((cfg.sign_field.clone(), signature));
    Ok(all)
}

/// `application/x-www-form-urlencoded` serialisation (space as `+`), for building a query
/// or body from [`sign_params`] output.
pub fn form_encode(params: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (n, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        form_encode_into(&mut out, n);
        out.push('=');
        form_encode_into(&mut out, v);
    }
    out
}

fn form_encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

fn sorted_signed<'a>(params: &'a [(String, String)], sign_field: Option<&str>) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = params
        .iter()
        .filter(|(n, val)| !val.is_empty() && Some(n.as_str()) != sign_field)
        .map(|(n, val)| (n.as_str(), val.as_str()))
        .collect();
    v.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(b.1)));
    v
}

/// Writes the hex signature into `out` and returns its length.
fn signature_hex(
    cfg: &LegacyConfig,
    params: &[(String, String)],
    secret: &[u8],
    out: &mut [u8; 64],
) -> usize {
    let sorted = sorted_signed(params, Some(&cfg.sign_field));
    let mut raw = [0u8; 32];
    let n = cfg.digest.output_len();
    // Streams the pieces into the hash so the secret is never copied into a buffer.
    match cfg.digest {
        Digest::Md5 => {
            let mut h = md5::Md5::new();
            for (k, v) in &sorted {
                h.update(k.as_bytes());
                h.update(v.as_bytes());
            }
            h.update(secret);
            raw[..n].copy_from_slice(&h.finalize());
        }
        Digest::Sha1 => {
            let mut h = sha1::Sha1::new();
            for (k, v) in &sorted {
                h.update(k.as_bytes());
                h.update(v.as_bytes());
            }
            h.update(secret);
            raw[..n].copy_from_slice(&h.finalize());
        }
        Digest::Sha256 => {
            let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            for (k, v) in &sorted {
                h.update(k.as_bytes());
                h.update(v.as_bytes());
            }
            h.update(secret);
            raw[..n].copy_from_slice(h.finish().as_ref());
        }
    }
    let table: &[u8; 16] = match cfg.hex_case {
        HexCase::Upper => b"0123456789ABCDEF",
        HexCase::Lower => b"0123456789abcdef",
    };
    for (i, b) in raw[..n].iter().enumerate() {
        out[2 * i] = table[usize::from(b >> 4)];
        out[2 * i + 1] = table[usize::from(b & 0x0f)];
    }
    2 * n
}

fn parse_form(input: &[u8], params: &mut Vec<(String, String)>) -> Result<(), SignError> {
    for piece in input.split(|&b| b == b'&') {
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &[][..]),
        };
        params.push((form_decode(name)?, form_decode(value)?));
    }
    Ok(())
}

fn form_decode(input: &[u8]) -> Result<String, SignError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let b = match (input.get(i + 1), input.get(i + 2)) {
                    (Some(&h), Some(&l)) => match (hex_val(h), hex_val(l)) {
                        (Some(h), Some(l)) => (h << 4) | l,
                        _ => return Err(SignError::InvalidPercentEncoding),
                    },
                    _ => return Err(SignError::InvalidPercentEncoding),
                };
                out.push(b);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| SignError::InvalidPercentEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_strings() {
        for d in [Digest::Md5, Digest::Sha1, Digest::Sha256] {
            assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        }
        for c in [HexCase::Upper, HexCase::Lower] {
            assert_eq!(c.to_string().parse::<HexCase>(), Ok(c));
        }
        for l in [FieldLocation::Params, FieldLocation::Headers] {
            assert_eq!(l.to_string().parse::<FieldLocation>(), Ok(l));
        }
        for u in [TimestampUnit::Seconds, TimestampUnit::Millis] {
            assert_eq!(u.to_string().parse::<TimestampUnit>(), Ok(u));
        }
        assert_eq!("SHA256".parse::<Digest>(), Ok(Digest::Sha256));
        let err = "sha512".parse::<Digest>().expect_err("unknown");
        assert_eq!(err.to_string(), "unknown digest \"sha512\", expected one of: md5 sha1 sha256");
        assert!("seconds".parse::<TimestampUnit>().is_err());
    }

    #[test]
    fn config_validation() {
        assert_eq!(LegacyConfig::default().validate(), Ok(()));
        let mut c = LegacyConfig { nonce_field: "appId".into(), ..LegacyConfig::default() };
        assert!(c.validate().is_err());
        c.nonce_field = String::new();
        assert!(c.validate().is_err());
        let c = LegacyConfig {
            location: FieldLocation::Headers,
            sign_field: "si gn".into(),
            ..LegacyConfig::default()
        };
        assert!(c.validate().is_err());
        let c = LegacyConfig { nonce_min_len: 0, ..LegacyConfig::default() };
        assert!(c.validate().is_err());
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode(b"a+b%2B%20c").as_deref(), Ok("a b+ c"));
        assert_eq!(form_decode(b"%E4%BD%A0").as_deref(), Ok("\u{4f60}"));
        assert_eq!(form_decode(b"%ff"), Err(SignError::InvalidPercentEncoding));
        assert_eq!(form_decode(b"%4"), Err(SignError::InvalidPercentEncoding));
        assert_eq!(form_encode(&[("a b".into(), "x+y/é".into())]), "a+b=x%2By%2F%C3%A9");
    }

    #[test]
    fn timestamp_secs_floors_millis() {
        let auth = LegacyAuth {
            access_key: "a".into(),
            timestamp: 1_612_691_221_999,
            nonce: "n".into(),
            params: vec![],
            signature: "S".into(),
        };
        assert_eq!(auth.timestamp_secs(TimestampUnit::Millis), 1_612_691_221);
        assert_eq!(auth.timestamp_secs(TimestampUnit::Seconds), 1_612_691_221_999);
        assert!(!format!("{auth:?}").contains("\"S\""));
    }
}
