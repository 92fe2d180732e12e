// Owns Alipay OpenAPI (RSA2) signing and response verification: the string to sign (sorted
// `k=v&…` of non-empty params except `sign`), SHA256withRSA, and the exact raw `…_response`
// node of a response (verified byte for byte, never re-serialised). Checked against
// python-alipay-sdk in tests/alipay_sdk.rs.

use crate::error::SignError;
use crate::rsa::{b64, b64_decode, RsaSigner, RsaVerifier};

/// `k1=v1&k2=v2` over params sorted by name, `sign` and empty values left out, values raw.
pub fn sign_content(params: &[(String, String)]) -> String {
    let mut p: Vec<&(String, String)> = params.iter().filter(|(k, v)| k != "sign" && !v.is_empty()).collect();
    p.sort();
    p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// The `sign` value: base64 RSA2 (SHA256withRSA) of [`sign_content`].
pub fn sign(params: &[(String, String)], key: &RsaSigner) -> Result<String, SignError> {
    Ok(b64(&key.sign_sha256(sign_content(params).as_bytes())?))
}

/// `alipay.trade.query` → `alipay_trade_query_response`.
pub fn response_node(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The raw JSON text of the value of top-level key `name` (an object), found by scanning
/// strings and nesting exactly like a JSON parser would.
pub fn raw_value<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let b = body.as_bytes();
    let mut i = 0;
    let mut depth = 0i32;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let key = body.get(start..i)?;
                i += 1;
                if depth == 1 && key == name {
                    // Skip whitespace and the colon.
                    while i < b.len() && (b[i] as char).is_whitespace() {
                        i += 1;
                    }
                    if b.get(i) != Some(&b':') {
                        continue;
                    }
                    i += 1;
                    while i < b.len() && (b[i] as char).is_whitespace() {
                        i += 1;
                    }
                    let vstart = i;
                    if b.get(i) != Some(&b'{') {
                        return None;
                    }
                    let mut d = 0i32;
                    while i < b.len() {
                        match b[i] {
                            b'"' => {
                                i += 1;
                                while i < b.len() && b[i] != b'"' {
                                    if b[i] == b'\\' {
                                        i += 1;
                                    }
                                    i += 1;
                                }
                            }
                            b'{' | b'[' => d += 1,
                            b'}' | b']' => {
                                d -= 1;
                                if d == 0 {
                                    return body.get(vstart..=i);
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    return None;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Verifies a synchronous OpenAPI response: the raw `<method>_response` node (or
/// `error_response`) against the top-level `sign`. Returns the node's raw JSON.
pub fn verify_response<'a>(
    body: &'a str,
    method: &str,
    alipay_key: &RsaVerifier,
) -> Result<&'a str, SignError> {
    let node = response_node(method);
    let raw = raw_value(body, &node)
        .or_else(|| raw_value(body, "error_response"))
        .ok_or_else(|| SignError::MissingParam(node.clone()))?;
    let parsed: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| SignError::Malformed { field: "response".into(), reason: "not JSON" })?;
    let sign =
        parsed.get("sign").and_then(|s| s.as_str()).ok_or_else(|| SignError::MissingParam("sign".into()))?;
    alipay_key.verify_sha256(raw.as_bytes(), &b64_decode("sign", sign)?)?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_sorts_and_skips_sign_and_empty() {
        let p = vec![
            ("method".to_string(), "alipay.trade.query".to_string()),
            ("app_id".to_string(), "2021".to_string()),
            ("sign".to_string(), "x".to_string()),
            ("notify_url".to_string(), String::new()),
            ("biz_content".to_string(), "{\"out_trade_no\":\"1\"}".to_string()),
        ];
        assert_eq!(
            sign_content(&p),
            "app_id=2021&biz_content={\"out_trade_no\":\"1\"}&method=alipay.trade.query"
        );
    }

    #[test]
    fn raw_node_is_byte_exact_and_string_aware() {
        let body = r#"{"alipay_trade_query_response" : {"code":"10000","msg":"Success","note":"a } { \" b","n":{"x":[1,{"y":2}]}},"sign":"abc"}"#;
        assert_eq!(
            raw_value(body, "alipay_trade_query_response").unwrap(),
            r#"{"code":"10000","msg":"Success","note":"a } { \" b","n":{"x":[1,{"y":2}]}}"#
        );
        assert!(raw_value(body, "other").is_none());
        // A nested key of the same name is not the top-level node.
        assert!(raw_value(r#"{"a":{"x_response":{"k":1}}}"#, "x_response").is_none());
        for cut in 0..body.len() {
            let _ = raw_value(&body[..cut], "alipay_trade_query_response");
        }
    }
}
