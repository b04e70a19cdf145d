//! store: `POST /store`, the end of the pipeline for one task.
//!
//! Writes the outcome into the task record (Redis DB 2) exactly once: the
//! first writer claims the record with `HSETNX finished_at` and writes its
//! fields in the same Lua script, and any later write for the same task (a
//! redelivered event) gets the stored result back unchanged. Then it fills
//! the semantic cache (best effort: a cache that cannot be filled costs a
//! future hit, not this result) and announces the completion on the
//! `ai_eventstream:task_completed` channel. Requests for the same prompt
//! that joined the task while it ran (coalescing) are released.

use aies_contract::{
    valid_task_id, valid_tenant, EmbedRequest, EmbedResponse, InsertRequest, Outcome, StoreRequest,
    TaskResult, TaskStatus, COMPLETION_CHANNEL,
};
use aies_guest::{
    call, count, error, finish_task, json, parse_body, redis, release_inflight, stage_url,
    stored_task, DB_TASKS,
};
use anyhow::{bail, Result};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

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
    match store(body).await {
        Ok(task) => json(200, &task),
        Err(e) => error(503, format!("{e:#}")),
    }
}

async fn store(req: StoreRequest) -> Result<TaskResult> {
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

    if let (Outcome::Success { result, .. }, true) = (&req.outcome, req.use_cache) {
        if let Err(e) = fill_cache(&req, result).await {
            eprintln!("task {}: cache fill failed: {e:#}", req.task_id);
        }
    }
    // Requests that joined this task already have its id; new ones may now
    // use the cache (or start a task of their own).
    if req.use_cache {
        if let Err(e) = release_inflight(&req.task_id, &req.tenant, &req.scope, &req.prompt) {
            eprintln!("task {}: in-flight marker not cleared: {e:#}", req.task_id);
        }
    }
    let notice = serde_json::json!({"task_id": req.task_id, "status": status});
    if let Err(e) = conn.publish(COMPLETION_CHANNEL, &serde_json::to_vec(&notice)?) {
        eprintln!("task {}: completion notice failed: {e}", req.task_id);
    }
    stored_task(&conn, &req.task_id)
}

async fn fill_cache(req: &StoreRequest, result: &str) -> Result<()> {
    let embedded: EmbedResponse = call(
        &stage_url("embed", "/embed"),
        &EmbedRequest {
            texts: vec![req.prompt.clone()],
        },
    )
    .await?;
    let Some(vector) = embedded.vectors.into_iter().next() else {
        bail!("embed returned no vector");
    };
    let _: serde_json::Value = call(
        &stage_url("cache-lookup", "/insert"),
        &InsertRequest {
            model: embedded.model,
            scope: req.scope.clone(),
            tenant: req.tenant.clone(),
            prompt: req.prompt.clone(),
            result: result.to_string(),
            task_id: req.task_id.clone(),
            vector,
        },
    )
    .await?;
    Ok(())
}
