// The Rust SDK end to end: Signer output parsed and verified the way the gateway does it.
// Must not reach a network: requests are built in memory.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use keygate_sign::digest::sha256_hex;
use keygate_sign::kg1::{self, header, Kg1Auth, RequestParts};
use keygate_sign::{SignError, Signer};
use secrecy::SecretBox;

fn signer(secret: &[u8]) -> Signer {
    Signer::new("AK-SDK-1", SecretBox::from(secret.to_vec()))
}

/// Verifies like the gateway: headers as received, path/query split from the target.
fn gateway_verify(
    secret: &[u8],
    method: &str,
    target: &str,
    headers: &HeaderMap,
    authority: Option<&str>,
    body: &[u8],
) -> Result<Kg1Auth, SignError> {
    let auth = Kg1Auth::from_headers(headers)?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let req = RequestParts { method, raw_path: path, raw_query: query, headers, authority };
    let sts = kg1::string_to_sign(
        &req,
        &auth.access_key,
        auth.timestamp,
        &auth.nonce,
        &auth.signed_headers,
        &sha256_hex(body),
    )?;
    kg1::verify(secret, &sts, &auth)?;
    Ok(auth)
}

#[test]
fn round_trip_with_current_time() {
    let s = signer(b"sdk-secret").with_signed_headers(["Content-Type", "HOST", "host"]).expect("names");
    assert_eq!(s.signed_header_names(), ["content-type", "host"]);
    assert_eq!(s.access_key(), "AK-SDK-1");
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let body = br#"{"x":1}"#;
    let out = s.sign("post", "/v1/orders?b=2&a=1", &headers, body).expect("sign");
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [header::KEY, header::TIMESTAMP, header::NONCE, header::SIGNED_HEADERS, header::SIGNATURE]
    );
    out.apply(&mut headers);

    let auth =
        gateway_verify(b"sdk-secret", "POST", "/v1/orders?b=2&a=1", &headers, None, body).expect("verifies");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let now = i64::try_from(now).expect("fits");
    assert!((auth.timestamp - now).abs() <= 5, "timestamp is now");
    assert_eq!(auth.nonce.len(), 32);
    assert_eq!(auth.signed_headers, ["content-type", "host"]);

    assert_eq!(
        gateway_verify(b"wrong-secret", "POST", "/v1/orders?b=2&a=1", &headers, None, body).map(drop),
        Err(SignError::SignatureMismatch)
    );
    // Two signatures of the same request differ by nonce.
    let again = s.sign("POST", "/v1/orders?b=2&a=1", &headers, body).expect("sign");
    assert_ne!(again.get(header::NONCE), out.get(header::NONCE));
}

#[test]
fn no_signed_headers_omits_the_list() {
    let s = signer(b"k");
    let out = s.sign("GET", "/", &HeaderMap::new(), b"").expect("sign");
    assert!(out.get(header::SIGNED_HEADERS).is_none());
    let mut h = HeaderMap::new();
    out.apply(&mut h);
    assert!(gateway_verify(b"k", "GET", "/", &h, None, b"").is_ok());
}

#[test]
fn absolute_url_supplies_host_for_http2() {
    let s = signer(b"h2").with_signed_headers(["host"]).expect("names");
    let out = s
        .sign_at(
            "GET",
            "https://API.example.com:8443/v1/x?q=1",
            &HeaderMap::new(),
            b"",
            1_700_000_000,
            "abcdefghijklmnop",
        )
        .expect("sign");
    let mut h = HeaderMap::new();
    out.apply(&mut h);
    // Over HTTP/2 the gateway sees no Host header, only :authority.
    assert!(gateway_verify(b"h2", "GET", "/v1/x?q=1", &h, Some("api.example.com:8443"), b"").is_ok());
    // Over HTTP/1.1 the client sends Host.
    h.insert("host", HeaderValue::from_static("api.example.com:8443"));
    assert!(gateway_verify(b"h2", "GET", "/v1/x?q=1", &h, None, b"").is_ok());
    // Default port is dropped, as clients do.
    let out = s
        .sign_at(
            "GET",
            "https://api.example.com:443/",
            &HeaderMap::new(),
            b"",
            1_700_000_000,
            "abcdefghijklmnop",
        )
        .expect("sign");
    let mut h = HeaderMap::new();
    out.apply(&mut h);
    h.insert("host", HeaderValue::from_static("api.example.com"));
    assert!(gateway_verify(b"h2", "GET", "/", &h, None, b"").is_ok());
    // An explicit Host header wins over the URL.
    let mut explicit = HeaderMap::new();
    explicit.insert("host", HeaderValue::from_static("other.example"));
    let sts = s
        .string_to_sign("GET", "https://api.example.com/", &explicit, b"", 1, "abcdefghijklmnop")
        .expect("sts");
    assert!(sts.contains("\nhost:other.example\n"), "{sts}");
}

