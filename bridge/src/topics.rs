//! The bridge creates the topics it uses when they are missing, so a fresh
//! broker (or one with automatic topic creation off) works at once.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::time::Duration;

use crate::BridgeConfig;

/// Best effort: a broker that forbids creating topics (a managed Kafka
/// whose topics are made by its operators) gets a warning, not a failure.
pub async fn ensure(config: &BridgeConfig) {
    let admin: AdminClient<DefaultClientContext> = match ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
    {
        Ok(a) => a,
        Err(e) => return tracing::warn!("creating the Kafka admin client: {e}"),
    };
    let names = [
        &config.api_topic,
        &config.raw_topic,
        &config.result_topic,
        &config.dead_letter_topic,
    ];
    let topics: Vec<_> = names
        .iter()
        .map(|n| NewTopic::new(n, config.topic_partitions, TopicReplication::Fixed(1)))
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
