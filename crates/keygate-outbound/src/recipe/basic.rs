// Owns the single-step recipes: static header, HMAC header, sorted params + secret, AES payload.
// They need no token and no network; each is a pure edit of the request given the bindings.

use bytes::Bytes;
use http::Response;
use keygate_sign::legacy::{self, FieldLocation, HexCase, LegacyConfig};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{After, Ctx, OutRequest, Prepared};
use crate::config::{
    AesMode, AesPayloadConfig, HmacHeaderConfig, MacEncoding, ParamsDigest, ParamsLocation, ParamsStyle,
    SortedParamsConfig, StaticHeaderConfig, TimeUnit,
};
use crate::crypto;
use crate::error::OutboundError;

pub(super) fn static_header(
    c: &StaticHeaderConfig,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    let secret = ctx.bindings.text("static_header", &c.binding)?;
    let value = Zeroizing::new(format!("{}{}", c.prefix, secret));
    req.set_header("static_header", &c.header, &value)?;
    if let Some(v) = req.headers.get_mut(c.header.as_str()) {
        v.set_sensitive(true);
    }
    Ok(Prepared::default())
}

fn stamp(unit: TimeUnit, now_ms: i64) -> String {
    match unit {
        TimeUnit::Seconds => (now_ms / 1000).to_string(),
        TimeUnit::Millis => now_ms.to_string(),
    }
}

const PLACEHOLDERS: &[&str] =
    &["method", "path", "query", "timestamp", "nonce", "body_sha256", "body", "key_id"];

pub(super) fn validate_hmac(c: &HmacHeaderConfig) -> Result<(), String> {
    let mut rest = c.template.as_str();
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').ok_or("recipe.template: unclosed {")? + start;
        let name = &rest[start + 1..end];
        let known = PLACEHOLDERS.contains(&name)
            || name
                .strip_prefix("header:")
                .is_some_and(|h| http::HeaderName::from_bytes(h.as_bytes()).is_ok());
        if !known {
            return Err(format!("recipe.template: unknown placeholder {{{name}}}"));
        }
        if name == "key_id" && c.key_id_binding.is_none() {
            return Err("recipe.template: {key_id} needs key_id_binding".into());
        }
        rest = &rest[end + 1..];
    }
    for (field, h) in [
        ("key_id_header", &c.key_id_header),
        ("timestamp_header", &c.timestamp_header),
        ("signature_header", &c.signature_header),
    ] {
        http::HeaderName::from_bytes(h.as_bytes())
            .map_err(|_| format!("recipe.{field}: invalid header name"))?;
    }
    if !c.nonce_header.is_empty() {
        http::HeaderName::from_bytes(c.nonce_header.as_bytes())
            .map_err(|_| "recipe.nonce_header: invalid header name".to_string())?;
    }
    Ok(())
}

/// Sorted, RFC 3986 encoded query (by encoded name, then value).
fn canonical_query(req: &OutRequest) -> String {
    let mut pairs: Vec<(String, String)> =
        req.query.iter().map(|(n, v)| (crypto::url_encode(n), crypto::url_encode(v))).collect();
    pairs.sort();
    pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
}

