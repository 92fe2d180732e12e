// KG1 behaviour beyond the vectors: auth header errors, tampering, header canonicalization.
// Must not depend on vector files: expected strings here are written out by hand.

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate_sign::digest::{sha256_hex, EMPTY_SHA256_HEX};
use keygate_sign::kg1::{self, header, Kg1Auth, RequestParts};
use keygate_sign::{SignError, Signer};
use secrecy::SecretBox;

const SIG: &str = "8e5fbc9ad6f35c6c4a6d3bb2e3f1c0a7e6d5c4b3a29180706f5e4d3c2b1a0918";

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in pairs {
        m.append(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_bytes(v.as_bytes()).expect("value"),
        );
    }
    m
}

fn valid() -> Vec<(&'static str, &'static str)> {
    vec![
        ("x-kg-key", "AK1"),
        ("x-kg-timestamp", "1700000000"),
        ("x-kg-nonce", "abcdefghijklmnop"),
        ("x-kg-signature", SIG),
    ]
}

fn with(extra: &[(&str, &str)], without: &[&str]) -> HeaderMap {
    let mut pairs: Vec<(&str, &str)> = valid()
        .into_iter()
        .filter(|(n, _)| !without.contains(n) && !extra.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)))
        .collect();
    pairs.extend_from_slice(extra);
    map(&pairs)
}

fn malformed(field: &str, reason: &'static str) -> SignError {
    SignError::Malformed { field: field.to_owned(), reason }
}

#[test]
fn from_headers_accepts_valid_fields() {
    let auth = Kg1Auth::from_headers(&with(&[("X-Kg-Signed-Headers", "content-type;host;x-b")], &[]))
        .expect("valid");
    assert_eq!(auth.access_key, "AK1");
    assert_eq!(auth.timestamp, 1_700_000_000);
    assert_eq!(auth.nonce, "abcdefghijklmnop");
    assert_eq!(auth.signed_headers, ["content-type", "host", "x-b"]);
    // Upper-case signature hex, an empty signed-headers value, limits at their edges.
    let upper = SIG.to_ascii_uppercase();
    let long_key = "k".repeat(128);
    let long_nonce = "N".repeat(64);
    let h = map(&[
        ("x-kg-key", &long_key),
        ("x-kg-timestamp", "999999999999"),
        ("x-kg-nonce", &long_nonce),
        ("x-kg-signed-headers", ""),
        ("x-kg-signature", &upper),
    ]);
    let auth = Kg1Auth::from_headers(&h).expect("edges");
    assert!(auth.signed_headers.is_empty());
    assert_eq!(auth.timestamp, 999_999_999_999);
    assert_eq!(Kg1Auth::from_headers(&with(&[("x-kg-timestamp", "0")], &[])).map(|a| a.timestamp), Ok(0));
    assert!(Kg1Auth::from_headers(&with(&[("x-kg-key", "!~a:b/c")], &[])).is_ok());
    assert!(Kg1Auth::from_headers(&with(&[("x-kg-nonce", "a-b_c-d_e-f_g-h_")], &[])).is_ok());
}

