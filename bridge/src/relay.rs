//! The relay: Kafka -> llm-invoke -> `datos_procesados`, in two lanes.
//!
//! - The **API lane** reads `datos_api` (events from `POST /enqueue`) and the
//!   **batch lane** reads `datos_crudos` (any producer). Each lane has its
//!   own consumer, group and in-flight slots, so an interactive request never
//!   waits behind a batch backlog.
//! - Offsets are stored (for the periodic auto-commit) only through the
//!   [`OffsetTracker`], so a partition's committed position never passes an
//!   event that has not finished: at-least-once, made effectively-once by the
//!   components' idempotent writes keyed by task id.
//! - An outage of the pipeline (the app or its Redis not answering its
//!   health check) holds events without spending their attempts; only
//!   failures of the event itself count towards the dead-letter topic.
//! - A [`Watchdog`] per lane notices partitions that have events waiting
//!   but that nobody consumes (Tansu's group coordinator can leave them so),
//!   says so in the log and metrics, and rejoins the group with a new
//!   consumer.

use aies_contract::{
    valid_task_id, valid_tenant, InvokeRequest, RawEvent, TaskResult, TraceParent, DEFAULT_TENANT,
    MAX_PROMPT_CHARS,
};
use anyhow::{anyhow, bail, Context, Result};
use futures::future::{FutureExt, Shared};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use crate::in_flight::Limit;
use crate::invoker::{InvokeError, Invoker};
use crate::metrics::{Metrics, PartitionLabel};
use crate::offsets::OffsetTracker;
use crate::watchdog::{self, LagReport, Watchdog, WATCH_EVERY};
use crate::BridgeConfig;

/// How long shutdown waits for events in flight before leaving them to be
/// redelivered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing a consumer waits for its final offset commit.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Header naming where an event first entered Kafka (`topic/partition/offset`);
/// kept through dead-lettering and replay, so a prompt-only event keeps its
/// derived task id.
pub const ORIGIN_HEADER: &str = "aies-origin";
/// Headers the dead-letter topic adds (replaced when an event dies twice).
pub const DEAD_LETTER_HEADERS: [&str; 4] =
    ["error", "source_topic", "source_partition", "source_offset"];

type Done = Shared<oneshot::Receiver<()>>;

/// Where one lane reads from.
struct Lane {
    name: &'static str,
    topic: String,
    group: String,
}

/// One consumer of a lane, replaced when the watchdog finds it stalled.
struct LaneConsumer {
    consumer: StreamConsumer,
    tracker: Mutex<OffsetTracker>,
    /// The last event of each key still running: the next one waits for it.
    chains: Mutex<HashMap<Vec<u8>, Done>>,
}

struct Relay {
    config: BridgeConfig,
    producer: FutureProducer,
    http: reqwest::Client,
    invoker: Invoker,
    health_url: reqwest::Url,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    /// True while the pipeline fails its health check (logged once).
    outage: AtomicBool,
}

enum Exit {
    Shutdown,
    Stalled,
}

pub async fn run(
    config: BridgeConfig,
    producer: FutureProducer,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(config.invoke_timeout())
        .build()?;
    let lanes = [
        Lane {
            name: "api",
            topic: config.api_topic.clone(),
            group: config.api_group(),
        },
        Lane {
            name: "batch",
            topic: config.raw_topic.clone(),
            group: config.group.clone(),
        },
    ];
    let invoker = Invoker::start(
        http.clone(),
        &config.invoke_url,
        config.invoke_token.clone(),
        config.invoke_batch,
        Duration::from_millis(config.invoke_linger_ms),
        metrics.clone(),
    );
    let relay = Arc::new(Relay {
        invoker,
        health_url: config.health_url()?,
        config,
        producer,
        http,
        metrics,
        stop,
        outage: AtomicBool::new(false),
    });
    futures::future::try_join_all(lanes.map(|lane| relay.clone().run_lane(lane))).await?;
    Ok(())
}

