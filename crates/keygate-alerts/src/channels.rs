// Where alerts go: a generic JSON webhook, Slack, DingTalk, Feishu/Lark and WeCom incoming
// webhooks, and SMTP email. Each delivery is retried with exponential backoff; an alert carries
// only rule, subject (app id, IP or range), counts and times — never a secret.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::json;

use crate::rules::Alert;
use crate::smtp::{self, EmailConfig};

/// A delivery target from the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    /// POST of the alert as JSON (`{"source":"keygate","rule",...}`).
    Webhook {
        url: String,
    },
    Slack {
        url: String,
    },
    Dingtalk {
        url: String,
    },
    /// Feishu / Lark custom bot.
    Feishu {
        url: String,
    },
    /// WeCom (WeChat Work) group robot.
    Wecom {
        url: String,
    },
    Email(EmailConfig),
}

impl ChannelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Slack { .. } => "slack",
            Self::Dingtalk { .. } => "dingtalk",
            Self::Feishu { .. } => "feishu",
            Self::Wecom { .. } => "wecom",
            Self::Email(_) => "email",
        }
    }

    /// The request body for a webhook channel; `None` for email. A tenant's alert carries the
    /// tenant: a `"tenant"` field in the generic webhook, a `[tenant T]` prefix in chat text.
    pub fn payload(&self, a: &Alert) -> Option<serde_json::Value> {
        Some(match self {
            Self::Webhook { .. } => {
                let mut v = json!({
                    "source": "keygate",
                    "rule": a.rule,
                    "kind": a.kind,
                    "subject": a.subject,
                    "count": a.count,
                    "window_secs": a.window_secs,
                    "at": a.at,
                    "message": a.message,
                });
                if let (Some(t), Some(obj)) = (&a.tenant, v.as_object_mut()) {
                    obj.insert("tenant".into(), json!(t));
                }
                v
            }
            Self::Slack { .. } => json!({ "text": a.text() }),
            Self::Dingtalk { .. } => json!({ "msgtype": "text", "text": { "content": a.text() } }),
            Self::Feishu { .. } => json!({ "msg_type": "text", "content": { "text": a.text() } }),
            Self::Wecom { .. } => json!({ "msgtype": "text", "text": { "content": a.text() } }),
            Self::Email(_) => return None,
        })
    }
}

/// Subject and body of an alert mail; a tenant's alert names the tenant in both.
pub fn email_text(a: &Alert) -> (String, String) {
    match &a.tenant {
        Some(t) => (
            format!("[keygate] [tenant {t}] {} — {}", a.rule, a.subject),
            format!("Tenant: {t}\n{}", a.text()),
        ),
        None => (format!("[keygate] {} — {}", a.rule, a.subject), a.message.clone()),
    }
}

/// Delivery failures.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Http(String),
    #[error("receiver answered {0}")]
    Status(u16),
    #[error("timed out")]
    Timeout,
    #[error("smtp: {0}")]
    Smtp(#[from] smtp::SmtpError),
}

/// Retry schedule: attempts and the first backoff (doubling).
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self { attempts: 5, first_backoff: Duration::from_secs(1), timeout: Duration::from_secs(5) }
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends alerts to channels.
#[derive(Debug, Clone)]
pub struct Sender {
    client: HttpsClient,
    retry: Retry,
}

impl Sender {
    pub fn new(retry: Retry) -> Result<Self, DeliveryError> {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| DeliveryError::Http(format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self { client: Client::builder(TokioExecutor::new()).build(connector), retry })
    }

