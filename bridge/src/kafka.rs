//! The bridge's Kafka clients, configured in one place: the relay's lane
//! consumers, the running bridge's producer, the `produce` command's
//! idempotent producer, the replay command's consumer and the admin client
//! that creates topics. Also how a record's headers are read.
//!
//! Every client also gets the **connection settings** of a real cluster
//! (TLS, SASL), never from a manifest: librdkafka properties from the file
//! `AIES_KAFKA_CONFIG_FILE` (Kafka's `client.properties` form, `key=value`
//! lines, as a Kubernetes Secret mounts it), then from the environment,
//! `AIES_KAFKA_<PROPERTY>` with `.` written `_` (`AIES_KAFKA_SASL_PASSWORD`
//! sets `sasl.password`), which wins. Only connection and security
//! properties may be set so ([`SETTABLE`]): the bridge's own (group,
//! commits, idempotence) stay the bridge's.

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::{BaseConsumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message};
use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Secret;
use crate::BridgeConfig;

/// Prefixes of the librdkafka properties the file and the environment may
/// set: how to reach and trust the brokers, and who the bridge is.
pub const SETTABLE: &[&str] = &[
    "security.protocol",
    "sasl.",
    "ssl.",
    "ssl_",
    "enable.ssl.",
    "enable.sasl.",
    "https.",
    "client.id",
    "client.dns.lookup",
    "client.rack",
    "socket.",
    "connections.max.idle.ms",
    "reconnect.backoff.",
    "broker.address.",
    "debug",
];

/// Environment variables that are the bridge's own, not properties.
const NOT_PROPERTIES: &[&str] = &["AIES_KAFKA_CONFIG_FILE"];
const ENV_PREFIX: &str = "AIES_KAFKA_";

/// The connection settings: the file's, then the environment's over them.
/// Values are [`Secret`]s: a password never reaches a log.
pub fn settings(config: &BridgeConfig) -> Result<BTreeMap<String, Secret>> {
    let mut out = BTreeMap::new();
    if let Some(path) = &config.kafka_config_file {
        for (key, value) in read_properties(path)? {
            out.insert(
                checked(&key, &format!("{}", path.display()))?,
                value.as_str().into(),
            );
        }
    }
    for (name, value) in std::env::vars() {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if NOT_PROPERTIES.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace('_', ".");
        out.insert(checked(&key, &name)?, value.as_str().into());
    }
    Ok(out)
}

fn checked(key: &str, from: &str) -> Result<String> {
    if key == "bootstrap.servers" {
        bail!("{from}: set the brokers with KAFKA_BOOTSTRAP_SERVERS (or --brokers), not bootstrap.servers");
    }
    if !SETTABLE
        .iter()
        .any(|p| key == *p || (p.ends_with(['.', '_']) && key.starts_with(p)))
    {
        bail!(
            "{from}: {key:?} is not a connection or security property the bridge lets you set \
             (those starting with {}); the bridge sets the others itself",
            SETTABLE.join(", ")
        );
    }
    Ok(key.to_string())
}

/// `key=value` lines (or `key: value`); `#` and `!` start comments.
fn read_properties(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading AIES_KAFKA_CONFIG_FILE {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', '!']) {
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            bail!("{}:{}: expected key=value", path.display(), n + 1);
        };
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
    Ok(out)
}

/// Creates a client. librdkafka's message for a setting it refuses holds
/// the value (a password, perhaps): it is shown without it.
fn create<T: FromClientConfig>(client: &ClientConfig, what: &str) -> Result<T> {
    client.create().map_err(|e| match e {
        KafkaError::ClientConfig(_, description, key, value) => {
            let description = if value.is_empty() {
                description
            } else {
                description.replace(&value, "***")
            };
            anyhow!("creating the {what}: the setting {key:?}: {description}")
        }
        e => anyhow!("creating the {what}: {e}"),
    })
}

/// A client of the brokers, with the connection settings.
fn client(config: &BridgeConfig) -> Result<ClientConfig> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in settings(config)? {
        client.set(key, value.expose());
    }
    Ok(client)
}

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
    create(&lane_consumer_config(config, group)?, "Kafka consumer")
}

// librdkafka's own tracing (`AIES_KAFKA_DEBUG=cgrp,fetch`) is a setting.
fn lane_consumer_config(config: &BridgeConfig, group: &str) -> Result<ClientConfig> {
    let mut client = client(config)?;
    client
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
    Ok(client)
}

