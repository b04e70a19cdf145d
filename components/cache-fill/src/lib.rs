//! cache-fill: puts finished answers into the semantic cache, off the
//! result path. Runs on Spin's Redis trigger, once per
//! [`CompletionNotice`] that store publishes on `ai_eventstream:cache_fill`.
//!
//! The prompt's vector is the one ingest computed when the cache missed
//! (`aies:vector:<task>`), so an API prompt is embedded once; events from
//! other producers have none and are embedded here. Spin offers local
//! service chaining only to components on its HTTP trigger, so this one
//! embeds and inserts itself, through the same libraries as the `embed` and
//! `cache-lookup` stages ([`aies_embedding`], [`aies_semantic_cache`]):
//! its manifest entry carries their variables, `ai_models` and hosts. Once the entry is in,
//! the prompt's in-flight marker is cleared: repeats that came while the
//! fill ran joined the finished task instead of starting another.
//!
//! Pub/sub delivers at most once: a notice published while no host is
//! subscribed is lost. That costs one future miss (the next ask of the
//! prompt calls the LLM again), never a result; the marker then expires on
//! its own (15 min) and until then repeats join the finished task.

use aies_contract::{
    valid_task_id, valid_tenant, vector_key, CompletionNotice, InsertRequest, StashedVector,
};
use aies_guest::{arg, count, execute, redis, release_inflight, TaskRecord, DB_TASKS};
use anyhow::{bail, Context, Result};
use spin_sdk::redis::RedisResult;
use spin_sdk::redis_component;

#[redis_component]
async fn on_message(message: Vec<u8>) -> Result<()> {
    let notice: CompletionNotice =
        serde_json::from_slice(&message).context("completion notice is not valid JSON")?;
    aies_guest::start_trace(notice.traceparent.as_deref());
    if !notice.fill_cache {
        return Ok(());
    }
    if !valid_task_id(&notice.task_id) || !valid_tenant(&notice.tenant) {
        bail!("completion notice with an invalid task_id or tenant");
    }
    let conn = redis(DB_TASKS)?;
    let record = TaskRecord::read(&conn, &notice.task_id)?;
    let (Some(prompt), Some(result)) = (record.get("prompt"), record.get("result")) else {
        bail!("task {} has no prompt or result to cache", notice.task_id);
    };
    let filled = fill(&notice, &prompt, &result).await;
    // Cleared either way: a fill that failed leaves the cache as it was,
    // and the next ask of the prompt starts a task of its own.
    if let Err(e) = release_inflight(&notice.task_id, &notice.tenant, &notice.scope, &prompt) {
        aies_guest::log!(
            "task {}: in-flight marker not cleared: {e:#}",
            notice.task_id
        );
    }
    filled.with_context(|| format!("task {}: cache fill failed", notice.task_id))
}

async fn fill(notice: &CompletionNotice, prompt: &str, result: &str) -> Result<()> {
    let StashedVector { model, vector } = match stashed_vector(&notice.task_id) {
        Some(v) => v,
        None => {
            count("cache_fill_embedded");
            let embedded = aies_embedding::embed(&[prompt.to_string()]).await?;
            let Some(vector) = embedded.vectors.into_iter().next() else {
                bail!("embed returned no vector");
            };
            StashedVector {
                model: embedded.model,
                vector,
            }
        }
    };
    aies_semantic_cache::insert(InsertRequest {
        model,
        scope: notice.scope.clone(),
        tenant: notice.tenant.clone(),
        prompt: prompt.to_string(),
        result: result.to_string(),
        task_id: notice.task_id.clone(),
        vector,
    })?;
    count("cache_fills");
    Ok(())
}

/// The vector ingest left for this task, taken (GETDEL) so it is used once.
fn stashed_vector(task_id: &str) -> Option<StashedVector> {
    let conn = redis(DB_TASKS).ok()?;
    let reply = execute(&conn, "GETDEL", &[arg(vector_key(task_id))]).ok()?;
    match reply.first()? {
        RedisResult::Binary(bytes) => serde_json::from_slice(bytes).ok(),
        _ => None,
    }
}
