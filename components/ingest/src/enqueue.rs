//! A new task: recorded as PENDING (DB 2), then handed to the bridge for
//! the API lane.

use aies_contract::keys::DB_TASKS;
use aies_contract::{ProcessRequest, RawEvent, TaskStatus, EVENT_VERSION};
use aies_guest::{call_as, count, now_ms, redis, var, write_task};
use anyhow::Result;

/// Why a task was not handed on.
pub enum Enqueue {
    /// Nothing was written: Redis could not be reached.
    NotRecorded(anyhow::Error),
    /// The task was recorded, the bridge did not take it: it is now FAILURE.
    Refused(anyhow::Error),
}

/// Records the task as PENDING, then hands the event to the bridge. If the
/// bridge does not take it, the record says FAILURE, so no task is left
/// PENDING forever.
pub async fn enqueue(task_id: &str, body: ProcessRequest, tenant: String) -> Result<(), Enqueue> {
    let url = var("bridge_url")
        .map(|base| format!("{base}/enqueue"))
        .map_err(Enqueue::NotRecorded)?;
    // The bridge takes events only from holders of its token.
    let token = var("enqueue_token").map_err(Enqueue::NotRecorded)?;
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
    let token = Some(token.as_str()).filter(|t| !t.is_empty());
    if let Err(e) = call_as::<_, serde_json::Value>(&url, token, &event).await {
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
