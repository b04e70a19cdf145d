//! llm-invoke: `POST /invoke`, called by the bridge once per Kafka event.
//!
//! Marks the task STARTED, asks the LLM, and hands the outcome to store,
//! whose answer (the final task) it returns. A task that is already final is
//! answered from the result backend without calling the LLM again, so a
//! redelivered event costs nothing.
//!
//! Providers (`llm_provider`): `gemini` (`generateContent`), `openai` (any
//! OpenAI-compatible `/v1/chat/completions`), `offline` (a stand-in that
//! labels its answers as not coming from an LLM), or `auto` (default):
//! gemini when `google_api_key` is set, else openai when `openai_api_key` is
//! set or `openai_base_url` points somewhere other than api.openai.com,
//! else offline. The event's `system` prompt, `temperature` and
//! `max_tokens` are sent in each provider's own form.
//!
//! Transient failures (transport errors, 408, 429, 5xx) are retried up to
//! `llm_max_retries` times with exponential backoff, full jitter and the
//! server's `Retry-After`; a task fails for good on other statuses or when
//! the bridge says this is its final attempt.

use aies_contract::{
    valid_task_id, valid_tenant, Generation, InvokeRequest, Outcome, StoreRequest, TaskResult,
    TaskStatus,
};
use aies_guest::{
    bearer_is, call, count, error, json, llm_model_id, llm_provider, parse_body, post_json, redis,
    scope_id, stage_url, start_task, stored_task, var, var_parsed, TaskRecord, DB_TASKS,
    OFFLINE_MODEL,
};
use anyhow::{anyhow, Result};
use serde_json::{json as j, Value};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use std::time::Duration;

#[http_component]
async fn handle(req: Request) -> Response {
    if *req.method() != Method::Post || req.path() != "/invoke" {
        return error(404, "llm-invoke serves POST /invoke");
    }
    match authorized(&req) {
        Ok(true) => {}
        Ok(false) => return error(401, "missing or wrong bearer token"),
        Err(e) => return error(500, format!("{e:#}")),
    }
    let body: InvokeRequest = match parse_body(&req) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if !valid_task_id(&body.task_id) || !valid_tenant(&body.tenant) {
        return error(400, "invalid task_id or tenant");
    }
    match invoke(body).await {
        Ok(task) => json(200, &task),
        // 503 tells the bridge to retry later.
        Err(e) => error(503, format!("{e:#}")),
    }
}

/// The bridge proves itself with `Authorization: Bearer <invoke_token>`.
fn authorized(req: &Request) -> Result<bool> {
    let token = var("invoke_token")?;
    if token.is_empty() {
        return Ok(true);
    }
    Ok(bearer_is(req, &token))
}

async fn invoke(req: InvokeRequest) -> Result<TaskResult> {
    let conn = redis(DB_TASKS)?;
    let record = TaskRecord::read(&conn, &req.task_id)?;
    if let Some(task) = record.task(&req.task_id).filter(|t| t.status.is_final()) {
        return Ok(task);
    }
    // Events from third-party producers have no record yet: this creates it.
    let started = start_task(
        &conn,
        &req.task_id,
        &[
            ("status", TaskStatus::Started.as_str()),
            ("prompt", &req.prompt),
            ("tenant", &req.tenant),
        ],
    )?;
    if !started {
        // Another delivery of this event finished it meanwhile.
        return stored_task(&conn, &req.task_id);
    }
    count("tasks_started");

    let outcome = match generate(&req.prompt, &req.generation).await {
        Ok((result, model)) => Outcome::Success { result, model },
        Err(Failure::Permanent(e)) => Outcome::Failure {
            error: format!("{e:#}"),
        },
        Err(Failure::Transient(e)) if req.final_attempt => Outcome::Failure {
            error: format!("gave up after retries: {e:#}"),
        },
        Err(Failure::Transient(e)) => return Err(e),
    };
    let scope = scope_id(&llm_model_id()?, &req.generation);
    call(
        &stage_url("store", "/store"),
        &StoreRequest {
            task_id: req.task_id,
            prompt: req.prompt,
            tenant: req.tenant,
            use_cache: req.use_cache,
            scope,
            outcome,
        },
    )
    .await
}

enum Failure {
    /// Worth another try later (transport error, 408, 429, 5xx).
    Transient(anyhow::Error),
    /// Asking again will not help (bad request, bad key, bad configuration).
    Permanent(anyhow::Error),
}

fn permanent(e: anyhow::Error) -> Failure {
    Failure::Permanent(e)
}

async fn generate(prompt: &str, generation: &Generation) -> Result<(String, String), Failure> {
    // Third-party events are checked here (the API checks its own).
    if let Some(problem) = generation.problem() {
        return Err(permanent(anyhow!(problem)));
    }
    let provider = llm_provider().map_err(permanent)?;
    match provider.as_str() {
        "offline" => Ok((offline_answer(prompt), OFFLINE_MODEL.to_string())),
        "gemini" => gemini(prompt, generation).await,
        "openai" => openai(prompt, generation).await,
        other => Err(permanent(anyhow!(
            "unknown llm_provider {other:?}: use auto, offline, gemini or openai"
        ))),
    }
}

