//! store: `POST /store`, the end of the pipeline for one task.
//!
//! Writes the outcome into the task record (Redis DB 2) exactly once: the
//! first writer claims the record with `HSETNX finished_at` and writes its
//! fields in the same Lua script, and any later write for the same task (a
//! redelivered event) gets the stored result back unchanged. Then it
//! announces the completion on the `ai_eventstream:task_completed` channel,
//! where the cache-fill component picks up answers for the semantic cache.

use aies_contract::{
    valid_task_id, valid_tenant, CompletionNotice, Outcome, StoreRequest, TaskResult, TaskStatus,
    COMPLETION_CHANNEL,
};
use aies_guest::{
    arg, count, error, execute, finish_task, json, parse_body, redis, release_inflight,
    stored_task, DB_TASKS,
};
use anyhow::{bail, Result};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::redis::{Connection, RedisResult};

#[http_component]
async fn handle(req: Request) -> Response {
    if *req.method() != Method::Post || req.path() != "/store" {
        return error(404, "store serves POST /store");
    }
    let body: StoreRequest = match parse_body(&req) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if !valid_task_id(&body.task_id) || !valid_tenant(&body.tenant) {
        return error(400, "invalid task_id or tenant");
    }
    match store(body) {
        Ok(task) => json(200, &task),
        Err(e) => error(503, format!("{e:#}")),
    }
}

fn store(req: StoreRequest) -> Result<TaskResult> {
    let conn = redis(DB_TASKS)?;
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
    if !finish_task(&conn, &req.task_id, &fields)? {
        return stored_task(&conn, &req.task_id);
    }
    count(match status {
        TaskStatus::Success => "tasks_success",
        _ => "tasks_failure",
    });

    // The cache fill runs apart (cache-fill, on the completion channel), so
    // a result never waits for an embedding. It clears the in-flight marker
    // once the cache holds the answer; until then repeats join this task.
    let fill_cache = req.use_cache && status == TaskStatus::Success;
    let notice = CompletionNotice {
        task_id: req.task_id.clone(),
        status,
        tenant: req.tenant.clone(),
        scope: req.scope.clone(),
        fill_cache,
    };
    let listeners = publish(&conn, &notice).unwrap_or_else(|e| {
        eprintln!("task {}: completion notice failed: {e:#}", req.task_id);
        0
    });
    if req.use_cache && (!fill_cache || listeners == 0) {
        if let Err(e) = release_inflight(&req.task_id, &req.tenant, &req.scope, &req.prompt) {
            eprintln!("task {}: in-flight marker not cleared: {e:#}", req.task_id);
        }
    }
    stored_task(&conn, &req.task_id)
}

/// Publishes the notice; answers how many subscribers received it.
fn publish(conn: &Connection, notice: &CompletionNotice) -> Result<i64> {
    let payload = serde_json::to_vec(notice)?;
    let args = [arg(COMPLETION_CHANNEL), arg(payload)];
    match execute(conn, "PUBLISH", &args)?.first() {
        Some(RedisResult::Int64(n)) => Ok(*n),
        other => bail!("PUBLISH answered {other:?}"),
    }
}
