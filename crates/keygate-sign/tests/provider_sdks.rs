// keygate's provider algorithms against the providers' own client SDKs from PyPI (pinned in
// tests/interop/requirements.txt): botocore for AWS SigV4, python-alipay-sdk for Alipay RSA2,
// wechatpayv3 for WeChat Pay API v3. RSA PKCS#1 v1.5 is deterministic, so signatures must be
// byte-identical for the same key, input and fixed time/nonce.
#![allow(clippy::unwrap_used)]

use keygate_sign::rsa::{RsaSigner, RsaVerifier};
use keygate_sign::{alipay, sigv4, wechatpay};
use serde_json::{json, Value};

mod common;

fn sdk(mode: &str, case: &Value) -> Value {
    common::interop("provider_sdks.py", mode, case)
}

fn keys() -> Value {
    sdk("keys", &json!({}))
}

#[test]
fn sigv4_matches_botocore_byte_for_byte() {
    let t = 1_764_000_000;
    let cases = [
        ("GET", "https://sqs.us-west-2.amazonaws.com/", "/", vec![], "", "sqs", None, vec![]),
        (
            "POST",
            "https://dynamodb.eu-central-1.amazonaws.com/",
            "/",
            vec![],
            r#"{"TableName":"orders"}"#,
            "dynamodb",
            None,
            vec![
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", "DynamoDB_20120810.GetItem"),
            ],
        ),
        (
            "GET",
            "https://abc.execute-api.ap-east-1.amazonaws.com/prod/a%20b/%E4%BD%A0?z=1&a=x%20y&a=&b=%2F",
            "/prod/a%20b/%E4%BD%A0",
            vec![("z", "1"), ("a", "x y"), ("a", ""), ("b", "/")],
            "",
            "execute-api",
            Some("FwoGZXIvYXdzEXAMPLETOKEN"),
            vec![],
        ),
        (
            "PUT",
            "https://bucket.s3.us-east-1.amazonaws.com/dir/a%20b.txt",
            "/dir/a%20b.txt",
            vec![],
            "hello",
            "s3",
            None,
            vec![],
        ),
    ];
    for (method, url, path, query, body, service, token, extra) in cases {
        let region =
            url.split('.').find(|p| p.contains('-') && p.chars().last().unwrap().is_ascii_digit()).unwrap();
        let host = url.split("://").nth(1).unwrap().split('/').next().unwrap();
        let mut headers: Vec<(String, String)> = vec![("host".into(), host.into())];
        headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let query: Vec<(String, String)> =
            query.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let req = sigv4::SigV4Request {
            method,
            raw_path: path,
            query: &query,
            headers: &headers,
            body: body.as_bytes(),
        };
        let creds = sigv4::SigV4Credentials {
            access_key_id: "AKIAKEYGATETEST",
            secret_access_key: "kEyGaTe/SeCrEt+KeY0123456789abcdefghijkl",
            session_token: token,
            region,
            service,
        };
        let ours = sigv4::sign(&req, &creds, t, service == "s3");
        let theirs = sdk(
            "sigv4",
            &json!({
                "access_key": creds.access_key_id, "secret_key": creds.secret_access_key, "session_token": token,
                "method": method, "url": url, "body": body, "service": service, "region": region, "time": t,
                "headers": extra.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
            }),
        );
        for (name, value) in &ours {
            assert_eq!(
                theirs[name.as_str()].as_str(),
                Some(value.as_str()),
                "{service} {url}: header {name}"
            );
        }
        assert!(ours.iter().any(|(n, _)| n == "authorization"));
    }
}

