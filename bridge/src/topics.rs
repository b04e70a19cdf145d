//! The bridge creates the topics it uses when they are missing, so a fresh
//! broker (or one with automatic topic creation off) works at once, each
//! with a retention (time and size), so that a broker left running does
//! not keep every event forever.

use anyhow::Result;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

use crate::BridgeConfig;

/// Best effort: a broker that forbids creating topics (a managed Kafka
/// whose topics are made by its operators) gets a warning, not a failure.
pub async fn ensure(config: &BridgeConfig) {
    let admin = match crate::kafka::admin(config) {
        Ok(a) => a,
        Err(e) => return tracing::warn!("{e:#}"),
    };
    let names = [
        &config.api_topic,
        &config.raw_topic,
        &config.result_topic,
        &config.dead_letter_topic,
    ];
    let retention_ms = config.topic_retention_ms.to_string();
    let retention_bytes = config.topic_retention_bytes.to_string();
    let topics: Vec<_> = names
        .iter()
        .map(|n| {
            NewTopic::new(n, config.topic_partitions, TopicReplication::Fixed(1))
                .set("cleanup.policy", "delete")
                .set("retention.ms", &retention_ms)
                .set("retention.bytes", &retention_bytes)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics(&topics, &options).await {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(topic) => tracing::info!(topic, "topic created"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, e)) => tracing::warn!(topic, "creating the topic: {e}"),
                }
            }
        }
        Err(e) => tracing::warn!("creating the topics: {e}"),
    }
}

/// Where a group stands in one partition.
pub struct GroupPosition {
    pub partition: i32,
    pub high: i64,
    /// The group's committed offset; the low watermark when it has none.
    pub committed: i64,
}

/// Every partition of `topic` with its watermarks and the committed offset
/// of `consumer`'s group (blocking queries, each bounded by `timeout`).
pub fn group_positions(
    consumer: &impl Consumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<GroupPosition>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let ids: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut all = TopicPartitionList::new();
    for id in &ids {
        all.add_partition(topic, *id);
    }
    let committed = consumer.committed_offsets(all, timeout)?;
    ids.into_iter()
        .map(|partition| {
            let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
            let committed = match committed
                .find_partition(topic, partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(n)) => n.max(low),
                _ => low,
            };
            Ok(GroupPosition {
                partition,
                high,
                committed,
            })
        })
        .collect()
}
