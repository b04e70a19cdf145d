//! llm-invoke: `POST /invoke` (one Kafka event) and `POST /invoke/batch`
//! (events of distinct keys that the bridge runs together), called by the
//! bridge; `POST /invoke/fail` records the failure of an event the bridge
//! dead-lettered; `POST /invoke/member` keeps a bridge's report of itself
//! (`aies_contract::members`) for `/stats` and the dashboard.
//!
//! Marks the tasks STARTED, asks the LLM (concurrently for a batch), and
//! hands the outcomes to store, whose answers (the final tasks) it returns.
//! A task that is already final is answered from the result backend without
//! calling the LLM again, so a redelivered event costs nothing; an event
//! naming a task of another tenant is refused (409).
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

use aies_contract::members::{to_forget, MemberKind, MemberReport, MAX_REPORT_BYTES, MEMBERS_KEY};
use aies_contract::{
    valid_task_id, valid_tenant, BatchAnswer, BatchResponse, FailRequest, Generation, InvokeBatch,
    InvokeRequest, Outcome, StoreBatch, StoreRequest, TaskResult, TaskStatus, MAX_BATCH,
};
use aies_guest::{
    arg, batch_answer, bearer_is, call, count_by, error, execute, hgetall, llm_model_id,
    llm_provider, now_ms, parse_body, post_json, redis, scope_id, sleep, stage_url, start_tasks,
    stored_task, var, var_parsed, ApiError, Start, TaskRecord, DB_CACHE, DB_TASKS, OFFLINE_MODEL,
};
use anyhow::{anyhow, bail, Result};
use futures::future::join_all;
use serde_json::{json as j, Value};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use std::time::Duration;

#[http_component]
async fn handle(req: Request) -> Response {
    aies_guest::start_trace(req.header("traceparent").and_then(|v| v.as_str()));
    let batch =
        match (req.method(), req.path()) {
            (Method::Post, "/invoke") => false,
            (Method::Post, "/invoke/batch" | "/invoke/fail" | "/invoke/member") => true,
            (_, "/invoke" | "/invoke/batch" | "/invoke/fail" | "/invoke/member") => {
                return aies_guest::ApiError::method_not_allowed("POST").into()
            }
            _ => return error(
                404,
                "llm-invoke serves POST /invoke, /invoke/batch, /invoke/fail and /invoke/member",
            ),
        };
    match authorized(&req) {
        Ok(Some(true)) => {}
        Ok(Some(false)) => return error(401, "missing or wrong bearer token"),
        Ok(None) => {
            return error(
                401,
                "invoke_token is not set: llm-invoke refuses every call until it is",
            )
        }
        Err(e) => return error(500, format!("{e:#}")),
    }
    if req.path() == "/invoke/member" {
        return match record_member(&req) {
            Ok(kept) => aies_guest::json(200, &kept),
            Err(e) => e.into(),
        };
    }
    if req.path() == "/invoke/fail" {
        return match parse_body::<FailRequest>(&req) {
            Ok(fail) => record_dead_letter(fail).await,
            Err(e) => e.into(),
        };
    }
    let events = if batch {
        match parse_body::<InvokeBatch>(&req) {
            Ok(b) if b.events.len() <= MAX_BATCH => b.events,
            Ok(_) => return error(400, format!("a batch holds at most {MAX_BATCH} events")),
            Err(e) => return e.into(),
        }
    } else {
        match parse_body::<InvokeRequest>(&req) {
            Ok(e) => vec![e],
            Err(e) => return e.into(),
        }
    };
    let results = match invoke_all(events).await {
        Ok(r) => r,
        // 503 tells the bridge to retry later.
        Err(e) => return error(503, format!("{e:#}")),
    };
    batch_answer(batch, results)
}

/// The bridge proves itself with `Authorization: Bearer <invoke_token>`.
/// The route is public (the bridge calls it from outside the app), so with
/// no token set nobody may call it: `None`.
fn authorized(req: &Request) -> Result<Option<bool>> {
    let token = var("invoke_token")?;
    if token.is_empty() {
        return Ok(None);
    }
    Ok(Some(bearer_is(req, &token)))
}

