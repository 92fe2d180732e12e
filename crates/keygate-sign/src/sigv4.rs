// Owns AWS Signature Version 4 signing (the client side keygate's outbound gateway uses to call
// AWS services): canonical request, string to sign, derived signing key, Authorization header.
// Byte-for-byte with botocore's SigV4Auth (checked by tests/sigv4_botocore.rs). Pure: the
// caller passes the time.

use std::sync::Mutex;

use aws_lc_rs::{digest, hmac};
use zeroize::Zeroizing;

/// What is signed.
#[derive(Debug, Clone, Copy)]
pub struct SigV4Request<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded).
    pub raw_path: &'a str,
    /// Decoded query pairs.
    pub query: &'a [(String, String)],
    /// Lowercase names; must include `host`. Every header given is signed.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Credentials and scope.
#[derive(Clone, Copy)]
pub struct SigV4Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub service: &'a str,
}

impl std::fmt::Debug for SigV4Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// RFC 3986 encoding as AWS specifies it (unreserved kept, everything else `%XX` uppercase).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDD'T'HHMMSS'Z'` for a Unix time.
pub fn amz_date(unix: i64) -> String {
    let c = crate::civil::Civil::from_unix(unix);
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// The canonical URI: S3 uses the path as sent; every other service encodes it once more.
pub fn canonical_uri(raw_path: &str, service: &str) -> String {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    if service == "s3" {
        path.to_string()
    } else {
        uri_encode(path, true)
    }
}

/// Sorted, encoded `name=value` pairs joined by `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(n, v)| (uri_encode(n, false), uri_encode(v, false))).collect();
    pairs.sort();
    pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
}

/// The canonical request and the signed-headers list.
pub fn canonical_request(req: &SigV4Request<'_>, service: &str, payload_hash: &str) -> (String, String) {
    let mut headers: Vec<(String, String)> = Vec::new();
    for (n, v) in req.headers {
        let n = n.to_ascii_lowercase();
        let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
        match headers.iter_mut().find(|(h, _)| *h == n) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            None => headers.push((n, v)),
        }
    }
    headers.sort();
    let signed = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    let mut canon =
        format!("{}\n{}\n{}\n", req.method, canonical_uri(req.raw_path, service), canonical_query(req.query));
    for (n, v) in &headers {
        canon.push_str(n);
        canon.push(':');
        canon.push_str(v);
        canon.push('\n');
    }
    canon.push('\n');
    canon.push_str(&signed);
    canon.push('\n');
    canon.push_str(payload_hash);
    (canon, signed)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec())
}

