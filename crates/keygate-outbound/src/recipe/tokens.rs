// Owns the two-step recipes: seed 000's token + AES + SHA-256 flow and OAuth 2.0 client
// credentials. Both fetch a token through the token cache (single flight, refresh ahead) with the
// provider's own client, and ask for a refetch when the provider refuses the token.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use secrecy::ExposeSecret;
use serde_json::Value;
use zeroize::Zeroizing;

use super::basic::json_text;
use super::{After, Ctx, OutRequest, Prepared};
use crate::config::{ClientAuth, OAuth2Config, TokenAesSha256Config};
use crate::crypto;
use crate::error::OutboundError;
use crate::token::Fetched;

/// Seed 000's `buildSignStr()`: sorted `k=v&…` over the body's fields, empty values and `sign`
/// left out; values are their text (objects/arrays as compact JSON).
pub fn build_sign_str(obj: &serde_json::Map<String, Value>) -> String {
    let mut pairs: Vec<(&String, String)> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "sign")
        .filter_map(|(k, v)| json_text(v).filter(|t| !t.is_empty()).map(|t| (k, t)))
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// `expireTime` as providers send it: absolute Unix ms, absolute Unix s, or seconds from now.
fn ttl_from_expire(v: &Value, now_ms: i64) -> Duration {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    // No usable expiry: cache for five minutes (a 401 still drops it early).
    let Some(n) = n else { return Duration::from_secs(300) };
    let ms = if n > 100_000_000_000 {
        n - now_ms
    } else if n > 1_000_000_000 {
        n * 1000 - now_ms
    } else {
        n * 1000
    };
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

async fn post(
    ctx: &Ctx<'_>,
    url: &str,
    content_type: &'static str,
    body: Vec<u8>,
    basic: Option<&str>,
) -> Result<Response<Bytes>, OutboundError> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| OutboundError::recipe("token", "invalid token URL"))?;
    if let Some(b) = basic {
        let mut v = HeaderValue::from_str(b)
            .map_err(|_| OutboundError::recipe("token", "invalid client credentials"))?;
        v.set_sensitive(true);
        req.headers_mut().insert(header::AUTHORIZATION, v);
    }
    ctx.client.send(req, ctx.remaining()).await
}

pub(super) async fn seed_prepare(
    c: &TokenAesSha256Config,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    const R: &str = "token_aes_sha256";
    let app_key = ctx.bindings.text(R, &c.app_key_binding)?.to_string();
    let aes_key = ctx.bindings.get(&c.aes_key_binding)?;
    let aes_iv = ctx.bindings.get(&c.aes_iv_binding)?;
    let mut body = req.json_object(R)?;
    let ts = match body.get("timestamp").and_then(json_text) {
        Some(t) if !t.is_empty() => t,
        _ => {
            let t = ctx.now_ms.to_string();
            body.insert("timestamp".into(), Value::String(t.clone()));
            t
        }
    };
    let key = ctx.token_key("token");
    let token = ctx
        .tokens
        .get(&key, Duration::from_secs(c.refresh_before_secs), || async {
            let inner = format!("{{\"appKey\": \"{app_key}\"}}");
            let data = crypto::b64(
                &crypto::aes_cbc_encrypt(aes_key, aes_iv, inner.as_bytes())
                    .map_err(|e| OutboundError::recipe(R, e))?,
            );
            let sign = hex::encode_upper(crypto::sha256(
                format!("appKey={app_key}&data={data}&timestamp={ts}").as_bytes(),
            ));
            let payload = serde_json::json!({"appKey": app_key, "data": data, "timestamp": ts, "sign": sign});
            let resp =
                post(ctx, &c.token_url, "application/json", payload.to_string().into_bytes(), None).await?;
            if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
                return Err(OutboundError::AuthFailed);
            }
            if !resp.status().is_success() {
                return Err(OutboundError::Unavailable(format!(
                    "token endpoint answered {}",
                    resp.status().as_u16()
                )));
            }
            let v: Value = serde_json::from_slice(resp.body())
                .map_err(|_| OutboundError::ResponseInvalid("token endpoint did not answer JSON".into()))?;
            let token = v["data"]["accessToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .ok_or(OutboundError::AuthFailed)?;
            let ttl = ttl_from_expire(&v["data"]["expireTime"], ctx.now_ms);
            Ok(Fetched { value: Zeroizing::new(format!("Bearer {token}")), ttl })
        })
        .await?;
    req.set_header(R, "authorization", token.value.expose_secret())?;
    if let Some(v) = req.headers.get_mut(header::AUTHORIZATION) {
        v.set_sensitive(true);
    }
    let origin = body.get(&c.data_field).and_then(json_text).unwrap_or_default();
    let enc = crypto::aes_cbc_encrypt(aes_key, aes_iv, origin.as_bytes())
        .map_err(|e| OutboundError::recipe(R, e))?;
    body.insert("appKey".into(), Value::String(app_key));
    body.insert(c.data_field.clone(), Value::String(crypto::b64(&enc)));
    body.remove("sign");
    let sign = hex::encode_upper(crypto::sha256(build_sign_str(&body).as_bytes()));
    body.insert("sign".into(), Value::String(sign));
    req.set_json(body);
    Ok(Prepared { token: Some((key, token)), note: None })
}

