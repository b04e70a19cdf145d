//! Writing responses through wasi:http's response outparam, and
//! `GET /task/{id}/events`: a task's state changes as server-sent events.
//!
//! Each change is one `event: status` whose `data` is the task as
//! `GET /task/{id}` shows it; the stream ends after a final state (SUCCESS
//! or FAILURE), or after [`MAX_STREAM`] (an `EventSource` reconnects by
//! itself), with a comment line every [`KEEP_ALIVE`] so proxies keep it open.

use crate::{keys, tasks::tenant_task};
use aies_contract::{valid_task_id, TaskResult};
use aies_guest::{sleep, ApiError};
use futures::SinkExt;
use spin_sdk::http::{Fields, OutgoingResponse, Request, Response, ResponseOutparam};
use std::time::{Duration, Instant};

/// Longest a stream stays open (the host stops a request after 120 s).
const MAX_STREAM: Duration = Duration::from_secs(60);
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// Sends a whole response (the request's counters written first).
pub async fn respond(out: ResponseOutparam, mut resp: Response) {
    aies_guest::flush_counts();
    let body = std::mem::take(resp.body_mut());
    match OutgoingResponse::try_from(resp) {
        Ok(outgoing) => {
            if let Err(e) = out.set_with_body(outgoing, body).await {
                aies_guest::log!("response not sent: {e}");
            }
        }
        Err(e) => aies_guest::log!("response not converted: {e}"),
    }
}

/// The task's tenant and the task as it is, before a stream starts.
fn first(req: &Request, id: &str) -> Result<(String, TaskResult), ApiError> {
    if !valid_task_id(id) {
        return Err(ApiError::bad_request("invalid task id"));
    }
    let tenant = keys::tenant(req)?;
    // Unknown (or another tenant's) tasks are a plain 404, not a stream.
    match tenant_task(id, &tenant) {
        Ok(Some(task)) => Ok((tenant, task)),
        Ok(None) => Err(ApiError::not_found(format!("no task {id}"))),
        Err(e) => Err(ApiError::unavailable(&e)),
    }
}

/// The `n`th event of a stream: the task as `GET /task/{id}` shows it.
fn status_event(n: u32, task: &TaskResult) -> String {
    let data = serde_json::to_string(task).unwrap_or_default();
    format!("id: {n}\nevent: status\ndata: {data}\n\n")
}

pub async fn stream(req: &Request, id: &str, out: ResponseOutparam) {
    let (tenant, mut task) = match first(req, id) {
        Ok(first) => first,
        Err(e) => return respond(out, e.into()).await,
    };
    let _place = match crate::waits::begin(&tenant, MAX_STREAM) {
        Ok(place) => place,
        Err(e) => return respond(out, e.into()).await,
    };
    let headers = Fields::from_list(&[
        ("content-type".to_owned(), b"text/event-stream".to_vec()),
        ("cache-control".to_owned(), b"no-cache".to_vec()),
    ]);
    let response = match headers {
        Ok(h) => OutgoingResponse::new(h),
        Err(e) => return respond(out, ApiError::new(500, format!("{e}")).into()).await,
    };
    let mut body = response.take_body();
    aies_guest::flush_counts();
    out.set(response);

    let started = Instant::now();
    let mut sent = 0u32;
    let mut last_status = None;
    let mut last_write = Instant::now();
    loop {
        if last_status != Some(task.status) {
            sent += 1;
            if body
                .send(status_event(sent, &task).into_bytes())
                .await
                .is_err()
            {
                return; // the client went away
            }
            last_status = Some(task.status);
            last_write = Instant::now();
        }
        if task.status.is_final() || started.elapsed() >= MAX_STREAM {
            break;
        }
        if last_write.elapsed() >= KEEP_ALIVE {
            if body.send(b": keep-alive\n\n".to_vec()).await.is_err() {
                return;
            }
            last_write = Instant::now();
        }
        sleep(POLL).await;
        task = match tenant_task(id, &tenant) {
            Ok(Some(t)) => t,
            Ok(None) => {
                let _ = body
                    .send(b"event: error\ndata: {\"error\":\"the task expired\"}\n\n".to_vec())
                    .await;
                break;
            }
            Err(e) => {
                let data = serde_json::json!({ "error": format!("{e:#}") });
                let _ = body
                    .send(format!("event: error\ndata: {data}\n\n").into_bytes())
                    .await;
                break;
            }
        };
    }
    let _ = body.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use aies_contract::TaskStatus;

    #[test]
    fn each_change_is_one_status_event() {
        let task = TaskResult {
            task_id: "t".into(),
            status: TaskStatus::Started,
            result: None,
            error: None,
            model: None,
        };
        assert_eq!(
            status_event(2, &task),
            "id: 2\nevent: status\ndata: {\"task_id\":\"t\",\"status\":\"STARTED\"}\n\n"
        );
    }
}
