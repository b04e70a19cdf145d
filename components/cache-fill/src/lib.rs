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
//! API tasks' notices come on their own channel (`..:cache_fill:api`), so
//! that a backlog of the batch lane's never delays them. A batch-lane fill
//! that waited longer than `cache_fill_max_wait_secs` (60 by default) since
//! store published it is shed: not embedded nor inserted, only counted
//! (`cache_fills_shed`), so that under a backlog the fills catch up with
//! the present instead of falling minutes behind; its prompt misses once
//! more later. The wait of the last fill of each lane is kept
//! (`cache_fill_wait_ms_api`, `.._batch`) for `/metrics` and the dashboard.
//!
//! Every app instance subscribed to the channels hears every notice (that
//! is pub/sub): the first to claim the task (`aies:fill_claim:<task>`, SET
//! NX, 15 min) fills, the others return at once, so `--scale app=N` does
//! not embed and insert each answer N times.
//!
//! Pub/sub delivers at most once: a notice published while no host is
//! subscribed is lost. That costs one future miss (the next ask of the
//! prompt calls the LLM again), never a result; the marker then expires on
//! its own (15 min) and until then repeats join the finished task.

use aies_contract::keys::{fill_claim_key, DB_CACHE, DB_COORDINATION, METRICS_KEY};
use aies_contract::{
    valid_task_id, valid_tenant, vector_key, CompletionNotice, InsertRequest, StashedVector,
};
use aies_guest::{
    arg, count, execute, now_ms, redis, release_inflight, var_parsed, TaskRecord, DB_TASKS,
};
use anyhow::{bail, Context, Result};
use spin_sdk::redis::{RedisParameter, RedisResult};
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
    if !claim(&notice.task_id)? {
        return Ok(());
    }
    let conn = redis(DB_TASKS)?;
    let record = TaskRecord::read(&conn, &notice.task_id)?;
    let (Some(prompt), Some(result)) = (record.get("prompt"), record.get("result")) else {
        bail!("task {} has no prompt or result to cache", notice.task_id);
    };
    let waited = notice
        .published_ms
        .map_or(0, |at| now_ms().saturating_sub(at));
    note_wait(notice.api, waited);
    let filled = if !notice.api && waited > max_wait_ms() {
        count("cache_fills_shed");
        Ok(())
    } else {
        fill(&notice, &prompt, &result).await
    };
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

/// How long a fill claim holds: as long as the in-flight marker it clears.
const CLAIM_SECS: i64 = 15 * 60;

/// Whether this instance is the first to claim `task`'s fill.
fn claim(task: &str) -> Result<bool> {
    let args = [
        arg(fill_claim_key(task)),
        arg("1"),
        arg("NX"),
        arg("EX"),
        RedisParameter::Int64(CLAIM_SECS),
    ];
    let reply = execute(&redis(DB_COORDINATION)?, "SET", &args)?;
    Ok(matches!(reply.first(), Some(RedisResult::Status(_))))
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

/// How long a batch-lane fill may wait before it is shed.
fn max_wait_ms() -> u64 {
    var_parsed::<u64>("cache_fill_max_wait_secs")
        .unwrap_or(60)
        .saturating_mul(1000)
}

/// Keeps how long this lane's latest fill waited (a gauge of the metrics
/// hash); errors only logged.
fn note_wait(api: bool, waited_ms: u64) {
    let field = if api {
        "cache_fill_wait_ms_api"
    } else {
        "cache_fill_wait_ms_batch"
    };
    let set = redis(DB_CACHE).and_then(|c| {
        execute(
            &c,
            "HSET",
            &[arg(METRICS_KEY), arg(field), arg(waited_ms.to_string())],
        )
    });
    if let Err(e) = set {
        aies_guest::log!("metrics: {e:#}");
    }
}