/// Renders the HMAC template. Public for the recipe test-run and unit tests.
pub(crate) fn render_template(
    c: &HmacHeaderConfig,
    ctx: &Ctx<'_>,
    req: &OutRequest,
    timestamp: &str,
    nonce: &str,
    key_id: Option<&str>,
) -> Result<String, OutboundError> {
    let mut out = String::new();
    let tpl = c.template.replace("\\n", "\n");
    let mut rest = tpl.as_str();
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| OutboundError::recipe("hmac_header", "unclosed placeholder"))?
            + start;
        let name = &rest[start + 1..end];
        match name {
            "method" => out.push_str(req.method.as_str()),
            "path" => out.push_str(&ctx.full_path(req)),
            "query" => out.push_str(&canonical_query(req)),
            "timestamp" => out.push_str(timestamp),
            "nonce" => out.push_str(nonce),
            "body_sha256" => out.push_str(&hex::encode(crypto::sha256(&req.body))),
            "body" => out.push_str(
                std::str::from_utf8(&req.body)
                    .map_err(|_| OutboundError::recipe("hmac_header", "{body} needs a UTF-8 body"))?,
            ),
            "key_id" => out.push_str(key_id.unwrap_or_default()),
            h => {
                let h = h
                    .strip_prefix("header:")
                    .ok_or_else(|| OutboundError::recipe("hmac_header", "unknown placeholder"))?;
                let v = req.headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default();
                out.push_str(v.trim());
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(super) fn hmac_header(
    c: &HmacHeaderConfig,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    const R: &str = "hmac_header";
    let secret = ctx.bindings.get(&c.secret_binding)?;
    let key_id = match &c.key_id_binding {
        Some(b) => Some(ctx.bindings.text(R, b)?.to_string()),
        None => None,
    };
    let ts = stamp(c.timestamp_unit, ctx.now_ms);
    let nonce = if c.nonce_header.is_empty() {
        String::new()
    } else {
        crypto::random_hex16().map_err(|e| OutboundError::recipe(R, e))?
    };
    let sts = render_template(c, ctx, req, &ts, &nonce, key_id.as_deref())?;
    let mac = crypto::hmac_sha256(secret, sts.as_bytes());
    let encoded = match c.encoding {
        MacEncoding::Hex => hex::encode(mac),
        MacEncoding::HexUpper => hex::encode_upper(mac),
        MacEncoding::Base64 => crypto::b64(&mac),
    };
    if let Some(k) = &key_id {
        req.set_header(R, &c.key_id_header, k)?;
    }
    req.set_header(R, &c.timestamp_header, &ts)?;
    if !c.nonce_header.is_empty() {
        req.set_header(R, &c.nonce_header, &nonce)?;
    }
    req.set_header(R, &c.signature_header, &format!("{}{}", c.signature_prefix, encoded))?;
    Ok(Prepared::default())
}

/// Scalar JSON values as the text that is signed; objects and arrays as compact JSON.
pub(crate) fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

pub(super) fn sorted_params(
    c: &SortedParamsConfig,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    const R: &str = "sorted_params";
    let secret = ctx.bindings.get(&c.secret_binding)?;
    let app_key = ctx.bindings.text(R, &c.app_key_binding)?.to_string();
    let json_obj = match c.location {
        ParamsLocation::Json => Some(req.json_object(R)?),
        _ => None,
    };
    let params: Vec<(String, String)> = match c.location {
        ParamsLocation::Query => req.query.clone(),
        ParamsLocation::Form => {
            let text = std::str::from_utf8(&req.body)
                .map_err(|_| OutboundError::recipe(R, "form body is not UTF-8"))?;
            crypto::parse_pairs(text).map_err(|e| OutboundError::recipe(R, e))?
        }
        ParamsLocation::Json => json_obj
            .as_ref()
            .map(|m| m.iter().filter_map(|(k, v)| json_text(v).map(|t| (k.clone(), t))).collect())
            .unwrap_or_default(),
    };
    let auth_fields = [&c.app_key_field, &c.timestamp_field, &c.nonce_field, &c.sign_field];
    if let Some((n, _)) = params.iter().find(|(n, _)| auth_fields.contains(&n)) {
        return Err(OutboundError::recipe(R, format!("the request already carries the field {n}")));
    }
    let ts = stamp(c.timestamp_unit, ctx.now_ms);
    let nonce = crypto::random_hex16().map_err(|e| OutboundError::recipe(R, e))?;
    let mut added = vec![
        (c.app_key_field.clone(), app_key),
        (c.timestamp_field.clone(), ts),
        (c.nonce_field.clone(), nonce),
    ];
    let mut all = params.clone();
    all.extend(added.iter().cloned());
    let signature = match c.style {
        ParamsStyle::Concat => {
            let cfg = LegacyConfig {
                digest: match c.digest {
                    ParamsDigest::Md5 => legacy::Digest::Md5,
                    ParamsDigest::Sha256 => legacy::Digest::Sha256,
                },
                hex_case: if c.uppercase { HexCase::Upper } else { HexCase::Lower },
                location: FieldLocation::Params,
                access_key_field: c.app_key_field.clone(),
                timestamp_field: c.timestamp_field.clone(),
                nonce_field: c.nonce_field.clone(),
                sign_field: c.sign_field.clone(),
                timestamp_unit: match c.timestamp_unit {
                    TimeUnit::Seconds => legacy::TimestampUnit::Seconds,
                    TimeUnit::Millis => legacy::TimestampUnit::Millis,
                },
                nonce_min_len: 8,
            };
            legacy::sign(&cfg, &all, secret)
        }
        ParamsStyle::Query => {
            let mut sorted: Vec<&(String, String)> =
                all.iter().filter(|(n, v)| !v.is_empty() && n != &c.sign_field).collect();
            sorted.sort();
            let mut s = Zeroizing::new(String::new());
            for (n, v) in sorted {
                s.push_str(n);
                s.push('=');
                s.push_str(v);
                s.push('&');
            }
            s.push_str(&c.secret_field);
            s.push('=');
            s.push_str(
                std::str::from_utf8(secret).map_err(|_| OutboundError::recipe(R, "secret is not UTF-8"))?,
            );
            let d = match c.digest {
                ParamsDigest::Md5 => crypto::md5(s.as_bytes()),
                ParamsDigest::Sha256 => crypto::sha256(s.as_bytes()).to_vec(),
            };
            if c.uppercase {
                hex::encode_upper(d)
            } else {
                hex::encode(d)
            }
        }
    };
    added.push((c.sign_field.clone(), signature));
    match c.location {
        ParamsLocation::Query => req.query.extend(added),
        ParamsLocation::Form => {
            let mut pairs = params;
            pairs.extend(added);
            req.body = Bytes::from(crypto::encode_pairs(&pairs));
            req.headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
        ParamsLocation::Json => {
            let mut obj = json_obj.unwrap_or_default();
            for (n, v) in added {
                obj.insert(n, Value::String(v));
            }
            req.set_json(obj);
        }
    }
    Ok(Prepared::default())
}

fn aes_encrypt(c: &AesPayloadConfig, ctx: &Ctx<'_>, plain: &[u8]) -> Result<String, OutboundError> {
    const R: &str = "aes_payload";
    let key = ctx.bindings.get(&c.key_binding)?;
    let ct = match c.mode {
        AesMode::Cbc => crypto::aes_cbc_encrypt(key, ctx.bindings.get(&c.iv_binding)?, plain),
        AesMode::Gcm => crypto::aes_gcm_encrypt(key, plain),
    }
    .map_err(|e| OutboundError::recipe(R, e))?;
    Ok(crypto::b64(&ct))
}

fn aes_decrypt(c: &AesPayloadConfig, ctx: &Ctx<'_>, text: &str) -> Result<Vec<u8>, OutboundError> {
    let bad = |e: &str| OutboundError::ResponseInvalid(format!("aes_payload: {e}"));
    let key = ctx.bindings.get(&c.key_binding)?;
    let ct = crypto::b64_decode(text).map_err(bad)?;
    match c.mode {
        AesMode::Cbc => crypto::aes_cbc_decrypt(key, ctx.bindings.get(&c.iv_binding)?, &ct),
        AesMode::Gcm => crypto::aes_gcm_decrypt(key, &ct),
    }
    .map_err(bad)
}

pub(super) fn aes_payload(
    c: &AesPayloadConfig,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    const R: &str = "aes_payload";
    if c.fields.is_empty() {
        let wrapped = aes_encrypt(c, ctx, &req.body)?;
        let mut obj = serde_json::Map::new();
        obj.insert(c.wrap_field.clone(), Value::String(wrapped));
        req.set_json(obj);
        return Ok(Prepared::default());
    }
    let mut obj = req.json_object(R)?;
    for f in &c.fields {
        if let Some(v) = obj.get(f) {
            let Some(text) = json_text(v) else { continue };
            let enc = aes_encrypt(c, ctx, text.as_bytes())?;
            obj.insert(f.clone(), Value::String(enc));
        }
    }
    req.set_json(obj);
    Ok(Prepared::default())
}

/// Decrypted text back into JSON: a JSON document if it parses, else a string.
fn plain_value(plain: Vec<u8>) -> Result<Value, OutboundError> {
    if let Ok(v) = serde_json::from_slice::<Value>(&plain) {
        return Ok(v);
    }
    String::from_utf8(plain)
        .map(Value::String)
        .map_err(|_| OutboundError::ResponseInvalid("aes_payload: decrypted value is not UTF-8".into()))
}

pub(super) fn aes_response(
    c: &AesPayloadConfig,
    ctx: &Ctx<'_>,
    resp: &mut Response<Bytes>,
) -> Result<After, OutboundError> {
    if !c.decrypt_response || !resp.status().is_success() {
        return Ok(After::Done);
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(resp.body()) else {
        return Ok(After::Done);
    };
    let fields: Vec<&String> =
        if c.fields.is_empty() { vec![&c.wrap_field] } else { c.fields.iter().collect() };
    let mut changed = false;
    for f in fields {
        if let Some(Value::String(s)) = obj.get(f.as_str()) {
            let plain = aes_decrypt(c, ctx, s)?;
            let v = plain_value(plain)?;
            if c.fields.is_empty() {
                // The whole body was wrapped: the decrypted document replaces it.
                *resp.body_mut() = Bytes::from(match &v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                resp.headers_mut().remove(http::header::CONTENT_LENGTH);
                return Ok(After::Done);
            }
            obj.insert(f.clone(), v);
            changed = true;
        }
    }
    if changed {
        *resp.body_mut() = Bytes::from(Value::Object(obj).to_string());
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    Ok(After::Done)
}
