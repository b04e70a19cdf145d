//! The relay: `datos_crudos` -> llm-invoke -> `datos_procesados`.
//!
//! Offsets are stored (for the periodic auto-commit) only through the
//! [`OffsetTracker`], so a partition's committed position never passes an
//! event that has not finished: at-least-once, made effectively-once by the
//! components' idempotent writes keyed by task id.

use aies_contract::{
    valid_task_id, valid_tenant, InvokeRequest, RawEvent, TaskResult, DEFAULT_TENANT,
    MAX_PROMPT_CHARS,
};
use anyhow::{anyhow, bail, Context, Result};
use futures::future::{FutureExt, Shared};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};
use tracing::Instrument;

use crate::offsets::OffsetTracker;
use crate::BridgeConfig;

/// How long shutdown waits for events in flight before leaving them to be
/// redelivered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for the final offset commit.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

type Done = Shared<oneshot::Receiver<()>>;

struct Relay {
    config: BridgeConfig,
    consumer: StreamConsumer,
    producer: FutureProducer,
    http: reqwest::Client,
    tracker: Mutex<OffsetTracker>,
    /// The last event of each key still running: the next one waits for it.
    chains: Mutex<HashMap<Vec<u8>, Done>>,
}

pub async fn run(
    config: BridgeConfig,
    producer: FutureProducer,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut client = ClientConfig::new();
    // librdkafka's own tracing (e.g. `cgrp,fetch`), for diagnosing the group.
    if let Ok(debug) = std::env::var("AIES_KAFKA_DEBUG") {
        client.set("debug", debug);
    }
    let consumer: StreamConsumer = client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // An idle partition is polled again after 20 ms, not librdkafka's
        // 500 ms default: events are latency-sensitive, not batch jobs.
        .set("fetch.wait.max.ms", "20")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "max.poll.interval.ms",
            config.max_poll_interval_ms.to_string(),
        )
        .create()
        .context("creating the Kafka consumer")?;
    consumer
        .subscribe(&[&config.raw_topic])
        .with_context(|| format!("subscribing to {}", config.raw_topic))?;
    let http = reqwest::Client::builder()
        .timeout(config.invoke_timeout())
        .build()?;
    let max_in_flight = config.max_in_flight.max(1);
    tracing::info!(
        topic = %config.raw_topic, group = %config.group, invoke = %config.invoke_url,
        "relay started"
    );
    let relay = Arc::new(Relay {
        config,
        consumer,
        producer,
        http,
        tracker: Mutex::default(),
        chains: Mutex::default(),
    });
    let slots = Arc::new(Semaphore::new(max_in_flight));
    tokio::pin!(shutdown);
    loop {
        let message = tokio::select! {
            m = relay.consumer.recv() => m,
            () = &mut shutdown => break,
        };
        // A bad read is logged; the loop goes on.
        let message = match message {
            Ok(m) => m.detach(),
            Err(e) => {
                tracing::warn!("Kafka receive error: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p?,
            () = &mut shutdown => break,
        };
        let (partition, offset) = (message.partition(), message.offset());
        relay.tracker.lock().unwrap().begin(partition, offset);
        let (done_tx, done_rx) = oneshot::channel();
        let previous = message.key().map(|k| {
            let mut chains = relay.chains.lock().unwrap();
            if chains.len() > 10_000 {
                chains.retain(|_, d| d.peek().is_none());
            }
            chains.insert(k.to_vec(), done_rx.shared())
        });
        let relay = relay.clone();
        let span = tracing::info_span!("event", partition, offset, task_id = tracing::field::Empty);
        tokio::spawn(
            async move {
                if let Some(Some(previous)) = previous {
                    let _ = previous.await;
                }
                match relay.process(&message).await {
                    Ok(()) => relay.finish(partition, offset),
                    // Not finished: the offset stays uncommitted, and the
                    // event is read again after a restart or rebalance.
                    Err(e) => tracing::error!("event left uncommitted: {e:#}"),
                }
                let _ = done_tx.send(());
                drop(permit);
            }
            .instrument(span),
        );
    }

    tracing::info!("relay stopping: draining events in flight");
    let drained =
        tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(max_in_flight as u32)).await;
    if drained.is_err() {
        tracing::warn!("some events were still running; they will be redelivered");
    }
    // The final commit (and closing the consumer) block on the broker; a
    // broker that is gone must not hold the shutdown forever.
    let closing = tokio::task::spawn_blocking(move || {
        if let Err(e) = relay.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::warn!("final commit: {e}");
        }
        drop(relay);
    });
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        tracing::warn!(
            "Kafka did not confirm the final commit in {CLOSE_TIMEOUT:?}; stopping anyway"
        );
    }
    Ok(())
}

enum InvokeError {
    /// Try again later: the app or the network is down, or it asked us to.
    Transient(anyhow::Error),
    /// The app refused the event itself.
    Permanent(anyhow::Error),
}

impl Relay {
    fn finish(&self, partition: i32, offset: i64) {
        let position = self.tracker.lock().unwrap().finish(partition, offset);
        if let Some(position) = position {
            let mut tpl = TopicPartitionList::new();
            let stored = tpl
                .add_partition_offset(&self.config.raw_topic, partition, Offset::Offset(position))
                .and_then(|()| self.consumer.store_offsets(&tpl));
            // Fails when the partition was revoked meanwhile; its new owner
            // re-reads from the committed position.
            if let Err(e) = stored {
                tracing::debug!(partition, position, "offset not stored: {e}");
            }
        }
    }

