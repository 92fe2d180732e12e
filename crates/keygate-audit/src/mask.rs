// Opt-in body and header capture for disputes (seed 001's masking): bodies up to a cap, with the
// values of configured JSON or form fields replaced before the record is queued, and only the
// headers an operator lists — never credentials, whatever the list says.

use serde_json::Value;

/// Replacement for a masked value.
pub const MASK: &str = "***";

/// Headers never recorded, even if listed: they carry credentials or signatures.
pub const NEVER_RECORDED: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// True for a header that must never appear in a record.
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    NEVER_RECORDED.contains(&n.as_str())
        || n.starts_with("x-kg-")
        || n.contains("token")
        || n.contains("secret")
        || n.contains("signature")
        || n.contains("api-key")
        || n.contains("apikey")
}

/// A body as it goes into a record: JSON and form bodies with `fields` masked (at any depth,
/// names compared case-insensitively), other text as is, binary as a length; all cut to `cap`
/// bytes after masking (the cut is marked).
pub fn body_for_audit(content_type: Option<&str>, body: &[u8], fields: &[String], cap: usize) -> String {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let text =
        if ct.contains("json") || (ct.is_empty() && body.first().is_some_and(|b| *b == b'{' || *b == b'[')) {
            match serde_json::from_slice::<Value>(body) {
                Ok(mut v) => {
                    mask_json(&mut v, fields);
                    v.to_string()
                }
                // Not parseable: it cannot be masked, so it is not recorded.
                Err(_) => format!("[unparsable JSON body, {} bytes]", body.len()),
            }
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            mask_form(body, fields)
        } else if let Ok(s) = std::str::from_utf8(body) {
            if fields.is_empty() {
                s.to_string()
            } else {
                // Free text with masking configured: we cannot find fields in it safely.
                format!(
                    "[{} body, {} bytes, not recorded: masking configured]",
                    if ct.is_empty() { "text" } else { &ct },
                    body.len()
                )
            }
        } else {
            format!("[binary body, {} bytes]", body.len())
        };
    clip(text, cap)
}

fn clip(mut s: String, cap: usize) -> String {
    if s.len() <= cap {
        return s;
    }
    let mut end = cap.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

fn masked(name: &str, fields: &[String]) -> bool {
    fields.iter().any(|f| f.eq_ignore_ascii_case(name))
}

fn mask_json(v: &mut Value, fields: &[String]) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if masked(k, fields) {
                    *child = Value::String(MASK.into());
                } else {
                    mask_json(child, fields);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| mask_json(c, fields)),
        _ => {}
    }
}

fn mask_form(body: &[u8], fields: &[String]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .map(|pair| {
            let (k, _) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(k);
            if masked(&name, fields) {
                format!("{k}={MASK}")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn json_fields_are_masked_at_any_depth() {
        let body = br#"{"card":"4111111111111111","user":{"Password":"hunter2","name":"a"},"items":[{"cvv":"123"}]}"#;
        let out = body_for_audit(
            Some("application/json; charset=utf-8"),
            body,
            &f(&["card", "password", "cvv"]),
            4096,
        );
        assert!(!out.contains("4111") && !out.contains("hunter2") && !out.contains("123"), "{out}");
        assert!(out.contains(r#""name":"a""#) && out.contains(r#""card":"***""#));
    }

    #[test]
    fn forms_are_masked_by_decoded_name() {
        let out = body_for_audit(
            Some("application/x-www-form-urlencoded"),
            b"a=1&pass%77ord=x&card+no=9",
            &f(&["password", "card no"]),
            4096,
        );
        assert_eq!(out, "a=1&pass%77ord=***&card+no=***");
    }

    #[test]
    fn unmaskable_bodies_are_not_recorded_and_binary_is_a_length() {
        assert!(body_for_audit(Some("application/json"), b"{bad", &f(&["x"]), 100)
            .starts_with("[unparsable JSON"));
        assert!(body_for_audit(Some("text/plain"), b"pin=1234", &f(&["pin"]), 100).contains("not recorded"));
        assert_eq!(body_for_audit(Some("text/plain"), b"hello", &[], 100), "hello");
        assert_eq!(
            body_for_audit(Some("application/octet-stream"), &[0xff, 0xfe, 0], &[], 100),
            "[binary body, 3 bytes]"
        );
    }

    #[test]
    fn bodies_are_cut_after_masking() {
        let body = format!(r#"{{"card":"s","pad":"{}"}}"#, "x".repeat(1000));
        let out = body_for_audit(Some("application/json"), body.as_bytes(), &f(&["card"]), 64);
        assert!(out.len() <= 64 && out.ends_with('…') && out.contains("***"));
    }

    #[test]
    fn credential_headers_are_never_recorded() {
        for h in ["Authorization", "cookie", "X-Kg-Signature", "x-api-key", "X-Auth-Token", "client-secret"] {
            assert!(is_secret_header(h), "{h}");
        }
        assert!(!is_secret_header("content-type") && !is_secret_header("x-trace-id"));
    }

    /// Arbitrary bodies and content types never panic, and the output never exceeds the cap.
    #[test]
    fn arbitrary_bodies_never_panic_and_respect_the_cap() {
        let cts = [
            None,
            Some("application/json"),
            Some("application/x-www-form-urlencoded"),
            Some("text/plain"),
            Some(""),
        ];
        let pieces: [&[u8]; 10] = [b"{", b"}", b"\"card\"", b":", b"\"x\"", b"[", b"]", b"=", b"&", b"%4"];
        let mut x: u64 = 0xA076_1D64_78BD_642F;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let fields = f(&["card", "pass word"]);
        for _ in 0..50_000 {
            let mut body = Vec::new();
            for _ in 0..(next() % 12) {
                if next() % 3 == 0 {
                    body.push(next() as u8);
                } else {
                    body.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
                }
            }
            let cap = (next() % 40) as usize + 4;
            let out = body_for_audit(cts[(next() % cts.len() as u64) as usize], &body, &fields, cap);
            assert!(out.len() <= cap.max(3), "{} > {cap}", out.len());
        }
    }
}