/// Headers to add: `x-amz-date`, optionally `x-amz-content-sha256` and `x-amz-security-token`,
/// and `authorization`. `req.headers` must already hold `host` (and anything else to sign); the
/// added `x-amz-*` headers are signed too.
pub fn sign(
    req: &SigV4Request<'_>,
    creds: &SigV4Credentials<'_>,
    unix_time: i64,
    content_sha256_header: bool,
) -> Vec<(String, String)> {
    let date_time = amz_date(unix_time);
    let date = &date_time[..8];
    let payload_hash = hex_sha256(req.body);
    let mut added = vec![("x-amz-date".to_string(), date_time.clone())];
    if content_sha256_header {
        added.push(("x-amz-content-sha256".to_string(), payload_hash.clone()));
    }
    if let Some(t) = creds.session_token {
        added.push(("x-amz-security-token".to_string(), t.to_string()));
    }
    let mut all: Vec<(String, String)> = req.headers.to_vec();
    all.extend(added.iter().cloned());
    let full = SigV4Request { headers: &all, ..*req };
    let (canon, signed) = canonical_request(&full, creds.service, &payload_hash);
    let scope = format!("{date}/{}/{}/aws4_request", creds.region, creds.service);
    let sts = format!("AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}", hex_sha256(canon.as_bytes()));
    let k_secret = Zeroizing::new(format!("AWS4{}", creds.secret_access_key));
    let k_date = hmac_sha256(k_secret.as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, creds.region.as_bytes());
    let k_service = hmac_sha256(&k_region, creds.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex::encode(hmac_sha256(&k_signing, sts.as_bytes()).as_slice());
    added.push((
        "authorization".to_string(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    added
}

/// The fields of an `Authorization: AWS4-HMAC-SHA256 …` header, parsed before any secret is
/// needed (the verifier looks the key up by `access_key_id`).
#[derive(Clone, PartialEq, Eq)]
pub struct SigV4Auth {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lowercase, sorted, `;`-joined as received.
    pub signed_headers: String,
    /// 64 lowercase hex digits; unique per request, so also the replay nonce.
    pub signature: String,
}

impl std::fmt::Debug for SigV4Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Auth")
            .field("access_key_id", &self.access_key_id)
            .field("scope", &format_args!("{}/{}/{}", self.date, self.region, self.service))
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

fn malformed(field: &str, reason: &'static str) -> crate::SignError {
    crate::SignError::Malformed { field: field.to_string(), reason }
}

/// Parses the Authorization header value strictly: the one algorithm, each of `Credential`,
/// `SignedHeaders`, `Signature` exactly once, a five-part scope ending in `aws4_request`, signed
/// headers lowercase, sorted, unique and including `host`, a 64-hex-digit signature.
pub fn parse_authorization(value: &str) -> Result<SigV4Auth, crate::SignError> {
    const F: &str = "authorization";
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| malformed(F, "algorithm must be AWS4-HMAC-SHA256"))?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let (k, v) = part.split_once('=').ok_or_else(|| malformed(F, "parameters must be name=value"))?;
        let slot = match k {
            "Credential" => &mut cred,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut sig,
            _ => return Err(malformed(F, "unknown parameter")),
        };
        if slot.replace(v).is_some() {
            return Err(crate::SignError::DuplicateField(k.to_string()));
        }
    }
    let cred = cred.ok_or(crate::SignError::MissingField("Credential"))?;
    let signed = signed.ok_or(crate::SignError::MissingField("SignedHeaders"))?;
    let sig = sig.ok_or(crate::SignError::MissingField("Signature"))?;
    let parts: Vec<&str> = cred.split('/').collect();
    if parts.len() != 5 || parts[4] != "aws4_request" {
        return Err(malformed("Credential", "must be AK/date/region/service/aws4_request"));
    }
    if parts[0].is_empty() || parts[0].len() > 128 || !parts[0].bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(malformed("Credential", "access key id must be 1-128 alphanumerics"));
    }
    if parts[1].len() != 8 || !parts[1].bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("Credential", "date must be YYYYMMDD"));
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !token(parts[2]) || !token(parts[3]) {
        return Err(malformed("Credential", "region and service must be [a-z0-9-]"));
    }
    let names: Vec<&str> = signed.split(';').collect();
    let well_formed = names.iter().all(|n| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }) && names.windows(2).all(|w| w[0] < w[1]);
    if !well_formed || !names.contains(&"host") {
        return Err(malformed("SignedHeaders", "must be lowercase, sorted, unique and include host"));
    }
    if sig.len() != 64 || !sig.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(malformed("Signature", "must be 64 lowercase hex digits"));
    }
    Ok(SigV4Auth {
        access_key_id: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
        signed_headers: signed.to_string(),
        signature: sig.to_string(),
    })
}

/// `YYYYMMDD'T'HHMMSS'Z'` → Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = days * 86_400 + hh * 3600 + mm * 60 + ss;
    (amz_date(t) == s).then_some(t)
}

/// A raw query as AWS signers send it (`%XX`-encoded, `+` literal) → decoded pairs.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, crate::SignError> {
    let decode = |s: &str| -> Result<String, crate::SignError> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hi = b.get(i + 1).and_then(|c| (*c as char).to_digit(16));
                let lo = b.get(i + 2).and_then(|c| (*c as char).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(crate::SignError::InvalidPercentEncoding),
                }
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).map_err(|_| crate::SignError::InvalidPercentEncoding)
    };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(n)?, decode(v)?))
        })
        .collect()
}

