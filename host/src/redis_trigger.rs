//! Spin's Redis trigger: subscribes to each `[[trigger.redis]]` channel and
//! runs its component once per message, through the component's
//! `fermyon:spin/inbound-redis` export.
//!
//! Unlike Spin (which handles one message at a time and stops when the
//! connection drops), messages run concurrently up to
//! [`MAX_CONCURRENT_MESSAGES`], and a lost connection is retried with
//! backoff, logged when lost and when back. Pub/sub delivers at most once:
//! a message published while the host is not subscribed is never seen.

use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use crate::app::App;

/// Messages handled at once per server; further ones wait in Redis's output
/// buffer for the subscriber.
const MAX_CONCURRENT_MESSAGES: usize = 64;
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Subscribes to every Redis trigger of `app`; runs until aborted.
pub async fn run(app: Arc<App>) {
    // One subscriber connection per server, for all its channels.
    let mut servers: BTreeMap<String, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    for s in &app.subscriptions {
        servers
            .entry(s.address.clone())
            .or_default()
            .entry(s.channel.clone())
            .or_default()
            .push(s.component);
    }
    let subscribers = servers
        .into_iter()
        .map(|(address, channels)| subscribe(app.clone(), address, channels));
    futures::future::join_all(subscribers).await;
}

/// The address as logs show it: without a password.
fn shown(address: &str) -> String {
    match address.split_once('@') {
        Some((_, host)) => format!("redis://***@{host}"),
        None => address.to_string(),
    }
}

async fn subscribe(app: Arc<App>, address: String, channels: BTreeMap<String, Vec<usize>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_MESSAGES));
    let mut wait = Duration::from_millis(100);
    let mut lost = false;
    loop {
        match listen(&app, &address, &channels, &slots, &mut lost).await {
            Ok(()) => {
                wait = Duration::from_millis(100);
                tracing::warn!(address = %shown(&address), "Redis trigger lost its connection; reconnecting");
            }
            Err(e) => {
                tracing::warn!(address = %shown(&address), "Redis trigger cannot subscribe ({e}); retrying in {wait:?}");
            }
        }
        lost = true;
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RECONNECT_MAX);
    }
}

/// One connection's life: subscribe, then dispatch until the stream ends.
async fn listen(
    app: &Arc<App>,
    address: &str,
    channels: &BTreeMap<String, Vec<usize>>,
    slots: &Arc<Semaphore>,
    lost: &mut bool,
) -> redis::RedisResult<()> {
    let client = redis::Client::open(address)?;
    let mut pubsub = client.get_async_pubsub().await?;
    for channel in channels.keys() {
        pubsub.subscribe(channel).await?;
    }
    let names: Vec<&str> = channels.keys().map(String::as_str).collect();
    if std::mem::take(lost) {
        tracing::info!(address = %shown(address), channels = ?names, "Redis trigger reconnected and subscribed");
    } else {
        tracing::info!(address = %shown(address), channels = ?names, "Redis trigger subscribed");
    }
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Some(components) = channels.get(msg.get_channel_name()) else {
            continue;
        };
        let payload = msg.get_payload_bytes().to_vec();
        for &component in components {
            let permit = slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let app = app.clone();
            let payload = payload.clone();
            let channel = msg.get_channel_name().to_string();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = app.handle_message(component, payload).await {
                    tracing::error!(%channel, component = app.component_name(component), "Redis message not handled: {e:#}");
                }
            });
        }
    }
    Ok(())
}