/// A bridge's report of itself, stamped with this instance's clock (the
/// one `/stats` judges staleness by) and kept in `aies:members`; members
/// silent for a day, or past the bound, are removed on the way.
fn record_member(req: &Request) -> Result<Value, ApiError> {
    if req.body().len() > MAX_REPORT_BYTES {
        return Err(ApiError::too_large(MAX_REPORT_BYTES));
    }
    let mut report: MemberReport = parse_body(req)?;
    if report.kind != MemberKind::Bridge {
        return Err(ApiError::bad_request(
            "only bridges report here (kind: bridge)",
        ));
    }
    report.check().map_err(ApiError::bad_request)?;
    let now = now_ms();
    report.seen_ms = now;
    let store = || -> Result<()> {
        let conn = redis(DB_CACHE)?;
        let json = serde_json::to_string(&report)?;
        execute(
            &conn,
            "HSET",
            &[arg(MEMBERS_KEY), arg(report.field()), arg(json)],
        )?;
        let gone = to_forget(&hgetall(&conn, MEMBERS_KEY)?, now);
        if !gone.is_empty() {
            let mut args = vec![arg(MEMBERS_KEY)];
            args.extend(gone.iter().map(arg));
            execute(&conn, "HDEL", &args)?;
        }
        Ok(())
    };
    store().map_err(|e| ApiError::unavailable(&e))?;
    Ok(j!({"member": report.field(), "seen_ms": now}))
}

/// Runs events of distinct keys together: one Redis script marks them all
/// STARTED (a task that is already final is answered as it is, without
/// calling the LLM), the LLM calls run concurrently, and one store call
/// records every outcome. `Err` only when the batch as a whole failed.
async fn invoke_all(events: Vec<InvokeRequest>) -> Result<Vec<BatchAnswer>> {
    let mut answers: Vec<Option<BatchAnswer>> = vec![None; events.len()];
    let mut valid = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if valid_task_id(&e.task_id) && valid_tenant(&e.tenant) {
            valid.push(i);
        } else {
            answers[i] = Some(BatchAnswer::failed(400, "invalid task_id or tenant"));
        }
    }
    let conn = redis(DB_TASKS)?;
    // Events from third-party producers have no record yet: this creates it.
    let fields: Vec<[(&str, &str); 3]> = valid
        .iter()
        .map(|&i| {
            [
                ("status", TaskStatus::Started.as_str()),
                ("prompt", events[i].prompt.as_str()),
                ("tenant", events[i].tenant.as_str()),
            ]
        })
        .collect();
    let tasks: Vec<(&str, &[(&str, &str)])> = valid
        .iter()
        .zip(&fields)
        .map(|(&i, f)| (events[i].task_id.as_str(), &f[..]))
        .collect();
    let started = start_tasks(&conn, &tasks)?;
    let mut run = Vec::new();
    for (&i, started) in valid.iter().zip(started) {
        match started {
            Start::Run => run.push(i),
            // Final already: a redelivered event costs nothing.
            Start::Final => {
                answers[i] = Some(BatchAnswer::done(stored_task(&conn, &events[i].task_id)?))
            }
            Start::OtherTenant => {
                answers[i] = Some(BatchAnswer::failed(409, other_tenant(&events[i].task_id)))
            }
        }
    }
    count_by("tasks_started", run.len() as i64);

    let generated = join_all(run.iter().map(|&i| {
        generate(
            &events[i].prompt,
            &events[i].generation,
            events[i].traceparent.as_deref(),
        )
    }))
    .await;
    let model = llm_model_id()?;
    let (mut items, mut stored_at) = (Vec::new(), Vec::new());
    for (&i, generated) in run.iter().zip(generated) {
        let req = &events[i];
        let outcome = match generated {
            Ok((result, model)) => Outcome::Success { result, model },
            Err(Failure::Permanent(e)) => Outcome::Failure {
                error: format!("{e:#}"),
            },
            Err(Failure::Transient(e)) if req.final_attempt => Outcome::Failure {
                error: format!("gave up after retries: {e:#}"),
            },
            Err(Failure::Transient(e)) => {
                answers[i] = Some(BatchAnswer::failed(503, format!("{e:#}")));
                continue;
            }
        };
        stored_at.push(i);
        items.push(StoreRequest {
            task_id: req.task_id.clone(),
            prompt: req.prompt.clone(),
            tenant: req.tenant.clone(),
            use_cache: req.use_cache,
            scope: scope_id(&model, &req.generation),
            outcome,
            traceparent: req.traceparent.clone(),
            dead_lettered: false,
            api: req.api,
        });
    }
    if !items.is_empty() {
        let stored: BatchResponse =
            call(&stage_url("store", "/store/batch"), &StoreBatch { items }).await?;
        if stored.results.len() != stored_at.len() {
            bail!(
                "store answered {} results for {} tasks",
                stored.results.len(),
                stored_at.len()
            );
        }
        for (i, answer) in stored_at.into_iter().zip(stored.results) {
            answers[i] = Some(answer);
        }
    }
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| BatchAnswer::failed(500, "no answer for the event")))
        .collect())
}