/// What the verifier is configured to accept for a key.
#[derive(Debug, Clone, Copy)]
pub struct SigV4Policy<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// Accept `x-amz-content-sha256: UNSIGNED-PAYLOAD` (the body is then not covered).
    pub allow_unsigned_payload: bool,
}

/// A received request as the verifier needs it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub method: &'a str,
    /// The path as received (percent-encoded).
    pub raw_path: &'a str,
    /// Decoded query pairs ([`parse_query`]).
    pub query: &'a [(String, String)],
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// Verifies a request signed by an AWS SigV4 signer. `headers` are the request's headers
/// (names lowercase); returns the request time (Unix seconds, from `x-amz-date`) for the
/// caller's window check. Errors: scope mismatch, missing/mismatched payload hash, missing
/// signed header, `SignatureMismatch` (constant-time comparison).
pub fn verify(
    auth: &SigV4Auth,
    req: &Received<'_>,
    secret_access_key: &[u8],
    policy: &SigV4Policy<'_>,
) -> Result<i64, crate::SignError> {
    let amz = amz_date_header(req)?;
    let payload_hash = header_payload_hash(req, policy)?;
    check(auth, amz, req, req.query, &payload_hash, &SigningKey::Derive(secret_access_key), policy)
}

/// [`verify`] with the secret's derived signing keys reused across requests (see
/// [`SigV4Secret`]); same checks, same result.
pub fn verify_with(
    auth: &SigV4Auth,
    req: &Received<'_>,
    secret: &SigV4Secret,
    policy: &SigV4Policy<'_>,
) -> Result<i64, crate::SignError> {
    let amz = amz_date_header(req)?;
    let payload_hash = header_payload_hash(req, policy)?;
    check(auth, amz, req, req.query, &payload_hash, &SigningKey::Cached(secret), policy)
}

fn amz_date_header<'a>(req: &Received<'a>) -> Result<&'a str, crate::SignError> {
    req.headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or(crate::SignError::MissingField("x-amz-date"))
}

/// The payload hash of the header form: the body's SHA-256, which `x-amz-content-sha256` (if
/// sent) must match, or `UNSIGNED-PAYLOAD` where the policy allows it.
fn header_payload_hash(req: &Received<'_>, policy: &SigV4Policy<'_>) -> Result<String, crate::SignError> {
    use subtle::ConstantTimeEq;
    Ok(match req.headers.get("x-amz-content-sha256").map(|v| v.to_str()) {
        Some(Ok("UNSIGNED-PAYLOAD")) if policy.allow_unsigned_payload => "UNSIGNED-PAYLOAD".to_string(),
        Some(Ok("UNSIGNED-PAYLOAD")) => return Err(crate::SignError::UnsignedPayload),
        Some(Ok(claimed)) => {
            let actual = hex_sha256(req.body);
            if !bool::from(claimed.as_bytes().ct_eq(actual.as_bytes())) {
                return Err(crate::SignError::PayloadHashMismatch);
            }
            actual
        }
        Some(Err(_)) => return Err(malformed("x-amz-content-sha256", "not text")),
        None => hex_sha256(req.body),
    })
}

/// A secret access key for verification, with its derived signing keys kept between requests.
///
/// AWS signs with a key derived from the secret, the date, the region and the service by four
/// chained HMACs (about a quarter of a 1 KiB verify); it is the same for every request of a
/// day, so the last two derived keys (requests near midnight carry either date) are kept, as
/// prepared HMAC keys that aws-lc wipes on drop. One per secret: it holds its own copy of the
/// secret (zeroized on drop), so a cached key can never be used with another secret.
pub struct SigV4Secret {
    secret: Zeroizing<Vec<u8>>,
    /// Most recently derived first.
    derived: Mutex<[Option<Derived>; 2]>,
}

