// Owns HTTP Message Signatures (RFC 9421) verification for requests, with RFC 9530
// Content-Digest: strict parsing of the Signature-Input / Signature dictionaries (the subset of
// RFC 8941 they use), the signature base, hmac-sha256 and ed25519. Pure: the caller passes the
// request parts, the key material and the time.

use aws_lc_rs::{digest, hmac, signature};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::SignError;

fn bad(field: &str, reason: &'static str) -> SignError {
    SignError::Malformed { field: field.to_string(), reason }
}

/// One covered component: its name and the raw text of the item (name and parameters), which
/// is what the signature base repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub raw: String,
    pub has_params: bool,
}

/// A parsed signature of a request.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageSignature {
    pub label: String,
    pub components: Vec<Component>,
    pub created: Option<i64>,
    pub expires: Option<i64>,
    pub nonce: Option<String>,
    pub keyid: Option<String>,
    pub alg: Option<String>,
    /// The `Signature-Input` member value as received: the `@signature-params` line.
    pub params_raw: String,
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for MessageSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSignature")
            .field("label", &self.label)
            .field("components", &self.components.iter().map(|c| &c.raw).collect::<Vec<_>>())
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

/// Splits a dictionary into `(key, raw value)` members at top-level commas.
fn members(text: &str, field: &'static str) -> Result<Vec<(String, String)>, SignError> {
    let mut out = Vec::new();
    let (mut depth, mut in_str, mut esc, mut start) = (0i32, false, false, 0usize);
    let b = text.as_bytes();
    for i in 0..=b.len() {
        let c = b.get(i).copied();
        if in_str {
            match c {
                Some(b'\\') if !esc => esc = true,
                Some(b'"') if !esc => in_str = false,
                None => return Err(bad(field, "unterminated string")),
                _ => esc = false,
            }
            continue;
        }
        match c {
            Some(b'"') => in_str = true,
            Some(b'(') => depth += 1,
            Some(b')') => depth -= 1,
            Some(b',') | None if depth == 0 => {
                let m = text[start..i].trim();
                if m.is_empty() {
                    return Err(bad(field, "empty dictionary member"));
                }
                let (k, v) = m.split_once('=').ok_or_else(|| bad(field, "member without ="))?;
                let k = k.trim();
                if k.is_empty()
                    || !k.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
                    })
                {
                    return Err(bad(field, "invalid dictionary key"));
                }
                if out.iter().any(|(ek, _): &(String, String)| ek == k) {
                    return Err(SignError::DuplicateField(format!("{field} {k}")));
                }
                out.push((k.to_string(), v.trim().to_string()));
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(bad(field, "unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(bad(field, "unbalanced parentheses"));
    }
    Ok(out)
}

fn sf_string(s: &str, field: &'static str) -> Result<(String, usize), SignError> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return Err(bad(field, "expected a string"));
    }
    let mut out = String::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let n = *b.get(i + 1).ok_or_else(|| bad(field, "unterminated string"))?;
                if n != b'"' && n != b'\\' {
                    return Err(bad(field, "invalid escape"));
                }
                out.push(char::from(n));
                i += 2;
            }
            b'"' => return Ok((out, i + 1)),
            c if (0x20..0x7f).contains(&c) => {
                out.push(char::from(c));
                i += 1;
            }
            _ => return Err(bad(field, "invalid character in string")),
        }
    }
    Err(bad(field, "unterminated string"))
}

/// Parses `;k=v;k2` parameters; returns them and the bytes consumed.
fn params(s: &str, field: &'static str) -> Result<(Vec<(String, String)>, usize), SignError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    let b = s.as_bytes();
    while b.get(i) == Some(&b';') {
        i += 1;
        let start = i;
        while i < b.len()
            && (b[i].is_ascii_lowercase()
                || b[i].is_ascii_digit()
                || matches!(b[i], b'_' | b'-' | b'.' | b'*'))
        {
            i += 1;
        }
        let key = &s[start..i];
        if key.is_empty() {
            return Err(bad(field, "empty parameter name"));
        }
        let value = if b.get(i) == Some(&b'=') {
            i += 1;
            if b.get(i) == Some(&b'"') {
                let (v, used) = sf_string(&s[i..], field)?;
                i += used;
                v
            } else {
                let vs = i;
                while i < b.len() && !matches!(b[i], b';' | b' ' | b')' | b',') {
                    i += 1;
                }
                s[vs..i].to_string()
            }
        } else {
            "?1".to_string()
        };
        if out.iter().any(|(k, _)| k == key) {
            return Err(SignError::DuplicateField(format!("{field} parameter {key}")));
        }
        out.push((key.to_string(), value));
    }
    Ok((out, i))
}

