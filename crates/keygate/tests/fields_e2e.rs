// Encrypted fields end to end (seeds 001/002): keygate generates an app's RSA key pair through
// the admin API (the private key never leaves it), the partner encrypts JSON fields with Python's
// `cryptography` (tests/interop/field_crypto.py, written from the spec), keygate decrypts them
// before forwarding and encrypts configured response fields with the partner's public key.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const CARD: &str = "4111111111111111";

fn encrypt(public_pem: &str, kid: &str, mode: &str, values: &[Value]) -> Vec<String> {
    let v = python_tool(
        "field_crypto.py",
        "encrypt",
        &json!({"public_key_pem": public_pem, "kid": kid, "mode": mode, "values": values}),
    );
    v["envelopes"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect()
}

async fn post(kg: &Keygate, key: &(&str, &str), path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let h = sign(key.0, key.1, "POST", &kg.url(path), &[("content-type", "application/json")], body, &[]);
    let (s, _, b, _) = send("POST", &kg.url(path), &h, body, false).await;
    (s.as_u16(), b.to_vec())
}

fn code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .map(|v| v["code"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_encrypted_fields_are_opened_and_responses_sealed() {
    note_secret(CARD);
    let up = start_upstream();
    let cfg = format!(
        r#"
[server]
admin = "127.0.0.1:0"
reload_interval_ms = 100
[store]
url = "sqlite://{{dir}}/keygate.db"
[[routes]]
path_prefix = "/pay"
upstream = "http://{up}"
strip_prefix = true
encrypted_fields = {{ decrypt = ["card.number", "items[*].pan"], encrypt_response = ["card.number"] }}
[[routes]]
path_prefix = "/plain"
upstream = "http://{up}"
encrypted_fields = {{ decrypt = ["card.number"] }}
[[apps]]
id = "app1"
[[apps.keys]]
access_key = "AKFIELDS0001"
secret_env = "SK1"
[[apps]]
id = "app2"
[[apps.keys]]
access_key = "AKFIELDS0002"
secret_env = "SK2"
"#,
        up = up.addr()
    );
    let (sk1, sk2) = ("fields-sk-app1-0123456789abcdef", "fields-sk-app2-0123456789abcdef");
    let kg = start_keygate(&cfg, &[("SK1", sk1), ("SK2", sk2)]);
    let (k1, k2) = (("AKFIELDS0001", sk1), ("AKFIELDS0002", sk2));
    let token = admin_token(&kg, &[]);
    let adm = kg.admin.unwrap();

    // keygate generates app1's key pair: the creation answer and the key show only the public half.
    let (s, v) = admin_call(
        adm,
        &token,
        "POST",
        "/admin/apps/app1/keys",
        Some(json!({"access_key": "FK-APP1-V1", "scheme": "field-rsa", "scheme_settings": {"kid": "v1"}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(v["secret"].is_null(), "the private key is never shown: {v}");
    assert!(!v.to_string().contains("PRIVATE KEY"));
    let (_, key) = admin_call(adm, &token, "GET", "/admin/keys/FK-APP1-V1", None).await;
    let public_v1 = key["scheme_settings"]["public_key_pem"].as_str().unwrap().to_string();
    assert!(public_v1.starts_with("-----BEGIN PUBLIC KEY-----"), "{key}");
    // Rotation with overlap is for signing keys; field keys rotate by kid.
    let (s, v) = admin_call(adm, &token, "POST", "/admin/keys/FK-APP1-V1/rotate", Some(json!({}))).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("key.scheme")), "{v}");
    let (s, v) = admin_call(
        adm,
        &token,
        "POST",
        "/admin/apps/app1/keys",
        Some(json!({"scheme": "field-rsa", "scheme_settings": {"kid": "bad kid!"}})),
    )
    .await;
    assert_eq!((s, v["field"].as_str()), (400, Some("key.scheme_settings")), "{v}");

    // The partner's own key pair; keygate gets only its public key.
    let partner = python_tool("field_crypto.py", "keygen", &json!({"bits": 2048}));
    note_secret(partner["private_key_pem"].as_str().unwrap().lines().nth(1).unwrap());
    let (s, v) = admin_call(
        adm,
        &token,
        "POST",
        "/admin/apps/app1/keys",
        Some(json!({"access_key": "FP-APP1-P1", "scheme": "field-partner",
                    "scheme_settings": {"kid": "p1", "public_key_pem": partner["public_key_pem"]}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    // The partner encrypts: direct for the card, hybrid for one item, direct for another.
    let card = encrypt(&public_v1, "v1", "direct", &[json!(CARD)]).remove(0);
    let items = [
        encrypt(&public_v1, "v1", "hybrid", &[json!({"pan": "5500000000000004", "exp": "12/30"})]).remove(0),
        encrypt(&public_v1, "v1", "direct", &[json!(6011000000000004u64)]).remove(0),
    ];
    let body = format!(
        r#"{{"amount": 12345678901234567890123, "card": {{"number": "{card}", "holder": "A. Partner"}},
            "items": [{{"pan": "{}"}}, {{"pan": "{}"}}]}}"#,
        items[0], items[1]
    );
    let t = Instant::now();
    let (s, resp) = loop {
        let (s, resp) = post(&kg, &k1, "/pay/json", body.as_bytes()).await;
        // Until the new keys are loaded the envelope cannot be opened.
        if s == 200 || t.elapsed() > Duration::from_secs(30) {
            break (s, resp);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&resp));
    let seen = up.last();
    let forwarded: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(forwarded["card"]["number"], CARD);
    assert_eq!(forwarded["card"]["holder"], "A. Partner");
    assert_eq!(forwarded["items"][0]["pan"], json!({"pan": "5500000000000004", "exp": "12/30"}));
    assert_eq!(forwarded["items"][1]["pan"], 6011000000000004u64);
    // Everything else is forwarded byte for byte (no float rounding of a big number).
    assert!(String::from_utf8_lossy(&seen.body).contains("12345678901234567890123"));
    // The upstream echoed the card in clear; keygate sealed it for the partner.
    let resp: Value = serde_json::from_slice(&resp).unwrap();
    let sealed = resp["card"]["number"].as_str().unwrap();
    assert!(sealed.starts_with("kge1.o.p1."), "{resp}");
    assert!(!resp.to_string().contains(CARD));
    let opened = python_tool(
        "field_crypto.py",
        "decrypt",
        &json!({"private_key_pem": partner["private_key_pem"], "envelopes": [sealed]}),
    );
    assert_eq!(opened["plaintexts"][0], format!("\"{CARD}\""));

    // Bad input, one stable code each; nothing reaches the upstream.
    let before = up.count();
    let plain = format!(r#"{{"card": {{"number": "{CARD}"}}}}"#);
    let (s, b) = post(&kg, &k1, "/plain/x", plain.as_bytes()).await;
    assert_eq!((s, code(&b)), (400, "field_not_encrypted".to_string()));
    let mut tampered = card.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let unknown_kid = card.replacen("kge1.o.v1.", "kge1.o.v9.", 1);
    for env in [&tampered, &unknown_kid, &"kge1.o.v1.!!!".to_string(), &"kge1.x".to_string()] {
        let (s, b) =
            post(&kg, &k1, "/plain/x", format!(r#"{{"card": {{"number": "{env}"}}}}"#).as_bytes()).await;
        assert_eq!((s, code(&b)), (400, "field_decrypt_failed".to_string()), "{env}");
        assert!(!String::from_utf8_lossy(&b).contains(env.as_str()), "the envelope is not echoed");
    }
    let (s, b) = post(&kg, &k1, "/plain/x", b"card=1").await;
    assert_eq!((s, code(&b)), (400, "field_body_not_json".to_string()));
    // Keys are per app: app2 cannot have app1's envelopes opened, and without a partner key its
    // responses cannot be sealed, so the request is refused before the upstream acts.
    let body2 = format!(r#"{{"card": {{"number": "{card}"}}}}"#);
    let (s, b) = post(&kg, &k2, "/plain/x", body2.as_bytes()).await;
    assert_eq!((s, code(&b)), (400, "field_decrypt_failed".to_string()));
    let (s, b) = post(&kg, &k2, "/pay/json", b"{}").await;
    assert_eq!((s, code(&b)), (500, "field_encryption_misconfigured".to_string()));
    assert_eq!(up.count(), before, "no refused request reached the upstream");

    // Rotation: a v2 pair next to v1; both open until v1 is revoked.
    let (s, v) = admin_call(
        adm,
        &token,
        "POST",
        "/admin/apps/app1/keys",
        Some(json!({"access_key": "FK-APP1-V2", "scheme": "field-rsa", "scheme_settings": {"kid": "v2", "bits": 3072}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let public_v2 = v["key"]["scheme_settings"]["public_key_pem"].as_str().unwrap().to_string();
    let card_v2 = encrypt(&public_v2, "v2", "auto", &[json!(CARD)]).remove(0);
    let body_v2 = format!(r#"{{"card": {{"number": "{card_v2}"}}}}"#);
    let t = Instant::now();
    while post(&kg, &k1, "/plain/x", body_v2.as_bytes()).await.0 != 200 {
        assert!(t.elapsed() < Duration::from_secs(30), "v2 never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(serde_json::from_slice::<Value>(&up.last().body).unwrap()["card"]["number"], CARD);
    let body_v1 = format!(r#"{{"card": {{"number": "{card}"}}}}"#);
    assert_eq!(post(&kg, &k1, "/plain/x", body_v1.as_bytes()).await.0, 200, "v1 still open");
    let (s, _) = admin_call(adm, &token, "POST", "/admin/keys/FK-APP1-V1/revoke", Some(json!({}))).await;
    assert_eq!(s, 200);
    let t = Instant::now();
    loop {
        let (s, b) = post(&kg, &k1, "/plain/x", body_v1.as_bytes()).await;
        if s == 400 {
            assert_eq!(code(&b), "field_decrypt_failed");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "revoked v1 still decrypts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(post(&kg, &k1, "/plain/x", body_v2.as_bytes()).await.0, 200);
    // Nothing decrypted was logged.
    assert!(!kg.logs().contains(CARD));
}
