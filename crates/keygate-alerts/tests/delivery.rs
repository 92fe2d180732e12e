// Delivery against real local receivers: an HTTP webhook receiver (that fails first, to test
// the retries) for every chat format, and an SMTP sink speaking the protocol.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keygate_alerts::smtp::EmailConfig;
use keygate_alerts::{Alert, Alerts, AlertsConfig, ChannelConfig, Event, Per, Retry, RuleConfig, Sender};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, serde_json::Value)>>>);

/// A webhook receiver that answers 500 to the first `fail_first` requests, then 200.
async fn receiver(fail_first: usize) -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Received::default();
    let seen = Arc::new(Mutex::new(0usize));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (g, seen) = (g.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (g, seen) = (g.clone(), seen.clone());
                    async move {
                        use http_body_util::BodyExt as _;
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let n = {
                            let mut s = seen.lock().unwrap();
                            *s += 1;
                            *s
                        };
                        let status = if n <= fail_first { 500 } else { 200 };
                        if status == 200 {
                            g.0.lock().unwrap().push((path, serde_json::from_slice(&body).unwrap()));
                        }
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(http_body_util::Full::new(bytes::Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

fn alert() -> Alert {
    Alert {
        rule: "signature_failures".into(),
        kind: "count".into(),
        subject: "shop".into(),
        count: 21,
        window_secs: 60,
        at: 1_800_000_000,
        message: "keygate: 21 signature failures from app shop within 60 s (threshold 20)".into(),
        tenant: None,
    }
}

fn fast() -> Retry {
    Retry { attempts: 4, first_backoff: Duration::from_millis(20), timeout: Duration::from_secs(2) }
}

#[tokio::test]
async fn every_webhook_format_is_delivered_with_retries() {
    let (addr, got) = receiver(2).await;
    let sender = Sender::new(fast()).unwrap();
    let url = |p: &str| format!("http://{addr}/{p}");
    let channels = [
        ChannelConfig::Webhook { url: url("generic") },
        ChannelConfig::Slack { url: url("slack") },
        ChannelConfig::Dingtalk { url: url("dingtalk") },
        ChannelConfig::Feishu { url: url("feishu") },
        ChannelConfig::Wecom { url: url("wecom") },
    ];
    let first = sender.deliver(&channels[0], &alert()).await.unwrap();
    assert_eq!(first, 3, "two 500s, then delivered on the third attempt");
    for ch in &channels[1..] {
        assert_eq!(sender.deliver(ch, &alert()).await.unwrap(), 1);
    }
    let got = got.0.lock().unwrap().clone();
    let by = |p: &str| got.iter().find(|(path, _)| path == &format!("/{p}")).unwrap().1.clone();
    let g = by("generic");
    assert_eq!(
        (g["source"].as_str(), g["rule"].as_str(), g["subject"].as_str(), g["count"].as_u64()),
        (Some("keygate"), Some("signature_failures"), Some("shop"), Some(21))
    );
    let msg = alert().message;
    assert_eq!(by("slack")["text"], msg.as_str());
    assert_eq!(by("dingtalk")["msgtype"], "text");
    assert_eq!(by("dingtalk")["text"]["content"], msg.as_str());
    assert_eq!(by("feishu")["msg_type"], "text");
    assert_eq!(by("feishu")["content"]["text"], msg.as_str());
    assert_eq!(by("wecom")["text"]["content"], msg.as_str());
}

#[tokio::test]
async fn gives_up_after_the_last_attempt() {
    let (addr, got) = receiver(100).await;
    let sender = Sender::new(fast()).unwrap();
    let err = sender
        .deliver(&ChannelConfig::Slack { url: format!("http://{addr}/x") }, &alert())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
    assert!(got.0.lock().unwrap().is_empty());
}

/// A minimal SMTP server: records the envelope and the message.
async fn smtp_sink() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let m = mails.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let m = m.clone();
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 sink ready\r\n").await.unwrap();
                let mut transcript = String::new();
                let mut in_data = false;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap() == 0 {
                        break;
                    }
                    transcript.push_str(&line);
                    if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            w.write_all(b"250 queued\r\n").await.unwrap();
                        }
                        continue;
                    }
                    let reply: &[u8] = match line.get(..4).unwrap_or("") {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "MAIL" | "RCPT" => b"250 ok\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            w.write_all(b"221 bye\r\n").await.unwrap();
                            break;
                        }
                        _ => b"502 no\r\n",
                    };
                    w.write_all(reply).await.unwrap();
                }
                m.lock().unwrap().push(transcript);
            });
        }
    });
    (addr, mails)
}

