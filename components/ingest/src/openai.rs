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

use aies_contract::{EmbedRequest, EmbedResponse, ProcessRequest, MAX_PROMPT_CHARS};
use aies_guest::{call, json, now_secs, stage_url, StageError};
use serde::Deserialize;
use serde_json::{json as j, Value};
use spin_sdk::http::{Request, Response};
use std::time::Duration;

/// Longest a request waits for its task (the host stops a request at 120 s).
const MAX_WAIT: Duration = Duration::from_secs(100);
/// Most inputs of one `/v1/embeddings` request.
const MAX_INPUTS: usize = 256;
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An error in OpenAI's format; the type follows the status.
pub fn error(status: u16, message: impl Into<String>) -> Response {
    let kind = match status {
        400 | 404 | 409 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "api_error",
    };
    json(
        status,
        &j!({"error": {"message": message.into(), "type": kind, "param": null, "code": null}}),
    )
}

/// One of our `{"error": "..."}` answers, in OpenAI's format.
fn translated(resp: Response) -> Response {
    let status = *resp.status();
    let message = serde_json::from_slice::<Value>(resp.body())
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(resp.body()).into_owned());
    error(status, message)
}

fn body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Response> {
    if req.body().len() > MAX_BODY_BYTES {
        return Err(error(
            413,
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    serde_json::from_slice(req.body()).map_err(|e| error(400, format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    n: Option<u32>,
    tools: Option<Value>,
    functions: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Content,
}

/// A message's content: text, or parts of which only text is supported.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

impl Content {
    fn text(&self) -> Result<String, String> {
        match self {
            Content::Text(t) => Ok(t.clone()),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| match p.kind.as_str() {
                    "text" => Ok(p.text.as_str()),
                    other => Err(format!("content parts of type {other:?} are not supported")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|texts| texts.join("\n")),
        }
    }
}

impl ChatRequest {
    /// The task this conversation asks for; `Err` is a 400's message.
    fn process_request(&self) -> Result<ProcessRequest, String> {
        if self.n.is_some_and(|n| n != 1) {
            return Err("only n = 1 is supported".into());
        }
        if self.tools.is_some() || self.functions.is_some() {
            return Err("tools and functions are not supported".into());
        }
        let mut system = Vec::new();
        let mut turns = Vec::new();
        for m in &self.messages {
            let text = m.content.text()?;
            match m.role.as_str() {
                "system" | "developer" => system.push(text),
                "user" => turns.push(("User", text)),
                "assistant" => turns.push(("Assistant", text)),
                other => return Err(format!("messages with role {other:?} are not supported")),
            }
        }
        let prompt = match turns.as_slice() {
            [] => return Err("`messages` needs at least one user message".into()),
            [("User", only)] => only.clone(),
            _ => turns
                .iter()
                .map(|(who, text)| format!("{who}: {text}"))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        Ok(ProcessRequest {
            prompt,
            use_cache: true,
            metadata: None,
            system: (!system.is_empty()).then(|| system.join("\n")),
            temperature: self.temperature,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            cache_threshold: None,
        })
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat(req: Request) -> Response {
    let tenant = match super::keys::tenant(&req) {
        Ok(t) => t,
        Err(resp) => return translated(resp),
    };
    let chat: ChatRequest = match body(&req) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let process = chat
        .process_request()
        .map_err(|msg| (400, msg))
        .and_then(super::validate);
    let process = match process {
        Ok(p) => p,
        Err((status, msg)) => return error(status, msg),
    };
    let (status, answer) = super::answer(process, &tenant).await;
    let (task_id, result, model, hit) = match status {
        200 => (
            answer["task_id"].as_str().unwrap_or_default().to_string(),
            answer["result"].as_str().unwrap_or_default().to_string(),
            None,
            Some(answer["cache"]["tier"].clone()),
        ),
        202 => {
            let task_id = answer["task_id"].as_str().unwrap_or_default().to_string();
            match wait(&task_id, &tenant).await {
                Ok((result, model)) => (task_id, result, model, None),
                Err(resp) => return resp,
            }
        }
        _ => {
            let message = answer["error"].as_str().unwrap_or("failed").to_string();
            return error(status, message);
        }
    };
    let model =
        model.unwrap_or_else(|| aies_guest::llm_model_id().unwrap_or_else(|_| chat.model.clone()));
    let id = format!("chatcmpl-{task_id}");
    let created = now_secs();
    let aies = j!({"task_id": task_id, "cached": hit.is_some(), "tier": hit});
    if !chat.stream {
        return json(
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
        );
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
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(stream)
        .build()
}

/// Waits for a task to be final: its result and model, or the error.
async fn wait(task_id: &str, tenant: &str) -> Result<(String, Option<String>), Response> {
    let task = match super::wait_for(task_id, tenant, MAX_WAIT).await {
        Ok(Some(task)) => task,
        Ok(None) => return Err(error(502, format!("task {task_id} disappeared"))),
        Err(e) => return Err(error(503, format!("{e:#}"))),
    };
    if !task.status.is_final() {
        return Err(error(
            504,
            format!(
                "task {task_id} is not done after {} s; it goes on: GET /task/{task_id}",
                MAX_WAIT.as_secs()
            ),
        ));
    }
    match (task.result, task.error) {
        (Some(result), None) => Ok((result, task.model)),
        (_, error_text) => {
            let text = error_text.unwrap_or_else(|| "the task failed".into());
            // The provider still said 429 after our retries.
            let status = if text.contains("status 429") {
                429
            } else {
                502
            };
            Err(error(status, format!("task {task_id}: {text}")))
        }
    }
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

/// `POST /v1/embeddings`: the app's embedding model (`embed` stage).
pub async fn embeddings(req: Request) -> Response {
    if let Err(resp) = super::keys::tenant(&req) {
        return translated(resp);
    }
    let request: EmbeddingsRequest = match body(&req) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let texts = match request.input {
        Input::One(t) => vec![t],
        Input::Many(ts) => ts,
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return error(400, format!("`input` must have 1 to {MAX_INPUTS} texts"));
    }
    if texts.iter().any(|t| t.is_empty()) {
        return error(400, "`input` texts must not be empty");
    }
    if texts.iter().any(|t| t.chars().count() > MAX_PROMPT_CHARS) {
        return error(
            400,
            format!("an input is longer than {MAX_PROMPT_CHARS} characters"),
        );
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return error(400, format!("unknown encoding_format {other:?}")),
    };
    let url = stage_url("embed", "/embed");
    let embedded: EmbedResponse = match call(&url, &EmbedRequest { texts }).await {
        Ok(e) => e,
        Err(e) => {
            let status = match e.downcast_ref::<StageError>() {
                Some(s) if (400..500).contains(&s.status) => 400,
                _ => 502,
            };
            return error(status, format!("{e:#}"));
        }
    };
    if let Some(d) = request
        .dimensions
        .filter(|d| embedded.vectors.first().is_some_and(|v| v.len() != *d))
    {
        return error(
            400,
            format!(
                "{} gives vectors of another dimension than {d}",
                embedded.model
            ),
        );
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
    json(200, &out)
}

/// The vector as OpenAI's `encoding_format: base64`: little-endian f32s.
fn encode_base64(vector: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
