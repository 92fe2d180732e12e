// The binary as a new user meets it: `serve --demo` and its printed command, `sign`, `curl`,
// and serving over TLS with ALPN (HTTP/1.1 and HTTP/2).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// Starts `serve --demo` in `data_dir`; returns the child and the banner's lines.
fn start_demo(data_dir: &std::path::Path) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(bin())
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("KEYGATE_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("curl -i");
            lines.push(line);
            if done {
                let _ = tx.send(lines.clone());
            }
        }
    });
    let lines = rx.recv_timeout(Duration::from_secs(30)).expect("demo banner not printed");
    (child, lines)
}

/// Runs the printed `keygate curl ...` line (single-quoted URL) and returns its stdout.
fn run_printed(line: &str) -> String {
    let line = line.trim();
    let (cmd, url) = line.split_once(" '").unwrap();
    let url = url.trim_end_matches('\'');
    let mut parts = cmd.split_whitespace();
    let _exe = parts.next().unwrap();
    let out = Command::new(bin()).args(parts).arg(url).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn demo_prints_a_command_that_works_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    for round in 0..2 {
        let (mut child, lines) = start_demo(&data);
        let curl_line = lines.iter().find(|l| l.contains(" curl --key ")).unwrap();
        // The banner never prints the secret itself.
        let secret = std::fs::read_to_string(data.join("demo.secret")).unwrap();
        assert!(!lines.iter().any(|l| l.contains(secret.trim())));
        let out = run_printed(curl_line);
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}"));
        assert_eq!(json["app_id"], "demo", "round {round}");
        assert_eq!(json["path"], "/hello");
        assert_eq!(json["query"], "name=world");
        // The unsigned variant is refused.
        let url = curl_line.split('\'').nth(1).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (status, _, body, _) = rt.block_on(send("GET", url, &[], b"", false));
        assert_eq!(status, 401);
        assert_eq!(envelope(&body)["code"], "missing_auth");
        let _ = child.kill();
        let _ = child.wait();
    }
    #[cfg(unix)]
    for f in ["master.key", "demo.secret"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn sign_prints_headers_the_gateway_accepts() {
    let up = start_upstream();
    let cfg = format!(
        "[store]\nurl = \"sqlite://{{dir}}/keygate.db\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"http://{}\"\n\
         [[apps]]\nid = \"a\"\n[[apps.keys]]\naccess_key = \"AKCLI0000001\"\nsecret_env = \"SK\"\n",
        up.addr()
    );
    let kg = start_keygate(&cfg, &[("SK", "cli-secret-0123456789abcdef")]);
    let url = kg.url("/v1/cli?b=1&a=2");
    let out = Command::new(bin())
        .args([
            "sign",
            "--format",
            "json",
            "--key",
            "AKCLI0000001",
            "--secret-env",
            "SK",
            "-d",
            "{\"x\":1}",
            &url,
        ])
        .env("SK", "cli-secret-0123456789abcdef")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let signed: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(signed["x-kg-signed-headers"], "content-type;host");
    let mut h: Vec<(String, String)> =
        signed.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().into())).collect();
    h.push(("content-type".into(), "application/json".into()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, _, body, _) = rt.block_on(send("POST", &url, &h, b"{\"x\":1}", false));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // `curl --fail` exits 22 on a refusal (wrong secret) and prints the envelope.
    let out = Command::new(bin())
        .args(["curl", "--fail", "--key", "AKCLI0000001", "--secret-env", "SK", &url])
        .env("SK", "wrong-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(22));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signature_mismatch"));
    // No secret source: a clear error, not a panic.
    let out = Command::new(bin())
        .args(["sign", "--key", "AK", &url])
        .env_remove("KEYGATE_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--secret-env"));
}

#[test]
fn serves_tls_with_http1_and_http2() {
    let up = start_upstream();
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let cfg = format!(
        "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[store]\nurl = \"sqlite://{{dir}}/keygate.db\"\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"http://{}\"\n\
         [[apps]]\nid = \"a\"\n[[apps.keys]]\naccess_key = \"AKTLS0000001\"\nsecret_env = \"SK\"\n",
        cert.display(),
        key.display(),
        up.addr()
    );
    let kg = start_keygate(&cfg, &[("SK", "tls-secret-0123456789abcdef")]);
    let url = format!("https://localhost:{}/v1/tls?x=1", kg.addr.port());
    for http2 in [false, true] {
        let mut args =
            vec!["curl", "-i", "--fail", "--key", "AKTLS0000001", "--secret-env", "SK", "--cacert"];
        let cert_s = cert.display().to_string();
        args.push(&cert_s);
        if http2 {
            args.push("--http2");
        }
        args.push(&url);
        let out = Command::new(bin()).args(&args).env("SK", "tls-secret-0123456789abcdef").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "http2={http2}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.starts_with(if http2 { "HTTP/2.0 200" } else { "HTTP/1.1 200" }), "{stdout}");
        assert!(stdout.contains("upstream-ok"));
        assert_eq!(up.last().headers["x-kg-key-id"], "AKTLS0000001");
    }
    // Without trusting the certificate the client refuses to talk.
    let out = Command::new(bin())
        .args(["curl", "--key", "AKTLS0000001", "--secret-env", "SK", &url])
        .env("SK", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn grpc_unary_call_through_the_gateway_with_grpcio() {
    let script = repo_root().join("tests/interop/grpc_e2e.py");
    let out = Command::new("python3").arg(&script).args(["--keygate", bin()]).output().unwrap();
    assert!(
        out.status.success(),
        "grpc_e2e.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("grpc e2e ok"));
}
