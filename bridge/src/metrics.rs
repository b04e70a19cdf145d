//! The bridge's Prometheus metrics (`GET /metrics` on the enqueue endpoint).
//! Labels are bounded: the lane (`api`, `batch`) and the partition number,
//! never a task id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabel {
    pub lane: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub lane: &'static str,
    pub partition: i32,
}

type Histograms = Family<LaneLabel, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub consumed: Family<LaneLabel, Counter>,
    pub succeeded: Family<LaneLabel, Counter>,
    pub retried: Family<LaneLabel, Counter>,
    pub dead_lettered: Family<LaneLabel, Counter>,
    pub stalls: Family<LaneLabel, Counter>,
    pub in_flight: Family<LaneLabel, Gauge>,
    pub in_flight_limit: Family<LaneLabel, Gauge>,
    pub lag: Family<PartitionLabel, Gauge>,
    pub invoke_seconds: Histograms,
    pub invoke_batch_events: Histogram,
    pub invoke_batches_split: Counter,
    pub pipeline_down: Gauge,
    pub broker_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("aies_bridge");
        let m = Self {
            consumed: Family::default(),
            succeeded: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            stalls: Family::default(),
            in_flight: Family::default(),
            in_flight_limit: Family::default(),
            lag: Family::default(),
            invoke_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.002, 2.0, 16))
            }),
            invoke_batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            invoke_batches_split: Counter::default(),
            pipeline_down: Gauge::default(),
            broker_up: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "events_consumed",
            "Events read from Kafka",
            m.consumed.clone(),
        );
        r.register(
            "events_succeeded",
            "Events whose result reached the result topic",
            m.succeeded.clone(),
        );
        r.register(
            "events_retried",
            "Invocations retried after a failure of the event",
            m.retried.clone(),
        );
        r.register(
            "events_dead_lettered",
            "Events sent to the dead-letter topic",
            m.dead_lettered.clone(),
        );
        r.register(
            "relay_stalls",
            "Times a lane had events waiting, received none, and rejoined its group",
            m.stalls.clone(),
        );
        r.register(
            "events_in_flight",
            "Events being processed now",
            m.in_flight.clone(),
        );
        r.register(
            "events_in_flight_limit",
            "Events a lane may hold at once (AIES_MAX_IN_FLIGHT, or sized by Little's law)",
            m.in_flight_limit.clone(),
        );
        r.register(
            "partition_lag",
            "Events in a partition not yet committed by the group",
            m.lag.clone(),
        );
        r.register(
            "invoke_seconds",
            "Time of one llm-invoke call",
            m.invoke_seconds.clone(),
        );
        r.register(
            "invoke_batch_events",
            "Events per llm-invoke request (events ready together share one)",
            m.invoke_batch_events.clone(),
        );
        r.register(
            "invoke_batches_split",
            "llm-invoke requests refused as a whole (4xx) whose events were sent again one by one",
            m.invoke_batches_split.clone(),
        );
        r.register(
            "pipeline_down",
            "1 while the app does not answer its health check",
            m.pipeline_down.clone(),
        );
        r.register(
            "broker_up",
            "1 while the Kafka broker answers a metadata request (checked every 2 s)",
            m.broker_up.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }

    pub fn lane(lane: &'static str) -> LaneLabel {
        LaneLabel { lane }
    }
}