/// The stand-in used when no LLM is configured: deterministic, and says
/// plainly that it is not a model's answer.
fn offline_answer(prompt: &str) -> String {
    let preview: String = prompt.chars().take(200).collect();
    format!(
        "[{OFFLINE_MODEL}: no LLM is configured, this is not a real answer] \
         Received a prompt of {} characters: \"{preview}\"",
        prompt.chars().count()
    )
}

async fn gemini(prompt: &str, generation: &Generation) -> Result<(String, String), Failure> {
    let model = var("gemini_model").map_err(permanent)?;
    let key = var("google_api_key").map_err(permanent)?;
    if key.is_empty() {
        return Err(permanent(anyhow!(
            "llm_provider is gemini but google_api_key (GOOGLE_API_KEY) is empty"
        )));
    }
    let url = format!(
        "{}/v1beta/models/{model}:generateContent",
        var("gemini_base_url").map_err(permanent)?
    );
    let mut body = j!({"contents": [{"role": "user", "parts": [{"text": prompt}]}]});
    if let Some(system) = &generation.system {
        body["systemInstruction"] = j!({"parts": [{"text": system}]});
    }
    let mut config = serde_json::Map::new();
    if let Some(t) = generation.temperature {
        config.insert("temperature".into(), j!(t));
    }
    if let Some(n) = generation.max_tokens {
        config.insert("maxOutputTokens".into(), j!(n));
    }
    if !config.is_empty() {
        body["generationConfig"] = Value::Object(config);
    }
    let answer = post_with_retries(&url, &[("x-goog-api-key", &key)], &body).await?;
    let parts = answer["candidates"][0]["content"]["parts"]
        .as_array()
        .ok_or_else(|| permanent(anyhow!("Gemini answer has no candidates[0].content.parts")))?;
    let text: String = parts.iter().filter_map(|p| p["text"].as_str()).collect();
    Ok((text, format!("gemini:{model}")))
}

async fn openai(prompt: &str, generation: &Generation) -> Result<(String, String), Failure> {
    let model = var("openai_model").map_err(permanent)?;
    let key = var("openai_api_key").map_err(permanent)?;
    let url = format!(
        "{}/v1/chat/completions",
        var("openai_base_url").map_err(permanent)?
    );
    let auth = format!("Bearer {key}");
    let headers: &[(&str, &str)] = if key.is_empty() {
        &[]
    } else {
        &[("authorization", &auth)]
    };
    let mut messages = Vec::new();
    if let Some(system) = &generation.system {
        messages.push(j!({"role": "system", "content": system}));
    }
    messages.push(j!({"role": "user", "content": prompt}));
    let mut body = j!({"model": model, "messages": messages});
    if let Some(t) = generation.temperature {
        body["temperature"] = j!(t);
    }
    if let Some(n) = generation.max_tokens {
        body["max_tokens"] = j!(n);
    }
    let answer = post_with_retries(&url, headers, &body).await?;
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| permanent(anyhow!("answer has no choices[0].message.content")))?;
    Ok((text.to_string(), format!("openai:{model}")))
}

async fn post_with_retries(
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Result<Value, Failure> {
    let retries: u32 = var_parsed("llm_max_retries").map_err(permanent)?;
    let base_ms: u64 = var_parsed("llm_backoff_ms").map_err(permanent)?;
    let mut attempt = 0;
    loop {
        let (err, retry_after) = match post_json(url, headers, body).await {
            Ok(a) if (200..300).contains(&a.status) => {
                return a.json(url).map_err(permanent);
            }
            Ok(a) if transient_status(a.status) => (a.json(url).unwrap_err(), a.retry_after),
            Ok(a) => return Err(permanent(a.json(url).unwrap_err())),
            Err(e) => (e, None),
        };
        if attempt >= retries {
            return Err(Failure::Transient(
                err.context(format!("{} attempts", attempt + 1)),
            ));
        }
        let wait = backoff(attempt, base_ms, retry_after);
        eprintln!(
            "LLM call failed ({err:#}); retry {} in {wait:?}",
            attempt + 1
        );
        std::thread::sleep(wait);
        attempt += 1;
    }
}

fn transient_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// Exponential backoff with full jitter, capped at 10 s; a `Retry-After`
/// from the server (capped at 30 s) is waited for at least.
fn backoff(attempt: u32, base_ms: u64, retry_after: Option<u64>) -> Duration {
    let ceiling = base_ms.saturating_mul(1 << attempt.min(16)).min(10_000);
    let jitter = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap());
    let ms = if ceiling == 0 {
        0
    } else {
        jitter % (ceiling + 1)
    };
    let floor = retry_after.unwrap_or(0).min(30) * 1000;
    Duration::from_millis(ms.max(floor))
}