fn consumer(config: &BridgeConfig, lane: &Lane) -> Result<StreamConsumer> {
    let mut client = ClientConfig::new();
    // librdkafka's own tracing (e.g. `cgrp,fetch`), for diagnosing the group.
    if let Ok(debug) = std::env::var("AIES_KAFKA_DEBUG") {
        client.set("debug", debug);
    }
    let consumer: StreamConsumer = client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &lane.group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // 20 ms by default, not librdkafka's 500 ms: on Tansu, that wait is
        // added to every fetch (see `BridgeConfig::fetch_wait_ms`).
        .set("fetch.wait.max.ms", config.fetch_wait_ms.to_string())
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "max.poll.interval.ms",
            config.max_poll_interval_ms.to_string(),
        )
        .create()
        .context("creating the Kafka consumer")?;
    consumer
        .subscribe(&[&lane.topic])
        .with_context(|| format!("subscribing to {}", lane.topic))?;
    Ok(consumer)
}

impl Relay {
    /// Runs one lane until shutdown, replacing its consumer when it stalls.
    async fn run_lane(self: Arc<Self>, lane: Lane) -> Result<()> {
        let limit = Arc::new(Limit::new(
            self.config.max_in_flight,
            self.config.target_rate,
            self.config.max_in_flight_ceiling,
        ));
        let _resizer = AbortOnDrop(tokio::spawn(resize_every_second(
            limit.clone(),
            self.metrics.clone(),
            lane.name,
        )));
        let base = Duration::from_secs(self.config.stall_timeout_secs.max(1));
        let mut stall_after = base;
        loop {
            let current = Arc::new(LaneConsumer {
                consumer: consumer(&self.config, &lane)?,
                tracker: Mutex::default(),
                chains: Mutex::default(),
            });
            tracing::info!(
                lane = lane.name, topic = %lane.topic, group = %lane.group,
                invoke = %self.config.invoke_url, "relay started"
            );
            let started = Instant::now();
            let exit = self.consume(&lane, &current, &limit, stall_after).await;
            if matches!(exit, Exit::Shutdown) {
                tracing::info!(
                    lane = lane.name,
                    "relay stopping: draining events in flight"
                );
            }
            let drained = tokio::time::timeout(
                DRAIN_TIMEOUT,
                limit.held().acquire_many(limit.held_capacity()),
            )
            .await;
            if drained.is_err() {
                tracing::warn!(
                    lane = lane.name,
                    "some events were still running; they will be redelivered"
                );
            }
            close(current).await;
            match exit {
                Exit::Shutdown => return Ok(()),
                // A group that stalls again soon gets longer to settle.
                Exit::Stalled if started.elapsed() < stall_after * 8 => {
                    stall_after = (stall_after * 2).min(Duration::from_secs(300))
                }
                Exit::Stalled => stall_after = base,
            }
        }
    }