struct Derived {
    date: String,
    region: String,
    service: String,
    key: hmac::Key,
}

impl SigV4Secret {
    /// Wraps a secret access key; nothing is derived until the first request.
    pub fn new(secret_access_key: &[u8]) -> Self {
        SigV4Secret { secret: Zeroizing::new(secret_access_key.to_vec()), derived: Mutex::new([None, None]) }
    }

    fn signing_key(&self, date: &str, region: &str, service: &str) -> hmac::Key {
        // A poisoned lock only means a panic elsewhere mid-update of plain data: keep using it.
        let mut slots = self.derived.lock().unwrap_or_else(|e| e.into_inner());
        let hit =
            slots.iter().flatten().find(|d| d.date == date && d.region == region && d.service == service);
        if let Some(d) = hit {
            return d.key.clone();
        }
        let key = derive_signing_key(&self.secret, date, region, service);
        slots.rotate_right(1);
        slots[0] = Some(Derived {
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            key: key.clone(),
        });
        key
    }
}

impl std::fmt::Debug for SigV4Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigV4Secret(<redacted>)")
    }
}

/// Where [`check`] gets the signing key from.
enum SigningKey<'a> {
    /// Four HMACs from the secret, for this request only.
    Derive(&'a [u8]),
    Cached(&'a SigV4Secret),
}

/// The final signing key: `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
/// "aws4_request")`, prepared for HMAC-SHA256.
fn derive_signing_key(secret_access_key: &[u8], date: &str, region: &str, service: &str) -> hmac::Key {
    let mut k_secret = Zeroizing::new(b"AWS4".to_vec());
    k_secret.extend_from_slice(secret_access_key);
    let k_date = hmac_sha256(&k_secret, date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, &k_signing)
}

/// The query form (presigned URL) of a request: the auth fields, taken from the query.
#[derive(Debug, Clone)]
pub struct Presigned {
    pub auth: SigV4Auth,
    /// `X-Amz-Date` as sent.
    pub amz_date: String,
    /// Unix seconds of `X-Amz-Date`.
    pub time: i64,
    /// `X-Amz-Expires`: seconds the URL is valid after `time` (1 to 604800).
    pub expires: i64,
    /// The query without `X-Amz-Signature` (what was signed).
    pub signed_query: Vec<(String, String)>,
}

/// Reads the presigned form from decoded query pairs; `None` when the query has no
/// `X-Amz-Algorithm`. Each auth parameter must appear exactly once.
pub fn parse_presigned(query: &[(String, String)]) -> Result<Option<Presigned>, crate::SignError> {
    let one = |name: &'static str| -> Result<Option<&str>, crate::SignError> {
        let mut found = query.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() {
            return Err(crate::SignError::DuplicateField(name.to_string()));
        }
        Ok(first)
    };
    let Some(alg) = one("X-Amz-Algorithm")? else { return Ok(None) };
    if alg != "AWS4-HMAC-SHA256" {
        return Err(malformed("X-Amz-Algorithm", "must be AWS4-HMAC-SHA256"));
    }
    let field = |name: &'static str| one(name)?.ok_or(crate::SignError::MissingField(name));
    let header = format!(
        "AWS4-HMAC-SHA256 Credential={}, SignedHeaders={}, Signature={}",
        field("X-Amz-Credential")?,
        field("X-Amz-SignedHeaders")?,
        field("X-Amz-Signature")?
    );
    let auth = parse_authorization(&header)?;
    let amz_date = field("X-Amz-Date")?.to_string();
    let time =
        parse_amz_date(&amz_date).ok_or_else(|| malformed("X-Amz-Date", "must be YYYYMMDDTHHMMSSZ"))?;
    let expires: i64 = field("X-Amz-Expires")?
        .parse()
        .ok()
        .filter(|e| (1..=604_800).contains(e))
        .ok_or_else(|| malformed("X-Amz-Expires", "must be 1 to 604800 seconds"))?;
    let signed_query = query.iter().filter(|(n, _)| n != "X-Amz-Signature").cloned().collect();
    Ok(Some(Presigned { auth, amz_date, time, expires, signed_query }))
}

