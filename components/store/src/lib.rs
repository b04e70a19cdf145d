//! store: `POST /store` (one task) and `POST /store/batch` (the outcomes
//! of one `/invoke/batch`), the end of the pipeline.
//!
//! Writes each outcome into its task record (Redis DB 2) exactly once: the
//! first writer claims the record with `HSETNX finished_at` and writes its
//! fields in the same Lua script, and any later write for the same task (a
//! redelivered event) gets the stored result back unchanged. Then it
//! announces the completion on the `ai_eventstream:task_completed` channel,
//! and answers for the semantic cache on `ai_eventstream:cache_fill:api`
//! (API tasks) or `ai_eventstream:cache_fill` (the batch lane), where the
//! cache-fill component picks them up: apart, so that a backlog of batch
//! fills never delays an API answer's.

use aies_contract::{
    valid_task_id, valid_tenant, BatchAnswer, CompletionNotice, Outcome, StoreBatch, StoreRequest,
    TaskResult, TaskStatus, API_CACHE_FILL_CHANNEL, CACHE_FILL_CHANNEL, COMPLETION_CHANNEL,
    MAX_BATCH,
};
use aies_guest::{
    arg, batch_answer, count_by, error, execute, finish_tasks, parse_body, redis, release_inflight,
    stored_task, DB_TASKS,
};
use anyhow::{bail, Result};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

#[http_component]
async fn handle(req: Request) -> Response {
    let batch = match (req.method(), req.path()) {
        (Method::Post, "/store") => false,
        (Method::Post, "/store/batch") => true,
        _ => return error(404, "store serves POST /store and POST /store/batch"),
    };
    let items = if batch {
        match parse_body::<StoreBatch>(&req) {
            Ok(b) if b.items.len() <= MAX_BATCH => b.items,
            Ok(_) => return error(400, format!("a batch holds at most {MAX_BATCH} items")),
            Err(e) => return e.into(),
        }
    } else {
        match parse_body::<StoreRequest>(&req) {
            Ok(item) => vec![item],
            Err(e) => return e.into(),
        }
    };
    let results = match store_all(items) {
        Ok(r) => r,
        Err(e) => return error(503, format!("{e:#}")),
    };
    batch_answer(batch, results)
}

/// The fields an outcome writes into its task record.
fn record(req: &StoreRequest) -> (TaskStatus, Vec<(&str, &str)>) {
    let (status, mut fields) = match &req.outcome {
        Outcome::Success { result, model } => (
            TaskStatus::Success,
            vec![("result", result.as_str()), ("model", model.as_str())],
        ),
        Outcome::Failure { error } => (TaskStatus::Failure, vec![("error", error.as_str())]),
    };
    fields.extend([
        ("status", status.as_str()),
        ("prompt", req.prompt.as_str()),
        ("tenant", req.tenant.as_str()),
    ]);
    if req.dead_lettered {
        fields.push(("dead_lettered", "1"));
    }
    (status, fields)
}

/// Records every outcome in one Redis script and announces the new ones
/// in another; an item already recorded (a redelivered event) gets the
/// stored task back unchanged.
fn store_all(items: Vec<StoreRequest>) -> Result<Vec<BatchAnswer>> {
    let conn = redis(DB_TASKS)?;
    let valid: Vec<&StoreRequest> = items
        .iter()
        .filter(|r| valid_task_id(&r.task_id) && valid_tenant(&r.tenant))
        .collect();
    let records: Vec<_> = valid.iter().map(|r| record(r)).collect();
    let tasks: Vec<(&str, &[(&str, &str)])> = valid
        .iter()
        .zip(&records)
        .map(|(r, (_, fields))| (r.task_id.as_str(), &fields[..]))
        .collect();
    let claimed = finish_tasks(&conn, &tasks)?;

    let mut answers = Vec::with_capacity(items.len());
    let mut notices = Vec::new();
    let mut fresh = Vec::new();
    let mut next = valid.iter().zip(&records).zip(claimed);
    for item in &items {
        if !valid_task_id(&item.task_id) || !valid_tenant(&item.tenant) {
            answers.push(BatchAnswer::failed(400, "invalid task_id or tenant"));
            continue;
        }
        let ((req, (status, _)), claimed) = next.next().expect("one per valid item");
        if !claimed {
            answers.push(BatchAnswer::done(stored_task(&conn, &req.task_id)?));
            continue;
        }
        let (result, model, error) = match &req.outcome {
            Outcome::Success { result, model } => (Some(result.clone()), Some(model.clone()), None),
            Outcome::Failure { error } => (None, None, Some(error.clone())),
        };
        answers.push(BatchAnswer::done(TaskResult {
            task_id: req.task_id.clone(),
            status: *status,
            result,
            error,
            model,
        }));
        // The cache fill runs apart (cache-fill, on the fill channel), so a
        // result never waits for an embedding. It clears the in-flight
        // marker once the cache holds the answer; until then repeats join
        // this task.
        notices.push(CompletionNotice {
            task_id: req.task_id.clone(),
            status: *status,
            tenant: req.tenant.clone(),
            scope: req.scope.clone(),
            fill_cache: req.use_cache && *status == TaskStatus::Success,
            traceparent: req.traceparent.clone(),
            published_ms: Some(aies_guest::now_ms()),
            api: req.api,
        });
        fresh.push(*req);
    }
    let successes = notices
        .iter()
        .filter(|n| n.status == TaskStatus::Success)
        .count() as i64;
    count_by("tasks_success", successes);
    count_by("tasks_failure", notices.len() as i64 - successes);

    let listeners = publish(&conn, &notices).unwrap_or_else(|e| {
        aies_guest::log!("completion notices failed: {e:#}");
        vec![0; notices.len()]
    });
    for ((req, notice), listeners) in fresh.iter().zip(&notices).zip(listeners) {
        if req.use_cache && (!notice.fill_cache || listeners == 0) {
            if let Err(e) = release_inflight(&req.task_id, &req.tenant, &req.scope, &req.prompt) {
                aies_guest::log_line(
                    req.traceparent.as_deref(),
                    format_args!("task {}: in-flight marker not cleared: {e:#}", req.task_id),
                );
            }
        }
    }
    Ok(answers)
}

/// Publishes the notices in one script, those to fill the cache on their
/// lane's fill channel too; answers how many cache fillers received each.
fn publish(conn: &Connection, notices: &[CompletionNotice]) -> Result<Vec<i64>> {
    const SCRIPT: &str = r#"
local out = {}
for i = 2, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[1], ARGV[i + 1])
  out[#out + 1] = ARGV[i] ~= '' and redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) or 0
end
return out"#;
    if notices.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec![
        arg(SCRIPT),
        RedisParameter::Int64(0),
        arg(COMPLETION_CHANNEL),
    ];
    for n in notices {
        args.push(arg(fill_channel(n)));
        args.push(arg(serde_json::to_vec(n)?));
    }
    execute(conn, "EVAL", &args)?
        .iter()
        .map(|r| match r {
            RedisResult::Int64(n) => Ok(*n),
            other => bail!("PUBLISH answered {other:?}"),
        })
        .collect()
}

/// The channel a notice's cache fill goes on ("" for none).
fn fill_channel(notice: &CompletionNotice) -> &'static str {
    match (notice.fill_cache, notice.api) {
        (false, _) => "",
        (true, true) => API_CACHE_FILL_CHANNEL,
        (true, false) => CACHE_FILL_CHANNEL,
    }
}
