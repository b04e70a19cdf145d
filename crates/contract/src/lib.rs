//! The contract between the stages: every request, response and event that
//! crosses a component boundary, the bridge or Kafka is defined here once,
//! and so is the Redis layout they share ([`keys`]).
//!
//! This crate builds for `wasm32-wasip2` (the components) and natively (the
//! bridge and the tests), so it depends on serde alone.
//!
//! - [`api`]: the public API's bodies (`POST /process`, tasks, errors).
//! - [`events`]: Kafka topics and the raw event.
//! - [`stages`]: what the stages send each other.
//! - [`ids`]: what tenant, task and scope ids may be.
//! - [`keys`]: every Redis key, prefix, database and channel.
//! - [`members`]: what each bridge and app instance reports of itself.
//! - [`trace`]: W3C `traceparent`.
//!
//! Everything is also at the crate root, as it always was.

pub mod api;
pub mod events;
pub mod ids;
pub mod judge;
pub mod keys;
pub mod members;
pub mod stages;
pub mod trace;

pub use api::{
    ErrorBody, Generation, ProcessRequest, TaskResult, TaskStatus, MAX_PROMPT_CHARS,
    MAX_TOKENS_LIMIT,
};
pub use events::{
    RawEvent, API_TOPIC, CONSUMER_GROUP, CONSUMER_HEADER, DEAD_LETTER_TOPIC, EVENT_VERSION,
    RAW_TOPIC, RESULT_TOPIC,
};
pub use ids::{valid_scope, valid_task_id, valid_tenant, DEFAULT_TENANT};
pub use judge::{
    JudgeCandidate, JudgeLevel, JudgeReply, JudgeRequest, JudgeThresholds, JUDGE_MODEL,
    MAX_JUDGE_CANDIDATES,
};
pub use keys::{
    task_key, vector_key, API_CACHE_FILL_CHANNEL, CACHE_FILL_CHANNEL, COMPLETION_CHANNEL,
};
pub use stages::{
    BatchAnswer, BatchResponse, CacheHit, CacheTier, CompletionNotice, EmbedRequest, EmbedResponse,
    FailRequest, InsertRequest, InvokeBatch, InvokeRequest, LookupRequest, LookupResponse, Outcome,
    StashedVector, StoreBatch, StoreRequest, MAX_BATCH, MAX_EMBED_TEXTS,
};
pub use trace::TraceParent;

/// serde's default for `use_cache`.
fn yes() -> bool {
    true
}