    /// Reads events and starts them until shutdown or a stall.
    async fn consume(
        self: &Arc<Self>,
        lane: &Lane,
        current: &Arc<LaneConsumer>,
        limit: &Arc<Limit>,
        stall_after: Duration,
    ) -> Exit {
        let (slots, held) = (limit.slots(), limit.held());
        let mut stop = self.stop.clone();
        let (lag_tx, mut lag_rx) = watch::channel(None);
        let watcher = tokio::spawn(measure_lag(current.clone(), lane.topic.clone(), lag_tx));
        let _abort = AbortOnDrop(watcher);
        let mut dog = Watchdog::default();
        let mut last_received = Instant::now();
        // Several bridges should not all rejoin at the same moment.
        let stall_after = stall_after.mul_f64(1.0 + f64::from(jitter_permille()) / 4000.0);
        loop {
            let message = tokio::select! {
                m = current.consumer.recv() => m,
                _ = stop.wait_for(|s| *s) => return Exit::Shutdown,
                Ok(()) = lag_rx.changed() => {
                    let Some(lag) = lag_rx.borrow_and_update().clone() else { continue };
                    self.record_lag(lane.name, &lag);
                    let now = Instant::now();
                    dog.observe(&lag, now);
                    // A lane with every slot or its read-ahead taken, or held
                    // by an outage, is busy, not stalled.
                    let full = slots.available_permits() == 0 || held.available_permits() == 0;
                    if full || self.outage.load(Ordering::SeqCst) {
                        continue;
                    }
                    let busy = current.tracker.lock().unwrap().busy_partitions();
                    let quiet = last_received.elapsed();
                    if let Some(why) = dog.stalled(&lag, &busy, quiet, stall_after, now) {
                        self.metrics.stalls.get_or_create(&Metrics::lane(lane.name)).inc();
                        tracing::warn!(
                            lane = lane.name, group = %lane.group,
                            "relay stalled: {why}; leaving and rejoining the group"
                        );
                        return Exit::Stalled;
                    }
                    continue;
                }
            };
            // A bad read is logged; the loop goes on.
            let message = match message {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(lane = lane.name, "Kafka receive error: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            last_received = Instant::now();
            let permit = tokio::select! {
                p = held.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = stop.wait_for(|s| *s) => return Exit::Shutdown,
            };
            self.start(lane.name, current.clone(), limit.clone(), message, permit);
        }
    }

    /// Runs one event in its own task, after the previous event of its key
    /// and once it gets a slot. `held` is its place among the lane's events.
    fn start(
        self: &Arc<Self>,
        lane: &'static str,
        current: Arc<LaneConsumer>,
        limit: Arc<Limit>,
        message: OwnedMessage,
        held: tokio::sync::OwnedSemaphorePermit,
    ) {
        let (partition, offset) = (message.partition(), message.offset());
        current.tracker.lock().unwrap().begin(partition, offset);
        let (done_tx, done_rx) = oneshot::channel();
        let previous = message.key().map(|k| {
            let mut chains = current.chains.lock().unwrap();
            if chains.len() > 10_000 {
                chains.retain(|_, d| d.peek().is_none());
            }
            chains.insert(k.to_vec(), done_rx.shared())
        });
        let label = Metrics::lane(lane);
        self.metrics.consumed.get_or_create(&label).inc();
        self.metrics.in_flight.get_or_create(&label).inc();
        let relay = self.clone();
        let span = tracing::info_span!(
            "event",
            otel.name = %format!("process {}", message.topic()),
            otel.kind = "consumer",
            lane,
            partition,
            offset,
            task_id = tracing::field::Empty,
            trace_id = tracing::field::Empty
        );
        aies_telemetry::set_parent(&span, producer_traceparent(&message).as_deref());
        tokio::spawn(
            async move {
                if let Some(Some(previous)) = previous {
                    let _ = previous.await;
                }
                let slot = limit
                    .slots()
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed");
                let started = Instant::now();
                match relay.process(lane, &message).await {
                    Ok(first_try) => {
                        relay.finish(&current, &message);
                        // Little's law counts the event's own time in its
                        // slot: the invocation and the result's delivery to
                        // Kafka. Not a retry's backoff or an outage's wait
                        // (its own or, through the key's chain, its
                        // predecessor's): one such event would push the
                        // limit to its ceiling just as a recovering app is
                        // flooded.
                        if first_try {
                            limit.observe(started.elapsed());
                        }
                    }
                    // Not finished: the offset stays uncommitted, and the
                    // event is read again after a restart or rebalance.
                    Err(e) => tracing::warn!("event left uncommitted: {e:#}"),
                }
                relay.metrics.in_flight.get_or_create(&label).dec();
                let _ = done_tx.send(());
                drop((slot, held));
            }
            .instrument(span),
        );
    }

    fn finish(&self, current: &LaneConsumer, message: &OwnedMessage) {
        let (partition, offset) = (message.partition(), message.offset());
        let position = current.tracker.lock().unwrap().finish(partition, offset);
        if let Some(position) = position {
            let mut tpl = TopicPartitionList::new();
            let stored = tpl
                .add_partition_offset(message.topic(), partition, Offset::Offset(position))
                .and_then(|()| current.consumer.store_offsets(&tpl));
            // Fails when the partition was revoked meanwhile; its new owner
            // re-reads from the committed position.
            if let Err(e) = stored {
                tracing::debug!(partition, position, "offset not stored: {e}");
            }
        }
    }

    fn record_lag(&self, lane: &'static str, lag: &LagReport) {
        for p in &lag.partitions {
            let label = PartitionLabel {
                lane,
                partition: p.partition,
            };
            self.metrics.lag.get_or_create(&label).set(p.lag());
        }
    }

    /// Runs one event to its end: a result on `datos_procesados`, or the
    /// dead-letter topic. Answers whether that took one attempt, with no
    /// wait for the pipeline to come back. `Err` only when shutdown came
    /// first.
    async fn process(&self, lane: &'static str, message: &OwnedMessage) -> Result<bool> {
        // The event's span: a child of the producer's `traceparent` (the
        // Kafka header, else the event's field), or a new trace. With span
        // export on, it is the exported span itself.
        let trace = aies_telemetry::traceparent_of(&tracing::Span::current())
            .as_deref()
            .and_then(TraceParent::parse)
            .unwrap_or_else(|| event_span(message));
        tracing::Span::current().record("trace_id", &trace.trace_id);
        let event = match parse(message) {
            Ok(e) => e,
            Err(e) => {
                self.dead_letter(lane, message, &format!("{e:#}")).await?;
                return Ok(true);
            }
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
            generation: event.generation,
            final_attempt: false,
            traceparent: Some(trace.header()),
        };
        let label = Metrics::lane(lane);
        let attempts = self.config.max_attempts.max(1);
        let mut attempt = 1;
        let mut first_try = true;
        loop {
            request.final_attempt = attempt == attempts;
            let started = Instant::now();
            let outcome = self.invoker.invoke(request.clone()).await;
            self.metrics
                .invoke_seconds
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
            let e = match outcome {
                Ok(result) if result.status.is_final() => {
                    self.publish_result(&result, &trace).await?;
                    self.metrics.succeeded.get_or_create(&label).inc();
                    return Ok(first_try);
                }
                Ok(result) => InvokeError::Transient(anyhow!(
                    "llm-invoke answered a task that is not final: {:?}",
                    result.status
                )),
                Err(e) => e,
            };
            match e {
                InvokeError::Permanent(e) => {
                    self.dead_letter(lane, message, &format!("{e:#}")).await?;
                    return Ok(first_try);
                }
                InvokeError::Transient(e) => {
                    first_try = false;
                    // The pipeline being down is not this event's fault.
                    if self.wait_while_pipeline_down().await? {
                        continue;
                    }
                    if attempt == attempts {
                        let reason = format!("gave up after {attempts} attempts: {e:#}");
                        self.dead_letter(lane, message, &reason).await?;
                        return Ok(false);
                    }
                    self.metrics.retried.get_or_create(&label).inc();
                    let wait = backoff(attempt, self.config.retry_backoff_ms);
                    tracing::warn!(attempt, "invoke failed, retrying in {wait:?}: {e:#}");
                    self.sleep(wait).await?;
                    attempt += 1;
                }
            }
        }
    }

    /// When the app fails its health check, waits until it passes again and
    /// answers true (the failed attempt is not counted); false when the app
    /// is healthy, so the failure was the event's own.
    async fn wait_while_pipeline_down(&self) -> Result<bool> {
        let mut waited = false;
        loop {
            match self.health().await {
                Ok(()) => {
                    if waited && self.outage.swap(false, Ordering::SeqCst) {
                        self.metrics.pipeline_down.set(0);
                        tracing::info!("the pipeline answers again; resuming");
                    }
                    return Ok(waited);
                }
                Err(e) => {
                    if !self.outage.swap(true, Ordering::SeqCst) {
                        self.metrics.pipeline_down.set(1);
                        tracing::warn!(
                            "the pipeline is unavailable ({e:#}); holding events until {} answers",
                            self.health_url
                        );
                    }
                    waited = true;
                    self.sleep(Duration::from_millis(500)).await?;
                }
            }
        }
    }

    async fn health(&self) -> Result<()> {
        let response = self
            .http
            .get(self.health_url.clone())
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("health check answered {}", response.status());
        }
        Ok(())
    }

    /// Sleeps, or fails at once when the bridge is shutting down.
    async fn sleep(&self, duration: Duration) -> Result<()> {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            _ = stop.wait_for(|s| *s) => bail!("shutting down"),
        }
    }