pub(super) fn seed_response(
    c: &TokenAesSha256Config,
    resp: &Response<Bytes>,
) -> Result<After, OutboundError> {
    if resp.status() == StatusCode::UNAUTHORIZED {
        return Ok(After::TokenRejected);
    }
    if !c.token_error_codes.is_empty() {
        if let Ok(v) = serde_json::from_slice::<Value>(resp.body()) {
            if let Some(code) = v.get("code").and_then(json_text) {
                if c.token_error_codes.contains(&code) {
                    return Ok(After::TokenRejected);
                }
            }
        }
    }
    Ok(After::Done)
}

pub(super) async fn oauth2_prepare(
    c: &OAuth2Config,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    const R: &str = "oauth2_client_credentials";
    let key = ctx.token_key("oauth2");
    let token = ctx
        .tokens
        .get(&key, Duration::from_secs(c.refresh_before_secs), || async {
            let id = ctx.bindings.text(R, &c.client_id_binding)?;
            let secret = ctx.bindings.text(R, &c.client_secret_binding)?;
            let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
            if let Some(s) = &c.scope {
                form.push(("scope".into(), s.clone()));
            }
            if let Some(a) = &c.audience {
                form.push(("audience".into(), a.clone()));
            }
            let basic = match c.client_auth {
                ClientAuth::Basic => {
                    // RFC 6749 §2.3.1: form-encode id and secret, then Basic.
                    let pair =
                        Zeroizing::new(format!("{}:{}", crypto::url_encode(id), crypto::url_encode(secret)));
                    Some(Zeroizing::new(format!("Basic {}", crypto::b64(pair.as_bytes()))))
                }
                ClientAuth::Body => {
                    form.push(("client_id".into(), id.to_string()));
                    form.push(("client_secret".into(), secret.to_string()));
                    None
                }
            };
            let body = Zeroizing::new(crypto::encode_pairs(&form));
            for (_, v) in form.iter_mut() {
                zeroize::Zeroize::zeroize(v);
            }
            let resp = post(
                ctx,
                &c.token_url,
                "application/x-www-form-urlencoded",
                body.as_bytes().to_vec(),
                basic.as_deref().map(String::as_str),
            )
            .await?;
            if matches!(
                resp.status(),
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) {
                return Err(OutboundError::AuthFailed);
            }
            if !resp.status().is_success() {
                return Err(OutboundError::Unavailable(format!(
                    "token endpoint answered {}",
                    resp.status().as_u16()
                )));
            }
            let v: Value = serde_json::from_slice(resp.body())
                .map_err(|_| OutboundError::ResponseInvalid("token endpoint did not answer JSON".into()))?;
            let token =
                v["access_token"].as_str().filter(|t| !t.is_empty()).ok_or(OutboundError::AuthFailed)?;
            if v.get("token_type").and_then(Value::as_str).is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
            {
                return Err(OutboundError::ResponseInvalid("token_type is not Bearer".into()));
            }
            let ttl = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(3600));
            Ok(Fetched { value: Zeroizing::new(format!("Bearer {token}")), ttl })
        })
        .await?;
    req.set_header(R, "authorization", token.value.expose_secret())?;
    if let Some(v) = req.headers.get_mut(header::AUTHORIZATION) {
        v.set_sensitive(true);
    }
    Ok(Prepared { token: Some((key, token)), note: None })
}

pub(super) fn bearer_response(resp: &Response<Bytes>) -> After {
    if resp.status() == StatusCode::UNAUTHORIZED {
        After::TokenRejected
    } else {
        After::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_str_sorts_skips_empty_and_sign() {
        let obj = serde_json::json!({"timestamp": "1700", "data": "abc", "appKey": "k1", "sign": "x", "empty": "", "n": 5, "o": {"a": 1}});
        let Value::Object(m) = obj else { unreachable!() };
        assert_eq!(build_sign_str(&m), "appKey=k1&data=abc&n=5&o={\"a\":1}&timestamp=1700");
    }

    #[test]
    fn expire_time_forms() {
        let now = 1_700_000_000_000;
        assert_eq!(ttl_from_expire(&serde_json::json!(7200), now), Duration::from_secs(7200));
        assert_eq!(ttl_from_expire(&serde_json::json!(1_700_000_060), now), Duration::from_secs(60));
        assert_eq!(ttl_from_expire(&serde_json::json!("1700000030000"), now), Duration::from_secs(30));
        assert_eq!(ttl_from_expire(&serde_json::json!(1_600_000_000_000i64), now), Duration::ZERO);
        assert_eq!(ttl_from_expire(&Value::Null, now), Duration::from_secs(300));
    }
}
