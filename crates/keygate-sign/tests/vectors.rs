// Checks every vector of docs/vectors/*.json against this crate (and the signing.md listing).
// Must not invent expected values: they come from the files, which the Python signer fills.
//
// With KEYGATE_REGENERATE_VECTORS=1 the `expected` objects are rewritten from this crate instead.

use std::path::PathBuf;

use http::{HeaderMap, HeaderName, HeaderValue};
use keygate_sign::digest::{sha256_hex, BodyHasher};
use keygate_sign::kg1::{self, header, Kg1Auth, RequestParts};
use keygate_sign::legacy::{self, FieldLocation, LegacyConfig};
use keygate_sign::path::check_raw_path;
use keygate_sign::query::canonical_query;
use keygate_sign::{SignError, Signer};
use secrecy::SecretBox;
use serde_json::{json, Value};

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn load(rel: &str) -> Value {
    let text = std::fs::read_to_string(repo_file(rel)).expect("vector file readable");
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn regenerate() -> bool {
    std::env::var("KEYGATE_REGENERATE_VECTORS").is_ok_and(|v| v == "1")
}

fn save(rel: &str, data: &Value) {
    let mut text = serde_json::to_string_pretty(data).expect("serialise");
    text.push('\n');
    std::fs::write(repo_file(rel), text).expect("write vector file");
    eprintln!("rewrote {rel} from the Rust implementation");
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} is a string in {v}"))
}

fn opt_s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v[key].as_str()
}

fn bytes_of(v: &Value, hex_key: &str, utf8_key: &str) -> Vec<u8> {
    match v.get(hex_key) {
        Some(h) => hex::decode(h.as_str().expect("hex string")).expect("valid hex"),
        None => s(v, utf8_key).as_bytes().to_vec(),
    }
}

fn header_map(v: &Value) -> HeaderMap {
    let mut map = HeaderMap::new();
    for pair in v["headers"].as_array().expect("headers array") {
        let name = HeaderName::from_bytes(pair[0].as_str().expect("name").as_bytes()).expect("header name");
        let value = HeaderValue::from_str(pair[1].as_str().expect("value")).expect("header value");
        map.append(name, value);
    }
    map
}

fn string_list(v: &Value, key: &str) -> Vec<String> {
    v[key].as_array().expect("array").iter().map(|x| x.as_str().expect("string").to_owned()).collect()
}

struct Kg1Case {
    name: String,
    method: String,
    raw_path: String,
    raw_query: Option<String>,
    authority: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
    secret: Vec<u8>,
    access_key: String,
    timestamp: i64,
    nonce: String,
    signed: Vec<String>,
}

impl Kg1Case {
    fn from_json(v: &Value) -> Self {
        Kg1Case {
            name: s(v, "name").to_owned(),
            method: s(v, "method").to_owned(),
            raw_path: s(v, "raw_path").to_owned(),
            raw_query: opt_s(v, "raw_query").map(str::to_owned),
            authority: opt_s(v, "authority").map(str::to_owned),
            headers: header_map(v),
            body: bytes_of(v, "body_hex", "body_utf8"),
            secret: bytes_of(v, "secret_hex", "secret_utf8"),
            access_key: s(v, "access_key").to_owned(),
            timestamp: v["timestamp"].as_i64().expect("timestamp"),
            nonce: s(v, "nonce").to_owned(),
            signed: string_list(v, "signed_headers"),
        }
    }

    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            raw_path: &self.raw_path,
            raw_query: self.raw_query.as_deref(),
            headers: &self.headers,
            authority: self.authority.as_deref(),
        }
    }

    fn compute(&self) -> Value {
        let body_hash = sha256_hex(&self.body);
        let sts = kg1::string_to_sign(
            &self.parts(),
            &self.access_key,
            self.timestamp,
            &self.nonce,
            &self.signed,
            &body_hash,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        json!({
            "canonical_query": canonical_query(self.raw_query.as_deref().unwrap_or("")).expect("query"),
            "body_sha256": body_hash,
            "signature": kg1::sign_string(&self.secret, &sts),
            "string_to_sign": sts,
        })
    }
}

