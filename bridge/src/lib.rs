//! aies-bridge: the Kafka side of AI-EventStream.
//!
//! - **Enqueue** (`POST /enqueue`): ingest hands events here; they are
//!   produced to the API lane, `datos_api` (idempotent producer, `acks=all`),
//!   before the request is answered, so an accepted event is durable.
//! - **Relay**: consumes the API lane and the batch lane (`datos_crudos`, in
//!   group `ai_eventstream_consumers`) apart, invokes llm-invoke over HTTP
//!   (events ready together share one `/invoke/batch` request), produces the final result to `datos_procesados`, and only
//!   then lets the partition's offset move on. Events with the same key run
//!   one after another; different keys run concurrently. Failures are
//!   retried with backoff, then dead-lettered; `aies-bridge replay-dlq`
//!   moves dead letters back.
//! - `GET /metrics`: Prometheus metrics of both; `GET /health`: whether
//!   the broker and the app answer (503 while the broker does not).
//! - **Member report**: every few seconds the bridge tells the app who it
//!   is and what it owns ([`member`]), for `/stats` and the dashboard.

pub mod config;
mod dead_letter;
mod enqueue;
pub mod in_flight;
mod invoker;
mod kafka;
pub mod member;
pub mod metrics;
mod offsets;
pub mod produce;
mod relay;
pub mod replay;
pub mod seal;
mod topics;
mod watchdog;

pub use config::BridgeConfig;
pub use dead_letter::{DEAD_LETTER_HEADERS, ORIGIN_HEADER};
pub use metrics::Metrics;

use anyhow::{Context, Result};
use rdkafka::producer::{FutureProducer, Producer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A bridge whose enqueue endpoint is bound; `run` starts both halves.
pub struct Bridge {
    config: BridgeConfig,
    listener: TcpListener,
}

impl Bridge {
    pub async fn bind(config: BridgeConfig) -> Result<Self> {
        config.check_tokens()?;
        // A bad connection setting stops the bridge now, not at its first client.
        kafka::settings(&config)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the enqueue endpoint {}", config.listen))?;
        Ok(Self { config, listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Points the relay at llm-invoke; for when the app is started after
    /// the bridge (it needs the bridge's address first).
    pub fn set_invoke_url(&mut self, url: String) {
        self.config.invoke_url = url;
    }

    /// Runs the enqueue endpoint and the relay until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let producer = kafka::producer(&self.config)?;
        let metrics = Arc::new(Metrics::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        topics::ensure(&self.config).await;
        let status = Arc::new(member::Status::new(&self.config));
        tokio::spawn(watch_broker(
            producer.clone(),
            self.config.api_topic.clone(),
            metrics.clone(),
            status.clone(),
            stop_rx.clone(),
        ));
        let enqueue = enqueue::serve(
            self.listener,
            producer.clone(),
            self.config.clone(),
            metrics.clone(),
            wait(stop_rx.clone()),
        );
        let reporter = member::Reporter::new(&self.config, status.clone(), metrics.clone())
            .map(|r| tokio::spawn(r.run(stop_rx.clone())));
        let relay = relay::run(self.config, producer, metrics, status, stop_rx);
        let (e, r) = tokio::join!(enqueue, relay);
        if let Some(reporter) = reporter {
            if let Ok(reporter) = reporter.await {
                reporter.stopped().await;
            }
        }
        e.and(r)
    }
}

/// How often the bridge asks the broker whether it answers.
const BROKER_CHECK: Duration = Duration::from_secs(2);

/// Keeps `aies_bridge_broker_up` (and `/health`) true to whether the broker
/// answers a metadata request for `topic`: a request its storage serves, so
/// a broker whose process lives but whose store has stopped is down too.
async fn watch_broker(
    producer: FutureProducer,
    topic: String,
    metrics: Arc<Metrics>,
    status: Arc<member::Status>,
    mut stop: watch::Receiver<bool>,
) {
    let mut was_up = true;
    loop {
        let (p, t) = (producer.clone(), topic.clone());
        let answer = tokio::task::spawn_blocking(move || {
            p.client()
                .fetch_metadata(Some(&t), BROKER_CHECK + Duration::from_secs(1))
                .map(|_| ())
        })
        .await;
        let up = matches!(answer, Ok(Ok(())));
        metrics.broker_up.set(i64::from(up));
        if up {
            status.broker_answered();
        }
        match (&answer, was_up) {
            (Ok(Err(e)), true) => tracing::warn!("the Kafka broker does not answer: {e}"),
            (Err(e), true) => tracing::warn!("checking the Kafka broker: {e}"),
            (Ok(Ok(())), false) => tracing::info!("the Kafka broker answers again"),
            _ => {}
        }
        was_up = up;
        tokio::select! {
            _ = tokio::time::sleep(BROKER_CHECK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn wait(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