    /// Produces a record, retrying (a broker that restarts) until it is
    /// acknowledged or the bridge shuts down.
    async fn produce<'a>(
        &self,
        what: &str,
        record: impl Fn() -> FutureRecord<'a, [u8], [u8]>,
    ) -> Result<()> {
        let mut attempt = 1;
        loop {
            match self.producer.send(record(), Duration::from_secs(30)).await {
                Ok(_) => return Ok(()),
                Err((e, _)) => {
                    let wait = backoff(attempt, 200).min(Duration::from_secs(5));
                    tracing::warn!(attempt, "producing {what}: {e}; retrying in {wait:?}");
                    self.sleep(wait).await?;
                    attempt += 1;
                }
            }
        }
    }

    async fn publish_result(&self, result: &TaskResult, trace: &TraceParent) -> Result<()> {
        let payload = serde_json::to_vec(result)?;
        let topic = &self.config.result_topic;
        let traceparent = trace.header();
        self.produce(&format!("the result to {topic}"), || {
            FutureRecord::to(topic)
                .key(result.task_id.as_bytes())
                .payload(&payload[..])
                .headers(OwnedHeaders::new().insert(Header {
                    key: TRACEPARENT,
                    value: Some(&traceparent),
                }))
        })
        .await?;
        tracing::info!(task_id = %result.task_id, status = ?result.status, "result published");
        Ok(())
    }

    async fn dead_letter(
        &self,
        lane: &'static str,
        message: &OwnedMessage,
        reason: &str,
    ) -> Result<()> {
        tracing::error!("dead-lettering event: {reason}");
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let origin = format!("{}/{partition}/{offset}", message.topic());
        let mut headers = OwnedHeaders::new();
        // Headers the event came with (a trace, its origin) go along.
        if let Some(h) = message.headers() {
            for h in h.iter().filter(|h| !DEAD_LETTER_HEADERS.contains(&h.key)) {
                headers = headers.insert(h);
            }
        }
        if header(message, ORIGIN_HEADER).is_none() {
            headers = headers.insert(Header {
                key: ORIGIN_HEADER,
                value: Some(&origin),
            });
        }
        for (key, value) in [
            ("error", reason),
            ("source_topic", message.topic()),
            ("source_partition", &partition),
            ("source_offset", &offset),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let topic = &self.config.dead_letter_topic;
        self.produce(&format!("a dead letter to {topic}"), || {
            let mut record = FutureRecord::to(topic)
                .payload(message.payload().unwrap_or_default())
                .headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            record
        })
        .await?;
        self.metrics
            .dead_lettered
            .get_or_create(&Metrics::lane(lane))
            .inc();
        Ok(())
    }
}