    /// Runs one event to its end: a result on `datos_procesados`, or the
    /// dead-letter topic. `Err` only when even that could not be written.
    async fn process(&self, message: &OwnedMessage) -> Result<()> {
        let event = match parse(message) {
            Ok(e) => e,
            Err(e) => return self.dead_letter(message, &format!("{e:#}")).await,
        };
        let task_id = event
            .task_id
            .clone()
            .filter(|id| valid_task_id(id))
            .unwrap_or_else(|| derived_task_id(message));
        tracing::Span::current().record("task_id", &task_id);
        let mut request = InvokeRequest {
            task_id,
            prompt: event.prompt,
            tenant: event
                .tenant
                .filter(|t| valid_tenant(t))
                .unwrap_or_else(|| DEFAULT_TENANT.to_string()),
            use_cache: event.use_cache,
            final_attempt: false,
        };
        let attempts = self.config.max_attempts.max(1);
        for attempt in 1..=attempts {
            request.final_attempt = attempt == attempts;
            match self.invoke(&request).await {
                Ok(result) => return self.publish_result(&result).await,
                Err(InvokeError::Permanent(e)) => {
                    return self.dead_letter(message, &format!("{e:#}")).await
                }
                Err(InvokeError::Transient(e)) if attempt == attempts => {
                    let reason = format!("gave up after {attempts} attempts: {e:#}");
                    return self.dead_letter(message, &reason).await;
                }
                Err(InvokeError::Transient(e)) => {
                    let wait = backoff(attempt, self.config.retry_backoff_ms);
                    tracing::warn!(task_id = %request.task_id, attempt, "invoke failed, retrying in {wait:?}: {e:#}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        unreachable!("the last attempt always returns")
    }

    async fn invoke(&self, request: &InvokeRequest) -> Result<TaskResult, InvokeError> {
        let mut call = self.http.post(&self.config.invoke_url).json(request);
        let token = self.config.invoke_token.expose();
        if !token.is_empty() {
            call = call.bearer_auth(token);
        }
        let response = call
            .send()
            .await
            .map_err(|e| InvokeError::Transient(anyhow!("POST {}: {e}", self.config.invoke_url)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| InvokeError::Transient(anyhow!("reading the answer: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| InvokeError::Permanent(anyhow!("llm-invoke answered non-JSON: {e}")));
        }
        let text = String::from_utf8_lossy(&body);
        let e = anyhow!(
            "llm-invoke answered {status}: {}",
            text.chars().take(300).collect::<String>()
        );
        let transient = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err(if transient {
            InvokeError::Transient(e)
        } else {
            InvokeError::Permanent(e)
        })
    }

    async fn publish_result(&self, result: &TaskResult) -> Result<()> {
        let payload = serde_json::to_vec(result)?;
        let record = FutureRecord::to(&self.config.result_topic)
            .key(&result.task_id)
            .payload(&payload);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| {
                anyhow!("producing the result to {}: {e}", self.config.result_topic)
            })?;
        tracing::info!(task_id = %result.task_id, status = ?result.status, "result published");
        Ok(())
    }

    async fn dead_letter(&self, message: &OwnedMessage, reason: &str) -> Result<()> {
        tracing::error!("dead-lettering event: {reason}");
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(reason),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(&offset),
            });
        let mut record = FutureRecord::to(&self.config.dead_letter_topic)
            .payload(message.payload().unwrap_or_default())
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow!("producing to {}: {e}", self.config.dead_letter_topic))?;
        Ok(())
    }
}

fn parse(message: &OwnedMessage) -> Result<RawEvent> {
    let payload = message.payload().context("event has no payload")?;
    let event: RawEvent = serde_json::from_slice(payload).context("event is not valid JSON")?;
    let chars = event.prompt.trim().chars().count();
    if chars == 0 || chars > MAX_PROMPT_CHARS {
        bail!("prompt must hold 1 to {MAX_PROMPT_CHARS} characters, has {chars}");
    }
    Ok(event)
}

/// A task id for an event that came without one: derived from where the
/// event sits, so a redelivery maps to the same task.
fn derived_task_id(message: &OwnedMessage) -> String {
    let place = format!(
        "{}/{}/{}",
        message.topic(),
        message.partition(),
        message.offset()
    );
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, place.as_bytes()).to_string()
}

/// Exponential backoff (capped at 30 s) with jitter between 50 and 100 %.
fn backoff(attempt: u32, base_ms: u64) -> Duration {
    let ceiling = base_ms
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(30_000);
    let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as u64; // 0..999
    Duration::from_millis(ceiling / 2 + ceiling * jitter / 2000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn message(payload: &str, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.as_bytes().to_vec()),
            None,
            "datos_crudos".into(),
            Timestamp::NotAvailable,
            2,
            offset,
            None,
        )
    }

    #[test]
    fn third_party_events_get_a_stable_task_id() {
        let a = derived_task_id(&message("{}", 7));
        assert_eq!(a, derived_task_id(&message("{}", 7)));
        assert_ne!(a, derived_task_id(&message("{}", 8)));
        assert!(valid_task_id(&a));
    }

    #[test]
    fn unusable_events_are_rejected_with_a_reason() {
        assert!(parse(&message(r#"{"prompt":"hello"}"#, 0)).is_ok());
        let e = parse(&message("not json", 0)).unwrap_err();
        assert!(format!("{e:#}").contains("not valid JSON"));
        let e = parse(&message(r#"{"prompt":"   "}"#, 0)).unwrap_err();
        assert!(format!("{e:#}").contains("prompt"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let ceiling = (100u64 << (attempt - 1).min(16)).min(30_000);
            let d = backoff(attempt, 100).as_millis() as u64;
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d}");
        }
    }
}
