//! Spin's Redis trigger: subscribes to each `[[trigger.redis]]` channel and
//! runs its component once per message, through the component's
//! `fermyon:spin/inbound-redis` export.
//!
//! Unlike Spin (which handles one message at a time and stops when the
//! connection drops), messages run concurrently up to
//! [`MAX_CONCURRENT_MESSAGES`] per channel, and a lost connection is retried
//! with backoff, logged when lost and when back. Messages are read off the
//! connection as they come (so Redis never drops a slow subscriber) into a
//! queue of [`MAX_QUEUED_MESSAGES`] per channel; beyond that they are
//! dropped and logged. Each channel has its queue and workers, so a backlog
//! on one (the batch lane's cache fills) never delays another (the API
//! lane's). These runs are background work: an embedding they ask for
//! waits while one for a request waits (`llm::Priority`).
//! Pub/sub delivers at most once: a message published while the host is
//! not subscribed is never seen.

use futures::future::BoxFuture;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[cfg(test)]
mod tests;

/// Messages handled at once per channel (their embeddings yield to those of
/// requests: `llm::Priority`).
const MAX_CONCURRENT_MESSAGES: usize = 16;
/// Messages waiting per channel; more are dropped (and logged).
const MAX_QUEUED_MESSAGES: usize = 100_000;
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// A `[[trigger.redis]]` entry, its templates expanded.
#[derive(Debug, Clone)]
pub struct RedisSubscription {
    pub address: String,
    pub channel: String,
    pub component: usize,
}

/// What the trigger needs of the app: a component to run each message
/// through, and its name for the logs.
pub trait MessageHandler: Send + Sync + 'static {
    /// Runs `payload` through component `component`'s
    /// `fermyon:spin/inbound-redis` export.
    fn on_message(
        self: Arc<Self>,
        component: usize,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, anyhow::Result<()>>;

    fn component_name(&self, component: usize) -> &str;
}

/// Subscribes to every subscription's channel; runs until aborted.
pub async fn run(handler: Arc<dyn MessageHandler>, subscriptions: Vec<RedisSubscription>) {
    let subscribers = by_server(&subscriptions)
        .into_iter()
        .map(|(address, channels)| subscribe(handler.clone(), address, channels));
    futures::future::join_all(subscribers).await;
}

/// The components of each channel, by server: one subscriber connection
/// per server, for all its channels.
fn by_server(
    subscriptions: &[RedisSubscription],
) -> BTreeMap<String, BTreeMap<String, Vec<usize>>> {
    let mut servers: BTreeMap<String, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    for s in subscriptions {
        servers
            .entry(s.address.clone())
            .or_default()
            .entry(s.channel.clone())
            .or_default()
            .push(s.component);
    }
    servers
}

/// The address as logs show it: without a password.
fn shown(address: &str) -> String {
    match (address.split_once("://"), address.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => address.to_string(),
    }
}

/// One message for one component.
type Job = (usize, String, Vec<u8>);

/// A channel's components and the queue its messages wait in.
struct Channel {
    components: Vec<usize>,
    queue: mpsc::Sender<Job>,
}

async fn subscribe(
    handler: Arc<dyn MessageHandler>,
    address: String,
    channels: BTreeMap<String, Vec<usize>>,
) {
    let channels: BTreeMap<String, Channel> = channels
        .into_iter()
        .map(|(name, components)| {
            let (queue, jobs) = mpsc::channel::<Job>(MAX_QUEUED_MESSAGES);
            let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
            for _ in 0..MAX_CONCURRENT_MESSAGES {
                tokio::spawn(work(handler.clone(), jobs.clone()));
            }
            (name, Channel { components, queue })
        })
        .collect();
    let mut wait = Duration::from_millis(100);
    let mut lost = false;
    loop {
        match listen(&address, &channels, &mut lost).await {
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

/// Runs queued messages one after another, until the queue closes.
async fn work(
    handler: Arc<dyn MessageHandler>,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
) {
    loop {
        let Some((component, channel, payload)) = jobs.lock().await.recv().await else {
            return;
        };
        if let Err(e) = handler.clone().on_message(component, payload).await {
            tracing::error!(%channel, component = handler.component_name(component), "Redis message not handled: {e:#}");
        }
    }
}

/// One connection's life: subscribe, then queue messages until the stream
/// ends.
async fn listen(
    address: &str,
    channels: &BTreeMap<String, Channel>,
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
    let mut dropped = 0u64;
    while let Some(msg) = messages.next().await {
        let channel = msg.get_channel_name();
        let Some(Channel { components, queue }) = channels.get(channel) else {
            continue;
        };
        for &component in components {
            let job = (
                component,
                channel.to_string(),
                msg.get_payload_bytes().to_vec(),
            );
            if queue.try_send(job).is_err() {
                dropped += 1;
                // Logged at the first and then every thousandth.
                if dropped % 1000 == 1 {
                    tracing::warn!(%channel, dropped, "Redis trigger queue full ({MAX_QUEUED_MESSAGES}): message dropped");
                }
            }
        }
    }
    Ok(())
}
