//! The relay: Kafka -> llm-invoke -> `datos_procesados`, in two lanes.
//!
//! - The **API lane** reads `datos_api` (events from `POST /enqueue`) and the
//!   **batch lane** reads `datos_crudos` (any producer). Each lane has its
//!   own consumer, group and in-flight slots, so an interactive request never
//!   waits behind a batch backlog.
//! - Offsets are stored (for the periodic auto-commit) only through the
//!   [`OffsetTracker`](crate::offsets::OffsetTracker), so a partition's
//!   committed position never passes an event that has not finished:
//!   at-least-once, made effectively-once by the components' idempotent
//!   writes keyed by task id.
//! - An outage of the pipeline (the app or its Redis not answering its
//!   health check) holds events without spending their attempts; only
//!   failures of the event itself count towards the dead-letter topic.
//! - A [`Watchdog`](crate::watchdog::Watchdog) per lane notices partitions
//!   that have events waiting but that nobody consumes (Tansu's group
//!   coordinator can leave them so), says so in the log and metrics, and
//!   rejoins the group with a new consumer.
//!
//! In parts: [`lane`] runs a lane's consumer (joining, rejoining, draining)
//! and each event's bookkeeping (key order, slots, offsets); [`event`] is
//! one event's life, from its record to an [`Outcome`](event::Outcome),
//! with [`request`] turning the record into what llm-invoke is asked. This
//! module holds what they share: the clients, the pipeline's health,
//! retried produces and shutdown-aware sleeps.

mod event;
mod lane;
mod request;

use anyhow::{bail, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::invoker::{Invoker, Limits};
use crate::member::Status;
use crate::metrics::Metrics;
use crate::BridgeConfig;

/// The bridge is shutting down: what cuts an event's life short.
#[derive(Debug)]
struct ShuttingDown;

struct Relay {
    config: BridgeConfig,
    /// What the relay believes of events' task ids and tenants.
    trust: request::Trust,
    producer: FutureProducer,
    http: reqwest::Client,
    invoker: Invoker,
    health_url: reqwest::Url,
    metrics: Arc<Metrics>,
    /// What the member report says of the lanes.
    status: Arc<Status>,
    stop: watch::Receiver<bool>,
    /// True while the pipeline fails its health check (logged once).
    outage: AtomicBool,
}

pub async fn run(
    config: BridgeConfig,
    producer: FutureProducer,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(config.invoke_timeout())
        .build()?;
    let lanes = lane::Lane::both(&config);
    let invoker = Invoker::start(
        http.clone(),
        &config.invoke_url,
        config.invoke_token.clone(),
        Limits {
            events: config.invoke_batch,
            bytes: config.invoke_batch_bytes,
            linger: Duration::from_millis(config.invoke_linger_ms),
        },
        metrics.clone(),
    );
    let relay = Arc::new(Relay {
        invoker,
        trust: request::Trust::new(&config),
        health_url: config.health_url()?,
        config,
        producer,
        http,
        metrics,
        status,
        stop,
        outage: AtomicBool::new(false),
    });
    futures::future::try_join_all(lanes.map(|lane| relay.clone().run_lane(lane))).await?;
    Ok(())
}

impl Relay {
    /// When the app fails its health check, waits until it passes again and
    /// answers true (the failed attempt is not counted); false when the app
    /// is healthy, so the failure was the event's own.
    async fn wait_while_pipeline_down(&self) -> Result<bool, ShuttingDown> {
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
    async fn sleep(&self, duration: Duration) -> Result<(), ShuttingDown> {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            _ = stop.wait_for(|s| *s) => Err(ShuttingDown),
        }
    }

    /// Produces a record for an event of `owner`'s, retrying (a broker
    /// that restarts) until it is acknowledged (true), the owner is fenced
    /// (false: its partitions belong to another bridge now, which writes
    /// the event's own record), or the bridge shuts down.
    async fn produce<'a>(
        &self,
        what: &str,
        owner: &event::Owner,
        record: impl Fn() -> FutureRecord<'a, [u8], [u8]>,
    ) -> Result<bool, ShuttingDown> {
        let mut attempt = 1;
        loop {
            if owner.fenced.load(std::sync::atomic::Ordering::SeqCst) {
                tracing::warn!("not producing {what}: its consumer was fenced");
                return Ok(false);
            }
            match self.producer.send(record(), Duration::from_secs(30)).await {
                Ok(_) => return Ok(true),
                Err((e, _)) => {
                    let wait = backoff(attempt, 200).min(Duration::from_secs(5));
                    tracing::warn!(attempt, "producing {what}: {e}; retrying in {wait:?}");
                    self.sleep(wait).await?;
                    attempt += 1;
                }
            }
        }
    }
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn jitter_permille() -> u32 {
    (uuid::Uuid::new_v4().as_u128() % 1000) as u32
}

/// Exponential backoff (capped at 30 s) with jitter between 50 and 100 %.
fn backoff(attempt: u32, base_ms: u64) -> Duration {
    let ceiling = base_ms
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(30_000);
    let jitter = u64::from(jitter_permille());
    Duration::from_millis(ceiling / 2 + ceiling * jitter / 2000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let ceiling = (100u64 << (attempt - 1).min(16)).min(30_000);
            let d = backoff(attempt, 100).as_millis() as u64;
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d}");
        }
    }
}