/// Parses both headers and picks the signature `label` (or the only one).
pub fn parse(
    signature_input: &str,
    signature: &str,
    label: Option<&str>,
) -> Result<MessageSignature, SignError> {
    const SI: &str = "signature-input";
    let inputs = members(signature_input, SI)?;
    let sigs = members(signature, "signature")?;
    let (label, raw) = match label {
        Some(l) => inputs
            .iter()
            .find(|(k, _)| k == l)
            .cloned()
            .ok_or_else(|| SignError::MissingParam(format!("signature-input {l}")))?,
        None if inputs.len() == 1 => inputs[0].clone(),
        None => return Err(bad(SI, "several signatures: a label must be chosen")),
    };
    let sig_raw = sigs
        .iter()
        .find(|(k, _)| *k == label)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| SignError::MissingParam(format!("signature {label}")))?;
    let b64 = sig_raw
        .strip_prefix(':')
        .and_then(|s| s.strip_suffix(':'))
        .ok_or_else(|| bad("signature", "expected a byte sequence"))?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad("signature", "invalid base64"))?;
    let inner = raw.strip_prefix('(').ok_or_else(|| bad(SI, "expected an inner list"))?;
    let close = {
        let (mut in_str, mut esc) = (false, false);
        let mut found = None;
        for (i, c) in inner.bytes().enumerate() {
            if in_str {
                if c == b'\\' && !esc {
                    esc = true;
                    continue;
                }
                if c == b'"' && !esc {
                    in_str = false;
                }
                esc = false;
            } else if c == b'"' {
                in_str = true;
            } else if c == b')' {
                found = Some(i);
                break;
            }
        }
        found.ok_or_else(|| bad(SI, "unterminated inner list"))?
    };
    let mut list = &inner[..close];
    let mut components = Vec::new();
    loop {
        list = list.trim_start_matches(' ');
        if list.is_empty() {
            break;
        }
        let (name, used) = sf_string(list, SI)?;
        let (ps, pused) = params(&list[used..], SI)?;
        let raw_item = list[..used + pused].to_string();
        if components.iter().any(|c: &Component| c.raw == raw_item) {
            return Err(SignError::DuplicateField(format!("component {name}")));
        }
        components.push(Component { name, raw: raw_item, has_params: !ps.is_empty() });
        list = &list[used + pused..];
        if !list.is_empty() && !list.starts_with(' ') {
            return Err(bad(SI, "components must be separated by spaces"));
        }
    }
    let (ps, used) = params(&inner[close + 1..], SI)?;
    if used != inner[close + 1..].len() {
        return Err(bad(SI, "unexpected text after the parameters"));
    }
    let int = |k: &str| -> Result<Option<i64>, SignError> {
        ps.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.parse::<i64>().map_err(|_| bad(SI, "created/expires must be integers")))
            .transpose()
    };
    let text = |k: &str| ps.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Ok(MessageSignature {
        label,
        components,
        created: int("created")?,
        expires: int("expires")?,
        nonce: text("nonce"),
        keyid: text("keyid"),
        alg: text("alg"),
        params_raw: raw,
        signature: sig,
    })
}

/// The request as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host (and port) as received.
    pub authority: &'a str,
    pub raw_path: &'a str,
    pub raw_query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
}

/// RFC 9421 §2.5: one line per covered component, then `@signature-params`.
pub fn signature_base(sig: &MessageSignature, req: &RequestView<'_>) -> Result<String, SignError> {
    let mut out = String::new();
    for c in &sig.components {
        if c.has_params {
            return Err(bad("signature-input", "component parameters are not supported"));
        }
        let query = req.raw_query.map_or(String::new(), |q| format!("?{q}"));
        let value = match c.name.as_str() {
            "@method" => req.method.to_string(),
            "@target-uri" => {
                format!("{}://{}{}{}", req.scheme, req.authority.to_ascii_lowercase(), req.raw_path, query)
            }
            "@authority" => req.authority.to_ascii_lowercase(),
            "@scheme" => req.scheme.to_string(),
            "@request-target" => format!("{}{}", req.raw_path, query),
            "@path" => req.raw_path.to_string(),
            "@query" => {
                if query.is_empty() {
                    "?".to_string()
                } else {
                    query
                }
            }
            n if n.starts_with('@') => return Err(bad("signature-input", "unsupported derived component")),
            n => {
                if n.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(bad("signature-input", "field names must be lowercase"));
                }
                let values: Vec<&str> =
                    req.headers.get_all(n).iter().filter_map(|v| v.to_str().ok()).map(str::trim).collect();
                if values.is_empty() {
                    return Err(SignError::SignedHeaderMissing(n.to_string()));
                }
                values.join(", ")
            }
        };
        out.push_str(&c.raw);
        out.push_str(": ");
        out.push_str(&value);
        out.push('\n');
    }
    out.push_str("\"@signature-params\": ");
    out.push_str(&sig.params_raw);
    Ok(out)
}

/// Key material of a key.
#[derive(Clone, Copy)]
pub enum VerifyKey<'a> {
    HmacSha256(&'a [u8]),
    /// Raw 32-byte public key.
    Ed25519(&'a [u8]),
}

impl std::fmt::Debug for VerifyKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::HmacSha256(_) => "HmacSha256([redacted])",
            Self::Ed25519(_) => "Ed25519(..)",
        })
    }
}