/// Verifies a presigned request. The payload is `UNSIGNED-PAYLOAD` for `s3` (accepted only when
/// the key allows it), the body's SHA-256 for other services — as botocore's query signers do.
pub fn verify_presigned(
    p: &Presigned,
    req: &Received<'_>,
    secret_access_key: &[u8],
    policy: &SigV4Policy<'_>,
) -> Result<i64, crate::SignError> {
    let payload_hash = presigned_payload_hash(p, req, policy)?;
    check(
        &p.auth,
        &p.amz_date,
        req,
        &p.signed_query,
        &payload_hash,
        &SigningKey::Derive(secret_access_key),
        policy,
    )
}

/// [`verify_presigned`] with the secret's derived signing keys reused across requests.
pub fn verify_presigned_with(
    p: &Presigned,
    req: &Received<'_>,
    secret: &SigV4Secret,
    policy: &SigV4Policy<'_>,
) -> Result<i64, crate::SignError> {
    let payload_hash = presigned_payload_hash(p, req, policy)?;
    check(&p.auth, &p.amz_date, req, &p.signed_query, &payload_hash, &SigningKey::Cached(secret), policy)
}

fn presigned_payload_hash(
    p: &Presigned,
    req: &Received<'_>,
    policy: &SigV4Policy<'_>,
) -> Result<String, crate::SignError> {
    if p.auth.service == "s3" {
        if !policy.allow_unsigned_payload {
            return Err(crate::SignError::UnsignedPayload);
        }
        Ok("UNSIGNED-PAYLOAD".to_string())
    } else {
        Ok(hex_sha256(req.body))
    }
}

