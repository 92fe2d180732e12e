// Owns the recipes for named providers: AWS SigV4, Alipay OpenAPI (RSA2, verified responses) and
// WeChat Pay API v3 (RSA Authorization, verified responses, resource decryption). The
// algorithms live in keygate-sign; this module fills the requests and reads the bindings.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response};
use keygate_sign::{alipay, sigv4, wechatpay};
use serde_json::Value;

use super::{After, Ctx, OutRequest, Prepared};
use crate::config::{AlipayConfig, SigV4Config, WechatPayConfig};
use crate::crypto;
use crate::error::OutboundError;

/// Seconds a WeChat Pay response timestamp may differ from our clock.
const WECHAT_WINDOW_SECS: i64 = 300;

pub(super) fn sigv4_prepare(
    c: &SigV4Config,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    const R: &str = "aws_sigv4";
    let ak = ctx.bindings.text(R, &c.access_key_binding)?;
    let sk = ctx.bindings.text(R, &c.secret_key_binding)?;
    let token = match &c.session_token_binding {
        Some(b) => Some(ctx.bindings.text(R, b)?),
        None => None,
    };
    let host = ctx.origin.split_once("://").map_or(ctx.origin, |(_, h)| h).to_string();
    // Signed: host, content-type and x-amz-* headers the caller set (others travel unsigned).
    let mut signed: Vec<(String, String)> = vec![("host".into(), host.clone())];
    for (n, v) in &req.headers {
        let n = n.as_str();
        if n == "content-type"
            || (n.starts_with("x-amz-") && n != "x-amz-date" && n != "x-amz-security-token")
        {
            let v = v.to_str().map_err(|_| OutboundError::recipe(R, format!("header {n} is not text")))?;
            signed.push((n.to_string(), v.to_string()));
        }
    }
    let path = ctx.full_path(req);
    let sreq = sigv4::SigV4Request {
        method: req.method.as_str(),
        raw_path: &path,
        query: &req.query,
        headers: &signed,
        body: &req.body,
    };
    let creds = sigv4::SigV4Credentials {
        access_key_id: ak,
        secret_access_key: sk,
        session_token: token,
        region: &c.region,
        service: &c.service,
    };
    let added = sigv4::sign(&sreq, &creds, ctx.now_ms / 1000, c.content_sha256_header);
    req.set_header(R, "host", &host)?;
    for (n, v) in added {
        req.set_header(R, &n, &v)?;
    }
    Ok(Prepared::default())
}

/// Beijing time (UTC+8) as Alipay wants it: `YYYY-MM-DD HH:MM:SS`.
fn alipay_timestamp(now_ms: i64) -> String {
    let d = sigv4::amz_date(now_ms / 1000 + 8 * 3600); // YYYYMMDDTHHMMSSZ
    format!("{}-{}-{} {}:{}:{}", &d[0..4], &d[4..6], &d[6..8], &d[9..11], &d[11..13], &d[13..15])
}

pub(super) fn alipay_prepare(
    c: &AlipayConfig,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    const R: &str = "alipay";
    let key = ctx.bindings.rsa_signer(R, &c.private_key_binding)?;
    let method = req.query.iter().find(|(n, _)| n == "method").map(|(_, v)| v.clone()).ok_or_else(|| {
        OutboundError::recipe(R, "the query parameter method (e.g. alipay.trade.query) is required")
    })?;
    let biz = std::str::from_utf8(&req.body)
        .map_err(|_| OutboundError::recipe(R, "biz_content must be UTF-8 JSON"))?
        .trim();
    let biz = if biz.is_empty() { "{}" } else { biz };
    if !serde_json::from_str::<Value>(biz).is_ok_and(|v| v.is_object()) {
        return Err(OutboundError::recipe(R, "the request body (biz_content) must be a JSON object"));
    }
    let fixed = ["app_id", "charset", "sign_type", "timestamp", "version", "biz_content", "sign"];
    let mut params: Vec<(String, String)> =
        req.query.iter().filter(|(n, _)| !fixed.contains(&n.as_str())).cloned().collect();
    params.extend([
        ("app_id".to_string(), c.app_id.clone()),
        ("charset".to_string(), "utf-8".to_string()),
        ("sign_type".to_string(), "RSA2".to_string()),
        ("timestamp".to_string(), alipay_timestamp(ctx.now_ms)),
        ("version".to_string(), "1.0".to_string()),
        ("biz_content".to_string(), biz.to_string()),
    ]);
    let sign = alipay::sign(&params, &key).map_err(|e| OutboundError::recipe(R, e.to_string()))?;
    params.push(("sign".to_string(), sign));
    req.query.clear();
    req.method = Method::POST;
    req.body = Bytes::from(crypto::encode_pairs(&params));
    req.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded;charset=utf-8"),
    );
    Ok(Prepared { token: None, note: Some(method) })
}

