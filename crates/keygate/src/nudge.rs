// Config-change fan-out over Redis pub/sub: the replica whose admin API made a change publishes
// on `<prefix>config-changed`, every replica's reload loop wakes at once instead of at its next
// poll. Only an optimisation: polling the store's change counter stays the source of truth, so
// a lost message (Redis down, reconnecting subscriber) costs at most one poll interval.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::AsyncCommands as _;

/// Channel name for a key prefix.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}config-changed")
}

/// Subscribes (reconnecting forever) and wakes `nudge` on every message.
pub async fn subscribe(url: String, channel: String, nudge: Arc<tokio::sync::Notify>) {
    let mut failing = false;
    loop {
        let result = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            if failing {
                tracing::info!("config-change subscription restored");
            }
            let mut messages = pubsub.on_message();
            while messages.next().await.is_some() {
                nudge.notify_one();
            }
            Ok::<_, redis::RedisError>(())
        }
        .await;
        if let Err(e) = result {
            if !failing {
                tracing::warn!(error = %e, "config-change subscription lost; relying on polling until it returns");
            }
            failing = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Publishes change nudges from the admin API (fire and forget).
#[derive(Clone)]
pub struct Publisher {
    client: Option<redis::Client>,
    channel: String,
}

impl Publisher {
    pub fn new(url: &str, prefix: &str) -> Self {
        let client = redis::Client::open(url)
            .map_err(|e| tracing::warn!(error = %e, "config-change publisher disabled"))
            .ok();
        Self { client, channel: channel(prefix) }
    }

    pub fn publish(&self) {
        let Some(client) = self.client.clone() else { return };
        let channel = self.channel.clone();
        tokio::spawn(async move {
            let sent = async {
                let mut c = client.get_multiplexed_async_connection().await?;
                c.publish::<_, _, i64>(&channel, 1).await
            };
            if let Err(e) = tokio::time::timeout(Duration::from_secs(2), sent)
                .await
                .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "publish timed out"))))
            {
                tracing::debug!(error = %e, "config-change nudge not published; replicas will poll");
            }
        });
    }
}
