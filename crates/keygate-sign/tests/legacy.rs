// legacy-sorted behaviour: DESIGN example, digest/case variants, locations, units, refusals.
// Must not take expected digests from this crate: they were computed with Python hashlib.

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate_sign::legacy::{self, Digest, FieldLocation, HexCase, LegacyConfig, TimestampUnit};
use keygate_sign::SignError;

const DESIGN_QUERY: &str = "appId=zs001&timeStamp=1612691221000&nonce=1234567890&k1=v1&k2=v2&method=cancel";
const DESIGN_STRING: &str = "appIdzs001k1v1k2v2methodcancelnonce1234567890timeStamp1612691221000miyao";

fn design_params() -> Vec<(String, String)> {
    [
        ("appId", "zs001"),
        ("timeStamp", "1612691221000"),
        ("nonce", "1234567890"),
        ("k1", "v1"),
        ("k2", "v2"),
        ("method", "cancel"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect()
}

fn cfg(digest: Digest, hex_case: HexCase) -> LegacyConfig {
    LegacyConfig { digest, hex_case, ..LegacyConfig::default() }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in pairs {
        m.append(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_bytes(v.as_bytes()).expect("value"),
        );
    }
    m
}

#[test]
fn design_example() {
    let c = LegacyConfig::default();
    assert_eq!(legacy::string_to_sign(&design_params(), b"miyao").as_str(), DESIGN_STRING);
    assert_eq!(legacy::sign(&c, &design_params(), b"miyao"), "25E2725052CC7B4824C67FCB747321BB");

    let q = format!("{DESIGN_QUERY}&sign=25E2725052CC7B4824C67FCB747321BB");
    let auth = legacy::extract(&c, &HeaderMap::new(), Some(&q), None).expect("extract");
    assert_eq!(auth.access_key, "zs001");
    assert_eq!(auth.timestamp, 1_612_691_221_000);
    assert_eq!(auth.timestamp_secs(TimestampUnit::Millis), 1_612_691_221);
    assert_eq!(auth.nonce, "1234567890");
    assert_eq!(legacy::string_to_sign(&auth.params, b"miyao").as_str(), DESIGN_STRING);
    assert_eq!(legacy::verify(&c, &auth, b"miyao"), Ok(()));
    assert_eq!(legacy::verify(&c, &auth, b"miyaO"), Err(SignError::SignatureMismatch));
    assert!(!format!("{auth:?}").contains("25E2725052CC"));
    assert_eq!(auth.signature_prefix(), "25E27250");
}

#[test]
fn digest_and_case_variants() {
    let cases = [
        (Digest::Md5, HexCase::Lower, "25e2725052cc7b4824c67fcb747321bb"),
        (Digest::Sha1, HexCase::Lower, "dd08cf5237fde226b1d4dde97e1bb9e23bf7020a"),
        (Digest::Sha1, HexCase::Upper, "DD08CF5237FDE226B1D4DDE97E1BB9E23BF7020A"),
        (Digest::Sha256, HexCase::Lower, "5511bc54186d08cac6ed0e4508c5fe7f1546127ad65e99eb0efafb3f68e2a5b3"),
        (Digest::Sha256, HexCase::Upper, "5511BC54186D08CAC6ED0E4508C5FE7F1546127AD65E99EB0EFAFB3F68E2A5B3"),
    ];
    for (digest, case, want) in cases {
        let c = cfg(digest, case);
        assert_eq!(legacy::sign(&c, &design_params(), b"miyao"), want, "{digest} {case}");
        let q = format!("{DESIGN_QUERY}&sign={want}");
        let auth = legacy::extract(&c, &HeaderMap::new(), Some(&q), None).expect("extract");
        assert_eq!(legacy::verify(&c, &auth, b"miyao"), Ok(()), "{digest} {case}");
        // The other case is refused: the configured case is part of the contract.
        let flipped: String = want
            .chars()
            .map(|ch| if ch.is_ascii_lowercase() { ch.to_ascii_uppercase() } else { ch.to_ascii_lowercase() })
            .collect();
        let q = format!("{DESIGN_QUERY}&sign={flipped}");
        let auth = legacy::extract(&c, &HeaderMap::new(), Some(&q), None).expect("extract");
        assert_eq!(legacy::verify(&c, &auth, b"miyao"), Err(SignError::SignatureMismatch), "{digest} {case}");
    }
}

#[test]
fn sign_skips_sign_field_and_empty_values() {
    let c = LegacyConfig::default();
    let mut params = design_params();
    params.push(("sign".into(), "WHATEVER".into()));
    params.push(("empty".into(), String::new()));
    assert_eq!(legacy::sign(&c, &params, b"miyao"), "25E2725052CC7B4824C67FCB747321BB");
}

#[test]
fn headers_location() {
    let c = LegacyConfig { location: FieldLocation::Headers, ..LegacyConfig::default() };
    let h = headers(&[
        ("APPID", "app-42"),
        ("timestamp", "1700000000"),
        ("Nonce", "HdrNonce-99"),
        ("SIGN", "DA0E061C18FEE8EFC575FAD568813964"),
    ]);
    let auth = legacy::extract(&c, &h, Some("orderId=9"), None).expect("extract");
    assert_eq!(auth.access_key, "app-42");
    let names: Vec<&str> = auth.params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["appId", "nonce", "orderId", "timeStamp"]);
    assert_eq!(legacy::verify(&c, &auth, b"hdr-secret"), Ok(()));

    // An auth header given twice, or both as header and param, is ambiguous.
    let mut twice = h.clone();
    twice.append("nonce", HeaderValue::from_static("HdrNonce-98"));
    assert_eq!(
        legacy::extract(&c, &twice, None, None).expect_err("dup"),
        SignError::DuplicateField("nonce".into())
    );
    assert_eq!(
        legacy::extract(&c, &h, Some("appId=app-42"), None).expect_err("dup"),
        SignError::DuplicateField("appId".into())
    );
    let mut bad = h.clone();
    bad.insert("nonce", HeaderValue::from_bytes(b"caf\xc3\xa9-nonce").expect("obs-text"));
    assert!(matches!(legacy::extract(&c, &bad, None, None), Err(SignError::Malformed { .. })));
    // With location Params, the same headers are ignored.
    assert_eq!(
        legacy::extract(&LegacyConfig::default(), &h, Some("orderId=9"), None).expect_err("none"),
        SignError::MissingAuth
    );
}

#[test]
fn seconds_unit() {
    let c = LegacyConfig { timestamp_unit: TimestampUnit::Seconds, ..LegacyConfig::default() };
    let q = "appId=a&timeStamp=1700000000&nonce=12345678&sign=00000000000000000000000000000000";
    let auth = legacy::extract(&c, &HeaderMap::new(), Some(q), None).expect("extract");
    assert_eq!(auth.timestamp, 1_700_000_000);
    assert_eq!(auth.timestamp_secs(c.timestamp_unit), 1_700_000_000);
    assert_eq!(auth.timestamp_secs(TimestampUnit::Millis), 1_700_000);
}

#[test]
fn form_body_merge_and_plus_as_space() {
    let c = LegacyConfig::default();
    let q = "appId=zs001&timeStamp=1612691221000&sign=FE5FD161FA877823439E9C26131D0C5B";
    let body = b"nonce=1234567890&memo=hello+world%2B1&total=sum+5&blank=&novalue";
    let auth = legacy::extract(&c, &HeaderMap::new(), Some(q), Some(body)).expect("extract");
    assert_eq!(
        legacy::string_to_sign(&auth.params, b"miyao").as_str(),
        "appIdzs001memohello world+1nonce1234567890timeStamp1612691221000totalsum 5miyao"
    );
    assert_eq!(legacy::verify(&c, &auth, b"miyao"), Ok(()));
    assert!(!auth.params.iter().any(|(n, _)| n == "blank" || n == "novalue" || n == "sign"));
}

#[test]
fn duplicate_params_are_refused() {
    let c = LegacyConfig::default();
    let q = "appId=zs001&timeStamp=1612691221000&nonce=1234567890&sign=25E2725052CC7B4824C67FCB747321BB";
    let h = HeaderMap::new();
    let dup =
        |query: &str, body: Option<&[u8]>| legacy::extract(&c, &h, Some(query), body).expect_err("duplicate");
    assert_eq!(dup(&format!("{q}&k=1&k=2"), None), SignError::DuplicateField("k".into()));
    assert_eq!(dup(&format!("{q}&k=1&k="), None), SignError::DuplicateField("k".into()));
    assert_eq!(dup(&format!("{q}&k=1"), Some(b"k=1")), SignError::DuplicateField("k".into()));
    assert_eq!(dup(q, Some(b"sign=00")), SignError::DuplicateField("sign".into()));
    assert_eq!(dup(&format!("{q}&a+b=1&a%20b=2"), None), SignError::DuplicateField("a b".into()));
    assert_eq!(dup(q, Some(b"appId=zs001")).code(), "malformed_auth");
}

#[test]
fn extract_errors() {
    let c = LegacyConfig::default();
    let ok_sig = "25E2725052CC7B4824C67FCB747321BB";
    let build = |ak: &str, ts: &str, nonce: &str, sign: &str| {
        let mut q = String::from("k1=v1");
        for (n, v) in [("appId", ak), ("timeStamp", ts), ("nonce", nonce), ("sign", sign)] {
            if v != "-" {
                q.push_str(&format!("&{n}={v}"));
            }
        }
        q
    };
    let m = |field: &str, reason: &'static str| SignError::Malformed { field: field.into(), reason };
    let cases: Vec<(&str, String, SignError)> = vec![
        ("nothing", "k1=v1".into(), SignError::MissingAuth),
        ("empty key and sign", build("", "1", "12345678", ""), SignError::MissingAuth),
        ("no key", build("-", "1", "12345678", ok_sig), SignError::MissingParam("appId".into())),
        (
            "no timestamp",
            build("zs001", "-", "12345678", ok_sig),
            SignError::MissingParam("timeStamp".into()),
        ),
        (
            "empty timestamp",
            build("zs001", "", "12345678", ok_sig),
            SignError::MissingParam("timeStamp".into()),
        ),
        ("no nonce", build("zs001", "1", "-", ok_sig), SignError::MissingParam("nonce".into())),
        ("no sign", build("zs001", "1", "12345678", "-"), SignError::MissingParam("sign".into())),
        ("key with space", build("zs+001", "1", "12345678", ok_sig), m("appId", "not visible ASCII")),
        (
            "key too long",
            build(&"k".repeat(129), "1", "12345678", ok_sig),
            m("appId", "longer than 128 bytes"),
        ),
        (
            "timestamp 17 digits",
            build("zs001", "16126912210000000", "12345678", ok_sig),
            m("timeStamp", "not 1 to 16 digits"),
        ),
        (
            "timestamp not digits",
            build("zs001", "16126912x", "12345678", ok_sig),
            m("timeStamp", "not 1 to 16 digits"),
        ),
        (
            "timestamp negative",
            build("zs001", "-5", "12345678", ok_sig),
            m("timeStamp", "not 1 to 16 digits"),
        ),
        ("nonce short", build("zs001", "1", "1234567", ok_sig), m("nonce", "length out of range")),
        ("nonce long", build("zs001", "1", &"n".repeat(65), ok_sig), m("nonce", "length out of range")),
        (
            "nonce bad char",
            build("zs001", "1", "1234567.", ok_sig),
            m("nonce", "character outside [A-Za-z0-9_-]"),
        ),
        (
            "sign short",
            build("zs001", "1", "12345678", &ok_sig[..31]),
            m("sign", "not hex of the digest length"),
        ),
        (
            "sign sha1 length",
            build("zs001", "1", "12345678", &"A".repeat(40)),
            m("sign", "not hex of the digest length"),
        ),
        (
            "sign not hex",
            build("zs001", "1", "12345678", &"G".repeat(32)),
            m("sign", "not hex of the digest length"),
        ),
        (
            "bad escape",
            format!("{}&x=%zz", build("zs001", "1", "12345678", ok_sig)),
            SignError::InvalidPercentEncoding,
        ),
        (
            "short escape",
            format!("{}&x=%4", build("zs001", "1", "12345678", ok_sig)),
            SignError::InvalidPercentEncoding,
        ),
        (
            "not utf-8",
            format!("{}&x=%ff", build("zs001", "1", "12345678", ok_sig)),
            SignError::InvalidPercentEncoding,
        ),
    ];
    for (name, q, want) in cases {
        let got = legacy::extract(&c, &HeaderMap::new(), Some(&q), None).expect_err(name);
        assert_eq!(got, want, "{name}");
        let code = if want == SignError::MissingAuth { "missing_auth" } else { "malformed_auth" };
        assert_eq!(got.code(), code, "{name}");
    }
    // Edges that are accepted.
    let edge = build("zs001", &"9".repeat(16), &"n".repeat(64), ok_sig);
    assert!(legacy::extract(&c, &HeaderMap::new(), Some(&edge), None).is_ok());
    let edge = build("zs001", "0", "12345678", &ok_sig.to_ascii_lowercase());
    assert!(legacy::extract(&c, &HeaderMap::new(), Some(&edge), None).is_ok());
    let strict = LegacyConfig { nonce_min_len: 16, ..LegacyConfig::default() };
    let q = build("zs001", "1", "1234567890", ok_sig);
    assert_eq!(
        legacy::extract(&strict, &HeaderMap::new(), Some(&q), None).expect_err("short"),
        m("nonce", "length out of range")
    );
}

#[test]
fn custom_field_names() {
    let c = LegacyConfig {
        access_key_field: "app_key".into(),
        timestamp_field: "ts".into(),
        nonce_field: "nonce_str".into(),
        sign_field: "signature".into(),
        ..LegacyConfig::default()
    };
    assert_eq!(
        legacy::extract(&c, &HeaderMap::new(), Some("app_key=a&ts=1&nonce_str=12345678"), None)
            .expect_err("missing"),
        SignError::MissingParam("signature".into())
    );
    // The default names mean nothing to this key.
    assert_eq!(
        legacy::extract(&c, &HeaderMap::new(), Some(DESIGN_QUERY), None).expect_err("none"),
        SignError::MissingAuth
    );
}

/// Places `sign_params` output where `cfg.location` says: all in the query, or auth fields in headers.
fn to_request(cfg: &LegacyConfig, all: Vec<(String, String)>) -> (String, HeaderMap) {
    match cfg.location {
        FieldLocation::Params => (legacy::form_encode(&all), HeaderMap::new()),
        FieldLocation::Headers => {
            let auth_names = [&cfg.access_key_field, &cfg.timestamp_field, &cfg.nonce_field, &cfg.sign_field];
            let (auth, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|(n, _)| auth_names.contains(&n));
            let pairs: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            (legacy::form_encode(&rest), headers(&pairs))
        }
    }
}

#[test]
fn sign_params_round_trips_through_extract() {
    for (digest, case, location) in [
        (Digest::Md5, HexCase::Upper, FieldLocation::Params),
        (Digest::Sha256, HexCase::Lower, FieldLocation::Params),
        (Digest::Sha1, HexCase::Upper, FieldLocation::Headers),
    ] {
        let c = LegacyConfig { digest, hex_case: case, location, ..LegacyConfig::default() };
        let business = vec![("q".to_owned(), "a b+c/é".to_owned()), ("n".to_owned(), "1".to_owned())];

        let all = legacy::sign_params(&c, "app-1", 1_700_000_000_000, "nonce-123", &business, b"k3y")
            .expect("sign");
        assert_eq!(all.last().map(|(n, _)| n.as_str()), Some("sign"));
        let (query, h) = to_request(&c, all);
        let auth = legacy::extract(&c, &h, Some(&query), None).expect("extract");
        assert_eq!(auth.access_key, "app-1");
        assert!(auth.params.contains(&("q".into(), "a b+c/é".into())));
        assert_eq!(legacy::verify(&c, &auth, b"k3y"), Ok(()), "{digest} {location}");
        assert_eq!(legacy::verify(&c, &auth, b"k3Y"), Err(SignError::SignatureMismatch));

        // A key with a space signs fine but the access key rule refuses it on the way in.
        let all = legacy::sign_params(&c, "app 1", 1_700_000_000_000, "nonce-123", &business, b"k3y")
            .expect("sign");
        let (query, h) = to_request(&c, all);
        let err = legacy::extract(&c, &h, Some(&query), None).expect_err("space in key");
        assert_eq!(err, SignError::Malformed { field: "appId".into(), reason: "not visible ASCII" });
    }
    let c = LegacyConfig::default();
    let clash = vec![("nonce".to_owned(), "x".to_owned())];
    assert_eq!(
        legacy::sign_params(&c, "a", 1, "12345678", &clash, b"k").expect_err("clash"),
        SignError::DuplicateField("nonce".into())
    );
}
