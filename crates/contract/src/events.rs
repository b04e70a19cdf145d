//! The Kafka side: topics, the consumer group, and the raw event every
//! producer writes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Generation;

/// Raw events from any producer: the batch lane.
pub const RAW_TOPIC: &str = "datos_crudos";
/// Events from the API: the interactive lane, read apart from (and never
/// behind) the batch lane's backlog.
pub const API_TOPIC: &str = "datos_api";
/// Final results, one message per finished task.
pub const RESULT_TOPIC: &str = "datos_procesados";
/// The header on each result naming the consumer that published it:
/// `<bridge member id>/<lane>/<n>`, the lane's n-th consumer in that
/// bridge's life. A consumer presumed to have lost its partitions (fenced)
/// publishes nothing more, so a result of an old consumer written after
/// its bridge was cut off would be a zombie's.
pub const CONSUMER_HEADER: &str = "aies-consumer";
/// Events that exhausted their retries or could not be parsed.
pub const DEAD_LETTER_TOPIC: &str = "datos_crudos_dlq";
/// The bridge's consumer group (the API lane's group adds `_api`).
pub const CONSUMER_GROUP: &str = "ai_eventstream_consumers";
/// Version written into every event this system produces.
pub const EVENT_VERSION: u32 = 1;

/// An event on `datos_crudos`. Only `prompt` is required, so that events from
/// third-party producers are processed too; the bridge fills in the rest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RawEvent {
    #[serde(default = "event_version")]
    pub version: u32,
    #[serde(default)]
    pub task_id: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default = "crate::yes")]
    pub use_cache: bool,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// `system`, `temperature`, `max_tokens`, at the top level.
    #[serde(default, flatten)]
    pub generation: Generation,
    /// The W3C `traceparent` of the request that made the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

fn event_version() -> u32 {
    EVENT_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn third_party_event_with_only_a_prompt_parses() {
        let e: RawEvent = serde_json::from_str(r#"{"prompt":"hi"}"#).unwrap();
        assert_eq!(e.version, EVENT_VERSION);
        assert_eq!(e.task_id, None);
        assert!(e.use_cache);
    }
}