/// The replay command's consumer, in group `<group>_dlq_replay`: it assigns
/// partitions itself and commits its cursor by hand.
pub(crate) fn replay_consumer(config: &BridgeConfig) -> Result<BaseConsumer> {
    let mut client = client(config)?;
    client
        .set("group.id", format!("{}_dlq_replay", config.group))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    create(&client, "Kafka consumer")
}

/// The client that creates the bridge's topics.
pub(crate) fn admin(config: &BridgeConfig) -> Result<AdminClient<DefaultClientContext>> {
    create(&client(config)?, "Kafka admin client")
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
    create(&running_producer_config(config)?, "Kafka producer")
}

fn running_producer_config(config: &BridgeConfig) -> Result<ClientConfig> {
    let mut client = producer_config(config)?;
    client
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1");
    Ok(client)
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
    create(&idempotent_producer_config(config)?, "Kafka producer")
}

fn idempotent_producer_config(config: &BridgeConfig) -> Result<ClientConfig> {
    let mut client = producer_config(config)?;
    client
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "0")
        .set("enable.gapless.guarantee", "true");
    Ok(client)
}

fn producer_config(config: &BridgeConfig) -> Result<ClientConfig> {
    let mut client = client(config)?;
    client
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BridgeConfig {
        BridgeConfig::defaults()
    }

    #[test]
    fn lane_consumers_store_offsets_only_when_the_relay_says() {
        let c = lane_consumer_config(&config(), "g_api").unwrap();
        assert_eq!(c.get("group.id"), Some("g_api"));
        // Auto-commit commits only what the relay stored after an event's end.
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("enable.auto.commit"), Some("true"));
    }

    #[test]
    fn the_produce_commands_messages_never_time_out_inside_librdkafka() {
        let c = idempotent_producer_config(&config()).unwrap();
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        // Overrides the shared 30 s: a local timeout would raise the epoch.
        assert_eq!(c.get("message.timeout.ms"), Some("0"));
        assert_eq!(c.get("enable.gapless.guarantee"), Some("true"));
    }

    #[test]
    fn the_running_producer_is_not_idempotent_and_keeps_one_request_in_flight() {
        let c = running_producer_config(&config()).unwrap();
        assert_eq!(c.get("enable.idempotence"), Some("false"));
        assert_eq!(c.get("max.in.flight.requests.per.connection"), Some("1"));
        assert_eq!(c.get("message.timeout.ms"), Some("30000"));
        assert_eq!(c.get("acks"), Some("all"));
    }

    #[test]
    fn connection_settings_come_from_the_file_and_the_environment_wins() {
        let dir = std::env::temp_dir().join(format!("aies-kafka-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("client.properties");
        std::fs::write(
            &file,
            "# from the provider's console\nsecurity.protocol=SASL_SSL\n\
             sasl.mechanism = SCRAM-SHA-512\nsasl.username=alice\nsasl.password=from-file\n",
        )
        .unwrap();
        let mut c = config();
        c.kafka_config_file = Some(file.clone());
        // The only test of this crate that sets the variable.
        std::env::set_var("AIES_KAFKA_SASL_PASSWORD", "from-env");
        let got = settings(&c);
        std::env::remove_var("AIES_KAFKA_SASL_PASSWORD");
        let got: Vec<(String, String)> = got
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.expose().to_string()))
            .collect();
        let want = [
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.password", "from-env"),
            ("sasl.username", "alice"),
            ("security.protocol", "SASL_SSL"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(got, want);

        // The bridge's own properties, and the brokers, are not settable.
        for line in [
            "group.id=other",
            "enable.auto.commit=false",
            "bootstrap.servers=x:9092",
        ] {
            std::fs::write(&file, line).unwrap();
            let e = settings(&c).unwrap_err().to_string();
            assert!(e.contains("client.properties"), "{e}");
        }
        std::fs::write(&file, "no separator here").unwrap();
        assert!(settings(&c)
            .unwrap_err()
            .to_string()
            .contains(":1: expected key=value"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_setting_is_named_without_its_value() {
        let mut client = ClientConfig::new();
        client.set("socket.timeout.ms", "not-a-number-s3cret");
        let e = create::<BaseConsumer>(&client, "Kafka consumer")
            .err()
            .expect("librdkafka refuses it")
            .to_string();
        assert!(e.contains("socket.timeout.ms"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        // What it hides: librdkafka's own message holds the value.
        let raw = client.create::<BaseConsumer>().err().unwrap().to_string();
        assert!(raw.contains("s3cret"), "{raw}");
    }
}