#[tokio::test]
async fn email_goes_through_smtp_with_dot_stuffing_and_no_header_injection() {
    let (addr, mails) = smtp_sink().await;
    let cfg = EmailConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        from: "keygate@example.test".into(),
        to: vec!["ops@example.test".into(), "sec@example.test".into()],
        starttls: false,
        username: None,
        password_env: None,
    };
    let mut a = alert();
    a.subject = "shop\r\nBcc: evil@example.test".into();
    a.message = "line one\n.leading dot".into();
    let sender = Sender::new(fast()).unwrap();
    assert_eq!(sender.deliver(&ChannelConfig::Email(cfg.clone()), &a).await.unwrap(), 1);
    let mail = mails.lock().unwrap()[0].clone();
    assert!(mail.contains("MAIL FROM:<keygate@example.test>\r\n"));
    assert!(mail.contains("RCPT TO:<ops@example.test>\r\nRCPT TO:<sec@example.test>\r\n"));
    assert!(
        mail.contains("Subject: [keygate] signature_failures — shopBcc: evil@example.test\r\n"),
        "{mail}"
    );
    assert!(!mail.contains("\r\nBcc:"), "no injected header");
    assert!(mail.contains("\r\n..leading dot\r\n"), "dot-stuffed: {mail}");
    // A password is never sent without STARTTLS.
    let insecure = EmailConfig { username: Some("u".into()), password_env: Some("X".into()), ..cfg };
    assert!(Sender::new(Retry { attempts: 1, ..fast() })
        .unwrap()
        .deliver(&ChannelConfig::Email(insecure), &a)
        .await
        .is_err());
}