#[test]
fn signer_refuses_what_the_gateway_would_refuse() {
    let s = signer(b"k");
    let h = HeaderMap::new();
    let at = |method: &str, uri: &str, nonce: &str| {
        s.sign_at(method, uri, &h, b"", 1_700_000_000, nonce).map(drop)
    };
    assert_eq!(at("GET", "/a/../b", "abcdefghijklmnop"), Err(SignError::InvalidPath("dot segment")));
    assert_eq!(
        at("GET", "/a b", "abcdefghijklmnop"),
        Err(SignError::InvalidPath("control character, space or non-ASCII byte"))
    );
    assert_eq!(at("GET", "/a?x=%", "abcdefghijklmnop"), Err(SignError::InvalidPercentEncoding));
    assert!(matches!(at("GE T", "/", "abcdefghijklmnop"), Err(SignError::Malformed { .. })));
    assert!(matches!(at("GET", "/", "short"), Err(SignError::Malformed { .. })));
    let bad_key = Signer::new("a b", SecretBox::from(b"k".to_vec()));
    assert!(matches!(bad_key.sign("GET", "/", &h, b""), Err(SignError::Malformed { .. })));
    let host = signer(b"k").with_signed_headers(["host"]).expect("names");
    assert_eq!(host.sign("GET", "/", &h, b"").map(drop), Err(SignError::SignedHeaderMissing("host".into())));

    for bad in [vec![""], vec!["x-kg-nonce"], vec!["a b"], vec!["a:b"], vec!["caf\u{e9}"]] {
        assert!(signer(b"k").with_signed_headers(bad.clone()).is_err(), "{bad:?}");
    }
}

#[test]
fn apply_replaces_stale_auth_headers() {
    let s = signer(b"k");
    let mut h = HeaderMap::new();
    h.insert(header::SIGNATURE, HeaderValue::from_static("stale"));
    h.append(header::NONCE, HeaderValue::from_static("stale-nonce-0000001"));
    h.append(header::NONCE, HeaderValue::from_static("stale-nonce-0000002"));
    let out = s.sign("GET", "/", &HeaderMap::new(), b"").expect("sign");
    out.apply(&mut h);
    assert_eq!(h.get_all(header::NONCE).iter().count(), 1);
    assert!(gateway_verify(b"k", "GET", "/", &h, None, b"").is_ok());
}

#[test]
fn signs_a_reqwest_request_as_it_will_be_sent() {
    // reqwest normalises the URL (host case, default port, path escapes) before sending, so
    // the SDK must be given `url.as_str()`, the form that goes on the wire.
    let client = reqwest::Client::new();
    let mut req = client
        .post("http://API.Example.com:80/v1/a b/%7e?x=1&a=%2f")
        .header("content-type", "application/json")
        .body(r#"{"k":"v"}"#)
        .build()
        .expect("request");
    let url = req.url().as_str().to_owned();
    let body = req.body().and_then(|b| b.as_bytes()).expect("buffered body").to_vec();
    let s = signer(b"rq").with_signed_headers(["content-type", "host"]).expect("names");
    let out = s.sign(req.method().as_str(), &url, req.headers(), &body).expect("sign");
    out.apply(req.headers_mut());

    // What the gateway receives: Host as the client sends it, path and query from the URL.
    let mut received = req.headers().clone();
    received.insert("host", HeaderValue::from_static("api.example.com"));
    let target = format!("{}?{}", req.url().path(), req.url().query().expect("query"));
    assert_eq!(target, "/v1/a%20b/%7e?x=1&a=%2f");
    assert!(gateway_verify(b"rq", "POST", &target, &received, None, &body).is_ok());
}