#[test]
fn alipay_rsa2_matches_python_alipay_sdk() {
    let k = keys();
    let params: Vec<(String, String)> = [
        ("app_id", "2021000117600000"),
        ("method", "alipay.trade.query"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", "2026-11-24 15:30:00"),
        ("version", "1.0"),
        ("biz_content", r#"{"out_trade_no":"20261124-0001","query_options":["trade_settle_info"]}"#),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let case = json!({
        "app_id": "2021000117600000",
        "app_private_key": k["app_pkcs1_pem"],
        "alipay_public_key": k["provider_public_pem"],
        "params": params.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    });
    let theirs = sdk("alipay_sign", &case);
    // PKCS#1 PEM, PKCS#8 PEM and bare base64 PKCS#8 all load and sign identically.
    for text in [&k["app_pkcs1_pem"], &k["app_pkcs8_pem"], &k["app_pkcs8_b64"]] {
        let key = RsaSigner::from_text(text.as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(alipay::sign(&params, &key).unwrap(), theirs["sign"].as_str().unwrap());
    }

    // A response signed the way Alipay signs (its key over the raw node): we accept what the SDK
    // accepts, and reject a one-byte change.
    let node = r#"{"code":"10000","msg":"Success","buyer_logon_id":"158****1562","out_trade_no":"20261124-0001","total_amount":"88.88","trade_status":"TRADE_SUCCESS"}"#;
    let alipay_key = RsaSigner::from_text(k["provider_pkcs8_pem"].as_str().unwrap().as_bytes()).unwrap();
    let sig = keygate_sign::rsa::b64(&alipay_key.sign_sha256(node.as_bytes()).unwrap());
    let body = format!(r#"{{"alipay_trade_query_response":{node},"sign":"{sig}"}}"#);
    let verifier = RsaVerifier::from_text(k["provider_public_b64"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(alipay::verify_response(&body, "alipay.trade.query", &verifier).unwrap(), node);
    let v = sdk(
        "alipay_verify",
        &json!({"app_id": "x", "app_private_key": k["app_pkcs1_pem"], "alipay_public_key": k["provider_public_pem"], "body": body, "response_type": "alipay_trade_query_response"}),
    );
    assert_eq!(v["ok"], true, "{v}");
    let tampered = body.replace("88.88", "99.99");
    assert!(alipay::verify_response(&tampered, "alipay.trade.query", &verifier).is_err());
    let v = sdk(
        "alipay_verify",
        &json!({"app_id": "x", "app_private_key": k["app_pkcs1_pem"], "alipay_public_key": k["provider_public_pem"], "body": tampered, "response_type": "alipay_trade_query_response"}),
    );
    assert_eq!(v["ok"], false, "the SDK rejects it too");
    assert!(alipay::verify_response(&body, "alipay.trade.pay", &verifier).is_err(), "wrong node");
}

#[test]
fn wechatpay_v3_matches_wechatpayv3() {
    let k = keys();
    let key = RsaSigner::from_text(k["app_pkcs8_pem"].as_str().unwrap().as_bytes()).unwrap();
    let body = r#"{"appid":"wxd678efh567hg6787","mchid":"1230000109","description":"Image","out_trade_no":"1217752501201407033233368018","amount":{"total":100,"currency":"CNY"}}"#;
    for (method, path, body) in
        [("POST", "/v3/pay/transactions/native", body), ("GET", "/v3/certificates?offset=0&limit=10", "")]
    {
        let merchant = wechatpay::Merchant {
            mchid: "1230000109",
            serial_no: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
            key: &key,
        };
        let ours = wechatpay::authorization(
            &merchant,
            method,
            path,
            1_764_000_000,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
            body,
        )
        .unwrap();
        let theirs = sdk(
            "wechat_auth",
            &json!({"path": path, "method": method, "mchid": "1230000109", "serial_no": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
                    "private_key": k["app_pkcs8_pem"], "body": body, "nonce": "593BEC0C930BF1AFEB40B4A08C8FB242", "timestamp": 1_764_000_000}),
        );
        assert_eq!(ours, theirs["authorization"].as_str().unwrap());
    }

    // Response signatures: the platform key (certificate) both ways.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let resp_body = r#"{"code_url":"weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}"#;
    let signed = sdk(
        "wechat_sign_response",
        &json!({"private_key": k["provider_pkcs8_pem"], "timestamp": now.to_string(), "nonce": "N0NCE", "body": resp_body}),
    );
    let serial = k["provider_cert_serial"].as_str().unwrap().to_string();
    let platform = vec![(
        serial.clone(),
        RsaVerifier::from_text(k["provider_cert_pem"].as_str().unwrap().as_bytes()).unwrap(),
    )];
    let ts = now.to_string();
    let sig = wechatpay::ResponseSignature {
        timestamp: &ts,
        nonce: "N0NCE",
        signature: signed["signature"].as_str().unwrap(),
        serial: &serial,
    };
    wechatpay::verify_response(&sig, resp_body.as_bytes(), &platform, now, 300).unwrap();
    assert!(wechatpay::verify_response(&sig, b"{}", &platform, now, 300).is_err());
    assert!(
        wechatpay::verify_response(&sig, resp_body.as_bytes(), &platform, now + 3600, 300).is_err(),
        "stale"
    );
    let other = wechatpay::ResponseSignature { serial: "OTHER", ..sig };
    assert!(wechatpay::verify_response(&other, resp_body.as_bytes(), &platform, now, 300).is_err());
    let provider_key = RsaSigner::from_text(k["provider_pkcs1_pem"].as_str().unwrap().as_bytes()).unwrap();
    let mut msg = format!("{ts}\nN0NCE\n{resp_body}\n").into_bytes();
    let ours = keygate_sign::rsa::b64(&provider_key.sign_sha256(&msg).unwrap());
    let v = sdk(
        "wechat_verify",
        &json!({"certificate": k["provider_cert_pem"], "timestamp": ts, "nonce": "N0NCE", "body": resp_body, "signature": ours}),
    );
    assert_eq!(v["ok"], true);
    msg.clear();

    // Resources: AEAD_AES_256_GCM with the APIv3 key, both ways.
    let apiv3 = "0123456789abcdefghijABCDEFGHIJ01";
    let plain = r#"{"mchid":"1230000109","trade_state":"SUCCESS"}"#;
    let enc = sdk(
        "aesgcm_encrypt",
        &json!({"key": apiv3, "nonce": "fdasflkja484", "associated_data": "transaction", "plaintext": plain}),
    );
    let opened = wechatpay::decrypt_resource(
        apiv3.as_bytes(),
        "fdasflkja484",
        "transaction",
        enc["ciphertext"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(opened, plain.as_bytes());
    let ours = wechatpay::encrypt_resource(apiv3.as_bytes(), "fdasflkja484", "transaction", plain.as_bytes())
        .unwrap();
    assert_eq!(ours, enc["ciphertext"].as_str().unwrap(), "AES-GCM is deterministic for a fixed nonce");
    let v = sdk(
        "wechat_decrypt",
        &json!({"key": apiv3, "nonce": "fdasflkja484", "associated_data": "transaction", "ciphertext": ours}),
    );
    assert_eq!(v["plaintext"], plain);
}

#[test]
fn bad_keys_and_certificates_are_errors_not_panics() {
    for text in ["", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not base64!", "QUJD"]
    {
        assert!(RsaSigner::from_text(text.as_bytes()).is_err(), "{text}");
        assert!(RsaVerifier::from_text(text.as_bytes()).is_err(), "{text}");
    }
    assert!(keygate_sign::rsa::spki_of_certificate(&[0x30, 0x03, 0x30, 0x01]).is_err());
    let mut x = vec![0x30u8, 0x82, 0xff, 0xff];
    x.extend([0u8; 10]);
    assert!(keygate_sign::rsa::spki_of_certificate(&x).is_err());
    for n in 0..64u8 {
        let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
        let _ = keygate_sign::rsa::spki_of_certificate(&junk);
    }
}
