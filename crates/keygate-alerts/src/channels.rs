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

    /// The request body for a webhook channel; `None` for email.
    pub fn payload(&self, a: &Alert) -> Option<serde_json::Value> {
        Some(match self {
            Self::Webhook { .. } => json!({
                "source": "keygate",
                "rule": a.rule,
                "kind": a.kind,
                "subject": a.subject,
                "count": a.count,
                "window_secs": a.window_secs,
                "at": a.at,
                "message": a.message,
            }),
            Self::Slack { .. } => json!({ "text": a.message }),
            Self::Dingtalk { .. } => json!({ "msgtype": "text", "text": { "content": a.message } }),
            Self::Feishu { .. } => json!({ "msg_type": "text", "content": { "text": a.message } }),
            Self::Wecom { .. } => json!({ "msgtype": "text", "text": { "content": a.message } }),
            Self::Email(_) => return None,
        })
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
                let subject = format!("[keygate] {} — {}", alert.rule, alert.subject);
                return Ok(smtp::send(cfg, &subject, &alert.message).await?);
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
