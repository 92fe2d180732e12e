// Inbound RFC 9421 HTTP Message Signatures: requests signed by the `http-message-signatures`
// package from PyPI (pinned in tests/interop/requirements.txt) verify against keygate keys of
// scheme http-signature, hmac-sha256 and ed25519 (keygate holds only the public key).
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{json, Value};
use support::*;

const HMAC_AK: &str = "AKHTTPSIGHMAC01";
const HMAC_SK: &str = "httpsig-shared-secret-0123456789";

fn py_sign(case: Value) -> Value {
    python_sdk("rfc9421_sign", &case)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn headers_of(v: &Value) -> Vec<(String, String)> {
    v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "content-length")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_message_signatures_verify_unchanged() {
    note_secret(HMAC_SK);
    let upstream = start_upstream();
    let kg = start_keygate(
        &format!(
            r#"
[[routes]]
path_prefix = "/"
upstream = "http://{}"
[[apps]]
id = "partner"
[[apps.keys]]
access_key = "{HMAC_AK}"
secret_env = "HTTPSIG_SK"
scheme = "http-signature"
http_signature = {{ alg = "hmac-sha256" }}
"#,
            upstream.addr()
        ),
        &[("HTTPSIG_SK", HMAC_SK)],
    );
    let sign = |method: &str, path: &str, body: &str, nonce: &str, created: i64, components: Vec<&str>| {
        py_sign(
            json!({"method": method, "url": kg.url(path), "body": body, "headers": {"content-type": "application/json"},
                       "alg": "hmac-sha256", "secret": HMAC_SK, "key_id": HMAC_AK, "created": created, "nonce": nonce,
                       "components": components}),
        )
    };
    let url = kg.url("/v1/orders?limit=5");
    let signed = sign(
        "POST",
        "/v1/orders?limit=5",
        r#"{"id":1}"#,
        "nonce-0001",
        now(),
        vec!["@method", "@target-uri", "content-type"],
    );
    let h = headers_of(&signed);
    let (s, _, b, _) = send("POST", &url, &h, br#"{"id":1}"#, false).await;
    assert_eq!(s.as_u16(), 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(upstream.last().headers["x-kg-key-id"], HMAC_AK);
    let (s, _, b, _) = send("POST", &url, &h, br#"{"id":1}"#, false).await;
    assert_eq!((s.as_u16(), envelope(&b)["code"].as_str()), (401, Some("nonce_replayed")));
    let h2 = headers_of(&sign(
        "POST",
        "/v1/orders?limit=5",
        r#"{"id":1}"#,
        "nonce-0002",
        now(),
        vec!["@method", "@target-uri"],
    ));
    let (s, _, b, _) = send("POST", &url, &h2, br#"{"id":2}"#, false).await;
    assert_eq!(
        (s.as_u16(), envelope(&b)["code"].as_str()),
        (401, Some("payload_hash_mismatch")),
        "a changed body fails its digest"
    );
    let h3 = headers_of(&sign(
        "GET",
        "/v1/orders?limit=5",
        "",
        "nonce-0003",
        now(),
        vec!["@method", "@target-uri"],
    ));
    let (s, _, b, _) = send("GET", &kg.url("/v1/orders?limit=6"), &h3, b"", false).await;
    assert_eq!(
        (s.as_u16(), envelope(&b)["code"].as_str()),
        (401, Some("signature_mismatch")),
        "another target URI"
    );
    let h4 = headers_of(&sign("GET", "/v1/orders", "", "nonce-0004", now(), vec!["@method"]));
    let (s, _, b, _) = send("GET", &kg.url("/v1/orders"), &h4, b"", false).await;
    assert_eq!(
        (s.as_u16(), envelope(&b)["code"].as_str()),
        (400, Some("malformed_auth")),
        "@target-uri is required: {}",
        String::from_utf8_lossy(&b)
    );
    let h5 = headers_of(&sign(
        "GET",
        "/v1/orders",
        "",
        "nonce-0005",
        now() - 3600,
        vec!["@method", "@target-uri"],
    ));
    let (s, _, b, _) = send("GET", &kg.url("/v1/orders"), &h5, b"", false).await;
    assert_eq!((s.as_u16(), envelope(&b)["code"].as_str()), (401, Some("timestamp_out_of_window")));
    let mut h6 =
        headers_of(&sign("GET", "/v1/orders", "", "nonce-0006", now(), vec!["@method", "@target-uri"]));
    for (n, v) in h6.iter_mut() {
        if n == "signature-input" {
            *v = v.replace("sig1=(", "sig1=(\"@method\" ");
        }
    }
    let (s, _, b, _) = send("GET", &kg.url("/v1/orders"), &h6, b"", false).await;
    assert_eq!(
        (s.as_u16(), envelope(&b)["code"].as_str()),
        (400, Some("malformed_auth")),
        "duplicated component"
    );
    assert!(!kg.logs().contains(HMAC_SK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_signatures_verify_with_the_public_key_only() {
    let upstream = start_upstream();
    // A key pair made by the Python side; keygate is given the public key only.
    let pair = py_sign(
        json!({"method": "GET", "url": "http://127.0.0.1:1/", "alg": "ed25519", "key_id": "k", "created": now(), "nonce": "probe-nonce-01", "components": ["@method"]}),
    );
    let public = pair["public_key_b64"].as_str().unwrap().to_string();
    let private = pair["private_key_pem"].as_str().unwrap().to_string();
    let kg = start_keygate(
        &format!(
            r#"
[[routes]]
path_prefix = "/"
upstream = "http://{}"
[[apps]]
id = "partner"
[[apps.keys]]
access_key = "AKED25519TEST01"
secret_env = "ED_PUB"
scheme = "http-signature"
http_signature = {{ alg = "ed25519", required_components = ["@method", "@path", "@authority"] }}
"#,
            upstream.addr()
        ),
        &[("ED_PUB", &public)],
    );
    let sign = |path: &str, nonce: &str, key: Option<&str>| {
        let mut case = json!({"method": "GET", "url": kg.url(path), "alg": "ed25519", "key_id": "AKED25519TEST01",
                              "created": now(), "nonce": nonce, "components": ["@method", "@path", "@authority"]});
        if let Some(k) = key {
            case["private_key_pem"] = k.into();
        }
        headers_of(&py_sign(case))
    };
    let (s, _, b, _) =
        send("GET", &kg.url("/v1/items"), &sign("/v1/items", "nonce-ed-0001", Some(&private)), b"", false)
            .await;
    assert_eq!(s.as_u16(), 200, "{}", String::from_utf8_lossy(&b));
    let (s, _, b, _) =
        send("GET", &kg.url("/v1/items"), &sign("/v1/items", "nonce-ed-0002", None), b"", false).await;
    assert_eq!(
        (s.as_u16(), envelope(&b)["code"].as_str()),
        (401, Some("signature_mismatch")),
        "another key pair"
    );
    let (s, _, b, _) =
        send("GET", &kg.url("/v1/other"), &sign("/v1/items", "nonce-ed-0003", Some(&private)), b"", false)
            .await;
    assert_eq!(
        (s.as_u16(), envelope(&b)["code"].as_str()),
        (401, Some("signature_mismatch")),
        "another path"
    );
}
