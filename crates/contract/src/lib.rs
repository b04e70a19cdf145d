//! The contract between the stages: every request, response and event that
//! crosses a component boundary, the bridge or Kafka is defined here once.
//!
//! This crate builds for `wasm32-wasip2` (the components) and natively (the
//! bridge and the tests), so it depends on serde alone.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Raw events from any producer: the batch lane.
pub const RAW_TOPIC: &str = "datos_crudos";
/// Events from the API: the interactive lane, read apart from (and never
/// behind) the batch lane's backlog.
pub const API_TOPIC: &str = "datos_api";
/// Final results, one message per finished task.
pub const RESULT_TOPIC: &str = "datos_procesados";
/// Events that exhausted their retries or could not be parsed.
pub const DEAD_LETTER_TOPIC: &str = "datos_crudos_dlq";
/// The bridge's consumer group (the API lane's group adds `_api`).
pub const CONSUMER_GROUP: &str = "ai_eventstream_consumers";
/// Redis pub/sub channel on which store announces finished tasks
/// ([`CompletionNotice`]), for anyone who wants to know.
pub const COMPLETION_CHANNEL: &str = "ai_eventstream:task_completed";
/// The notices of answers to put into the cache (`fill_cache`), which
/// trigger the cache-fill component.
pub const CACHE_FILL_CHANNEL: &str = "ai_eventstream:cache_fill";
/// Version written into every event this system produces.
pub const EVENT_VERSION: u32 = 1;
/// Tenant used when a request names none.
pub const DEFAULT_TENANT: &str = "default";
/// Longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 16_000;

/// Redis key of a task record (a hash) in the result backend, DB 2.
pub fn task_key(task_id: &str) -> String {
    format!("aies:task:{task_id}")
}

/// A tenant id is a short tag: letters, digits, `-` and `_`. Keeping it to
/// these characters lets it go into a RediSearch TAG query without escaping.
pub fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A task id is produced by us (a UUID) or by a third-party producer; it is
/// used in Redis keys and Kafka keys, so it is bounded and plain.
pub fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Body of `POST /process`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRequest {
    pub prompt: String,
    #[serde(default = "yes")]
    pub use_cache: bool,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// System prompt / instructions for the LLM.
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// A stricter (or, down to the model's floor, looser) similarity for
    /// the semantic tier, for this request only.
    #[serde(default)]
    pub cache_threshold: Option<f32>,
}

impl ProcessRequest {
    pub fn generation(&self) -> Generation {
        Generation {
            system: self.system.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        }
    }
}

/// Largest `max_tokens` accepted.
pub const MAX_TOKENS_LIMIT: u32 = 65_536;

/// What changes an LLM's answer besides the prompt and the model. A cached
/// answer is served only to a request with the same (its scope).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Generation {
    /// System prompt / instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl Generation {
    /// Why these parameters cannot be sent to an LLM, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if let Some(system) = &self.system {
            if system.chars().count() > MAX_PROMPT_CHARS {
                return Some(format!(
                    "`system` is longer than {MAX_PROMPT_CHARS} characters"
                ));
            }
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Some(format!("`temperature` must be between 0 and 2, got {t}"));
            }
        }
        if let Some(n) = self.max_tokens {
            if !(1..=MAX_TOKENS_LIMIT).contains(&n) {
                return Some(format!(
                    "`max_tokens` must be between 1 and {MAX_TOKENS_LIMIT}, got {n}"
                ));
            }
        }
        None
    }

    /// The parameters as one unambiguous text (part of a cache scope).
    pub fn canonical(&self) -> String {
        let fields = (&self.system, self.temperature, self.max_tokens);
        serde_json::to_string(&fields).unwrap_or_default()
    }
}

fn yes() -> bool {
    true
}

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
    #[serde(default = "yes")]
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

/// Task states, as stored in the result backend and returned by the API.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskStatus {
    Pending,
    Started,
    Success,
    Failure,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Started => "STARTED",
            TaskStatus::Success => "SUCCESS",
            TaskStatus::Failure => "FAILURE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => TaskStatus::Pending,
            "STARTED" => TaskStatus::Started,
            "SUCCESS" => TaskStatus::Success,
            "FAILURE" => TaskStatus::Failure,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Success | TaskStatus::Failure)
    }
}

