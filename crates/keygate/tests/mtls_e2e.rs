// Mutual TLS end to end (seed 002): certificates made with rcgen, a keygate process with client
// CA bundles, and a rustls client presenting (or not) a client certificate. Checks the route
// policies (optional, required, with_signature), identity by SPKI pin and by subject, revocation
// through the admin API, and that certificates and CA bundles reload without dropping connections.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf signed by `ca`: (certificate PEM, key PEM, DER).
fn leaf(ca: &Ca, cn: &str, sans: &[&str]) -> (String, String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::OrganizationName, "Acme");
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens a TLS connection trusting `ca_pem`, presenting `client` if given; returns the HTTP/1.1
/// sender and the server's certificate.
async fn connect(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<(Conn, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes()).map(|c| c.unwrap()).collect();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap())
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (send, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok((send, server_cert))
}

/// One request on an open connection: (status, JSON body or null).
async fn get(conn: &mut Conn, path: &str, headers: &[(String, String)]) -> Result<(u16, Value), String> {
    conn.ready().await.map_err(|e| e.to_string())?;
    let mut req = hyper::Request::builder().method("GET").uri(path).header("host", "localhost");
    for (n, v) in headers {
        if !n.eq_ignore_ascii_case("host") {
            req = req.header(n.as_str(), v.as_str());
        }
    }
    let resp =
        conn.send_request(req.body(Full::new(Bytes::new())).unwrap()).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Connect + one request: `Err` when the TLS layer refuses the client.
async fn once(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    path: &str,
    headers: &[(String, String)],
) -> Result<(u16, Value), String> {
    let (mut c, _) = connect(addr, ca_pem, client).await?;
    get(&mut c, path, headers).await
}

fn write(dir: &Path, name: &str, text: &str) {
    // Write-then-rename, as a certificate manager does: a reload never sees half a file.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_route_policies_and_hot_reload() {
    let up = start_upstream();
    let dir = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (ca("keygate test CA 1"), ca("keygate test CA 2"));
    let (server_pem, server_key, _) = leaf(&ca1, "server-1", &["localhost", "127.0.0.1"]);
    let (a_pem, a_key, a_der) = leaf(&ca1, "client-a", &[]);
    let (c_pem, c_key, _) = leaf(&ca1, "client-c", &[]);
    let (d_pem, d_key, _) = leaf(&ca1, "client-d", &[]);
    let (b_pem, b_key, _) = leaf(&ca2, "client-b", &[]);
    let a_id = keygate_inbound::ClientCert::from_der(&a_der).unwrap();
    write(dir.path(), "server.pem", &server_pem);
    write(dir.path(), "server.key", &server_key);
    write(dir.path(), "clients-ca.pem", &ca1.cert.pem());
    let d = dir.path().display();
    let cfg = format!(
        r#"
[server]
admin = "127.0.0.1:0"
tls_cert = "{d}/server.pem"
tls_key = "{d}/server.key"
tls_client_ca = ["{d}/clients-ca.pem"]
tls_reload_interval_ms = 100
reload_interval_ms = 100
[store]
url = "sqlite://{d}/keygate.db"
[[routes]]
path_prefix = "/open"
upstream = "http://{up}"
[[routes]]
path_prefix = "/opt"
upstream = "http://{up}"
mtls = "optional"
[[routes]]
path_prefix = "/req"
upstream = "http://{up}"
mtls = "required"
[[routes]]
path_prefix = "/both"
upstream = "http://{up}"
mtls = "with_signature"
[[apps]]
id = "app1"
[[apps.keys]]
access_key = "MTLSA0000001"
scheme = "mtls"
mtls = {{ spki_sha256 = "{pin}" }}
[[apps.keys]]
access_key = "MTLSC0000001"
scheme = "mtls"
mtls = {{ subject = "O=Acme, CN=client-c" }}
[[apps.keys]]
access_key = "AKAPP1000001"
secret_env = "SK1"
[[apps]]
id = "app2"
[[apps.keys]]
access_key = "AKAPP2000001"
secret_env = "SK2"
"#,
        up = up.addr(),
        pin = a_id.spki_hex()
    );
    let cfg_path = dir.path().join("keygate.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let (sk1, sk2) = ("mtls-sk-app1-0123456789abcdef", "mtls-sk-app2-0123456789abcdef");
    let kg = start_with(dir, &cfg_path, &[("SK1", sk1), ("SK2", sk2)]);
    let addr = kg.addr;
    let ca_pem = ca1.cert.pem();
    let a = Some((a_pem.as_str(), a_key.as_str()));
    let c = Some((c_pem.as_str(), c_key.as_str()));
    let dd = Some((d_pem.as_str(), d_key.as_str()));
    let b = Some((b_pem.as_str(), b_key.as_str()));
    let signed = |key: &str, sk: &str, path: &str| {
        sign(key, sk, "GET", &format!("https://localhost:{}{path}", addr.port()), &[], b"", &[])
    };

    // required: a mapped certificate alone gets in, by SPKI pin or by subject.
    let (s, _) = once(addr, &ca_pem, a, "/req/x", &[]).await.unwrap();
    assert_eq!(s, 200);
    let seen = up.last();
    assert_eq!(
        (seen.headers["x-kg-app-id"].to_str().unwrap(), seen.headers["x-kg-key-id"].to_str().unwrap()),
        ("app1", "MTLSA0000001")
    );
    assert_eq!(once(addr, &ca_pem, c, "/req/x", &[]).await.unwrap().0, 200);
    assert_eq!(up.last().headers["x-kg-key-id"], "MTLSC0000001");
    let (s, v) = once(addr, &ca_pem, None, "/req/x", &[]).await.unwrap();
    assert_eq!((s, v["code"].as_str()), (401, Some("client_cert_required")), "{v}");
    // A signature does not replace the certificate on a `required` route.
    let (s, v) = once(addr, &ca_pem, None, "/req/x", &signed("AKAPP1000001", sk1, "/req/x")).await.unwrap();
    assert_eq!((s, v["code"].as_str()), (401, Some("client_cert_required")), "{v}");
    // Trusted but unmapped: refused, and the answer names the certificate so it can be mapped.
    let (s, v) = once(addr, &ca_pem, dd, "/req/x", &[]).await.unwrap();
    assert_eq!((s, v["code"].as_str()), (401, Some("client_cert_unknown")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("CN=client-d"), "{v}");
    // Issued by a CA keygate does not trust: the TLS layer refuses it.
    assert!(once(addr, &ca_pem, b, "/req/x", &[]).await.is_err(), "CA 2 is not trusted yet");
    // Expired, though issued by the trusted CA: refused by the TLS layer too.
    let (e_pem, e_key) = {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "client-expired");
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
        (p.signed_by(&key, &ca1.cert, &ca1.key).unwrap().pem(), key.serialize_pem())
    };
    assert!(once(addr, &ca_pem, Some((&e_pem, &e_key)), "/req/x", &[]).await.is_err(), "expired");

    // optional: the certificate or a signature.
    assert_eq!(once(addr, &ca_pem, a, "/opt/x", &[]).await.unwrap().0, 200);
    assert_eq!(
        once(addr, &ca_pem, None, "/opt/x", &signed("AKAPP1000001", sk1, "/opt/x")).await.unwrap().0,
        200
    );
    assert_eq!(up.last().headers["x-kg-key-id"], "AKAPP1000001");
    let (s, v) = once(addr, &ca_pem, dd, "/opt/x", &[]).await.unwrap();
    assert_eq!((s, v["code"].as_str()), (401, Some("missing_auth")), "unmapped cert, no signature: {v}");
    // off: the certificate is not looked at.
    let (s, v) = once(addr, &ca_pem, a, "/open/x", &[]).await.unwrap();
    assert_eq!((s, v["code"].as_str()), (401, Some("missing_auth")), "{v}");

    // with_signature: both, from one app.
    let (s, v) = once(addr, &ca_pem, a, "/both/x", &signed("AKAPP1000001", sk1, "/both/x")).await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(up.last().headers["x-kg-key-id"], "AKAPP1000001");
    let (s, v) = once(addr, &ca_pem, a, "/both/x", &[]).await.unwrap();
    assert_eq!((s, v["code"].as_str()), (401, Some("missing_auth")), "{v}");
    let (s, v) = once(addr, &ca_pem, None, "/both/x", &signed("AKAPP1000001", sk1, "/both/x")).await.unwrap();
    assert_eq!((s, v["code"].as_str()), (401, Some("client_cert_required")), "{v}");
    let (s, v) = once(addr, &ca_pem, a, "/both/x", &signed("AKAPP2000001", sk2, "/both/x")).await.unwrap();
    assert_eq!((s, v["code"].as_str()), (401, Some("client_cert_mismatch")), "{v}");
    // The CLI presents a client certificate too (--cert/--cert-key) and signs.
    let files = tempfile::tempdir().unwrap();
    for (name, text) in [("ca.pem", &ca_pem), ("a.pem", &a_pem), ("a.key", &a_key)] {
        std::fs::write(files.path().join(name), text).unwrap();
    }
    let f = |n: &str| files.path().join(n).display().to_string();
    let out = std::process::Command::new(bin())
        .args(["curl", "--fail", "--key", "AKAPP1000001", "--secret-env", "SK1", "--cacert", &f("ca.pem")])
        .args(["--cert", &f("a.pem"), "--cert-key", &f("a.key")])
        .arg(format!("https://localhost:{}/both/cli", addr.port()))
        .env("SK1", sk1)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(up.last().path_and_query, "/both/cli");
    // An mtls key cannot sign.
    let (s, v) = once(addr, &ca_pem, a, "/opt/x", &signed("MTLSC0000001", "whatever-0123456789", "/opt/x"))
        .await
        .unwrap();
    assert_eq!(s, 200, "the certificate authenticates on an optional route: {v}");
    let (s, v) =
        once(addr, &ca_pem, None, "/opt/x", &signed("MTLSC0000001", "whatever-0123456789", "/opt/x"))
            .await
            .unwrap();
    assert_eq!((s, v["code"].as_str()), (401, Some("scheme_mismatch")), "{v}");

    // Hot reload: a connection opened before the change keeps working after it.
    let (mut old_conn, old_server_cert) = connect(addr, &ca_pem, a).await.unwrap();
    assert_eq!(get(&mut old_conn, "/req/1", &[]).await.unwrap().0, 200);
    let old_subject = keygate_inbound::ClientCert::from_der(&old_server_cert).unwrap().subject;
    assert_eq!(old_subject, "O=Acme, CN=server-1");
    let (server2_pem, server2_key, _) = leaf(&ca1, "server-2", &["localhost", "127.0.0.1"]);
    write(kg.dir.path(), "server.key", &server2_key);
    write(kg.dir.path(), "server.pem", &server2_pem);
    write(kg.dir.path(), "clients-ca.pem", &format!("{}{}", ca1.cert.pem(), ca2.cert.pem()));
    let t = Instant::now();
    loop {
        // CA 2 is trusted now: client B completes the handshake (and, unmapped, is told so).
        if let Ok((s, v)) = once(addr, &ca_pem, b, "/req/x", &[]).await {
            assert_eq!((s, v["code"].as_str()), (401, Some("client_cert_unknown")), "{v}");
            break;
        }
        assert!(t.elapsed() < WAIT, "CA bundle never reloaded:\n{}", kg.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, new_server_cert) = connect(addr, &ca_pem, a).await.unwrap();
    assert_eq!(
        keygate_inbound::ClientCert::from_der(&new_server_cert).unwrap().subject,
        "O=Acme, CN=server-2"
    );
    assert_eq!(get(&mut old_conn, "/req/2", &[]).await.unwrap().0, 200, "old connection kept");
    // A broken file is not loaded: the gateway keeps serving with what it had.
    write(kg.dir.path(), "server.key", "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    let t = Instant::now();
    while !kg.logs().contains("TLS reload failed") {
        assert!(t.elapsed() < WAIT, "no reload attempt logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, still) = connect(addr, &ca_pem, a).await.unwrap();
    assert_eq!(keygate_inbound::ClientCert::from_der(&still).unwrap().subject, "O=Acme, CN=server-2");

    // Revoking the certificate's identity in keygate takes effect without touching any CA.
    let token = admin_token(&kg, &[]);
    let (s, v) =
        admin_call(kg.admin.unwrap(), &token, "POST", "/admin/keys/MTLSA0000001/revoke", Some(json!({})))
            .await;
    assert_eq!(s, 200, "{v}");
    let t = Instant::now();
    loop {
        let (s, v) = once(addr, &ca_pem, a, "/req/x", &[]).await.unwrap();
        if s == 401 {
            assert_eq!(v["code"], "key_disabled", "{v}");
            break;
        }
        assert!(t.elapsed() < WAIT, "revocation never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(once(addr, &ca_pem, c, "/req/x", &[]).await.unwrap().0, 200, "other identities unaffected");
}
