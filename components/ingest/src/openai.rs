//! The OpenAI-compatible face: `POST /v1/chat/completions` (also with
//! `stream: true`) and `POST /v1/embeddings`, in OpenAI's
//! wire format, answered through the same cache, Kafka lane and providers
//! as `POST /process`.
//!
//! - The conversation becomes one prompt: system (and developer) messages
//!   are the `system` of the task; a single user message is the prompt as
//!   it is, a longer conversation its transcript (`User: …\nAssistant: …`).
//!   `temperature` and `max_tokens` (or `max_completion_tokens`) are passed
//!   on. `model` is accepted as a label: the app's configured LLM answers,
//!   and the answer's `model` names it.
//! - A miss waits for its task (at most [`MAX_WAIT`]; then 504 naming the
//!   task, which goes on). With `stream: true` the answer comes as
//!   `chat.completion.chunk` events and `data: [DONE]` once the task is
//!   final: the provider call itself is not streamed.
//! - The answer carries an extra `aies` object: `task_id`, `cached`, and
//!   the cache `tier` of a hit.
//! - Errors are `{"error": {"message", "type", "param", "code"}}` with the
//!   status OpenAI's clients map to their error classes (400, 401, 403,
//!   404, 409, 413, 422, 429 when the provider rate-limited us after our
//!   retries, 502 for other provider failures, 503, 504).

use crate::process::{answer, Answered};
use crate::{keys, request::validate, tasks::wait_for};
use aies_contract::{EmbedRequest, EmbedResponse, MAX_EMBED_TEXTS};
use aies_guest::{call, json, now_secs, stage_url, ApiError, StageError};
use serde_json::{json as j, Value};
use spin_sdk::http::{Method, Request, Response};
use std::time::Duration;
use wire::{encode_base64, inputs, openai_error, task_answer, ChatRequest, EmbeddingsRequest};

mod wire;

/// Longest a request waits for its task (the host stops a request at 120 s).
const MAX_WAIT: Duration = Duration::from_secs(100);
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `/v1/chat/completions` and `/v1/embeddings`, any method: errors in
/// OpenAI's format.
pub async fn route(req: Request) -> Response {
    let answered = match (req.method(), req.path()) {
        (Method::Post, "/v1/chat/completions") => chat(req).await,
        (Method::Post, "/v1/embeddings") => embeddings(req).await,
        _ => Err(ApiError::method_not_allowed("POST")),
    };
    answered.unwrap_or_else(|e| openai_error(&e))
}

fn body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    if req.body().len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    aies_guest::from_json(req.body())
}

/// `POST /v1/chat/completions`.
async fn chat(req: Request) -> Result<Response, ApiError> {
    let tenant = keys::tenant(&req)?;
    let chat: ChatRequest = body(&req)?;
    let process = chat
        .process_request()
        .map_err(ApiError::bad_request)
        .and_then(validate)?;
    let (task_id, result, model, hit) = match answer(process, &tenant).await? {
        Answered::Hit(hit) => (hit.task_id, hit.result, None, Some(hit.tier)),
        Answered::Joined { task_id, .. } | Answered::Queued { task_id } => {
            let (result, model) = wait(&task_id, &tenant).await?;
            (task_id, result, model, None)
        }
    };
    let model =
        model.unwrap_or_else(|| aies_guest::llm_model_id().unwrap_or_else(|_| chat.model.clone()));
    let id = format!("chatcmpl-{task_id}");
    let created = now_secs();
    let aies = j!({"task_id": task_id, "cached": hit.is_some(), "tier": hit});
    if !chat.stream {
        return Ok(json(
            200,
            &j!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": result, "refusal": null},
                    "finish_reason": "stop",
                    "logprobs": null,
                }],
                "aies": aies,
            }),
        ));
    }
    let chunk = |delta: Value, finish: Value| {
        let c = j!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
            "aies": aies,
        });
        format!("data: {c}\n\n")
    };
    let stream = [
        chunk(j!({"role": "assistant", "content": ""}), Value::Null),
        chunk(j!({"content": result}), Value::Null),
        chunk(j!({}), j!("stop")),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(stream)
        .build())
}

/// Waits for a task to be final: its result and model, or the error. The
/// wait takes one of the waiting requests' places; without one, 429 (the
/// task goes on).
async fn wait(task_id: &str, tenant: &str) -> Result<(String, Option<String>), ApiError> {
    let _place = crate::waits::begin(tenant, MAX_WAIT).map_err(|e| ApiError {
        message: format!("{}; task {task_id} goes on: GET /task/{task_id}", e.message),
        ..e
    })?;
    let task = match wait_for(task_id, tenant, MAX_WAIT).await {
        Ok(Some(task)) => task,
        Ok(None) => return Err(ApiError::new(502, format!("task {task_id} disappeared"))),
        Err(e) => return Err(ApiError::unavailable(&e)),
    };
    if !task.status.is_final() {
        return Err(ApiError::new(
            504,
            format!(
                "task {task_id} is not done after {} s; it goes on: GET /task/{task_id}",
                MAX_WAIT.as_secs()
            ),
        ));
    }
    task_answer(task_id, task.result, task.error).map(|result| (result, task.model))
}

/// The texts' vectors from the `embed` stage, in calls of at most
/// [`MAX_EMBED_TEXTS`] texts.
async fn embed_all(texts: Vec<String>) -> Result<EmbedResponse, ApiError> {
    let url = stage_url("embed", "/embed");
    let mut all = EmbedResponse {
        model: String::new(),
        vectors: Vec::with_capacity(texts.len()),
        tokens: None,
    };
    for chunk in texts.chunks(MAX_EMBED_TEXTS) {
        let texts = chunk.to_vec();
        let part: EmbedResponse = call(&url, &EmbedRequest { texts }).await.map_err(|e| {
            let status = match e.downcast_ref::<StageError>() {
                Some(s) if (400..500).contains(&s.status) => 400,
                _ => 502,
            };
            ApiError::new(status, format!("{e:#}"))
        })?;
        all.model = part.model;
        all.vectors.extend(part.vectors);
        all.tokens = match (all.tokens, part.tokens) {
            (Some(a), Some(b)) => Some(a + b),
            (None, b) if all.vectors.len() <= MAX_EMBED_TEXTS => b,
            _ => None,
        };
    }
    Ok(all)
}

/// `POST /v1/embeddings`: the app's embedding model (`embed` stage).
async fn embeddings(req: Request) -> Result<Response, ApiError> {
    keys::tenant(&req)?;
    let request: EmbeddingsRequest = body(&req)?;
    let (texts, base64) = inputs(request.input, request.encoding_format.as_deref())?;
    let embedded = embed_all(texts).await?;
    if let Some(d) = request
        .dimensions
        .filter(|d| embedded.vectors.first().is_some_and(|v| v.len() != *d))
    {
        return Err(ApiError::bad_request(format!(
            "{} gives vectors of another dimension than {d}",
            embedded.model
        )));
    }
    let data: Vec<Value> = embedded
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 { j!(encode_base64(v)) } else { j!(v) };
            j!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let mut out = j!({"object": "list", "data": data, "model": embedded.model});
    if let Some(tokens) = embedded.tokens {
        out["usage"] = j!({"prompt_tokens": tokens, "total_tokens": tokens});
    }
    Ok(json(200, &out))
}
