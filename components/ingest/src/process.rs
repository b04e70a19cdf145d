//! `POST /process` and `POST /process/batch`: each prompt is answered from
//! the cache, joins a running task for the same prompt, or becomes a new
//! task handed to the bridge.

use crate::cache::{cached, join_inflight, stash_vector, Lookup};
use crate::enqueue::{enqueue, Enqueue};
use crate::request::{batch_items, check, object_body, MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES};
use crate::{idempotency, keys};
use aies_contract::{CacheHit, CacheTier, ProcessRequest, TaskStatus};
use aies_guest::{count, json, llm_model_id, release_inflight, scope_id, ApiError};
use serde_json::{json as j, Value};
use spin_sdk::http::{IntoResponse, Request, Response};

/// Prompts of one batch looked up at once.
const BATCH_CONCURRENCY: usize = 16;

/// `POST /process`: one prompt.
pub async fn process(req: Request) -> Result<Response, ApiError> {
    count("requests");
    let checked = keys::tenant(&req).and_then(|tenant| {
        let body = check(object_body(req.body(), MAX_BODY_BYTES)?)?;
        Ok((body, tenant))
    });
    let (body, tenant) = checked.inspect_err(|_| count("bad_requests"))?;
    idempotency::once(&req, &tenant, async {
        answer(body, &tenant).await.into_response()
    })
    .await
}

/// `POST /process/batch` `{"requests": [<POST /process body>, ...]}`: one
/// task per prompt; each result, in its place, is `{"http_status", "body"}`:
/// what `POST /process` would have answered.
pub async fn process_batch(req: Request) -> Result<Response, ApiError> {
    use futures::StreamExt;
    let tenant = keys::tenant(&req)?;
    let items = batch_items(object_body(req.body(), MAX_BATCH_BODY_BYTES)?)?;
    idempotency::once(&req, &tenant, async {
        let tenant = tenant.as_str();
        let results: Vec<Value> = futures::stream::iter(items)
            .map(|item| async move {
                count("requests");
                let answered = match check(item) {
                    Ok(body) => answer(body, tenant).await,
                    Err(e) => {
                        count("bad_requests");
                        Err(e)
                    }
                };
                let (status, body) = match answered {
                    Ok(a) => (a.status(), a.body()),
                    Err(e) => (e.status, e.body()),
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

/// How a checked prompt was answered.
pub enum Answered {
    /// From the cache (200).
    Hit(CacheHit),
    /// By joining the running task for the same prompt (202).
    Joined { task_id: String, status: TaskStatus },
    /// By a new task, recorded and handed to the bridge (202).
    Queued { task_id: String },
}

impl Answered {
    pub fn status(&self) -> u16 {
        match self {
            Answered::Hit(_) => 200,
            Answered::Joined { .. } | Answered::Queued { .. } => 202,
        }
    }

    /// The body `POST /process` answers with.
    pub fn body(&self) -> Value {
        match self {
            Answered::Hit(hit) => j!({
                "status": "SUCCESS",
                "cached": true,
                "cache": {
                    "tier": hit.tier,
                    "similarity": hit.similarity,
                    "matched_prompt": hit.prompt,
                    "entry": hit.entry,
                    "scope": hit.scope,
                    "judge_score": hit.judge_score,
                },
                "similarity": hit.similarity,
                "result": hit.result,
                "task_id": hit.task_id,
            }),
            Answered::Joined { task_id, status } => {
                j!({"task_id": task_id, "status": status, "coalesced": true})
            }
            Answered::Queued { task_id } => j!({"task_id": task_id, "status": "PENDING"}),
        }
    }
}

impl IntoResponse for Answered {
    fn into_response(self) -> Response {
        json(self.status(), &self.body())
    }
}

/// One checked prompt: the cache, a running task to join, or a new task.
pub async fn answer(body: ProcessRequest, tenant: &str) -> Result<Answered, ApiError> {
    let scope = scope_id(
        &llm_model_id().map_err(|e| ApiError::internal(&e))?,
        &body.generation(),
    );
    let mut vector = None;
    if body.use_cache {
        match cached(&body, tenant, &scope).await {
            Ok(Lookup::Hit(hit)) => {
                count("cache_hits");
                count(match hit.tier {
                    CacheTier::Exact => "cache_hits_exact",
                    CacheTier::Semantic => "cache_hits_semantic",
                });
                return Ok(Answered::Hit(hit));
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
                return Ok(Answered::Joined {
                    task_id: running,
                    status,
                });
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
        Ok(()) => Ok(Answered::Queued { task_id }),
        Err(Enqueue::NotRecorded(e)) => {
            aies_guest::log!("task not recorded: {e:#}");
            Err(ApiError::new(
                503,
                format!("could not record the task: {e:#}"),
            ))
        }
        // The task exists, as FAILURE: give its id, so it can be looked up.
        Err(Enqueue::Refused(e)) => {
            aies_guest::log!("enqueue failed: {e:#}");
            Err(
                ApiError::new(503, format!("could not enqueue the task: {e:#}"))
                    .with_field("task_id", task_id)
                    .with_field("status", "FAILURE"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_their_bodies() {
        let hit = Answered::Hit(CacheHit {
            tier: CacheTier::Semantic,
            prompt: "What's Rust?".into(),
            result: "A language.".into(),
            similarity: 0.5,
            task_id: "t0".into(),
            entry: "aies:cache:m:default:ab:cd".into(),
            scope: "ab".into(),
            judge_score: Some(0.75),
        });
        assert_eq!(hit.status(), 200);
        assert_eq!(
            hit.body().to_string(),
            r#"{"cache":{"entry":"aies:cache:m:default:ab:cd","judge_score":0.75,"matched_prompt":"What's Rust?","scope":"ab","similarity":0.5,"tier":"semantic"},"cached":true,"result":"A language.","similarity":0.5,"status":"SUCCESS","task_id":"t0"}"#
        );
        let joined = Answered::Joined {
            task_id: "t1".into(),
            status: TaskStatus::Started,
        };
        assert_eq!(joined.status(), 202);
        assert_eq!(
            joined.body().to_string(),
            r#"{"coalesced":true,"status":"STARTED","task_id":"t1"}"#
        );
        let queued = Answered::Queued {
            task_id: "t2".into(),
        };
        let resp = queued.into_response();
        assert_eq!(*resp.status(), 202);
        assert_eq!(resp.body(), br#"{"status":"PENDING","task_id":"t2"}"#);
    }
}