/// Shrinks a lane's in-flight limit when events hold their slots for less
/// time (growth happens at once, in [`Limit::observe`]), and reports it.
async fn resize_every_second(limit: Arc<Limit>, metrics: Arc<Metrics>, lane: &'static str) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = limit.resize();
        metrics
            .in_flight_limit
            .get_or_create(&Metrics::lane(lane))
            .set(now as i64);
    }
}

/// Closes a consumer (committing what was stored, leaving its group)
/// without letting a broker that is gone hold the caller.
async fn close(current: Arc<LaneConsumer>) {
    let closing = tokio::task::spawn_blocking(move || {
        if let Err(e) = current.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!("final commit: {e}");
        }
        // Leaves the group now, even if a straggler still holds a reference.
        current.consumer.unsubscribe();
        drop(current);
    });
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        tracing::warn!("Kafka did not confirm the final commit in {CLOSE_TIMEOUT:?}; going on");
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Measures the lane every [`WATCH_EVERY`], off the async threads (the
/// queries block on the broker).
async fn measure_lag(
    current: Arc<LaneConsumer>,
    topic: String,
    out: watch::Sender<Option<LagReport>>,
) {
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (c, t) = (current.clone(), topic.clone());
        match tokio::task::spawn_blocking(move || watchdog::measure(&c.consumer, &t)).await {
            Ok(Ok(report)) => {
                if out.send(Some(report)).is_err() {
                    return;
                }
            }
            Ok(Err(e)) => tracing::debug!(%topic, "measuring lag: {e:#}"),
            Err(_) => return,
        }
    }
}

