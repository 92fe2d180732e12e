// Hot-path costs of keygate-sign: canonical query, KG1 verify/sign, legacy verify.
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

criterion_group!(benches, bench_query, bench_kg1, bench_legacy);
criterion_main!(benches);
