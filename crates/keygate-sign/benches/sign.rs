// Hot-path costs of keygate-sign: canonical query, KG1 verify/sign, legacy, SigV4 and RFC 9421 verify.
// Must not measure anything outside this crate (no HTTP stack, no state stores).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use keygate_sign::digest::sha256_hex;
use keygate_sign::kg1::{self, Kg1Auth, RequestParts};
use keygate_sign::legacy::{self, LegacyConfig};
use keygate_sign::query::canonical_query;
use keygate_sign::Signer;
use secrecy::SecretBox;

const SECRET: &[u8] = b"bench-secret-0123456789";
const PATH: &str = "/v1/orders/123";
const QUERY: &str = "z=%7e&y=a+b&x=&w&v=%E4%BD%A0";

fn bench_query(c: &mut Criterion) {
    let mut g = c.benchmark_group("canonical_query");
    g.bench_function("5 params, unsorted, escapes", |b| b.iter(|| canonical_query(black_box(QUERY))));
    g.bench_function("5 params, already canonical", |b| {
        b.iter(|| canonical_query(black_box("a=1&b=two&c=%20x&d=&e=~")))
    });
    g.finish();
}

fn base_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("api.example.com"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    h
}

fn signer() -> Signer {
    Signer::new("AK-BENCH-0001", SecretBox::from(SECRET.to_vec()))
        .with_signed_headers(["content-type", "host"])
        .expect("valid names")
}