#[test]
fn from_headers_errors() {
    let k129 = "k".repeat(129);
    let n65 = "n".repeat(65);
    let sig63 = &SIG[..63];
    let sig65 = format!("{SIG}0");
    let sig_bad = format!("{}g", &SIG[..63]);
    type Case<'a> = (&'a str, HeaderMap, SignError);
    let cases: Vec<Case<'_>> = vec![
        ("no headers", HeaderMap::new(), SignError::MissingAuth),
        ("unrelated only", map(&[("host", "h"), ("x-kg-other", "1")]), SignError::MissingAuth),
        ("missing key", with(&[], &["x-kg-key"]), SignError::MissingField("x-kg-key")),
        ("missing timestamp", with(&[], &["x-kg-timestamp"]), SignError::MissingField("x-kg-timestamp")),
        ("missing nonce", with(&[], &["x-kg-nonce"]), SignError::MissingField("x-kg-nonce")),
        ("missing signature", with(&[], &["x-kg-signature"]), SignError::MissingField("x-kg-signature")),
        ("only signed headers", map(&[("x-kg-signed-headers", "host")]), SignError::MissingField("x-kg-key")),
        ("only signature", map(&[("x-kg-signature", SIG)]), SignError::MissingField("x-kg-key")),
        ("empty key", with(&[("x-kg-key", "")], &[]), malformed("x-kg-key", "empty")),
        ("long key", with(&[("x-kg-key", &k129)], &[]), malformed("x-kg-key", "longer than 128 bytes")),
        ("key with space", with(&[("x-kg-key", "a b")], &[]), malformed("x-kg-key", "not visible ASCII")),
        ("key with tab", with(&[("x-kg-key", "a\tb")], &[]), malformed("x-kg-key", "not visible ASCII")),
        ("key obs-text", with(&[("x-kg-key", "caf\u{e9}")], &[]), malformed("x-kg-key", "not visible ASCII")),
        (
            "empty timestamp",
            with(&[("x-kg-timestamp", "")], &[]),
            malformed("x-kg-timestamp", "not 1 to 12 digits"),
        ),
        (
            "13 digits",
            with(&[("x-kg-timestamp", "1700000000000")], &[]),
            malformed("x-kg-timestamp", "not 1 to 12 digits"),
        ),
        (
            "negative",
            with(&[("x-kg-timestamp", "-1")], &[]),
            malformed("x-kg-timestamp", "not 1 to 12 digits"),
        ),
        (
            "plus sign",
            with(&[("x-kg-timestamp", "+1700000000")], &[]),
            malformed("x-kg-timestamp", "not 1 to 12 digits"),
        ),
        (
            "fraction",
            with(&[("x-kg-timestamp", "1700000000.5")], &[]),
            malformed("x-kg-timestamp", "not 1 to 12 digits"),
        ),
        (
            "spaces",
            with(&[("x-kg-timestamp", " 1700000000")], &[]),
            malformed("x-kg-timestamp", "not 1 to 12 digits"),
        ),
        (
            "leading zero",
            with(&[("x-kg-timestamp", "01700000000")], &[]),
            malformed("x-kg-timestamp", "leading zero"),
        ),
        (
            "short nonce",
            with(&[("x-kg-nonce", "abcdefghijklmno")], &[]),
            malformed("x-kg-nonce", "not 16 to 64 characters"),
        ),
        (
            "long nonce",
            with(&[("x-kg-nonce", &n65)], &[]),
            malformed("x-kg-nonce", "not 16 to 64 characters"),
        ),
        (
            "nonce dot",
            with(&[("x-kg-nonce", "abcdefghijklmno.")], &[]),
            malformed("x-kg-nonce", "character outside [A-Za-z0-9_-]"),
        ),
        (
            "nonce space",
            with(&[("x-kg-nonce", "abcdefgh ijklmnop")], &[]),
            malformed("x-kg-nonce", "character outside [A-Za-z0-9_-]"),
        ),
        (
            "nonce plus",
            with(&[("x-kg-nonce", "abcdefghijklmno+")], &[]),
            malformed("x-kg-nonce", "character outside [A-Za-z0-9_-]"),
        ),
        ("sig 63", with(&[("x-kg-signature", sig63)], &[]), malformed("x-kg-signature", "not 64 hex digits")),
        (
            "sig 65",
            with(&[("x-kg-signature", &sig65)], &[]),
            malformed("x-kg-signature", "not 64 hex digits"),
        ),
        (
            "sig non-hex",
            with(&[("x-kg-signature", &sig_bad)], &[]),
            malformed("x-kg-signature", "not 64 hex digits"),
        ),
        ("sig empty", with(&[("x-kg-signature", "")], &[]), malformed("x-kg-signature", "not 64 hex digits")),
        (
            "sh uppercase",
            with(&[("x-kg-signed-headers", "Host")], &[]),
            malformed("x-kg-signed-headers", "header name not lowercase"),
        ),
        (
            "sh unsorted",
            with(&[("x-kg-signed-headers", "host;content-type")], &[]),
            malformed("x-kg-signed-headers", "names not strictly sorted"),
        ),
        (
            "sh duplicate",
            with(&[("x-kg-signed-headers", "host;host")], &[]),
            malformed("x-kg-signed-headers", "names not strictly sorted"),
        ),
        (
            "sh empty name",
            with(&[("x-kg-signed-headers", "content-type;;host")], &[]),
            malformed("x-kg-signed-headers", "empty header name"),
        ),
        (
            "sh trailing ;",
            with(&[("x-kg-signed-headers", "host;")], &[]),
            malformed("x-kg-signed-headers", "empty header name"),
        ),
        (
            "sh lone ;",
            with(&[("x-kg-signed-headers", ";")], &[]),
            malformed("x-kg-signed-headers", "empty header name"),
        ),
        (
            "sh space",
            with(&[("x-kg-signed-headers", "content-type; host")], &[]),
            malformed("x-kg-signed-headers", "invalid character in header name"),
        ),
        (
            "sh comma",
            with(&[("x-kg-signed-headers", "content-type,host")], &[]),
            malformed("x-kg-signed-headers", "invalid character in header name"),
        ),
        (
            "sh pseudo",
            with(&[("x-kg-signed-headers", ":authority")], &[]),
            malformed("x-kg-signed-headers", "invalid character in header name"),
        ),
        (
            "sh x-kg",
            with(&[("x-kg-signed-headers", "host;x-kg-nonce")], &[]),
            malformed("x-kg-signed-headers", "x-kg-* headers cannot be signed"),
        ),
    ];
    for (name, headers, want) in cases {
        let got = Kg1Auth::from_headers(&headers).expect_err(name);
        assert_eq!(got, want, "{name}");
        let code = if want == SignError::MissingAuth { "missing_auth" } else { "malformed_auth" };
        assert_eq!(got.code(), code, "{name}");
    }
}