fn jitter_permille() -> u32 {
    (uuid::Uuid::new_v4().as_u128() % 1000) as u32
}

/// A header of a message, as text.
pub(crate) fn header<'a, M: Message>(message: &'a M, key: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// The W3C trace context header, on events and results.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// A new span for an event: in the trace its producer named (the
/// `traceparent` header, else the payload's field), or in a new trace.
fn event_span(message: &OwnedMessage) -> TraceParent {
    let id = uuid::Uuid::new_v4().as_u128();
    let parent = producer_traceparent(message);
    TraceParent::continue_or_start(parent.as_deref(), id, id as u64 ^ (id >> 64) as u64)
}

/// The `traceparent` an event's producer gave: the record header, else the
/// payload's field.
fn producer_traceparent(message: &OwnedMessage) -> Option<String> {
    let from_payload = || {
        let payload = message.payload()?;
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        value.get(TRACEPARENT)?.as_str().map(str::to_string)
    };
    header(message, TRACEPARENT)
        .map(str::to_string)
        .filter(|h| TraceParent::parse(h).is_some())
        .or_else(from_payload)
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
/// event first entered Kafka, so a redelivery (or a replay from the
/// dead-letter topic) maps to the same task.
fn derived_task_id(message: &OwnedMessage) -> String {
    let place = header(message, ORIGIN_HEADER)
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "{}/{}/{}",
                message.topic(),
                message.partition(),
                message.offset()
            )
        });
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, place.as_bytes()).to_string()
}

/// Exponential backoff (capped at 30 s) with jitter between 50 and 100 %.
pub(crate) fn backoff(attempt: u32, base_ms: u64) -> Duration {
    let ceiling = base_ms
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(30_000);
    let jitter = u64::from(jitter_permille());
    Duration::from_millis(ceiling / 2 + ceiling * jitter / 2000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn message(payload: &str, offset: i64) -> OwnedMessage {
        with_headers(payload, offset, None)
    }

    fn with_headers(payload: &str, offset: i64, headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.as_bytes().to_vec()),
            None,
            "datos_crudos".into(),
            Timestamp::NotAvailable,
            2,
            offset,
            headers,
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
    fn a_replayed_event_keeps_the_task_id_of_its_origin() {
        let first = derived_task_id(&message("{}", 7));
        let origin = OwnedHeaders::new().insert(Header {
            key: ORIGIN_HEADER,
            value: Some("datos_crudos/2/7"),
        });
        let replayed = with_headers("{}", 900, Some(origin));
        assert_eq!(derived_task_id(&replayed), first);
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
