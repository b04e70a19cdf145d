//! What the stages send each other over Spin local service chaining and
//! Redis pub/sub: embed, cache lookup and insert, invoke, store, and the
//! completion notice.

use serde::{Deserialize, Serialize};

use crate::{Generation, JudgeLevel, TaskResult, TaskStatus};

/// Texts one `POST /embed` may carry: bounds the work one call asks for.
pub const MAX_EMBED_TEXTS: usize = 64;

/// `POST http://embed.spin.internal/embed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedRequest {
    pub texts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedResponse {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the model read, when it says (the local models do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u32>,
}

/// `POST http://cache-lookup.spin.internal/lookup`. Without a vector only
/// the exact tier is asked (no embedding needed); with one, the semantic
/// tier too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupRequest {
    pub tenant: String,
    /// The prompt (the exact tier's key; the guard compares it with each
    /// candidate's).
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// The embedding model that made the vector (`EmbedResponse::model`):
    /// each model has an index of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The cache scope (see `aies_guest::scope_id`): entries of other
    /// scopes are never candidates.
    pub scope: String,
    /// This request's similarity threshold, if it asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// This request's `cache_judge`, if it asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeLevel>,
}

/// Which tier of the cache answered.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheTier {
    /// The same prompt up to case, accents, punctuation and spacing.
    Exact,
    /// A nearby prompt that the guard found to ask the same thing.
    Semantic,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheHit {
    pub tier: CacheTier,
    /// The cached prompt that matched.
    pub prompt: String,
    pub result: String,
    pub similarity: f32,
    pub task_id: String,
    /// The entry's id, for `POST /admin/cache/invalidate`.
    pub entry: String,
    pub scope: String,
    /// The judge's score, when the judge accepted this semantic hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_score: Option<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupResponse {
    pub hit: Option<CacheHit>,
    /// Candidates above the threshold that the guard refused, with why
    /// (e.g. `numbers`, `negation`).
    #[serde(default)]
    pub refused: Vec<String>,
}

/// `POST http://cache-lookup.spin.internal/insert`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InsertRequest {
    /// The embedding model that made the vector.
    pub model: String,
    pub scope: String,
    pub tenant: String,
    pub prompt: String,
    pub result: String,
    pub task_id: String,
    pub vector: Vec<f32>,
}

/// `POST /invoke` on llm-invoke, sent by the bridge for each Kafka event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvokeRequest {
    pub task_id: String,
    pub prompt: String,
    pub tenant: String,
    pub use_cache: bool,
    #[serde(default)]
    pub generation: Generation,
    /// When true and the call fails, the task is recorded as FAILURE instead
    /// of being left for another retry.
    #[serde(default)]
    pub final_attempt: bool,
    /// The event's trace (W3C `traceparent`), the bridge's span its parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// An API task (the event was sealed by `/enqueue`): its answer's cache
    /// fill goes ahead of the batch lane's ([`API_CACHE_FILL_CHANNEL`](crate::API_CACHE_FILL_CHANNEL)).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api: bool,
}

/// `POST /invoke/batch` on llm-invoke: events the bridge runs together
/// (never two of one key), each answered on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvokeBatch {
    pub events: Vec<InvokeRequest>,
}

/// `POST /invoke/fail` on llm-invoke: the bridge dead-lettered `event`
/// for `error`. Its task is recorded as FAILURE, marked as dead-lettered so
/// that a replay of the event may run it again, and its coalescing marker
/// is released; a task of another tenant is refused (409).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailRequest {
    pub event: InvokeRequest,
    pub error: String,
}

/// Most events one `/invoke/batch` or `/store/batch` request may carry.
pub const MAX_BATCH: usize = 256;

/// One event's answer in a batch, as its own request would have had it:
/// `status` 200 with the final `task`, or an error status (400: the event
/// is refused; 503: try it again later) with `error`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchAnswer {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BatchAnswer {
    pub fn done(task: TaskResult) -> Self {
        Self {
            status: 200,
            task: Some(task),
            error: None,
        }
    }

    pub fn failed(status: u16, error: impl Into<String>) -> Self {
        Self {
            status,
            task: None,
            error: Some(error.into()),
        }
    }
}

/// The answer to a batch: one [`BatchAnswer`] per item, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchResponse {
    pub results: Vec<BatchAnswer>,
}

/// What the LLM stage produced for a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Success { result: String, model: String },
    Failure { error: String },
}

/// `POST http://store.spin.internal/store`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreRequest {
    pub task_id: String,
    pub prompt: String,
    pub tenant: String,
    pub use_cache: bool,
    /// The cache scope the answer was made in (`aies_guest::scope_id`).
    #[serde(default)]
    pub scope: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The failure is the bridge's dead letter, not the task's own end: a
    /// replay of the event may run the task again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead_lettered: bool,
    /// An API task ([`InvokeRequest::api`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api: bool,
}

/// `POST http://store.spin.internal/store/batch`: outcomes of one
/// `/invoke/batch`, recorded together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreBatch {
    pub items: Vec<StoreRequest>,
}

/// Published by store on [`COMPLETION_CHANNEL`](crate::COMPLETION_CHANNEL)
/// once a task is final, and, when `fill_cache`, on
/// [`API_CACHE_FILL_CHANNEL`](crate::API_CACHE_FILL_CHANNEL) (an API task)
/// or [`CACHE_FILL_CHANNEL`](crate::CACHE_FILL_CHANNEL) too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionNotice {
    pub task_id: String,
    pub status: TaskStatus,
    pub tenant: String,
    /// The cache scope of the answer (`aies_guest::scope_id`).
    #[serde(default)]
    pub scope: String,
    /// The answer should go into the semantic cache (a success with
    /// `use_cache`): the cache-fill component does it.
    #[serde(default)]
    pub fill_cache: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// When store published it (Unix ms): cache-fill sheds a batch-lane
    /// fill that waited too long (`cache_fill_max_wait_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_ms: Option<u64>,
    /// An API task ([`InvokeRequest::api`]): its fill is never shed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api: bool,
}

/// The value at [`vector_key`](crate::vector_key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StashedVector {
    /// The embedding model that made it (`EmbedResponse::model`).
    pub model: String,
    pub vector: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_request_is_flat_json() {
        let r = StoreRequest {
            task_id: "t".into(),
            prompt: "p".into(),
            tenant: "default".into(),
            use_cache: true,
            scope: "s".into(),
            outcome: Outcome::Success {
                result: "r".into(),
                model: "m".into(),
            },
            traceparent: None,
            dead_lettered: false,
            api: false,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["outcome"], "success");
        assert_eq!(v["result"], "r");
        let back: StoreRequest = serde_json::from_value(v).unwrap();
        assert!(matches!(back.outcome, Outcome::Success { .. }));
    }

    #[test]
    fn batch_answers_leave_out_what_they_do_not_have() {
        let failed = BatchAnswer::failed(400, "invalid task_id or tenant");
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"status":400,"error":"invalid task_id or tenant"}"#
        );
        let done = BatchAnswer::done(TaskResult {
            task_id: "t".into(),
            status: TaskStatus::Success,
            result: Some("r".into()),
            error: None,
            model: None,
        });
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"status":200,"task":{"task_id":"t","status":"SUCCESS","result":"r"}}"#
        );
    }
}