fn other_tenant(task_id: &str) -> String {
    format!("task {task_id} belongs to another tenant")
}

/// `POST /invoke/fail`: the bridge dead-lettered the event, so its task
/// says FAILURE with the reason (marked so that a replay may run it again)
/// and its coalescing marker is released, by store as for any failure.
async fn record_dead_letter(fail: FailRequest) -> Response {
    let FailRequest { event, error: why } = fail;
    if !valid_task_id(&event.task_id) || !valid_tenant(&event.tenant) {
        return error(400, "invalid task_id or tenant");
    }
    let owner = redis(DB_TASKS)
        .and_then(|conn| TaskRecord::read(&conn, &event.task_id))
        .map(|record| record.get("tenant"));
    match owner {
        Ok(Some(owner)) if owner != event.tenant => {
            return error(409, other_tenant(&event.task_id))
        }
        Ok(_) => {}
        Err(e) => return error(503, format!("{e:#}")),
    }
    let model = match llm_model_id() {
        Ok(m) => m,
        Err(e) => return error(500, format!("{e:#}")),
    };
    let item = StoreRequest {
        scope: scope_id(&model, &event.generation),
        task_id: event.task_id,
        prompt: event.prompt,
        tenant: event.tenant,
        use_cache: event.use_cache,
        outcome: Outcome::Failure {
            error: format!("dead-lettered by the bridge: {why}"),
        },
        traceparent: event.traceparent,
        dead_lettered: true,
        api: event.api,
    };
    match call::<_, TaskResult>(&stage_url("store", "/store"), &item).await {
        Ok(task) => aies_guest::json(200, &task),
        Err(e) => error(503, format!("{e:#}")),
    }
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

/// One event's LLM call, in a span of the event's trace (`traceparent`),
/// which the provider gets as `traceparent` too.
async fn generate(
    prompt: &str,
    generation: &Generation,
    trace: Option<&str>,
) -> Result<(String, String), Failure> {
    // Third-party events are checked here (the API checks its own).
    if let Some(problem) = generation.problem() {
        return Err(permanent(anyhow!(problem)));
    }
    let provider = llm_provider().map_err(permanent)?;
    let span = aies_guest::new_span(trace).header();
    match provider.as_str() {
        "offline" => Ok((offline_answer(prompt), OFFLINE_MODEL.to_string())),
        "gemini" => gemini(prompt, generation, &span).await,
        "openai" => openai(prompt, generation, &span).await,
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

async fn gemini(
    prompt: &str,
    generation: &Generation,
    span: &str,
) -> Result<(String, String), Failure> {
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
    let headers = [("x-goog-api-key", key.as_str()), ("traceparent", span)];
    let answer = post_with_retries(&url, &headers, &body).await?;
    let parts = answer["candidates"][0]["content"]["parts"]
        .as_array()
        .ok_or_else(|| permanent(anyhow!("Gemini answer has no candidates[0].content.parts")))?;
    let text: String = parts.iter().filter_map(|p| p["text"].as_str()).collect();
    Ok((text, format!("gemini:{model}")))
}

async fn openai(
    prompt: &str,
    generation: &Generation,
    span: &str,
) -> Result<(String, String), Failure> {
    let model = var("openai_model").map_err(permanent)?;
    let key = var("openai_api_key").map_err(permanent)?;
    let url = format!(
        "{}/v1/chat/completions",
        var("openai_base_url").map_err(permanent)?
    );
    let auth = format!("Bearer {key}");
    let mut headers = vec![("traceparent", span)];
    if !key.is_empty() {
        headers.push(("authorization", &auth));
    }
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
    let answer = post_with_retries(&url, &headers, &body).await?;
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
        let trace = headers
            .iter()
            .find(|(k, _)| *k == "traceparent")
            .map(|(_, v)| *v);
        aies_guest::log_line(
            trace,
            format_args!(
                "LLM call failed ({err:#}); retry {} in {wait:?}",
                attempt + 1
            ),
        );
        sleep(wait).await;
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
