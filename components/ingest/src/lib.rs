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
//! - `/admin/keys`: API keys (see `keys`); with `api_keys = "required"`
//!   the key, not `x-tenant-id`, names the tenant.
//! - `POST /v1/chat/completions`, `POST /v1/embeddings`: OpenAI's wire
//!   format (see `openai`).
//! - `GET /stats`: the dashboard's numbers (see `stats`).
//! - `GET /metrics`: Prometheus text. `GET /health`. `GET /`: the endpoints.

use aies_contract::{
    valid_task_id, vector_key, CacheHit, CacheTier, EmbedRequest, EmbedResponse, LookupRequest,
    LookupResponse, ProcessRequest, RawEvent, StashedVector, TaskResult, TaskStatus,
    DEFAULT_TENANT, EVENT_VERSION, MAX_PROMPT_CHARS,
};
use aies_guest::{
    arg, call, count, error, execute, hgetall, inflight_key, json, llm_model_id, now_ms, redis,
    release_inflight, scope_id, sleep, stage_url, text, var, write_task, TaskRecord, DB_CACHE,
    DB_COORDINATION, DB_TASKS, METRICS_KEY,
};
use anyhow::Result;
use serde_json::json as j;
use spin_sdk::http::{Method, Request, Response, ResponseOutparam};
use spin_sdk::http_component;
use spin_sdk::redis::RedisParameter;

mod events;
mod idempotency;
mod keys;
mod openai;
mod stats;

/// Largest request body accepted by `POST /process`.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest body of `POST /process/batch`, and most prompts in one.
const MAX_BATCH_BODY_BYTES: usize = 1024 * 1024;
const MAX_BATCH_PROMPTS: usize = 100;
/// Prompts of one batch looked up at once.
const BATCH_CONCURRENCY: usize = 16;

#[http_component]
async fn handle(req: Request, out: ResponseOutparam) {
    aies_guest::start_trace(req.header("traceparent").and_then(|v| v.as_str()));
    // A request's counters go to Redis in one round trip, as it answers.
    aies_guest::defer_counts();
    let path = req.path().to_string();
    let resp = match (req.method(), path.as_str()) {
        (Method::Post, "/process") => process(req).await,
        (Method::Post, "/process/batch") => process_batch(req).await,
        (Method::Get, p) if p.starts_with("/task/") && p.ends_with("/events") => {
            let id = &p["/task/".len()..p.len() - "/events".len()];
            return events::stream(&req, id, out).await;
        }
        (Method::Get, p) if p.starts_with("/task/") => task(&req, &p["/task/".len()..]).await,
        (Method::Post, "/v1/chat/completions") => openai::chat(req).await,
        (Method::Post, "/v1/embeddings") => openai::embeddings(req).await,
        (Method::Get, "/stats") => stats::stats(&req).await,
        (Method::Get, "/metrics") => metrics(),
        (Method::Get, "/health") => health(),
        (Method::Get, "/") => docs(),
        (_, p) if p == "/admin/keys" || p.starts_with("/admin/keys/") => keys::admin(&req),
        (_, "/v1/chat/completions" | "/v1/embeddings") => openai::error(405, "use POST"),
        (_, "/process" | "/process/batch") => error(405, "use POST"),
        _ => error(404, format!("no route for {path}: see GET /")),
    };
    events::respond(out, resp).await;
}

