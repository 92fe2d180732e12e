// Owns the glue between a request and a scripted recipe: what the script receives (headers,
// path, query, JSON body, its named bindings and vars) and how its result becomes the request
// (headers checked, an absolute URI only to an allowed host, query and body re-encoded).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use zeroize::Zeroizing;

use super::{Ctx, OutRequest, Prepared};
use crate::config::ScriptConfig;
use crate::error::OutboundError;
use crate::script::{self, Bridge, Limits, ScriptRequest};

const R: &str = "script";

type Args = (Vec<Option<Zeroizing<String>>>, Vec<Zeroizing<String>>);

/// Values for the parameters after the first three: the binding of that name, else the var.
fn arguments(c: &ScriptConfig, ctx: &Ctx<'_>, source: &str) -> Result<Args, OutboundError> {
    let names = script::parameters(source).map_err(|e| OutboundError::recipe(R, e))?;
    let mut args = Vec::new();
    let mut secrets = Vec::new();
    for n in names.iter().skip(3) {
        if let Ok(v) = ctx.bindings.text(R, n) {
            secrets.push(Zeroizing::new(v.to_string()));
            args.push(Some(Zeroizing::new(v.to_string())));
        } else if let Some(v) = c.vars.get(n) {
            args.push(Some(Zeroizing::new(v.clone())));
        } else {
            return Err(OutboundError::BindingMissing(n.clone()));
        }
    }
    Ok((args, secrets))
}

fn bridge(ctx: &Ctx<'_>, token_key: &str, secrets: Vec<Zeroizing<String>>) -> Arc<Bridge> {
    Arc::new(Bridge {
        handle: tokio::runtime::Handle::current(),
        client: ctx.client.clone(),
        timeout: ctx.remaining(),
        tokens: ctx.tokens.clone(),
        token_key: token_key.to_string(),
        secrets,
        holds_token_lock: Default::default(),
        mocks: ctx.test.map(|t| t.mocks.clone()),
        trace: ctx.test.map(|t| t.trace.clone()),
    })
}

fn limits(c: &ScriptConfig) -> Limits {
    Limits {
        cpu: Duration::from_millis(c.cpu_ms),
        memory_bytes: usize::try_from(c.memory_mb).unwrap_or(16).saturating_mul(1 << 20),
        ..Limits::default()
    }
}

pub(super) async fn prepare(
    c: &ScriptConfig,
    ctx: &Ctx<'_>,
    req: &mut OutRequest,
) -> Result<Prepared, OutboundError> {
    let pool = ctx.scripts.ok_or_else(|| OutboundError::recipe(R, "script workers are not configured"))?;
    let (args, secrets) = arguments(c, ctx, &c.source)?;
    let headers: BTreeMap<String, String> = req
        .headers
        .iter()
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_string(), v.to_string())))
        .collect();
    let body = if req.body.is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        match serde_json::from_slice::<serde_json::Value>(&req.body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => serde_json::Value::Null,
        }
    };
    let json_body = !body.is_null();
    let input =
        ScriptRequest { headers, uri: req.path.clone(), params: req.query.iter().cloned().collect(), body };
    let token_key = ctx.token_key("script");
    let bridge = bridge(ctx, &token_key, secrets);
    let limits = limits(c);
    let out = pool
        .run(Arc::from(c.source.as_str()), args, input, limits, bridge)
        .await
        .map_err(|e| OutboundError::recipe(R, e))?;

    let mut headers = http::HeaderMap::new();
    for (n, v) in &out.headers {
        let name = HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| OutboundError::recipe(R, format!("invalid header name {n}")))?;
        let mut value = HeaderValue::from_str(v)
            .map_err(|_| OutboundError::recipe(R, format!("invalid value for header {n}")))?;
        if name == http::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        headers.insert(name, value);
    }
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(http::header::HOST);
    req.headers = headers;
    if out.uri.starts_with("http://") || out.uri.starts_with("https://") {
        req.url_override = Some(out.uri.clone());
    } else if out.uri.starts_with('/') {
        req.path = out.uri.clone();
    } else {
        return Err(OutboundError::recipe(R, "setURI needs a path starting with / or an http(s) URL"));
    }
    req.query = out.params.into_iter().collect();
    if json_body {
        req.body = Bytes::from(out.body.to_string());
        req.headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    // The token the script used (if it used the cache): dropped if the provider refuses it.
    let token = ctx.tokens.current(&token_key).map(|t| (token_key, t));
    Ok(Prepared { token, note: None })
}

/// The response hook, if any: edits headers and the JSON body in place; `"clear_token"` (or a
/// 401) asks the dispatcher to drop the token and retry once.
pub(super) async fn on_response(
    c: &ScriptConfig,
    ctx: &Ctx<'_>,
    resp: &mut http::Response<Bytes>,
) -> Result<super::After, OutboundError> {
    let rejected = resp.status() == http::StatusCode::UNAUTHORIZED;
    let Some(source) = &c.response_source else {
        return Ok(if rejected { super::After::TokenRejected } else { super::After::Done });
    };
    let pool = ctx.scripts.ok_or_else(|| OutboundError::recipe(R, "script workers are not configured"))?;
    let (args, secrets) = arguments(c, ctx, source)?;
    let headers: BTreeMap<String, String> = resp
        .headers()
        .iter()
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_string(), v.to_string())))
        .collect();
    let body = match serde_json::from_slice::<serde_json::Value>(resp.body()) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => serde_json::Value::Null,
    };
    let json_body = !body.is_null();
    let input = ScriptRequest { headers, uri: String::new(), params: Default::default(), body };
    let status = resp.status().as_u16();
    let bridge = bridge(ctx, &ctx.token_key("script"), secrets);
    let (out, clear) = pool
        .run_response(Arc::from(source.as_str()), args, input, status, limits(c), bridge)
        .await
        .map_err(|e| OutboundError::recipe(R, format!("response hook: {e}")))?;
    let mut headers = http::HeaderMap::new();
    for (n, v) in &out.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_str(v)) {
            headers.insert(n, v);
        }
    }
    headers.remove(http::header::CONTENT_LENGTH);
    *resp.headers_mut() = headers;
    if json_body {
        *resp.body_mut() = Bytes::from(out.body.to_string());
    }
    Ok(if clear || rejected { super::After::TokenRejected } else { super::After::Done })
}