/// Checks the algorithm, required components and parameters, and the signature (constant time
/// for HMAC).
pub fn verify(
    sig: &MessageSignature,
    req: &RequestView<'_>,
    key: VerifyKey<'_>,
    required: &[String],
) -> Result<(), SignError> {
    let alg = match key {
        VerifyKey::HmacSha256(_) => "hmac-sha256",
        VerifyKey::Ed25519(_) => "ed25519",
    };
    if sig.alg.as_deref().is_some_and(|a| a != alg) {
        return Err(bad("signature-input", "alg is not the key's algorithm"));
    }
    for r in required {
        if !sig.components.iter().any(|c| &c.name == r) {
            return Err(SignError::MissingParam(format!("covered component {r}")));
        }
    }
    if sig.created.is_none() || sig.keyid.is_none() || sig.nonce.is_none() {
        return Err(SignError::MissingParam("created, keyid and nonce signature parameters".into()));
    }
    let base = signature_base(sig, req)?;
    match key {
        VerifyKey::HmacSha256(secret) => {
            let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), base.as_bytes());
            if bool::from(mac.as_ref().ct_eq(&sig.signature)) {
                Ok(())
            } else {
                Err(SignError::SignatureMismatch)
            }
        }
        VerifyKey::Ed25519(public) => signature::UnparsedPublicKey::new(&signature::ED25519, public)
            .verify(base.as_bytes(), &sig.signature)
            .map_err(|_| SignError::SignatureMismatch),
    }
}

/// Checks an RFC 9530 `Content-Digest` (`sha-256` or `sha-512`) against the body.
pub fn verify_content_digest(header: &str, body: &[u8]) -> Result<(), SignError> {
    let ms = members(header, "content-digest")?;
    let mut checked = false;
    for (alg, v) in &ms {
        let d = match alg.as_str() {
            "sha-256" => digest::digest(&digest::SHA256, body),
            "sha-512" => digest::digest(&digest::SHA512, body),
            _ => continue,
        };
        let b64 = v
            .strip_prefix(':')
            .and_then(|s| s.strip_suffix(':'))
            .ok_or_else(|| bad("content-digest", "expected a byte sequence"))?;
        let claimed = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("content-digest", "invalid base64"))?;
        if !bool::from(d.as_ref().ct_eq(&claimed)) {
            return Err(SignError::PayloadHashMismatch);
        }
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err(bad("content-digest", "no sha-256 or sha-512 digest"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9421 Appendix B.2.5 (hmac-sha256 with test-shared-secret).
    const SECRET_B64: &str =
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

    fn b5_request() -> (http::HeaderMap, RequestView<'static>) {
        let mut h = http::HeaderMap::new();
        h.insert("date", "Tue, 20 Apr 2021 02:07:55 GMT".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("content-length", "18".parse().unwrap());
        let view = RequestView {
            method: "POST",
            scheme: "https",
            authority: "example.com",
            raw_path: "/foo",
            raw_query: Some("param=Value&Pet=dog"),
            headers: Box::leak(Box::new(h.clone())),
        };
        (h, view)
    }

    #[test]
    fn rfc9421_b25_hmac_base_and_signature() {
        let si =
            r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#;
        let sg = "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:";
        let sig = parse(si, sg, Some("sig-b25")).unwrap();
        let (_, view) = b5_request();
        let base = signature_base(&sig, &view).unwrap();
        assert_eq!(
            base,
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
        );
        let secret = base64::engine::general_purpose::STANDARD.decode(SECRET_B64).unwrap();
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &secret), base.as_bytes());
        assert_eq!(mac.as_ref(), &sig.signature[..]);
    }

    #[test]
    fn parsing_is_strict_and_never_panics() {
        let ok = r#"sig1=("@method" "@target-uri");created=1;keyid="k";nonce="n""#;
        assert!(parse(ok, "sig1=:AAAA:", None).is_ok());
        for bad_input in [
            r#"sig1=("@method" "@method");created=1"#,
            r#"sig1=("@method";created=1"#,
            r#"sig1=("@method");created=1;created=2"#,
            r#"sig1=("@method"),sig1=("@path")"#,
            r#"sig1="@method""#,
            r#"sig1=("@method");created=x"#,
            r#"SIG=("@method")"#,
        ] {
            assert!(parse(bad_input, "sig1=:AAAA:", None).is_err(), "{bad_input}");
        }
        assert!(parse(ok, "sig1=AAAA", None).is_err());
        assert!(parse(ok, "sig2=:AAAA:", None).is_err());
        for cut in 0..ok.len() {
            let _ = parse(&ok[..cut], "sig1=:AAAA:", None);
        }
    }

    #[test]
    fn content_digest_checks_the_body() {
        // RFC 9530 example: {"hello": "world"}\n
        let body = b"{\"hello\": \"world\"}\n";
        verify_content_digest("sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:", body).unwrap();
        assert_eq!(
            verify_content_digest("sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:", b"x"),
            Err(SignError::PayloadHashMismatch)
        );
        assert!(verify_content_digest("md5=:AAAA:", body).is_err());
    }
}
