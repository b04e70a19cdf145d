//! `GET /task/{id}[?wait=N]`: a task as its tenant sees it, now or, with
//! `wait`, as soon as it is final (a long poll).

use crate::keys;
use aies_contract::keys::DB_TASKS;
use aies_contract::{valid_task_id, TaskResult, DEFAULT_TENANT};
use aies_guest::{json, redis, sleep, ApiError, TaskRecord};
use anyhow::Result;
use spin_sdk::http::{Request, Response};

/// Longest `GET /task/{id}?wait=N` may wait, in seconds.
const MAX_WAIT_SECS: u64 = 30;
/// How often a waiting request looks at the task again.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// `GET /task/{id}[?wait=N]`: the task now, or, with `wait`, as soon as it
/// is final (at most N seconds, then as it is).
pub async fn task(req: &Request, id: &str) -> Result<Response, ApiError> {
    if !valid_task_id(id) {
        return Err(ApiError::bad_request("invalid task id"));
    }
    let tenant = keys::tenant(req)?;
    let wait = std::time::Duration::from_secs(wait_secs(req.query())?);
    // A long poll takes one of the waiting requests' places.
    let _place = if wait.is_zero() {
        None
    } else {
        Some(crate::waits::begin(&tenant, wait)?)
    };
    match wait_for(id, &tenant, wait).await {
        Ok(Some(task)) => Ok(json(200, &task)),
        Ok(None) => Err(ApiError::not_found(format!("no task {id}"))),
        Err(e) => Err(ApiError::unavailable(&e)),
    }
}

/// The task once it is final, or as it is after `wait`; `None` when there
/// is no such task (or it is another tenant's).
pub async fn wait_for(
    id: &str,
    tenant: &str,
    wait: std::time::Duration,
) -> Result<Option<TaskResult>> {
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
pub fn tenant_task(id: &str, tenant: &str) -> Result<Option<TaskResult>> {
    let record = TaskRecord::read(&redis(DB_TASKS)?, id)?;
    let owner = record
        .get("tenant")
        .unwrap_or_else(|| DEFAULT_TENANT.to_string());
    Ok(record.task(id).filter(|_| owner == tenant))
}

/// The `wait` query parameter: whole seconds, 0 to [`MAX_WAIT_SECS`].
fn wait_secs(query: &str) -> Result<u64, ApiError> {
    let Some(value) = query.split('&').find_map(|pair| pair.strip_prefix("wait=")) else {
        return Ok(0);
    };
    match value.parse::<u64>() {
        Ok(n) if n <= MAX_WAIT_SECS => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "wait must be whole seconds from 0 to {MAX_WAIT_SECS}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_whole_seconds_up_to_30() {
        assert_eq!(wait_secs("").unwrap(), 0);
        assert_eq!(wait_secs("wait=30").unwrap(), 30);
        assert_eq!(wait_secs("x=1&wait=5").unwrap(), 5);
        for bad in ["wait=31", "wait=-1", "wait=1.5", "wait="] {
            let e = wait_secs(bad).unwrap_err();
            assert_eq!(
                (e.status, e.message.as_str()),
                (400, "wait must be whole seconds from 0 to 30"),
                "{bad}"
            );
        }
    }
}
