// Per-call overhead of each built-in recipe's `prepare` (warm token cache, parsed keys cached),
// on a small JSON request. Run: cargo bench -p keygate-outbound --bench recipes
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use keygate_outbound::client::ProviderClient;
use keygate_outbound::config::RecipeConfig;
use keygate_outbound::recipe::{self, Bindings, Ctx, OutRequest};
use keygate_outbound::token::{Fetched, TokenManager};
use zeroize::Zeroizing;

/// Seed 000's script (its one typo fixed); with the token cached it never calls the network.
const SEED_SCRIPT: &str = include_str!("../../../tests/interop/seed_000.js");

/// A fresh RSA-2048 key as bare base64 PKCS#8 (how Alipay hands keys out).
fn rsa_key() -> String {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use base64::Engine as _;
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der<'static> = kp.as_der().unwrap();
    base64::engine::general_purpose::STANDARD.encode(der.as_ref())
}

fn recipes() -> Vec<(&'static str, RecipeConfig)> {
    let r = |v: serde_json::Value| serde_json::from_value::<RecipeConfig>(v).unwrap();
    vec![
        ("static_header", r(serde_json::json!({"type": "static_header", "header": "x-api-key"}))),
        ("hmac_header", r(serde_json::json!({"type": "hmac_header"}))),
        ("sorted_params_md5", r(serde_json::json!({"type": "sorted_params", "location": "json"}))),
        ("aes_cbc_payload", r(serde_json::json!({"type": "aes_payload", "fields": ["data"]}))),
        ("aes_gcm_payload", r(serde_json::json!({"type": "aes_payload", "mode": "gcm"}))),
        (
            "token_aes_sha256",
            r(serde_json::json!({"type": "token_aes_sha256", "token_url": "http://127.0.0.1:9/token"})),
        ),
        (
            "oauth2_client_credentials",
            r(
                serde_json::json!({"type": "oauth2_client_credentials", "token_url": "http://127.0.0.1:9/token"}),
            ),
        ),
        (
            "aws_sigv4",
            r(serde_json::json!({"type": "aws_sigv4", "region": "us-east-1", "service": "execute-api"})),
        ),
        ("alipay_rsa2", r(serde_json::json!({"type": "alipay", "app_id": "2021000117600000"}))),
        (
            "script_seed_000 (QuickJS, warm token)",
            r(serde_json::json!({"type": "script", "source": SEED_SCRIPT,
                "vars": {"PrefixUrl": "https://api.example.com", "TokenUrl": "https://api.example.com/token"}})),
        ),
        (
            "wechatpay_v3",
            r(
                serde_json::json!({"type": "wechatpay_v3", "mchid": "1230000109", "serial_no": "S1", "platform_keys": [], "verify_response": false}),
            ),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let rsa = rsa_key();
    let bindings = Bindings::new(
        [
            ("api_key", "k-0123456789abcdef"),
            ("secret", "s-0123456789abcdef0123456789abcdef"),
            ("key_id", "kid-1"),
            ("app_key", "app-1"),
            ("AppKey", "app-1"),
            ("AesKey", "0123456789abcdef"),
            ("AesIV", "fedcba9876543210"),
            ("aes_key", "0123456789abcdef"),
            ("aes_iv", "fedcba9876543210"),
            ("access_key_id", "AKIAKEYGATE"),
            ("secret_access_key", "secret/0123456789abcdefghijklmnopqrstu"),
            ("app_private_key", rsa.as_str()),
            ("merchant_private_key", rsa.as_str()),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())),
    );
    let tokens = std::sync::Arc::new(TokenManager::default());
    rt.block_on(async {
        for key in ["bench:token", "bench:oauth2", "bench:script"] {
            tokens
                .get(key, Duration::ZERO, || async {
                    Ok(Fetched {
                        value: Zeroizing::new("Bearer t0k3n".into()),
                        ttl: Duration::from_secs(3600),
                    })
                })
                .await
                .unwrap();
        }
    });
    let scripts = keygate_outbound::script::ScriptPool::new(1, 64);
    let client = ProviderClient::new(Duration::from_secs(1), true, Default::default()).unwrap();
    let body = Bytes::from_static(
        br#"{"data":"{\"amount\":100,\"currency\":\"CNY\"}","orderNo":"A-1","note":"hello world"}"#,
    );
    let mut group = c.benchmark_group("recipe_prepare");
    for (name, recipe) in recipes() {
        let req = OutRequest {
            method: http::Method::POST,
            path: "/v1/orders".into(),
            query: if name == "alipay_rsa2" {
                vec![("method".into(), "alipay.trade.query".into())]
            } else {
                vec![("a".into(), "1".into())]
            },
            headers: http::HeaderMap::new(),
            body: body.clone(),
            url_override: None,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let ctx = Ctx {
                    provider_id: "bench",
                    origin: "https://api.example.com",
                    base_path: "",
                    bindings: &bindings,
                    tokens: &tokens,
                    scripts: Some(&scripts),
                    test: None,
                    client: &client,
                    deadline: Instant::now() + Duration::from_secs(5),
                    now_ms: 1_764_000_000_000,
                };
                let mut r = req.clone();
                rt.block_on(recipe::prepare(&recipe, &ctx, &mut r)).unwrap();
                r
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