#[tokio::test]
async fn the_pipeline_fires_once_per_cooldown_and_delivers() {
    let (addr, got) = receiver(0).await;
    let cfg = AlertsConfig {
        rules: vec![RuleConfig::SignatureFailures {
            name: Some("sig".into()),
            per: Per::Ip,
            threshold: 2,
            window_secs: 60,
            cooldown_secs: 600,
        }],
        channels: vec![ChannelConfig::Webhook { url: format!("http://{addr}/hook") }],
        max_per_minute: 30,
    };
    let alerts = Alerts::start(cfg, fast()).unwrap();
    for _ in 0..10 {
        alerts.record(Event {
            app: Some("shop".into()),
            ip: "192.0.2.9".parse().unwrap(),
            code: "signature_mismatch".into(),
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while got.0.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no alert delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = got.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one alert per cooldown");
    assert_eq!(got[0].1["subject"], "192.0.2.9");
    assert!(got[0].1.get("tenant").is_none(), "an operator alert has no tenant");
    assert_eq!(alerts.stats.fired.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_ip_rotating_flood_is_capped_and_summarised() {
    let (addr, got) = receiver(0).await;
    let cfg = AlertsConfig {
        rules: vec![RuleConfig::SignatureFailures {
            name: None,
            per: Per::Ip,
            threshold: 1,
            window_secs: 60,
            cooldown_secs: 600,
        }],
        channels: vec![ChannelConfig::Webhook { url: format!("http://{addr}/hook") }],
        max_per_minute: 5,
    };
    let alerts = Alerts::start_with_window(cfg, fast(), Duration::from_millis(500)).unwrap();
    // 100 source addresses, each over its threshold: 100 alerts fire.
    for i in 0..100u32 {
        for _ in 0..2 {
            alerts.record(Event {
                app: Some("shop".into()),
                ip: std::net::Ipv4Addr::from(0xC000_0200 + i).into(),
                code: "signature_mismatch".into(),
            });
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = got.0.lock().unwrap().iter().filter(|(_, v)| v["rule"] == "alert_rate_cap").count();
        if n > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no summary");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = got.0.lock().unwrap().clone();
    let individual = got.iter().filter(|(_, v)| v["rule"] == "signature_failures").count();
    let summary = got.iter().find(|(_, v)| v["rule"] == "alert_rate_cap").unwrap();
    assert_eq!(individual, 5, "capped per window");
    assert_eq!(summary.1["count"], 95);
    assert_eq!(alerts.stats.fired.load(std::sync::atomic::Ordering::Relaxed), 100);
    assert_eq!(alerts.stats.suppressed.load(std::sync::atomic::Ordering::Relaxed), 95);
}

fn tenant_sig(name: &str) -> RuleConfig {
    RuleConfig::SignatureFailures {
        name: Some(name.into()),
        per: Per::Ip,
        threshold: 1,
        window_secs: 60,
        cooldown_secs: 600,
    }
}

#[tokio::test]
async fn a_tenant_rule_fires_and_the_webhook_names_the_tenant() {
    let (addr, got) = receiver(0).await;
    let cfg = AlertsConfig {
        rules: vec![],
        channels: vec![
            ChannelConfig::Webhook { url: format!("http://{addr}/hook") },
            ChannelConfig::Slack { url: format!("http://{addr}/slack") },
        ],
        max_per_minute: 30,
    };
    let alerts = Alerts::start(cfg, fast()).unwrap();
    assert!(!alerts.wants("signature_mismatch"));
    alerts.set_tenant_rules(
        HashMap::from([("acme".to_string(), vec![tenant_sig("acme-sig")])]),
        HashMap::from([("shop".to_string(), "acme".to_string())]),
    );
    assert!(alerts.wants("signature_mismatch"));
    for _ in 0..2 {
        alerts.record(Event {
            app: Some("shop".into()),
            ip: "192.0.2.7".parse().unwrap(),
            code: "signature_mismatch".into(),
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while got.0.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "tenant alert not delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = got.0.lock().unwrap().clone();
    let by = |p: &str| got.iter().find(|(path, _)| path == p).unwrap().1.clone();
    let hook = by("/hook");
    assert_eq!(
        (hook["tenant"].as_str(), hook["rule"].as_str(), hook["subject"].as_str(), hook["count"].as_u64()),
        (Some("acme"), Some("acme-sig"), Some("192.0.2.7"), Some(2))
    );
    let text = by("/slack")["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("[tenant acme] keygate: 2 signature failures from client IP 192.0.2.7"),
        "{text}"
    );
    assert_eq!(alerts.view_for_tenant("acme")["stats"]["fired"], 1);
}

#[tokio::test]
async fn tenant_alerts_count_against_the_same_rate_cap() {
    let (addr, got) = receiver(0).await;
    let cfg = AlertsConfig {
        rules: vec![tenant_sig("operator")],
        channels: vec![ChannelConfig::Webhook { url: format!("http://{addr}/hook") }],
        max_per_minute: 3,
    };
    // A window long enough for every event to be evaluated inside the first one.
    let alerts = Alerts::start_with_window(cfg, fast(), Duration::from_secs(2)).unwrap();
    alerts.set_tenant_rules(
        HashMap::from([("acme".to_string(), vec![tenant_sig("acme-sig")])]),
        HashMap::from([("shop".to_string(), "acme".to_string())]),
    );
    // 20 addresses over the threshold: 20 operator and 20 tenant alerts fire.
    for i in 0..20u32 {
        for _ in 0..2 {
            alerts.record(Event {
                app: Some("shop".into()),
                ip: std::net::Ipv4Addr::from(0xC000_0200 + i).into(),
                code: "signature_mismatch".into(),
            });
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.0.lock().unwrap().iter().any(|(_, v)| v["rule"] == "alert_rate_cap") {
        assert!(tokio::time::Instant::now() < deadline, "no summary");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = got.0.lock().unwrap().clone();
    let individual = got.iter().filter(|(_, v)| v["rule"] != "alert_rate_cap").count();
    let summary = got.iter().find(|(_, v)| v["rule"] == "alert_rate_cap").unwrap();
    assert_eq!(individual, 3, "one cap for operator and tenant alerts");
    assert_eq!(summary.1["count"], 37);
    assert!(summary.1.get("tenant").is_none());
    assert_eq!(alerts.stats.fired.load(std::sync::atomic::Ordering::Relaxed), 40);
    assert_eq!(alerts.view_for_tenant("acme")["stats"]["fired"], 20);
}