#[test]
fn from_headers_refuses_every_duplicate() {
    for name in header::ALL {
        let mut h = with(&[("x-kg-signed-headers", "host")], &[]);
        let again = h.get(name).expect("present").clone();
        h.append(name, again);
        assert_eq!(Kg1Auth::from_headers(&h).expect_err(name), SignError::DuplicateField(name.to_owned()));
    }
    // A duplicate is reported even when other fields are missing.
    let h = map(&[("x-kg-nonce", "abcdefghijklmnop"), ("X-Kg-Nonce", "abcdefghijklmnop")]);
    assert_eq!(Kg1Auth::from_headers(&h).expect_err("dup"), SignError::DuplicateField("x-kg-nonce".into()));
}

#[test]
fn errors_never_echo_values() {
    let secretish = "S3CR3TVALUE-0123456789";
    let (k, n, s) = (format!("{secretish} x"), format!("{secretish}!"), format!("{secretish}zz"));
    let bad = [
        with(&[("x-kg-key", &k)], &[]),
        with(&[("x-kg-nonce", &n)], &[]),
        with(&[("x-kg-signature", &s)], &[]),
    ];
    for h in bad {
        let e = Kg1Auth::from_headers(&h).expect_err("malformed");
        assert!(!e.to_string().contains(secretish), "{e}");
        assert!(!format!("{e:?}").contains(secretish), "{e:?}");
    }
}

/// A request and the secret that signed it; `verify` runs the gateway's steps.
#[derive(Clone)]
struct Req {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn verify(&self, secret: &[u8]) -> Result<(), SignError> {
        let auth = Kg1Auth::from_headers(&self.headers)?;
        let parts = RequestParts {
            method: &self.method,
            raw_path: &self.path,
            raw_query: self.query.as_deref(),
            headers: &self.headers,
            authority: None,
        };
        auth.verify_request(secret, &parts, &sha256_hex(&self.body))
    }
}

fn signed_request() -> Req {
    let headers = map(&[
        ("host", "api.example.com"),
        ("content-type", "application/json"),
        ("x-trace", "t1"),
        ("x-unsigned", "u"),
    ]);
    let body = br#"{"amount":100}"#.to_vec();
    let signer = Signer::new("AK-TAMPER", SecretBox::from(b"tamper-secret".to_vec()))
        .with_signed_headers(["Host", "content-type", "x-trace"])
        .expect("names");
    let out = signer
        .sign_at("POST", "/v1/orders?b=2&a=1", &headers, &body, 1_700_000_000, "tamper-nonce-0001")
        .expect("sign");
    let mut headers = headers;
    out.apply(&mut headers);
    Req { method: "POST".into(), path: "/v1/orders".into(), query: Some("b=2&a=1".into()), headers, body }
}