/// A request's JSON object body, within `limit` bytes.
fn object_body(req: &Request, limit: usize) -> Result<serde_json::Value, Response> {
    if req.body().len() > limit {
        return Err(error(
            413,
            format!("request body is larger than {limit} bytes"),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(req.body())
        .map_err(|e| error(400, format!("invalid JSON body: {e}")))?;
    // serde would also read a struct from an array; only an object is valid.
    if !value.is_object() {
        return Err(error(400, "invalid JSON body: expected an object"));
    }
    Ok(value)
}

/// Checks one prompt's request; `Err` is its status and message.
fn check(value: serde_json::Value) -> Result<ProcessRequest, (u16, String)> {
    if !value.is_object() {
        return Err((400, "expected an object".into()));
    }
    let body: ProcessRequest =
        serde_json::from_value(value).map_err(|e| (400, format!("invalid JSON body: {e}")))?;
    validate(body)
}

/// Checks a prompt's fields (trimming it); `Err` is a status and message.
fn validate(mut body: ProcessRequest) -> Result<ProcessRequest, (u16, String)> {
    body.prompt = body.prompt.trim().to_string();
    if body.prompt.is_empty() {
        return Err((400, "`prompt` must not be empty".into()));
    }
    if body.prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err((
            413,
            format!("`prompt` is longer than {MAX_PROMPT_CHARS} characters"),
        ));
    }
    if let Some(problem) = body.generation().problem() {
        return Err((400, problem));
    }
    if let Some(t) = body.cache_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err((
            400,
            format!("`cache_threshold` must be between 0 and 1, got {t}"),
        ));
    }
    Ok(body)
}

/// `POST /process`: one prompt.
async fn process(req: Request) -> Response {
    count("requests");
    let checked = keys::tenant(&req).and_then(|tenant| {
        let body = object_body(&req, MAX_BODY_BYTES)?;
        let body = check(body).map_err(|(status, msg)| error(status, msg))?;
        Ok((body, tenant))
    });
    let (body, tenant) = match checked {
        Ok(v) => v,
        Err(resp) => {
            count("bad_requests");
            return resp;
        }
    };
    idempotency::once(&req, &tenant, async {
        let (status, value) = answer(body, &tenant).await;
        json(status, &value)
    })
    .await
}

/// `POST /process/batch` `{"requests": [<POST /process body>, ...]}`: one
/// task per prompt; each result, in its place, is `{"http_status", "body"}`:
/// what `POST /process` would have answered.
async fn process_batch(req: Request) -> Response {
    use futures::StreamExt;
    let checked = keys::tenant(&req).and_then(|tenant| {
        let mut body = object_body(&req, MAX_BATCH_BODY_BYTES)?;
        match body.get_mut("requests").map(serde_json::Value::take) {
            Some(serde_json::Value::Array(items))
                if !items.is_empty() && items.len() <= MAX_BATCH_PROMPTS =>
            {
                Ok((items, tenant))
            }
            _ => Err(error(
                400,
                format!("`requests` must be an array of 1 to {MAX_BATCH_PROMPTS} objects"),
            )),
        }
    });
    let (items, tenant) = match checked {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    idempotency::once(&req, &tenant, async {
        let tenant = tenant.as_str();
        let results: Vec<serde_json::Value> = futures::stream::iter(items)
            .map(|item| async move {
                count("requests");
                let (status, body) = match check(item) {
                    Ok(body) => answer(body, tenant).await,
                    Err((status, msg)) => {
                        count("bad_requests");
                        (status, j!({ "error": msg }))
                    }
                };
                j!({ "http_status": status, "body": body })
            })
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await;
        json(200, &j!({ "results": results }))
    })
    .await
}

/// One checked prompt: the cache, a running task to join, or a new task.
async fn answer(body: ProcessRequest, tenant: &str) -> (u16, serde_json::Value) {
    let scope = match llm_model_id() {
        Ok(model) => scope_id(&model, &body.generation()),
        Err(e) => return (500, j!({ "error": format!("{e:#}") })),
    };
    let mut vector = None;
    if body.use_cache {
        match cached(&body, tenant, &scope).await {
            Ok(Lookup::Hit(hit)) => {
                count("cache_hits");
                count(match hit.tier {
                    CacheTier::Exact => "cache_hits_exact",
                    CacheTier::Semantic => "cache_hits_semantic",
                });
                return (
                    200,
                    j!({
                        "status": "SUCCESS",
                        "cached": true,
                        "cache": {
                            "tier": hit.tier,
                            "similarity": hit.similarity,
                            "matched_prompt": hit.prompt,
                            "entry": hit.entry,
                            "scope": hit.scope,
                        },
                        "similarity": hit.similarity,
                        "result": hit.result,
                        "task_id": hit.task_id,
                    }),
                );
            }
            Ok(Lookup::Miss(v)) => {
                count("cache_misses");
                vector = v;
            }
            // The cache is an optimisation: when it fails, process anyway.
            Err(e) => {
                aies_guest::log!("cache lookup failed, treating as a miss: {e:#}");
                count("cache_errors");
            }
        }
    }
    let task_id = uuid::Uuid::new_v4().to_string();
    if body.use_cache {
        match join_inflight(&task_id, &body.prompt, tenant, &scope) {
            Ok(Some((running, status))) => {
                count("cache_coalesced");
                return (
                    202,
                    j!({"task_id": running, "status": status, "coalesced": true}),
                );
            }
            Ok(None) => {}
            // Coalescing saves calls; without it the prompt is still answered.
            Err(e) => aies_guest::log!("coalescing skipped: {e:#}"),
        }
    }
    if let Some(v) = vector {
        // Saves cache-fill from embedding the prompt again.
        if let Err(e) = stash_vector(&task_id, &v) {
            aies_guest::log!("vector of {task_id} not kept for the cache fill: {e:#}");
        }
    }
    let (prompt, use_cache) = (body.prompt.clone(), body.use_cache);
    let enqueued = enqueue(&task_id, body, tenant.to_string()).await;
    if enqueued.is_err() && use_cache {
        if let Err(e) = release_inflight(&task_id, tenant, &scope, &prompt) {
            aies_guest::log!("in-flight marker of {task_id} not cleared: {e:#}");
        }
    }
    match enqueued {
        Ok(()) => (202, j!({"task_id": task_id, "status": "PENDING"})),
        Err(Enqueue::NotRecorded(e)) => {
            aies_guest::log!("task not recorded: {e:#}");
            (
                503,
                j!({ "error": format!("could not record the task: {e:#}") }),
            )
        }
        // The task exists, as FAILURE: give its id, so it can be looked up.
        Err(Enqueue::Refused(e)) => {
            aies_guest::log!("enqueue failed: {e:#}");
            (
                503,
                j!({
                    "error": format!("could not enqueue the task: {e:#}"),
                    "task_id": task_id,
                    "status": "FAILURE",
                }),
            )
        }
    }
}

enum Enqueue {
    /// Nothing was written: Redis could not be reached.
    NotRecorded(anyhow::Error),
    /// The task was recorded, the bridge did not take it: it is now FAILURE.
    Refused(anyhow::Error),
}

enum Lookup {
    Hit(CacheHit),
    /// A miss, with the prompt's vector when the semantic tier was asked.
    Miss(Option<StashedVector>),
}

/// How long a missed prompt's vector waits for its cache fill.
const VECTOR_TTL_SECS: i64 = 3600;

fn stash_vector(task_id: &str, v: &StashedVector) -> Result<()> {
    let args = [
        arg(vector_key(task_id)),
        arg(serde_json::to_vec(v)?),
        arg("EX"),
        RedisParameter::Int64(VECTOR_TTL_SECS),
    ];
    execute(&redis(DB_TASKS)?, "SET", &args)?;
    Ok(())
}

/// The exact tier first (no embedding), then the semantic tier.
async fn cached(body: &ProcessRequest, tenant: &str, scope: &str) -> Result<Lookup> {
    let ask = |vector, model| LookupRequest {
        tenant: tenant.to_string(),
        prompt: body.prompt.clone(),
        vector,
        model,
        scope: scope.to_string(),
        threshold: body.cache_threshold,
    };
    let lookup = stage_url("cache-lookup", "/lookup");
    let exact: LookupResponse = call(&lookup, &ask(None, None)).await?;
    if let Some(hit) = exact.hit {
        return Ok(Lookup::Hit(hit));
    }
    let embedded: EmbedResponse = call(
        &stage_url("embed", "/embed"),
        &EmbedRequest {
            texts: vec![body.prompt.clone()],
        },
    )
    .await?;
    let vector = embedded.vectors.into_iter().next().unwrap_or_default();
    let model = embedded.model;
    let found: LookupResponse =
        call(&lookup, &ask(Some(vector.clone()), Some(model.clone()))).await?;
    for why in &found.refused {
        count(&format!("guard_refused_{why}"));
    }
    Ok(match found.hit {
        Some(hit) => Lookup::Hit(hit),
        None => Lookup::Miss(Some(StashedVector { model, vector })),
    })
}

/// How long a prompt's in-flight marker lasts at most (a task still
/// running after this is no longer joined).
const INFLIGHT_TTL_SECS: i64 = 900;

/// Coalescing: marks this prompt (in its tenant and scope) as being
/// answered by `task_id`, or, if a task that is not final yet already
/// answers it, returns that task to join.
fn join_inflight(
    task_id: &str,
    prompt: &str,
    tenant: &str,
    scope: &str,
) -> Result<Option<(String, TaskStatus)>> {
    const SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[3] then return current end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false"#;
    let key = inflight_key(tenant, scope, prompt);
    let coordination = redis(DB_COORDINATION)?;
    let mark = |stale: &str| -> Result<Option<String>> {
        let args = [
            arg(SCRIPT),
            RedisParameter::Int64(1),
            arg(&key),
            arg(task_id),
            RedisParameter::Int64(INFLIGHT_TTL_SECS),
            arg(stale),
        ];
        Ok(execute(&coordination, "EVAL", &args)?
            .first()
            .and_then(text))
    };
    let Some(running) = mark("")? else {
        return Ok(None);
    };
    // A marker is set just before its task is recorded: no record yet is a
    // task being made now.
    let status = match TaskRecord::read(&redis(DB_TASKS)?, &running)?.task(&running) {
        None => TaskStatus::Pending,
        Some(task) if !task.status.is_final() => task.status,
        // Left behind by a task that ended without clearing it: take its
        // place (unless another request just did).
        Some(_) => {
            mark(&running)?;
            return Ok(None);
        }
    };
    Ok(Some((running, status)))
}

/// Records the task as PENDING, then hands the event to the bridge. If the
/// bridge does not take it, the record says FAILURE, so no task is left
/// PENDING forever.
async fn enqueue(task_id: &str, body: ProcessRequest, tenant: String) -> Result<(), Enqueue> {
    let url = var("bridge_url")
        .map(|base| format!("{base}/enqueue"))
        .map_err(Enqueue::NotRecorded)?;
    record_pending(task_id, &body.prompt, &tenant).map_err(Enqueue::NotRecorded)?;
    let event = RawEvent {
        version: EVENT_VERSION,
        task_id: Some(task_id.to_string()),
        generation: body.generation(),
        prompt: body.prompt,
        tenant: Some(tenant),
        use_cache: body.use_cache,
        metadata: body.metadata,
        traceparent: aies_guest::current_trace(),
    };
    if let Err(e) = call::<_, serde_json::Value>(&url, &event).await {
        let msg = format!("could not enqueue: {e:#}");
        let failed = TaskStatus::Failure.as_str();
        redis(DB_TASKS)
            .and_then(|conn| write_task(&conn, task_id, &[("status", failed), ("error", &msg)]))
            .map_err(Enqueue::NotRecorded)?;
        count("tasks_failure");
        return Err(Enqueue::Refused(e));
    }
    Ok(())
}

fn record_pending(task_id: &str, prompt: &str, tenant: &str) -> Result<()> {
    let conn = redis(DB_TASKS)?;
    let now = now_ms();
    write_task(
        &conn,
        task_id,
        &[
            ("status", TaskStatus::Pending.as_str()),
            ("prompt", prompt),
            ("tenant", tenant),
            ("created_at", &(now / 1000).to_string()),
            ("created_ms", &now.to_string()),
        ],
    )?;
    count("tasks_pending");
    Ok(())
}

/// Longest `GET /task/{id}?wait=N` may wait, in seconds.
const MAX_WAIT_SECS: u64 = 30;
/// How often a waiting request looks at the task again.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// `GET /task/{id}[?wait=N]`: the task now, or, with `wait`, as soon as it
/// is final (at most N seconds, then as it is).
async fn task(req: &Request, id: &str) -> Response {
    if !valid_task_id(id) {
        return error(400, "invalid task id");
    }
    let tenant = match keys::tenant(req) {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let wait = match wait_secs(req.query()) {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    match wait_for(id, &tenant, std::time::Duration::from_secs(wait)).await {
        Ok(Some(task)) => json(200, &task),
        Ok(None) => error(404, format!("no task {id}")),
        Err(e) => error(503, format!("{e:#}")),
    }
}

/// The task once it is final, or as it is after `wait`; `None` when there
/// is no such task (or it is another tenant's).
async fn wait_for(id: &str, tenant: &str, wait: std::time::Duration) -> Result<Option<TaskResult>> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let Some(task) = tenant_task(id, tenant)? else {
            return Ok(None);
        };
        if task.status.is_final() || std::time::Instant::now() >= deadline {
            return Ok(Some(task));
        }
        sleep(WAIT_POLL).await;
    }
}

/// The task as its tenant sees it: `None` when there is no such task or it
/// is another tenant's (as unknown as a missing one).
fn tenant_task(id: &str, tenant: &str) -> Result<Option<TaskResult>> {
    let record = TaskRecord::read(&redis(DB_TASKS)?, id)?;
    let owner = record
        .get("tenant")
        .unwrap_or_else(|| DEFAULT_TENANT.to_string());
    Ok(record.task(id).filter(|_| owner == tenant))
}

/// The `wait` query parameter: whole seconds, 0 to [`MAX_WAIT_SECS`].
fn wait_secs(query: &str) -> Result<u64, Response> {
    let Some(value) = query.split('&').find_map(|pair| pair.strip_prefix("wait=")) else {
        return Ok(0);
    };
    match value.parse::<u64>() {
        Ok(n) if n <= MAX_WAIT_SECS => Ok(n),
        _ => Err(error(
            400,
            format!("wait must be whole seconds from 0 to {MAX_WAIT_SECS}"),
        )),
    }
}

/// Counters kept in the metrics hash, with their Prometheus names and help.
const METRICS: &[(&str, &str, &str)] = &[
    (
        "requests",
        "aies_requests_total",
        "POST /process requests received",
    ),
    (
        "bad_requests",
        "aies_bad_requests_total",
        "POST /process requests rejected as invalid",
    ),
    (
        "cache_hits",
        "aies_cache_hits_total",
        "Prompts answered from the semantic cache",
    ),
    (
        "cache_hits_exact",
        "aies_cache_hits_exact_total",
        "Prompts answered by the exact tier (no embedding)",
    ),
    (
        "cache_hits_semantic",
        "aies_cache_hits_semantic_total",
        "Prompts answered by the semantic tier",
    ),
    (
        "cache_misses",
        "aies_cache_misses_total",
        "Prompts not found in the semantic cache",
    ),
    (
        "cache_coalesced",
        "aies_cache_coalesced_total",
        "Prompts that joined a running task for the same prompt instead of calling the LLM",
    ),
    (
        "cache_fills",
        "aies_cache_fills_total",
        "Answers put into the cache by cache-fill",
    ),
    (
        "cache_fill_embedded",
        "aies_cache_fill_embedded_total",
        "Cache fills that had to embed the prompt (no vector kept by ingest)",
    ),
    (
        "cache_evicted",
        "aies_cache_evicted_total",
        "Cache entries evicted by cache_max_entries (least recently used first)",
    ),
    (
        "cache_errors",
        "aies_cache_errors_total",
        "Cache lookups that failed (treated as misses)",
    ),
];

const STATES: &[(&str, &str)] = &[
    ("tasks_pending", "PENDING"),
    ("tasks_started", "STARTED"),
    ("tasks_success", "SUCCESS"),
    ("tasks_failure", "FAILURE"),
];

fn metrics() -> Response {
    let fields = match redis(DB_CACHE).and_then(|c| hgetall(&c, METRICS_KEY)) {
        Ok(f) => f,
        Err(e) => return error(503, format!("{e:#}")),
    };
    let value = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("0")
            .to_string()
    };
    let mut out = String::new();
    for (field, name, help) in METRICS {
        out += &format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            value(field)
        );
    }
    out +=
        "# HELP aies_tasks_total Tasks that entered each state\n# TYPE aies_tasks_total counter\n";
    for (field, state) in STATES {
        out += &format!("aies_tasks_total{{status=\"{state}\"}} {}\n", value(field));
    }
    out += "# HELP aies_cache_guard_refused_total Cache candidates above the threshold that the guard refused, by reason\n# TYPE aies_cache_guard_refused_total counter\n";
    for why in aies_cache_guard::Mismatch::ALL.map(|m| m.as_str()) {
        let field = format!("guard_refused_{why}");
        out += &format!(
            "aies_cache_guard_refused_total{{reason=\"{why}\"}} {}\n",
            value(&field)
        );
    }
    Response::builder()
        .status(200)
        .header("content-type", "text/plain; version=0.0.4")
        .body(out)
        .build()
}