fn bench_kg1(c: &mut Criterion) {
    let signer = signer();
    let uri = format!("{PATH}?{QUERY}");
    let mut g = c.benchmark_group("kg1_verify_end_to_end");
    for size in [0usize, 1024, 64 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut headers = base_headers();
        signer
            .sign_at("POST", &uri, &headers, &body, 1_700_000_000, "bench-nonce-000000001")
            .expect("sign")
            .apply(&mut headers);
        g.throughput(Throughput::Bytes(size as u64));
        // What the gateway does per request: parse auth headers, hash the body, build the
        // string to sign, compare the HMAC in constant time.
        g.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| {
                let auth = Kg1Auth::from_headers(black_box(&headers)).expect("auth");
                let req = RequestParts {
                    method: "POST",
                    raw_path: PATH,
                    raw_query: Some(QUERY),
                    headers: &headers,
                    authority: None,
                };
                let hash = sha256_hex(black_box(body));
                let sts = auth.string_to_sign(&req, &hash).expect("sts");
                kg1::verify(SECRET, &sts, &auth).expect("valid")
            })
        });
        if size == 1024 {
            // The same with the secret prepared once per key (`kg1::Kg1Key`), as a caller that
            // keeps it next to the key can do.
            let key = kg1::Kg1Key::new(SECRET);
            g.bench_with_input(BenchmarkId::new("prepared key", size), &body, |b, body| {
                b.iter(|| {
                    let auth = Kg1Auth::from_headers(black_box(&headers)).expect("auth");
                    let req = RequestParts {
                        method: "POST",
                        raw_path: PATH,
                        raw_query: Some(QUERY),
                        headers: &headers,
                        authority: None,
                    };
                    let hash = sha256_hex(black_box(body));
                    let sts = auth.string_to_sign(&req, &hash).expect("sts");
                    kg1::verify_with(&key, &sts, &auth).expect("valid")
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("kg1_sign");
    let body = vec![b'x'; 1024];
    let headers = base_headers();
    g.bench_function("Signer::sign_at 1 KiB", |b| {
        b.iter(|| {
            signer
                .sign_at(
                    "POST",
                    black_box(&uri),
                    &headers,
                    black_box(&body),
                    1_700_000_000,
                    "bench-nonce-000000001",
                )
                .expect("sign")
        })
    });
    g.bench_function("Signer::sign 1 KiB (clock + random nonce)", |b| {
        b.iter(|| signer.sign("POST", black_box(&uri), &headers, black_box(&body)).expect("sign"))
    });
    g.finish();
}

fn bench_legacy(c: &mut Criterion) {
    let cfg = LegacyConfig::default();
    let query = "appId=zs001&timeStamp=1612691221000&nonce=1234567890&k1=v1&k2=v2&method=cancel\
                 &sign=25E2725052CC7B4824C67FCB747321BB";
    let headers = HeaderMap::new();
    let mut g = c.benchmark_group("legacy_md5");
    g.bench_function("extract + verify (DESIGN example)", |b| {
        b.iter(|| {
            let auth = legacy::extract(&cfg, &headers, Some(black_box(query)), None).expect("extract");
            legacy::verify(&cfg, &auth, b"miyao").expect("valid")
        })
    });
    g.finish();
}

/// AWS SigV4 and RFC 9421 verification of a 1 KiB POST (parse + canonical request + HMAC).
fn bench_other_schemes(c: &mut Criterion) {
    use keygate_sign::{rfc9421, sigv4};
    let body = vec![b'x'; 1024];
    let mut g = c.benchmark_group("other schemes verify, 1 KiB");
    // SigV4: sign once with our signer (byte-identical to botocore), verify in the loop.
    let query = vec![("a".to_string(), "1".to_string())];
    let sreq = sigv4::SigV4Request {
        method: "POST",
        raw_path: "/v1/orders",
        query: &query,
        headers: &[("host".to_string(), "api.example.com".to_string())],
        body: &body,
    };
    let creds = sigv4::SigV4Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "secret-0123456789",
        session_token: None,
        region: "us-east-1",
        service: "execute-api",
    };
    let t = 1_764_000_000;
    let added = sigv4::sign(&sreq, &creds, t, true);
    let mut headers = HeaderMap::new();
    headers.insert("host", "api.example.com".parse().expect("bench fixture"));
    for (n, v) in &added {
        headers.insert(
            http::HeaderName::from_bytes(n.as_bytes()).expect("bench fixture"),
            v.parse().expect("bench fixture"),
        );
    }
    let auth_header = headers["authorization"].to_str().expect("bench fixture").to_string();
    let policy =
        sigv4::SigV4Policy { region: "us-east-1", service: "execute-api", allow_unsigned_payload: false };
    g.bench_function("aws-sigv4 (header form)", |b| {
        b.iter(|| {
            let auth = sigv4::parse_authorization(black_box(&auth_header)).expect("bench fixture");
            let rq = sigv4::Received {
                method: "POST",
                raw_path: "/v1/orders",
                query: &query,
                headers: &headers,
                body: &body,
            };
            sigv4::verify(&auth, &rq, b"secret-0123456789", &policy).expect("bench fixture")
        })
    });
    // The same with the derived signing key kept between requests (`sigv4::SigV4Secret`).
    let secret = sigv4::SigV4Secret::new(b"secret-0123456789");
    g.bench_function("aws-sigv4 (header form), cached signing key", |b| {
        b.iter(|| {
            let auth = sigv4::parse_authorization(black_box(&auth_header)).expect("bench fixture");
            let rq = sigv4::Received {
                method: "POST",
                raw_path: "/v1/orders",
                query: &query,
                headers: &headers,
                body: &body,
            };
            sigv4::verify_with(&auth, &rq, &secret, &policy).expect("bench fixture")
        })
    });
    // RFC 9421 hmac-sha256 over @method @target-uri content-digest.
    let mut h = HeaderMap::new();
    h.insert("host", "api.example.com".parse().expect("bench fixture"));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
    use base64::Engine as _;
    let cd = format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(digest.as_ref()));
    h.insert("content-digest", cd.parse().expect("bench fixture"));
    let si =
        r#"sig1=("@method" "@target-uri" "content-digest");created=1764000000;keyid="k1";nonce="n-0001""#;
    let unsigned = rfc9421::parse(si, "sig1=:AAAA:", None).expect("bench fixture");
    let view = rfc9421::RequestView {
        method: "POST",
        scheme: "https",
        authority: "api.example.com",
        raw_path: "/v1/orders",
        raw_query: None,
        headers: &h,
    };
    let base = rfc9421::signature_base(&unsigned, &view).expect("bench fixture");
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"secret-0123456789"),
        base.as_bytes(),
    );
    let sig_header = format!("sig1=:{}:", base64::engine::general_purpose::STANDARD.encode(mac.as_ref()));
    let required = vec!["@method".to_string(), "@target-uri".to_string()];
    g.bench_function("http-signature hmac-sha256 (+ Content-Digest)", |b| {
        b.iter(|| {
            let m = rfc9421::parse(black_box(si), &sig_header, None).expect("bench fixture");
            rfc9421::verify_content_digest(&cd, &body).expect("bench fixture");
            rfc9421::verify(&m, &view, rfc9421::VerifyKey::HmacSha256(b"secret-0123456789"), &required)
                .expect("bench fixture")
        })
    });
    // RFC 9421 ed25519: keygate holds only the public key.
    let si_ed = r#"sig1=("@method" "@target-uri" "content-digest");created=1764000000;keyid="k2";nonce="n-0002";alg="ed25519""#;
    let unsigned = rfc9421::parse(si_ed, "sig1=:AAAA:", None).expect("bench fixture");
    let base = rfc9421::signature_base(&unsigned, &view).expect("bench fixture");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("bench fixture");
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("bench fixture");
    use aws_lc_rs::signature::KeyPair as _;
    let public = pair.public_key().as_ref().to_vec();
    let sig = pair.sign(base.as_bytes());
    let sig_ed = format!("sig1=:{}:", base64::engine::general_purpose::STANDARD.encode(sig.as_ref()));
    g.bench_function("http-signature ed25519 (+ Content-Digest)", |b| {
        b.iter(|| {
            let m = rfc9421::parse(black_box(si_ed), &sig_ed, None).expect("bench fixture");
            rfc9421::verify_content_digest(&cd, &body).expect("bench fixture");
            rfc9421::verify(&m, &view, rfc9421::VerifyKey::Ed25519(&public), &required)
                .expect("bench fixture")
        })
    });
    g.finish();
}

criterion_group!(benches, bench_query, bench_kg1, bench_legacy, bench_other_schemes);
criterion_main!(benches);