/// A task as the API and `datos_procesados` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskResult {
    pub task_id: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Which model answered, e.g. `gemini:gemini-2.0-flash` or `offline-stand-in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

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
}

/// `POST /invoke/batch` on llm-invoke: events the bridge runs together
/// (never two of one key), each answered on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvokeBatch {
    pub events: Vec<InvokeRequest>,
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
}

/// `POST http://store.spin.internal/store/batch`: outcomes of one
/// `/invoke/batch`, recorded together.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreBatch {
    pub items: Vec<StoreRequest>,
}

/// Published by store on [`COMPLETION_CHANNEL`] once a task is final, and
/// on [`CACHE_FILL_CHANNEL`] too when `fill_cache`.
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
}

/// A W3C Trace Context `traceparent` (`00-<trace id>-<parent id>-<flags>`):
/// which trace a request or event belongs to, and the span it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the span the next one is a child of.
    pub parent_id: String,
    pub flags: u8,
}

impl TraceParent {
    /// Reads a header value; `None` when it is not a valid one (the
    /// receiver then starts a new trace, as the specification says).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && hex(trace, 32)
            && !zero(trace)
            && hex(parent, 16)
            && !zero(parent)
            && hex(flags, 2);
        valid.then(|| Self {
            trace_id: trace.to_string(),
            parent_id: parent.to_string(),
            flags: u8::from_str_radix(flags, 16).unwrap_or(0),
        })
    }

    /// A new, sampled trace with `span` as its first span (both random).
    pub fn new(trace: u128, span: u64) -> Self {
        Self {
            trace_id: format!("{:032x}", trace.max(1)),
            parent_id: format!("{:016x}", span.max(1)),
            flags: 1,
        }
    }

    /// The same trace, continued by the span `span` (random).
    pub fn child(&self, span: u64) -> Self {
        Self {
            parent_id: format!("{:016x}", span.max(1)),
            ..self.clone()
        }
    }

    /// `header`'s trace continued by `span`, or a new trace.
    pub fn continue_or_start(header: Option<&str>, trace: u128, span: u64) -> Self {
        match header.and_then(Self::parse) {
            Some(parent) => parent.child(span),
            None => Self::new(trace, span),
        }
    }

    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

/// Redis key (DB 2, expiring) of the prompt vector that ingest computed for
/// a task it could not answer from the cache: the cache fill uses it rather
/// than embedding the prompt again.
pub fn vector_key(task_id: &str) -> String {
    format!("aies:vector:{task_id}")
}

/// The value at [`vector_key`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StashedVector {
    /// The embedding model that made it (`EmbedResponse::model`).
    pub model: String,
    pub vector: Vec<f32>,
}

/// Every error body of every stage: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
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

    #[test]
    fn process_request_rejects_unknown_fields_and_wrong_types() {
        assert!(serde_json::from_str::<ProcessRequest>(r#"{"prompt":"a","x":1}"#).is_err());
        assert!(serde_json::from_str::<ProcessRequest>(r#"{"prompt":5}"#).is_err());
        let ok: ProcessRequest = serde_json::from_str(r#"{"prompt":"a"}"#).unwrap();
        assert!(ok.use_cache);
    }

    #[test]
    fn tenant_and_task_ids_are_plain() {
        assert!(valid_tenant("acme_1-x"));
        assert!(!valid_tenant("a}b"));
        assert!(!valid_tenant(""));
        assert!(valid_task_id("0b6c-11:x.y"));
        assert!(!valid_task_id("a b"));
    }

    #[test]
    fn traceparent_follows_the_w3c_format() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceParent::parse(h).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.header(), h);
        let child = t.child(0xabc);
        assert_eq!(child.trace_id, t.trace_id);
        assert_eq!(
            child.header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"
        );
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        // A later version may add fields.
        assert!(TraceParent::parse(&format!("01{}-more", &h[2..])).is_some());
        let fresh = TraceParent::continue_or_start(Some("junk"), 7, 9);
        assert_eq!(
            fresh.header(),
            "00-00000000000000000000000000000007-0000000000000009-01"
        );
    }

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
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["outcome"], "success");
        assert_eq!(v["result"], "r");
        let back: StoreRequest = serde_json::from_value(v).unwrap();
        assert!(matches!(back.outcome, Outcome::Success { .. }));
    }
}