fn health() -> Response {
    let ping = |db| redis(db).and_then(|c| execute(&c, "PING", &[]));
    match ping(DB_CACHE).and(ping(DB_TASKS)) {
        Ok(_) => json(200, &j!({"status": "ok", "redis": "ok"})),
        Err(e) => json(
            503,
            &j!({"status": "unavailable", "redis": format!("{e:#}")}),
        ),
    }
}

fn docs() -> Response {
    json(
        200,
        &j!({
            "service": "ai-eventstream",
            "endpoints": {
                "POST /process": "{\"prompt\": str, \"use_cache\": bool = true, \"metadata\": object?, \"system\": str?, \"temperature\": 0-2?, \"max_tokens\": int?, \"cache_threshold\": 0-1?}. 200 on a cache hit, 202 {task_id} otherwise; optional Idempotency-Key header",
                "POST /process/batch": "{\"requests\": [POST /process body, ...]} (1-100): one task each, {\"results\": [{\"http_status\", \"body\"}, ...]} in order",
                "GET /task/{id}[?wait=N]": "status PENDING | STARTED | SUCCESS | FAILURE, with result or error; wait long-polls up to N s (at most 30)",
                "GET /task/{id}/events": "the task's state changes as server-sent events, until it is final",
                "POST /v1/chat/completions": "OpenAI's chat completions (also stream: true), answered through the cache and the pipeline",
                "POST /v1/embeddings": "OpenAI's embeddings (float or base64) from the app's embedding model",
                "GET /metrics": "Prometheus text format",
                "GET /stats": "what /dashboard shows, as JSON: tasks by state, the latest tasks with timings, cache hits by tier, Kafka lanes and partition lag",
                "GET /health": "Redis reachability",
                "POST /admin/keys, GET /admin/keys, DELETE /admin/keys/{id}": "API keys (Authorization: Bearer <admin_token>)",
                "GET /admin/cache/stats, POST /admin/cache/invalidate, POST /admin/cache/flush": "the cache's admin endpoints (Authorization: Bearer <admin_token>)",
            },
            "tenant": "with api_keys = required: Authorization: Bearer <key> (or x-api-key); otherwise the x-tenant-id header (default `default`)",
            "limits": {
                "body_bytes": MAX_BODY_BYTES,
                "batch_body_bytes": MAX_BATCH_BODY_BYTES,
                "batch_prompts": MAX_BATCH_PROMPTS,
                "prompt_chars": MAX_PROMPT_CHARS,
            },
        }),
    )
}