#[allow(clippy::too_many_arguments)] // the parts of one canonical request, shared by both forms
fn check(
    auth: &SigV4Auth,
    amz: &str,
    req: &Received<'_>,
    query: &[(String, String)],
    payload_hash: &str,
    signing_key: &SigningKey<'_>,
    policy: &SigV4Policy<'_>,
) -> Result<i64, crate::SignError> {
    use subtle::ConstantTimeEq;
    let t = parse_amz_date(amz).ok_or_else(|| malformed("x-amz-date", "must be YYYYMMDDTHHMMSSZ"))?;
    if amz[..8] != auth.date {
        return Err(malformed("Credential", "scope date differs from x-amz-date"));
    }
    if auth.region != policy.region || auth.service != policy.service {
        return Err(crate::SignError::ScopeMismatch);
    }
    let mut signed: Vec<(String, String)> = Vec::new();
    for name in auth.signed_headers.split(';') {
        let values: Vec<&str> = req.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        if values.is_empty() {
            return Err(crate::SignError::SignedHeaderMissing(name.to_string()));
        }
        for v in values {
            signed.push((name.to_string(), v.to_string()));
        }
    }
    let sreq =
        SigV4Request { method: req.method, raw_path: req.raw_path, query, headers: &signed, body: req.body };
    let (canon, _) = canonical_request(&sreq, &auth.service, payload_hash);
    let scope = format!("{}/{}/{}/aws4_request", auth.date, auth.region, auth.service);
    let sts = format!("AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}", hex_sha256(canon.as_bytes()));
    let key = match signing_key {
        SigningKey::Derive(secret) => derive_signing_key(secret, &auth.date, &auth.region, &auth.service),
        SigningKey::Cached(secret) => secret.signing_key(&auth.date, &auth.region, &auth.service),
    };
    let expected = hex::encode(hmac::sign(&key, sts.as_bytes()).as_ref());
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(t)
    } else {
        Err(crate::SignError::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_in_utc() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        // AWS SigV4 test suite, get-vanilla.
        let headers = vec![("host".to_string(), "example.amazonaws.com".to_string())];
        let req = SigV4Request { method: "GET", raw_path: "/", query: &[], headers: &headers, body: b"" };
        let creds = SigV4Credentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: None,
            region: "us-east-1",
            service: "service",
        };
        let out = sign(&req, &creds, 1_440_938_160, false);
        let auth = &out.iter().find(|(n, _)| n == "authorization").unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn authorization_parsing_is_strict() {
        let ok = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let a = parse_authorization(ok).unwrap();
        assert_eq!(
            (a.access_key_id.as_str(), a.region.as_str(), a.service.as_str()),
            ("AKIDEXAMPLE", "us-east-1", "service")
        );
        assert!(!format!("{a:?}").contains("5fa00fa3"), "no signature in Debug");
        for bad in [
            ok.replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA512 "),
            ok.replace(", Signature=", ", Signature=5fa0, Signature="),
            ok.replace("aws4_request", "aws5_request"),
            ok.replace("host;x-amz-date", "x-amz-date;host"),
            ok.replace("host;x-amz-date", "x-amz-date"),
            ok.replace("20150830", "2015083"),
            ok.replace("Signature=5", "Signature=X"),
            ok.replace(", SignedHeaders=host;x-amz-date", ""),
            ok.replace("Credential=", "Cred="),
            ok[..60].to_string(),
        ] {
            assert!(parse_authorization(&bad).is_err(), "{bad}");
        }
        for cut in 0..ok.len() {
            let _ = parse_authorization(&ok[..cut]);
        }
    }

    #[test]
    fn amz_dates_round_trip_and_reject_garbage() {
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(951_782_400));
        for bad in [
            "20150830T123600",
            "2015-08-30T12:36:00Z",
            "20150230T000000Z",
            "20151330T000000Z",
            "20150830T246000Z",
            "",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    fn rq<'a>(
        method: &'a str,
        raw_path: &'a str,
        query: &'a [(String, String)],
        headers: &'a http::HeaderMap,
        body: &'a [u8],
    ) -> Received<'a> {
        Received { method, raw_path, query, headers, body }
    }

    #[test]
    fn get_vanilla_verifies_and_tampering_fails() {
        let auth = parse_authorization("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31").unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("host", "example.amazonaws.com".parse().unwrap());
        h.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let sk = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let policy = SigV4Policy { region: "us-east-1", service: "service", allow_unsigned_payload: false };
        assert_eq!(verify(&auth, &rq("GET", "/", &[], &h, b""), sk, &policy), Ok(1_440_938_160));
        assert_eq!(
            verify(&auth, &rq("POST", "/", &[], &h, b""), sk, &policy),
            Err(crate::SignError::SignatureMismatch)
        );
        assert_eq!(
            verify(&auth, &rq("GET", "/x", &[], &h, b""), sk, &policy),
            Err(crate::SignError::SignatureMismatch)
        );
        assert_eq!(
            verify(&auth, &rq("GET", "/", &[("a".into(), "1".into())], &h, b""), sk, &policy),
            Err(crate::SignError::SignatureMismatch)
        );
        assert_eq!(
            verify(&auth, &rq("GET", "/", &[], &h, b"x"), sk, &policy),
            Err(crate::SignError::SignatureMismatch)
        );
        assert_eq!(
            verify(&auth, &rq("GET", "/", &[], &h, b""), b"other", &policy),
            Err(crate::SignError::SignatureMismatch)
        );
        let other = SigV4Policy { region: "eu-west-1", ..policy };
        assert_eq!(
            verify(&auth, &rq("GET", "/", &[], &h, b""), sk, &other),
            Err(crate::SignError::ScopeMismatch)
        );
        let mut h2 = h.clone();
        h2.insert("x-amz-date", "20150831T123600Z".parse().unwrap());
        assert!(verify(&auth, &rq("GET", "/", &[], &h2, b""), sk, &policy).is_err());
        let mut h3 = h.clone();
        h3.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
        assert_eq!(
            verify(&auth, &rq("GET", "/", &[], &h3, b""), sk, &policy),
            Err(crate::SignError::UnsignedPayload)
        );
        h3.insert("x-amz-content-sha256", hex_sha256(b"other").parse().unwrap());
        assert_eq!(
            verify(&auth, &rq("GET", "/", &[], &h3, b""), sk, &policy),
            Err(crate::SignError::PayloadHashMismatch)
        );
        let mut h4 = h.clone();
        h4.remove("host");
        assert_eq!(
            verify(&auth, &rq("GET", "/", &[], &h4, b""), sk, &policy),
            Err(crate::SignError::SignedHeaderMissing("host".into()))
        );
    }

    #[test]
    fn cached_signing_keys_verify_like_the_secret() {
        let auth = parse_authorization("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31").unwrap();
        let sk = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let policy = SigV4Policy { region: "us-east-1", service: "service", allow_unsigned_payload: false };
        let mut h = http::HeaderMap::new();
        h.insert("host", "example.amazonaws.com".parse().unwrap());
        h.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        // The same request signed a day later, so the second cache slot holds a valid key.
        let creds = SigV4Credentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: std::str::from_utf8(sk).unwrap(),
            session_token: None,
            region: "us-east-1",
            service: "service",
        };
        let signed_headers = vec![("host".to_string(), "example.amazonaws.com".to_string())];
        let req =
            SigV4Request { method: "GET", raw_path: "/", query: &[], headers: &signed_headers, body: b"" };
        let added = sign(&req, &creds, 1_440_938_160 + 86_400, false);
        let mut next_day = h.clone();
        next_day.insert("x-amz-date", "20150831T123600Z".parse().unwrap());
        let next_day_auth =
            parse_authorization(&added.iter().find(|(n, _)| n == "authorization").unwrap().1).unwrap();
        assert_eq!(
            verify(&next_day_auth, &rq("GET", "/", &[], &next_day, b""), sk, &policy),
            Ok(1_441_024_560)
        );
        let cached = SigV4Secret::new(sk);
        let wrong = SigV4Secret::new(b"other");
        // One secret through hits, a second date and back: every answer equals the uncached one.
        for (a, headers, method) in [
            (&auth, &h, "GET"),
            (&auth, &h, "GET"),
            (&auth, &h, "POST"),
            (&next_day_auth, &next_day, "GET"),
            (&auth, &h, "GET"),
            (&next_day_auth, &next_day, "GET"),
        ] {
            let rq = rq(method, "/", &[], headers, b"");
            assert_eq!(verify_with(a, &rq, &cached, &policy), verify(a, &rq, sk, &policy));
            assert_eq!(verify_with(a, &rq, &wrong, &policy), Err(crate::SignError::SignatureMismatch));
        }
        assert_eq!(verify_with(&auth, &rq("GET", "/", &[], &h, b""), &cached, &policy), Ok(1_440_938_160));
        let other = SigV4Policy { region: "eu-west-1", ..policy };
        assert_eq!(
            verify_with(&auth, &rq("GET", "/", &[], &h, b""), &cached, &other),
            Err(crate::SignError::ScopeMismatch)
        );
        assert_eq!(format!("{cached:?}"), "SigV4Secret(<redacted>)");
    }

    #[test]
    fn paths_are_encoded_twice_except_for_s3() {
        assert_eq!(canonical_uri("/a%20b/c", "execute-api"), "/a%2520b/c");
        assert_eq!(canonical_uri("/a%20b/c", "s3"), "/a%20b/c");
        assert_eq!(
            canonical_query(&[("b".into(), "2".into()), ("a".into(), "x y".into()), ("a".into(), "".into())]),
            "a=&a=x%20y&b=2"
        );
    }
}