#[test]
fn kg1_vectors() {
    let mut data = load("docs/vectors/kg1.json");
    let vectors = data["vectors"].as_array_mut().expect("vectors");
    assert!(vectors.len() >= 15, "at least 15 KG1 vectors");
    if regenerate() {
        for v in vectors.iter_mut() {
            v["expected"] = Kg1Case::from_json(v).compute();
        }
        save("docs/vectors/kg1.json", &data);
        return;
    }
    let doc = std::fs::read_to_string(repo_file("docs/signing.md")).expect("signing.md");
    for v in vectors.iter() {
        let case = Kg1Case::from_json(v);
        let name = &case.name;
        let expected = &v["expected"];
        assert_eq!(case.compute(), *expected, "{name}");

        // The body hash computed in chunks equals the one-shot one.
        let mut hasher = BodyHasher::new();
        for chunk in case.body.chunks(3) {
            hasher.update(chunk);
        }
        assert_eq!(hasher.finish(), s(expected, "body_sha256"), "{name}");

        // A verifier receiving the request with these headers accepts it, in either hex case.
        let signature = s(expected, "signature");
        for sig in [signature.to_owned(), signature.to_ascii_uppercase()] {
            let mut headers = case.headers.clone();
            headers.insert(header::KEY, HeaderValue::from_str(&case.access_key).expect("key"));
            headers
                .insert(header::TIMESTAMP, HeaderValue::from_str(&case.timestamp.to_string()).expect("ts"));
            headers.insert(header::NONCE, HeaderValue::from_str(&case.nonce).expect("nonce"));
            if !case.signed.is_empty() {
                headers.insert(
                    header::SIGNED_HEADERS,
                    HeaderValue::from_str(&case.signed.join(";")).expect("sh"),
                );
            }
            headers.insert(header::SIGNATURE, HeaderValue::from_str(&sig).expect("sig"));
            let auth = Kg1Auth::from_headers(&headers).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(auth.signed_headers, case.signed, "{name}");
            let req = RequestParts { headers: &headers, ..case.parts() };
            let sts = auth.string_to_sign(&req, s(expected, "body_sha256")).expect("sts");
            assert_eq!(sts, s(expected, "string_to_sign"), "{name}");
            assert_eq!(kg1::verify(&case.secret, &sts, &auth), Ok(()), "{name}");
            assert_eq!(
                kg1::verify(b"another secret", &sts, &auth),
                Err(SignError::SignatureMismatch),
                "{name}"
            );
        }

        // The SDK, given the request as a URI, produces the same signature.
        let mut uri = String::new();
        if let Some(a) = &case.authority {
            uri.push_str("https://");
            uri.push_str(a);
        }
        uri.push_str(&case.raw_path);
        if let Some(q) = &case.raw_query {
            uri.push('?');
            uri.push_str(q);
        }
        let signer = Signer::new(case.access_key.clone(), SecretBox::from(case.secret.clone()))
            .with_signed_headers(&case.signed)
            .expect("signed headers");
        let out = signer
            .sign_at(&case.method, &uri, &case.headers, &case.body, case.timestamp, &case.nonce)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.get(header::SIGNATURE).expect("sig").to_str().expect("ascii"), signature, "{name}");

        assert!(
            doc.contains(signature),
            "docs/signing.md lists vector {name}: run fill_vectors.py --markdown"
        );
    }
}

#[test]
fn canonical_query_cases() {
    let data = load("docs/vectors/kg1.json");
    let cases = data["canonical_query_cases"].as_array().expect("cases");
    assert!(cases.len() >= 20);
    for c in cases {
        let raw = s(c, "raw");
        match opt_s(c, "canonical") {
            Some(want) => assert_eq!(canonical_query(raw).as_deref(), Ok(want), "{raw:?}"),
            None => {
                let err = canonical_query(raw).expect_err(raw);
                assert_eq!(err, SignError::InvalidPercentEncoding);
                assert_eq!(err.code(), s(c, "error"), "{raw:?}");
            }
        }
    }
}

#[test]
fn path_cases() {
    let data = load("docs/vectors/kg1.json");
    for c in data["path_cases"].as_array().expect("cases") {
        let raw = s(c, "raw_path");
        let valid = c["valid"].as_bool().expect("bool");
        let got = check_raw_path(raw);
        assert_eq!(got.is_ok(), valid, "{raw:?}: {got:?}");
        if let Err(e) = got {
            assert_eq!(e.code(), "invalid_path");
        }
    }
}

