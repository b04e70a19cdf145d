//! The bridge's Kafka clients, configured in one place: the relay's lane
//! consumers, the running bridge's producer, the `produce` command's
//! idempotent producer, the replay command's consumer and the admin client
//! that creates topics. Also how a record's headers are read.

use anyhow::{Context, Result};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message};

use crate::BridgeConfig;

/// The W3C trace context header, on events and results.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// A header of a message, as text.
pub(crate) fn header<'a, M: Message>(message: &'a M, key: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// A relay lane's consumer in `group`, not yet subscribed. Offsets are
/// stored only by the relay (after an event's end) and auto-committed.
pub(crate) fn lane_consumer(config: &BridgeConfig, group: &str) -> Result<StreamConsumer> {
    lane_consumer_config(config, group)
        .create()
        .context("creating the Kafka consumer")
}

fn lane_consumer_config(config: &BridgeConfig, group: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    // librdkafka's own tracing (e.g. `cgrp,fetch`), for diagnosing the group.
    if let Ok(debug) = std::env::var("AIES_KAFKA_DEBUG") {
        client.set("debug", debug);
    }
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", group)
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
        );
    client
}

/// The replay command's consumer, in group `<group>_dlq_replay`: it assigns
/// partitions itself and commits its cursor by hand.
pub(crate) fn replay_consumer(config: &BridgeConfig) -> Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}_dlq_replay", config.group))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .context("creating the Kafka consumer")
}

/// The client that creates the bridge's topics.
pub(crate) fn admin(
    config: &BridgeConfig,
) -> rdkafka::error::KafkaResult<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
}

/// The running bridge's producer: events from the API, results, dead
/// letters. Each of them names its task (a task id, or the place the event
/// first entered Kafka), so a retry that writes one twice makes no second
/// task: delivery is at least once anyway. So not librdkafka's idempotent
/// producer, whose broker thread, with its five requests per partition in
/// flight and a batch ready, wakes itself at once, over and over
/// (librdkafka 2.12, `rd_kafka_toppar_producer_serve`): 0.4 of a core
/// spinning at 700 events/s on a broker as slow as Tansu. One request in
/// flight keeps a retry from reordering a key's writes.
pub(crate) fn producer(config: &BridgeConfig) -> Result<FutureProducer> {
    running_producer_config(config)
        .create()
        .context("creating the Kafka producer")
}

fn running_producer_config(config: &BridgeConfig) -> ClientConfig {
    let mut client = producer_config(config);
    client
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1");
    client
}

/// The `produce` command's producer: its events get their task from their
/// place in Kafka, so a duplicate would be a second task; the broker
/// drops duplicates of an idempotent producer.
///
/// librdkafka's idempotent producer raises its own epoch, without asking
/// the broker, after a message times out locally, a sequence gap between
/// requests in flight, or a permanent error (librdkafka 2.12
/// `rd_kafka_idemp_drain_done`). Kafka accepts such an epoch; Tansu 0.6's
/// SQLite engine panics on it and its storage stops for good (NOTES.md,
/// "The broker under rounds"). So messages never time out here (the
/// command keeps its own deadline), and a sequence gap or a permanent error
/// is fatal to this producer (`enable.gapless.guarantee`: the command
/// fails and says so) instead of a new epoch.
pub(crate) fn idempotent_producer(config: &BridgeConfig) -> Result<FutureProducer> {
    idempotent_producer_config(config)
        .create()
        .context("creating the Kafka producer")
}

fn idempotent_producer_config(config: &BridgeConfig) -> ClientConfig {
    let mut client = producer_config(config);
    client
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "0")
        .set("enable.gapless.guarantee", "true");
    client
}

fn producer_config(config: &BridgeConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    // librdkafka's own trace, e.g. AIES_KAFKA_DEBUG=msg,eos.
    if let Ok(debug) = std::env::var("AIES_KAFKA_DEBUG") {
        client.set("debug", debug);
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BridgeConfig {
        BridgeConfig::defaults()
    }

    #[test]
    fn lane_consumers_store_offsets_only_when_the_relay_says() {
        let c = lane_consumer_config(&config(), "g_api");
        assert_eq!(c.get("group.id"), Some("g_api"));
        // Auto-commit commits only what the relay stored after an event's end.
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("enable.auto.commit"), Some("true"));
    }

    #[test]
    fn the_produce_commands_messages_never_time_out_inside_librdkafka() {
        let c = idempotent_producer_config(&config());
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        // Overrides the shared 30 s: a local timeout would raise the epoch.
        assert_eq!(c.get("message.timeout.ms"), Some("0"));
        assert_eq!(c.get("enable.gapless.guarantee"), Some("true"));
    }

    #[test]
    fn the_running_producer_is_not_idempotent_and_keeps_one_request_in_flight() {
        let c = running_producer_config(&config());
        assert_eq!(c.get("enable.idempotence"), Some("false"));
        assert_eq!(c.get("max.in.flight.requests.per.connection"), Some("1"));
        assert_eq!(c.get("message.timeout.ms"), Some("30000"));
        assert_eq!(c.get("acks"), Some("all"));
    }
}
