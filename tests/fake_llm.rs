//! A local stand-in for the LLM providers (there is no internet here),
//! speaking their real wire formats: OpenAI `POST /v1/chat/completions` and
//! Gemini `POST /v1beta/models/{model}:generateContent`, with their auth
//! headers and error bodies. Failures can be scheduled to test retries.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const OPENAI_KEY: &str = "sk-test-openai";
pub const GEMINI_KEY: &str = "test-gemini-key";

#[derive(Default)]
struct Shared {
    calls: AtomicUsize,
    /// Statuses to answer with before answering normally (and Retry-After).
    failures: Mutex<VecDeque<(u16, Option<u64>)>>,
    prompts: Mutex<Vec<String>>,
    /// Every generation request's JSON body, as received.
    bodies: Mutex<Vec<Value>>,
    /// Embedding requests answered.
    embeddings: AtomicUsize,
    /// Simulated generation time of every answer, in milliseconds.
    delay_ms: AtomicU64,
    /// When not 0, every call answers this status (an outage).
    fail_always: std::sync::atomic::AtomicU16,
    /// The `traceparent` header of every OpenAI generation request.
    traceparents: Mutex<Vec<String>>,
}

pub struct FakeLlm {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
}

/// The fake's answer to a prompt, so tests can check what came back.
pub fn answer(provider: &str, prompt: &str) -> String {
    format!("{provider} fake answer to: {prompt}")
}

impl FakeLlm {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// [`Self::start`] on another address, e.g. `0.0.0.0:0` so that
    /// containers reach it through their network's gateway.
    pub async fn start_on(addr: &str) -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/embeddings", post(openai_embeddings))
            .route("/v1beta/models/{call}", post(gemini))
            .with_state(shared.clone());
        // A provider's accept queue is deep; tokio's default (1,024) drops
        // SYNs when a pipeline opens a thousand connections at once.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(addr.parse().unwrap()).unwrap();
        let listener = socket.listen(4096).unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// [`Self::calls`], for a task that outlives this borrow.
    pub fn call_counter(&self) -> impl Fn() -> usize + Send + 'static {
        let shared = self.shared.clone();
        move || shared.calls.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    pub fn embedding_calls(&self) -> usize {
        self.shared.embeddings.load(Ordering::SeqCst)
    }

    pub fn prompts(&self) -> Vec<String> {
        self.shared.prompts.lock().unwrap().clone()
    }

    /// The generation requests' bodies, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.shared.bodies.lock().unwrap().clone()
    }

    /// Every answer takes `delay`, as a real model's generation would.
    /// The `traceparent` headers OpenAI-format generation requests came with.
    pub fn traceparents(&self) -> Vec<String> {
        self.shared.traceparents.lock().unwrap().clone()
    }

    pub fn set_delay(&self, delay: std::time::Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every call answers `status` until called again with `None`.
    pub fn fail_always(&self, status: Option<u16>) {
        self.shared
            .fail_always
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// The next call answers `status` (with `Retry-After` when given).
    pub fn fail_next(&self, status: u16, retry_after: Option<u64>) {
        self.shared
            .failures
            .lock()
            .unwrap()
            .push_back((status, retry_after));
    }
}

/// Counts the call and returns the scheduled failure, if any.
fn scheduled_failure(shared: &Shared, body: Value) -> Option<Response> {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    let always = shared.fail_always.load(Ordering::SeqCst);
    let (status, retry_after) = match always {
        0 => shared.failures.lock().unwrap().pop_front()?,
        s => (s, None),
    };
    let status = StatusCode::from_u16(status).unwrap();
    let mut headers = HeaderMap::new();
    if let Some(s) = retry_after {
        headers.insert("retry-after", s.to_string().parse().unwrap());
    }
    Some((status, headers, Json(body)).into_response())
}

async fn delay(shared: &Shared) {
    let ms = shared.delay_ms.load(Ordering::SeqCst);
    if ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

async fn openai(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    let error = |status: StatusCode, message: &str, code: &str| {
        (
            status,
            Json(json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}})),
        )
            .into_response()
    };
    let overloaded = json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}});
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        shared.traceparents.lock().unwrap().push(tp.to_string());
    }
    if let Some(r) = scheduled_failure(&shared, overloaded) {
        return r;
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {OPENAI_KEY}"))
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided",
            "invalid_api_key",
        );
    }
    let Some(prompt) = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "'messages' is required",
            "missing_messages",
        );
    };
    shared.prompts.lock().unwrap().push(prompt.to_string());
    shared.bodies.lock().unwrap().push(req.clone());
    delay(&shared).await;
    Json(json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": req["model"],
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer("openai", prompt)},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    }))
    .into_response()
}

async fn gemini(
    State(shared): State<Arc<Shared>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    let error = |status: StatusCode, code: u16, message: &str, kind: &str| {
        (
            status,
            Json(json!({"error": {"code": code, "message": message, "status": kind}})),
        )
            .into_response()
    };
    let overloaded = json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}});
    if let Some(r) = scheduled_failure(&shared, overloaded) {
        return r;
    }
    if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(GEMINI_KEY) {
        return error(
            StatusCode::BAD_REQUEST,
            400,
            "API key not valid.",
            "INVALID_ARGUMENT",
        );
    }
    match call.split_once(':') {
        Some((_, "generateContent")) => {}
        Some((_, "batchEmbedContents")) => return gemini_embeddings(&shared, &req),
        _ => return error(StatusCode::NOT_FOUND, 404, "unknown method", "NOT_FOUND"),
    }
    let Some(prompt) = req["contents"][0]["parts"][0]["text"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            400,
            "contents is not specified",
            "INVALID_ARGUMENT",
        );
    };
    shared.prompts.lock().unwrap().push(prompt.to_string());
    shared.bodies.lock().unwrap().push(req.clone());
    delay(&shared).await;
    Json(json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": answer("gemini", prompt)}]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12},
        "modelVersion": "gemini-2.0-flash"
    }))
    .into_response()
}

fn gemini_embeddings(shared: &Shared, req: &Value) -> Response {
    let Some(requests) = req["requests"].as_array() else {
        let body = json!({"error": {"code": 400, "message": "requests is required", "status": "INVALID_ARGUMENT"}});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    shared.embeddings.fetch_add(1, Ordering::SeqCst);
    let embeddings: Vec<Value> = requests
        .iter()
        .map(|r| {
            let text = r["content"]["parts"][0]["text"]
                .as_str()
                .unwrap_or_default();
            let dim = r["outputDimensionality"].as_u64().unwrap_or(3072) as usize;
            json!({ "values": bag_of_words(text, dim) })
        })
        .collect();
    Json(json!({ "embeddings": embeddings })).into_response()
}

/// A deterministic stand-in embedding: words hashed into `dim` buckets,
/// normalised. Equal texts get equal vectors; different words differ.
pub fn bag_of_words(text: &str, dim: usize) -> Vec<f32> {
    let mut v = vec![0f32; dim];
    for word in text
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = word.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        v[(h % dim as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter().map(|x| x / norm).collect()
}

async fn openai_embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {OPENAI_KEY}"))
    {
        let body = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let inputs: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    shared.embeddings.fetch_add(1, Ordering::SeqCst);
    let dim = req["dimensions"].as_u64().unwrap_or(384) as usize;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": bag_of_words(t, dim)}))
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": req["model"],
        "usage": {"prompt_tokens": 8, "total_tokens": 8}
    }))
    .into_response()
}