pub(super) fn alipay_response(
    c: &AlipayConfig,
    ctx: &Ctx<'_>,
    prepared: &Prepared,
    resp: &mut Response<Bytes>,
) -> Result<After, OutboundError> {
    if !c.verify_response || !resp.status().is_success() {
        return Ok(After::Done);
    }
    let key = ctx.bindings.rsa_verifier("alipay", &c.alipay_public_key_binding)?;
    let body = std::str::from_utf8(resp.body())
        .map_err(|_| OutboundError::ResponseInvalid("alipay: response is not UTF-8".into()))?;
    let method = prepared.note.as_deref().unwrap_or_default();
    alipay::verify_response(body, method, &key)
        .map_err(|e| OutboundError::ResponseInvalid(format!("alipay: {e}")))?;
    Ok(After::Done)
}

pub(super) fn wechatpay_prepare(
    c: &WechatPayConfig,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    const R: &str = "wechatpay_v3";
    let key = ctx.bindings.rsa_signer(R, &c.private_key_binding)?;
    let mut url = ctx.full_path(req);
    let q = req.encoded_query();
    if !q.is_empty() {
        url.push('?');
        url.push_str(&q);
    }
    let body = std::str::from_utf8(&req.body)
        .map_err(|_| OutboundError::recipe(R, "the body must be UTF-8 JSON"))?;
    let nonce = crypto::random_hex16().map_err(|e| OutboundError::recipe(R, e))?.to_uppercase();
    let merchant = wechatpay::Merchant { mchid: &c.mchid, serial_no: &c.serial_no, key: &key };
    let auth =
        wechatpay::authorization(&merchant, req.method.as_str(), &url, ctx.now_ms / 1000, &nonce, body)
            .map_err(|e| OutboundError::recipe(R, e.to_string()))?;
    req.set_header(R, "authorization", &auth)?;
    req.headers.entry(header::ACCEPT).or_insert(HeaderValue::from_static("application/json"));
    // WeChat Pay refuses requests without a User-Agent.
    req.headers.entry(header::USER_AGENT).or_insert(HeaderValue::from_static("keygate"));
    if !req.body.is_empty() {
        req.headers.entry(header::CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
    }
    Ok(Prepared::default())
}

pub(super) fn wechatpay_response(
    c: &WechatPayConfig,
    ctx: &Ctx<'_>,
    resp: &mut Response<Bytes>,
) -> Result<After, OutboundError> {
    let invalid = |why: String| OutboundError::ResponseInvalid(format!("wechatpay_v3: {why}"));
    let h = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
    let signed = h("wechatpay-signature").is_some();
    // Success responses must be signed; error responses are verified when they are signed.
    if c.verify_response && (resp.status().is_success() || signed) {
        let sig = wechatpay::ResponseSignature {
            timestamp: h("wechatpay-timestamp")
                .ok_or_else(|| invalid("Wechatpay-Timestamp missing".into()))?,
            nonce: h("wechatpay-nonce").ok_or_else(|| invalid("Wechatpay-Nonce missing".into()))?,
            signature: h("wechatpay-signature")
                .ok_or_else(|| invalid("Wechatpay-Signature missing".into()))?,
            serial: h("wechatpay-serial").ok_or_else(|| invalid("Wechatpay-Serial missing".into()))?,
        };
        let mut keys = Vec::with_capacity(c.platform_keys.len());
        for p in &c.platform_keys {
            keys.push((p.serial.clone(), (*ctx.bindings.rsa_verifier("wechatpay_v3", &p.binding)?).clone()));
        }
        wechatpay::verify_response(&sig, resp.body(), &keys, ctx.now_ms / 1000, WECHAT_WINDOW_SECS)
            .map_err(|e| invalid(e.to_string()))?;
    }
    if c.decrypt_resources && resp.status().is_success() {
        if let Ok(mut v) = serde_json::from_slice::<Value>(resp.body()) {
            let key = ctx.bindings.get(&c.apiv3_key_binding)?;
            if decrypt_in_place(&mut v, key).map_err(invalid)? {
                *resp.body_mut() = Bytes::from(v.to_string());
                resp.headers_mut().remove(header::CONTENT_LENGTH);
            }
        }
    }
    Ok(After::Done)
}

/// Replaces every `{"algorithm":"AEAD_AES_256_GCM","ciphertext",…}` object's `ciphertext` by
/// `plaintext` (parsed JSON when it is JSON). Returns whether anything changed.
fn decrypt_in_place(v: &mut Value, key: &[u8]) -> Result<bool, String> {
    match v {
        Value::Object(m) => {
            if m.get("algorithm").and_then(Value::as_str) == Some("AEAD_AES_256_GCM") {
                if let (Some(ct), Some(nonce)) =
                    (m.get("ciphertext").and_then(Value::as_str), m.get("nonce").and_then(Value::as_str))
                {
                    let ad = m.get("associated_data").and_then(Value::as_str).unwrap_or_default();
                    let plain = wechatpay::decrypt_resource(key, nonce, ad, ct)
                        .map_err(|_| "resource decryption failed".to_string())?;
                    let pv = serde_json::from_slice(&plain)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&plain).into_owned()));
                    m.remove("ciphertext");
                    m.insert("plaintext".into(), pv);
                    return Ok(true);
                }
            }
            let mut changed = false;
            for (_, child) in m.iter_mut() {
                changed |= decrypt_in_place(child, key)?;
            }
            Ok(changed)
        }
        Value::Array(a) => {
            let mut changed = false;
            for child in a {
                changed |= decrypt_in_place(child, key)?;
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alipay_time_is_beijing_time() {
        assert_eq!(alipay_timestamp(1_440_938_160_000), "2015-08-30 20:36:00");
        assert_eq!(alipay_timestamp(1_700_000_000_000), "2023-11-15 06:13:20");
    }

    #[test]
    fn resources_are_decrypted_wherever_they_are() {
        let key = [3u8; 32];
        let ct = wechatpay::encrypt_resource(&key, "abcdefghijkl", "transaction", br#"{"out_trade_no":"1"}"#)
            .unwrap();
        let mut v = serde_json::json!({"data": [{"encrypt_certificate": {"algorithm": "AEAD_AES_256_GCM", "nonce": "abcdefghijkl", "associated_data": "transaction", "ciphertext": ct}}]});
        assert!(decrypt_in_place(&mut v, &key).unwrap());
        assert_eq!(v["data"][0]["encrypt_certificate"]["plaintext"]["out_trade_no"], "1");
        assert!(v["data"][0]["encrypt_certificate"].get("ciphertext").is_none());
        let mut bad = serde_json::json!({"algorithm": "AEAD_AES_256_GCM", "nonce": "abcdefghijkl", "ciphertext": "AAAA"});
        assert!(decrypt_in_place(&mut bad, &key).is_err());
    }
}
