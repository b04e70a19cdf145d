//! What every component needs: JSON in and out, calls to other stages through
//! Spin local service chaining, typed variables and Redis connections.
//!
//! - [`error`]: [`ApiError`], the one error type of the HTTP boundaries.
//! - [`http`]: JSON responses, request bodies, bearer tokens, batches.
//! - [`stage`]: calls to other stages.
//! - [`provider`]: which LLM answers, and POSTs to provider APIs.
//! - [`config`]: Spin variables.
//! - [`db`]: Redis connections and replies (the key layout is
//!   [`aies_contract::keys`]).
//! - [`tasks`]: task records and their atomic scripts.
//! - [`inflight`]: coalescing markers.
//! - [`hash`]: scope ids and prompts' exact ids.
//! - [`metrics`]: the counters.
//! - [`trace`]: trace context and log lines.
//! - [`time`]: clocks and a non-blocking sleep.
//!
//! Everything is also at the crate root.

pub mod config;
pub mod db;
pub mod error;
pub mod hash;
pub mod http;
pub mod inflight;
pub mod metrics;
pub mod provider;
pub mod stage;
pub mod tasks;
pub mod time;
pub mod trace;

pub use config::{var, var_parsed};
pub use db::{arg, execute, hgetall, redis, text};
pub use error::ApiError;
pub use hash::{exact_id, hex, scope_id};
pub use http::{
    admin_only, batch_answer, bearer_is, error, from_json, json, parse_body, whole_numbers,
};
pub use inflight::{inflight_key, release_inflight};
pub use metrics::{count, count_by, defer_counts, flush_counts};
pub use provider::{llm_model_id, llm_provider, post_json, Answer, OFFLINE_MODEL};
pub use stage::{call, call_as, stage_url, StageError};
pub use tasks::{finish_tasks, start_tasks, stored_task, write_task, Start, TaskRecord};
pub use time::{now_ms, now_secs, sleep};
pub use trace::{current_trace, log_line, new_span, start_trace};

/// Redis logical databases and the keys every stage shares (see
/// [`aies_contract::keys`]).
pub use aies_contract::keys::{
    DB_CACHE, DB_COORDINATION, DB_TASKS, INFLIGHT_PREFIX, METRICS_KEY, RECENT_TASKS,
    RECENT_TASKS_KEY,
};