fn legacy_config(v: &Value) -> LegacyConfig {
    let mut cfg = LegacyConfig::default();
    let Some(c) = v.get("config") else { return cfg };
    let text = |k: &str| c.get(k).and_then(Value::as_str);
    if let Some(x) = text("digest") {
        cfg.digest = x.parse().expect("digest");
    }
    if let Some(x) = text("hex_case") {
        cfg.hex_case = x.parse().expect("hex_case");
    }
    if let Some(x) = text("location") {
        cfg.location = x.parse().expect("location");
    }
    if let Some(x) = text("timestamp_unit") {
        cfg.timestamp_unit = x.parse().expect("unit");
    }
    for (k, field) in [
        ("access_key_field", &mut cfg.access_key_field),
        ("timestamp_field", &mut cfg.timestamp_field),
        ("nonce_field", &mut cfg.nonce_field),
        ("sign_field", &mut cfg.sign_field),
    ] {
        if let Some(x) = text(k) {
            *field = x.to_owned();
        }
    }
    if let Some(n) = c.get("nonce_min_len").and_then(Value::as_u64) {
        cfg.nonce_min_len = usize::try_from(n).expect("usize");
    }
    cfg
}

/// Extracts the request of a legacy vector, with `signature` added in the configured place.
fn legacy_extract(v: &Value, cfg: &LegacyConfig, signature: &str) -> Result<legacy::LegacyAuth, SignError> {
    let mut headers = header_map(v);
    let mut query = opt_s(v, "raw_query").map(str::to_owned);
    match cfg.location {
        FieldLocation::Params => {
            let q = query.get_or_insert_with(String::new);
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(&cfg.sign_field);
            q.push('=');
            q.push_str(signature);
        }
        FieldLocation::Headers => {
            let name = HeaderName::from_bytes(cfg.sign_field.to_ascii_lowercase().as_bytes()).expect("name");
            headers.insert(name, HeaderValue::from_str(signature).expect("value"));
        }
    }
    let body = opt_s(v, "form_body").map(str::as_bytes);
    legacy::extract(cfg, &headers, query.as_deref(), body)
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("pairs")
        .iter()
        .map(|p| (p[0].as_str().expect("n").to_owned(), p[1].as_str().expect("v").to_owned()))
        .collect()
}

#[test]
fn legacy_vectors() {
    let mut data = load("docs/vectors/legacy.json");
    let vectors = data["vectors"].as_array_mut().expect("vectors");
    assert!(vectors.len() >= 6, "at least 6 legacy vectors");
    let doc = std::fs::read_to_string(repo_file("docs/signing.md")).expect("signing.md");
    for v in vectors.iter_mut() {
        let name = s(v, "name").to_owned();
        let cfg = legacy_config(v);
        let secret = s(v, "secret_utf8").as_bytes().to_vec();
        // A placeholder of the right shape: extraction does not depend on its value.
        let placeholder = "0".repeat(cfg.digest.output_len() * 2);
        let auth = legacy_extract(v, &cfg, &placeholder).unwrap_or_else(|e| panic!("{name}: {e}"));
        let computed = json!({
            "params": auth.params.iter().map(|(n, x)| json!([n, x])).collect::<Vec<_>>(),
            "string_to_sign": legacy::string_to_sign(&auth.params, &secret).as_str(),
            "signature": legacy::sign(&cfg, &auth.params, &secret),
        });
        if regenerate() {
            v["expected"] = computed;
            continue;
        }
        assert_eq!(computed, v["expected"], "{name}");
        let signature = s(&v["expected"], "signature");
        assert_eq!(pairs(&v["expected"]["params"]), auth.params, "{name}");

        let auth = legacy_extract(v, &cfg, signature).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(legacy::verify(&cfg, &auth, &secret), Ok(()), "{name}");
        assert_eq!(legacy::verify(&cfg, &auth, b"wrong"), Err(SignError::SignatureMismatch), "{name}");
        // Only the configured hex case is accepted.
        let other_case = match cfg.hex_case {
            legacy::HexCase::Upper => signature.to_ascii_lowercase(),
            legacy::HexCase::Lower => signature.to_ascii_uppercase(),
        };
        if other_case != signature {
            let auth = legacy_extract(v, &cfg, &other_case).expect("extract");
            assert_eq!(legacy::verify(&cfg, &auth, &secret), Err(SignError::SignatureMismatch), "{name}");
        }
        assert!(doc.contains(signature), "docs/signing.md lists vector {name}");
    }
    if regenerate() {
        save("docs/vectors/legacy.json", &data);
    }
}