    /// Delivers `alert` to `channel`, retrying with backoff; returns the attempts used.
    pub async fn deliver(&self, channel: &ChannelConfig, alert: &Alert) -> Result<u32, DeliveryError> {
        let mut backoff = self.retry.first_backoff;
        let mut attempt = 1;
        loop {
            let result = tokio::time::timeout(self.retry.timeout, self.once(channel, alert))
                .await
                .unwrap_or(Err(DeliveryError::Timeout));
            match result {
                Ok(()) => return Ok(attempt),
                Err(e) if attempt >= self.retry.attempts => return Err(e),
                Err(e) => {
                    tracing::debug!(channel = channel.kind(), attempt, error = %e, "alert delivery failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    async fn once(&self, channel: &ChannelConfig, alert: &Alert) -> Result<(), DeliveryError> {
        let url = match channel {
            ChannelConfig::Email(cfg) => {
                let (subject, body) = email_text(alert);
                return Ok(smtp::send(cfg, &subject, &body).await?);
            }
            ChannelConfig::Webhook { url }
            | ChannelConfig::Slack { url }
            | ChannelConfig::Dingtalk { url }
            | ChannelConfig::Feishu { url }
            | ChannelConfig::Wecom { url } => url,
        };
        let body = channel.payload(alert).map(|p| p.to_string()).unwrap_or_default();
        let req = http::Request::post(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "keygate-alerts")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| DeliveryError::Http(e.to_string()))?;
        let resp = self.client.request(req).await.map_err(|e| DeliveryError::Http(e.to_string()))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn alert(tenant: Option<&str>) -> Alert {
        Alert {
            rule: "sig".into(),
            kind: "count".into(),
            subject: "shop".into(),
            count: 3,
            window_secs: 60,
            at: 1_800_000_000,
            message: "keygate: 3 signature failures from app shop within 60 s (threshold 2)".into(),
            tenant: tenant.map(str::to_string),
        }
    }

    fn chats() -> [ChannelConfig; 4] {
        let url = String::from("http://127.0.0.1:9/x");
        [
            ChannelConfig::Slack { url: url.clone() },
            ChannelConfig::Dingtalk { url: url.clone() },
            ChannelConfig::Feishu { url: url.clone() },
            ChannelConfig::Wecom { url },
        ]
    }

    fn chat_text(v: &serde_json::Value) -> &str {
        v.pointer("/text")
            .and_then(|t| t.as_str().or_else(|| t.pointer("/content").and_then(|c| c.as_str())))
            .or_else(|| v.pointer("/content/text").and_then(|c| c.as_str()))
            .unwrap()
    }

    #[test]
    fn payload_carries_the_tenant() {
        let hook = ChannelConfig::Webhook { url: "http://127.0.0.1:9/x".into() };
        let p = hook.payload(&alert(Some("acme"))).unwrap();
        assert_eq!((p["tenant"].as_str(), p["rule"].as_str()), (Some("acme"), Some("sig")));
        assert_eq!(p["message"], alert(None).message.as_str(), "the message itself is unchanged");
        let p = hook.payload(&alert(None)).unwrap();
        assert!(p.get("tenant").is_none(), "operator alerts keep their shape: {p}");
        for ch in chats() {
            let t = ch.payload(&alert(Some("acme"))).unwrap();
            assert_eq!(chat_text(&t), format!("[tenant acme] {}", alert(None).message), "{}", ch.kind());
            let o = ch.payload(&alert(None)).unwrap();
            assert_eq!(chat_text(&o), alert(None).message, "{}", ch.kind());
        }
        let email = ChannelConfig::Email(
            serde_json::from_value(serde_json::json!({
                "host": "127.0.0.1", "from": "a@example.test", "to": ["b@example.test"]
            }))
            .unwrap(),
        );
        assert!(email.payload(&alert(Some("acme"))).is_none());
    }

    #[test]
    fn email_names_the_tenant() {
        let (subject, body) = email_text(&alert(Some("acme")));
        assert_eq!(subject, "[keygate] [tenant acme] sig — shop");
        assert!(body.starts_with("Tenant: acme\n[tenant acme] keygate: 3 signature failures"), "{body}");
        let (subject, body) = email_text(&alert(None));
        assert_eq!((subject.as_str(), body), ("[keygate] sig — shop", alert(None).message));
    }

    #[test]
    fn the_tenant_field_is_optional_in_json() {
        let v = serde_json::to_value(alert(None)).unwrap();
        assert!(v.get("tenant").is_none());
        let back: Alert = serde_json::from_value(v).unwrap();
        assert_eq!(back, alert(None));
        let v = serde_json::to_value(alert(Some("acme"))).unwrap();
        assert_eq!(v["tenant"], "acme");
        assert_eq!(serde_json::from_value::<Alert>(v).unwrap(), alert(Some("acme")));
    }
}
