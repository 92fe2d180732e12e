// Inbound AWS SigV4: requests signed by botocore (the stock AWS Python signer, pinned in
// tests/interop/requirements.txt) verify unchanged against a keygate key of scheme aws-sigv4;
// replays, wrong scopes, stale times, tampered bodies and UNSIGNED-PAYLOAD are refused.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{json, Value};
use support::*;

const AK: &str = "AKIAKGSIGV4TEST01";
const SK: &str = "sigv4-test/secret+0123456789abcdefGHIJ";

fn botocore(
    method: &str,
    url: &str,
    body: &str,
    headers: Value,
    region: &str,
    time: i64,
) -> Vec<(String, String)> {
    let case = json!({"access_key": AK, "secret_key": SK, "method": method, "url": url, "body": body,
                      "service": "execute-api", "region": region, "time": time, "headers": headers});
    let v = python_sdk("sigv4", &case);
    v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botocore_signed_requests_verify_unchanged() {
    note_secret(SK);
    let upstream = start_upstream();
    let kg = start_keygate(
        &format!(
            r#"
[[routes]]
path_prefix = "/"
upstream = "http://{}"
[[apps]]
id = "aws-client"
[[apps.keys]]
access_key = "{AK}"
secret_env = "SIGV4_SK"
scheme = "aws-sigv4"
sigv4 = {{ region = "us-east-1", service = "execute-api" }}
"#,
            upstream.addr()
        ),
        &[("SIGV4_SK", SK)],
    );
    let send_signed = |method: &'static str,
                       path: &'static str,
                       body: &'static str,
                       extra: Value,
                       region: &'static str,
                       t: i64| {
        let url = kg.url(path);
        async move {
            let headers = botocore(method, &url, body, extra.clone(), region, t);
            let mut all: Vec<(String, String)> = headers;
            for (k, v) in extra.as_object().unwrap() {
                if !all.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)) {
                    all.push((k.clone(), v.as_str().unwrap().to_string()));
                }
            }
            let (s, _, b, _) = send(method, &url, &all, body.as_bytes(), false).await;
            (s.as_u16(), serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null), all)
        }
    };

    let (s, v, _) =
        send_signed("GET", "/v1/items/a%20b?z=1&a=x%20y&a=", "", json!({}), "us-east-1", now()).await;
    assert_eq!(s, 200, "{v}");
    let seen = upstream.last();
    assert_eq!(seen.headers["x-kg-key-id"], AK);
    assert!(seen.headers.get("authorization").is_none(), "the AWS Authorization header is stripped");
    let (s, v, headers) = send_signed(
        "POST",
        "/v1/items",
        r#"{"id":7}"#,
        json!({"Content-Type": "application/json", "X-Amz-Target": "Svc.Put"}),
        "us-east-1",
        now(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(upstream.last().body, r#"{"id":7}"#);

    // The same signed request again: the signature is the nonce.
    let url = kg.url("/v1/items");
    let (s, _, b, _) = send("POST", &url, &headers, br#"{"id":7}"#, false).await;
    assert_eq!((s.as_u16(), envelope(&b)["code"].as_str()), (401, Some("nonce_replayed")));
    // Same headers, another body.
    let (s, _, b, _) = send("POST", &url, &headers, br#"{"id":8}"#, false).await;
    assert_eq!((s.as_u16(), envelope(&b)["code"].as_str()), (401, Some("signature_mismatch")));

    let (s, v, _) = send_signed("GET", "/v1/items", "", json!({}), "eu-west-1", now()).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("scope_mismatch")), "{v}");
    let (s, v, _) = send_signed("GET", "/v1/items", "", json!({}), "us-east-1", now() - 3600).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("timestamp_out_of_window")), "{v}");
    let (s, v, _) = send_signed(
        "PUT",
        "/v1/blob",
        "data",
        json!({"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}),
        "us-east-1",
        now(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unsigned_payload_not_allowed")), "{v}");
    let (s, v, _) = send_signed(
        "PUT",
        "/v1/blob",
        "data",
        json!({"X-Amz-Content-Sha256": "0".repeat(64)}),
        "us-east-1",
        now(),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (401, Some("payload_hash_mismatch")), "{v}");
    // Malformed Authorization headers are refused before any key lookup.
    let (s, _, b, _) =
        send("GET", &url, &[("authorization".into(), "AWS4-HMAC-SHA256 Credential=x".into())], b"", false)
            .await;
    assert_eq!((s.as_u16(), envelope(&b)["code"].as_str()), (400, Some("malformed_auth")));

    // Presigned URLs (query form), as botocore's SigV4QueryAuth makes them: usable once, until
    // they expire.
    let presign = |t: i64, expires: i64| {
        let case = json!({"access_key": AK, "secret_key": SK, "method": "GET", "url": kg.url("/v1/report?month=2026-11&x=a%20b"),
                          "service": "execute-api", "region": "us-east-1", "time": t, "expires": expires});
        python_sdk("sigv4_presign", &case)["url"].as_str().unwrap().to_string()
    };
    let url = presign(now(), 600);
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let (s, _, b, _) = send("GET", &url, &[], b"", false).await;
    assert_eq!(s.as_u16(), 200, "{}", String::from_utf8_lossy(&b));
    let (s, _, b, _) = send("GET", &url, &[], b"", false).await;
    assert_eq!((s.as_u16(), envelope(&b)["code"].as_str()), (401, Some("nonce_replayed")));
    let tampered = url.replace("month=2026-11", "month=2026-12");
    let (s, _, b, _) = send("GET", &tampered, &[], b"", false).await;
    assert_eq!((s.as_u16(), envelope(&b)["code"].as_str()), (401, Some("signature_mismatch")));
    let expired = presign(now() - 3600, 60);
    let (s, _, b, _) = send("GET", &expired, &[], b"", false).await;
    assert_eq!((s.as_u16(), envelope(&b)["code"].as_str()), (401, Some("timestamp_out_of_window")));
    // Valid for an hour although the key's clock-skew window is 5 minutes.
    let long = presign(now() - 1800, 3600);
    let (s, _, b, _) = send("GET", &long, &[], b"", false).await;
    assert_eq!(s.as_u16(), 200, "{}", String::from_utf8_lossy(&b));
    let (s, _, b, _) = send("GET", &format!("{}&X-Amz-Expires=60", long), &[], b"", false).await;
    assert_eq!(
        (s.as_u16(), envelope(&b)["code"].as_str()),
        (400, Some("malformed_auth")),
        "duplicated parameter"
    );
    assert!(!kg.logs().contains(SK));
}