#[test]
fn tampering_any_component_breaks_the_signature() {
    let secret = b"tamper-secret";
    let base = signed_request();
    assert_eq!(base.verify(secret), Ok(()));
    // Harmless changes: unsigned header, query order, lowercase method, hex case of the signature.
    let mut ok = base.clone();
    ok.headers.insert("x-unsigned", HeaderValue::from_static("changed"));
    ok.query = Some("a=1&b=2".into());
    ok.method = "post".into();
    let sig = ok.headers[header::SIGNATURE].to_str().expect("ascii").to_ascii_uppercase();
    ok.headers.insert(header::SIGNATURE, HeaderValue::from_str(&sig).expect("hex"));
    assert_eq!(ok.verify(secret), Ok(()));

    type Tamper = fn(&mut Req);
    let tampers: &[(&str, Tamper)] = &[
        ("method", |r| r.method = "PUT".into()),
        ("path", |r| r.path = "/v1/orderz".into()),
        ("path trailing slash", |r| r.path = "/v1/orders/".into()),
        ("path encoding", |r| r.path = "/v1/%6Frders".into()),
        ("query value", |r| r.query = Some("b=3&a=1".into())),
        ("query added", |r| r.query = Some("b=2&a=1&c=".into())),
        ("query removed", |r| r.query = Some("b=2".into())),
        ("query plus vs space", |r| r.query = Some("b=2&a=1+".into())),
        ("host", |r| {
            r.headers.insert("host", HeaderValue::from_static("evil.example.com"));
        }),
        ("content-type", |r| {
            r.headers.insert("content-type", HeaderValue::from_static("text/plain"));
        }),
        ("x-trace", |r| {
            r.headers.insert("x-trace", HeaderValue::from_static("t2"));
        }),
        ("x-trace repeated", |r| {
            r.headers.append("x-trace", HeaderValue::from_static("t1"));
        }),
        ("body", |r| r.body = br#"{"amount":900}"#.to_vec()),
        ("body emptied", |r| r.body.clear()),
        ("timestamp", |r| {
            r.headers.insert(header::TIMESTAMP, HeaderValue::from_static("1700000001"));
        }),
        ("nonce", |r| {
            r.headers.insert(header::NONCE, HeaderValue::from_static("tamper-nonce-0002"));
        }),
        ("key", |r| {
            r.headers.insert(header::KEY, HeaderValue::from_static("AK-OTHER"));
        }),
        ("signed headers list", |r| {
            r.headers.insert(header::SIGNED_HEADERS, HeaderValue::from_static("content-type;host"));
        }),
        ("signature", |r| {
            let mut s = r.headers[header::SIGNATURE].to_str().expect("ascii").to_owned();
            let last = if s.ends_with('0') { "1" } else { "0" };
            s.replace_range(63.., last);
            r.headers.insert(header::SIGNATURE, HeaderValue::from_str(&s).expect("hex"));
        }),
    ];
    for (name, tamper) in tampers {
        let mut r = base.clone();
        tamper(&mut r);
        assert_eq!(r.verify(secret), Err(SignError::SignatureMismatch), "{name}");
    }
    assert_eq!(base.verify(b"tamper-secreT"), Err(SignError::SignatureMismatch));
}

#[test]
fn removing_a_signed_header_is_reported() {
    let mut r = signed_request();
    r.headers.remove("content-type");
    assert_eq!(r.verify(b"tamper-secret"), Err(SignError::SignedHeaderMissing("content-type".into())));
    assert_eq!(SignError::SignedHeaderMissing("x".into()).code(), "malformed_auth");
}

fn parts<'a>(headers: &'a HeaderMap, authority: Option<&'a str>) -> RequestParts<'a> {
    RequestParts { method: "get", raw_path: "", raw_query: None, headers, authority }
}

fn sts(req: &RequestParts<'_>, signed: &[&str]) -> Result<String, SignError> {
    let signed: Vec<String> = signed.iter().map(|s| (*s).to_owned()).collect();
    kg1::string_to_sign(req, "AK", 1_700_000_000, "abcdefghijklmnop", &signed, EMPTY_SHA256_HEX)
}

const PREFIX: &str = "KG1-HMAC-SHA256\nGET\n/\n\nAK\n1700000000\nabcdefghijklmnop\n";

#[test]
fn string_to_sign_layout() {
    let h = HeaderMap::new();
    assert_eq!(sts(&parts(&h, None), &[]), Ok(format!("{PREFIX}\n{EMPTY_SHA256_HEX}")));
    let h = map(&[("Host", "h.example"), ("x-a", " 1 \t 2 "), ("x-a", "3"), ("x-e", "")]);
    assert_eq!(
        sts(&parts(&h, None), &["host", "x-a", "x-e"]),
        Ok(format!("{PREFIX}host;x-a;x-e\nhost:h.example\nx-a:1 2,3\nx-e:\n{EMPTY_SHA256_HEX}"))
    );
}

#[test]
fn host_comes_from_authority_only_when_absent() {
    let empty = HeaderMap::new();
    assert_eq!(
        sts(&parts(&empty, Some("api.example.com:8443")), &["host"]),
        Ok(format!("{PREFIX}host\nhost:api.example.com:8443\n{EMPTY_SHA256_HEX}"))
    );
    let with_host = map(&[("host", "from-header")]);
    assert_eq!(
        sts(&parts(&with_host, Some("from-authority")), &["host"]),
        Ok(format!("{PREFIX}host\nhost:from-header\n{EMPTY_SHA256_HEX}"))
    );
    assert_eq!(sts(&parts(&empty, None), &["host"]), Err(SignError::SignedHeaderMissing("host".into())));
    // :authority stands in for host only, never for another header.
    assert_eq!(
        sts(&parts(&empty, Some("a")), &["content-type"]),
        Err(SignError::SignedHeaderMissing("content-type".into()))
    );
}

#[test]
fn string_to_sign_refuses_unsafe_inputs() {
    let h = map(&[("x-bin", "caf\u{e9}"), ("x-ok", "ok")]);
    let mut obs = HeaderMap::new();
    obs.insert("x-obs", HeaderValue::from_bytes(b"a\x80b").expect("obs-text is allowed by http"));
    let p = parts(&h, None);
    assert_eq!(sts(&p, &["x-bin"]), Err(malformed("x-bin", "header value is not visible ASCII")));
    assert_eq!(
        sts(&parts(&obs, None), &["x-obs"]),
        Err(malformed("x-obs", "header value is not visible ASCII"))
    );
    // The list order is checked before any value is read.
    assert_eq!(
        sts(&p, &["x-ok", "x-bin"]),
        Err(malformed("x-kg-signed-headers", "names not strictly sorted"))
    );
    assert_eq!(sts(&p, &["X-Ok"]), Err(malformed("x-kg-signed-headers", "header name not lowercase")));
    assert_eq!(
        sts(&p, &["x-kg-key"]),
        Err(malformed("x-kg-signed-headers", "x-kg-* headers cannot be signed"))
    );

    let base = HeaderMap::new();
    let with_method = |m| RequestParts { method: m, ..parts(&base, None) };
    assert_eq!(sts(&with_method("GET\nX"), &[]), Err(malformed("method", "not an HTTP token")));
    assert_eq!(sts(&with_method(""), &[]), Err(malformed("method", "not an HTTP token")));
    let with_path = |p| RequestParts { raw_path: p, ..parts(&base, None) };
    assert_eq!(
        sts(&with_path("/a\nb"), &[]),
        Err(SignError::InvalidPath("control character, space or non-ASCII byte"))
    );
    assert_eq!(sts(&with_path("/a/../b"), &[]), Err(SignError::InvalidPath("dot segment")));
    let with_query = |q| RequestParts { raw_query: Some(q), ..parts(&base, None) };
    assert_eq!(sts(&with_query("a=%"), &[]), Err(SignError::InvalidPercentEncoding));

    let req = parts(&base, None);
    let none: Vec<String> = Vec::new();
    let call =
        |ak: &str, ts: i64, nonce: &str, body: &str| kg1::string_to_sign(&req, ak, ts, nonce, &none, body);
    assert_eq!(
        call("A\nK", 1, "abcdefghijklmnop", EMPTY_SHA256_HEX),
        Err(malformed("x-kg-key", "not visible ASCII"))
    );
    assert_eq!(
        call("AK", -1, "abcdefghijklmnop", EMPTY_SHA256_HEX),
        Err(malformed("x-kg-timestamp", "out of range"))
    );
    assert_eq!(
        call("AK", 1_000_000_000_000, "abcdefghijklmnop", EMPTY_SHA256_HEX),
        Err(malformed("x-kg-timestamp", "out of range"))
    );
    assert_eq!(
        call("AK", 1, "short", EMPTY_SHA256_HEX),
        Err(malformed("x-kg-nonce", "not 16 to 64 characters"))
    );
    let upper = EMPTY_SHA256_HEX.to_ascii_uppercase();
    assert_eq!(
        call("AK", 1, "abcdefghijklmnop", &upper),
        Err(malformed("body_sha256", "not 64 lowercase hex digits"))
    );
    assert_eq!(
        call("AK", 1, "abcdefghijklmnop", "abc"),
        Err(malformed("body_sha256", "not 64 lowercase hex digits"))
    );
}

#[test]
fn sign_string_matches_rfc4231_case_2() {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert_eq!(
        kg1::sign_string(b"Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
