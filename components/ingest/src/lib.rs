//! ingest: the public API.
//!
//! - `POST /process` `{"prompt", "use_cache"?, "metadata"?, "system"?,
//!   "temperature"?, "max_tokens"?, "cache_threshold"?}` (tenant from the
//!   `x-tenant-id` header): a cache hit in the request's scope (tenant, LLM
//!   model, generation parameters) answers 200 at once; the same prompt
//!   while its task is running joins that task (202, `coalesced`); a miss
//!   records the task as PENDING (Redis DB 2), hands the event to the bridge
//!   for the API lane and answers 202 with the task id.
//!   With an `Idempotency-Key` header, a retry gets the first answer again
//!   (see `idempotency`).
//! - `POST /process/batch` `{"requests": [...]}`: one task per prompt.
//! - `GET /task/{id}[?wait=N]`: the task's status, result or error; with
//!   `wait` (seconds, at most 30), answered as soon as the task is final.
//! - `GET /task/{id}/events`: its state changes as server-sent events.
//!   Waiting requests (long polls, streams, chat completions waiting for
//!   their task) have places of their own (see `waits`): 429 past them.
//! - `/admin/keys`: API keys (see `keys`); with `api_keys = "required"`
//!   the key, not `x-tenant-id`, names the tenant.
//! - `POST /v1/chat/completions`, `POST /v1/embeddings`: OpenAI's wire
//!   format (see `openai`).
//! - `GET /stats`: the dashboard's numbers (see `stats`).
//! - `GET /metrics`: Prometheus text. `GET /health`. `GET /`: the endpoints.
//!
//! Each route's handler returns `Result<Response, ApiError>`; the error
//! becomes its `{"error"}` response in [`aies_guest::ApiError`]'s one
//! conversion (the OpenAI routes render it in OpenAI's format instead).

use aies_guest::ApiError;
use spin_sdk::http::{IntoResponse, Method, Request, Response, ResponseOutparam};
use spin_sdk::http_component;

mod cache;
mod enqueue;
mod events;
mod idempotency;
mod index;
mod keys;
mod metrics;
mod openai;
mod process;
mod request;
mod stats;
mod tasks;
mod waits;

#[http_component]
async fn handle(req: Request, out: ResponseOutparam) {
    aies_guest::start_trace(req.header("traceparent").and_then(|v| v.as_str()));
    // A request's counters go to Redis in one round trip, as it answers.
    aies_guest::defer_counts();
    let path = req.path().to_string();
    if let (Method::Get, Some(id)) = (req.method(), events_task(&path)) {
        return events::stream(&req, &path_id(id), out).await;
    }
    let resp = match path.as_str() {
        "/v1/chat/completions" | "/v1/embeddings" => openai::route(req).await,
        _ => route(req, &path).await.into_response(),
    };
    events::respond(out, resp).await;
}

async fn route(req: Request, path: &str) -> Result<Response, ApiError> {
    match (req.method(), path) {
        (Method::Post, "/process") => process::process(req).await,
        (Method::Post, "/process/batch") => process::process_batch(req).await,
        (Method::Get, p) if p.starts_with("/task/") => {
            tasks::task(&req, &path_id(&p["/task/".len()..])).await
        }
        (Method::Get, "/stats") => stats::stats(&req).await,
        (Method::Get, "/metrics") => metrics::metrics(),
        (Method::Get, "/health") => Ok(index::health()),
        (Method::Get, "/") => Ok(index::docs()),
        (_, p) if p == "/admin/keys" || p.starts_with("/admin/keys/") => keys::admin(&req),
        (_, "/process" | "/process/batch") => Err(ApiError::method_not_allowed("POST")),
        (_, "/stats" | "/metrics" | "/health" | "/") => Err(ApiError::method_not_allowed("GET")),
        (_, p) if p.starts_with("/task/") => Err(ApiError::method_not_allowed("GET")),
        _ => Err(ApiError::not_found(format!(
            "no route for {path}: see GET /"
        ))),
    }
}

/// A task id as a path segment carries it: percent-decoded (a client may
/// encode the `:` of `default:order-17`); one that does not decode to UTF-8
/// stays as it came, and is refused as invalid.
fn path_id(segment: &str) -> std::borrow::Cow<'_, str> {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8();
    decoded.unwrap_or(std::borrow::Cow::Borrowed(segment))
}

/// The task id of `/task/{id}/events`.
fn events_task(path: &str) -> Option<&str> {
    path.strip_prefix("/task/")?.strip_suffix("/events")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_id_is_percent_decoded() {
        assert_eq!(path_id("default%3Aorder-17"), "default:order-17");
        assert_eq!(path_id("plain-id"), "plain-id");
        assert_eq!(path_id("bad%FF"), "bad%FF");
    }

    #[test]
    fn events_paths_name_their_task() {
        assert_eq!(events_task("/task/abc/events"), Some("abc"));
        assert_eq!(events_task("/task//events"), Some(""));
        assert_eq!(events_task("/task/abc"), None);
        // Once a panic (the id's slice ran backwards); now a plain task id.
        assert_eq!(events_task("/task/events"), None);
    }
}
