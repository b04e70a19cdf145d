//! Calls llm-invoke for the relay, several events per request.
//!
//! Events that become ready (their key's previous event is done) within
//! `linger` of each other are sent together to `POST /invoke/batch`, up to
//! a number of events and of bytes. Each event gets its own answer, so
//! retries, dead letters and per-key order stay per event. A batch refused
//! as a whole for good (a 4xx: too large, malformed) is split and each
//! event sent alone, so that an event is dead-lettered only for its own
//! fault; a batch that fails for a while (5xx, timeout) fails each of its
//! events the same way, to be retried.

use aies_contract::{
    BatchAnswer, BatchResponse, FailRequest, InvokeBatch, InvokeRequest, TaskResult,
};
use anyhow::anyhow;
use reqwest::StatusCode;
use tokio::sync::{mpsc, oneshot};

use crate::config::Secret;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

pub enum InvokeError {
    /// Try again later: the app or the network is down, or it asked us to.
    Transient(anyhow::Error),
    /// The app refused the event itself.
    Permanent(anyhow::Error),
}

impl InvokeError {
    /// The error an answer with this status stands for.
    pub(crate) fn from_status(status: StatusCode, message: String) -> Self {
        let e = anyhow!(
            "llm-invoke answered {status}: {}",
            message.chars().take(300).collect::<String>()
        );
        let transient = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        if transient {
            Self::Transient(e)
        } else {
            Self::Permanent(e)
        }
    }

    /// The same error for another event of a failed batch.
    fn copy(&self) -> Self {
        match self {
            Self::Transient(e) => Self::Transient(anyhow!("{e:#}")),
            Self::Permanent(e) => Self::Permanent(anyhow!("{e:#}")),
        }
    }
}

type Reply = oneshot::Sender<Result<TaskResult, InvokeError>>;
type Job = (InvokeRequest, Reply);

/// How large one `/invoke/batch` request may grow, and how long it waits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub events: usize,
    pub bytes: usize,
    pub linger: Duration,
}

/// Bytes an event adds to a batch's body.
fn size(event: &InvokeRequest) -> usize {
    serde_json::to_vec(event).map_or(usize::MAX, |v| v.len() + 1)
}

/// Takes jobs from `queue` into one batch: `first`, then what arrives
/// within the linger while it fits. A job that does not fit is returned,
/// to start the next batch.
async fn gather(
    first: Job,
    queue: &mut mpsc::UnboundedReceiver<Job>,
    limits: Limits,
) -> (Vec<Job>, Option<Job>) {
    let deadline = tokio::time::Instant::now() + limits.linger;
    let mut bytes = size(&first.0);
    let mut batch = vec![first];
    while batch.len() < limits.events {
        match tokio::time::timeout_at(deadline, queue.recv()).await {
            Ok(Some(job)) => {
                let more = size(&job.0);
                if bytes.saturating_add(more) > limits.bytes {
                    return (batch, Some(job));
                }
                bytes += more;
                batch.push(job);
            }
            _ => break,
        }
    }
    (batch, None)
}

#[derive(Clone)]
pub struct Invoker {
    jobs: mpsc::UnboundedSender<(InvokeRequest, Reply)>,
    http: reqwest::Client,
    fail_url: String,
    token: Secret,
}

impl Invoker {
    /// `url` is llm-invoke's `/invoke`; batches go to `<url>/batch`.
    pub fn start(
        http: reqwest::Client,
        url: &str,
        token: Secret,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let batch_url = format!("{}/batch", url.trim_end_matches('/'));
        let fail_url = format!("{}/fail", url.trim_end_matches('/'));
        let (client, fail_token) = (http.clone(), token.clone());
        let limits = Limits {
            events: limits.events.clamp(1, aies_contract::MAX_BATCH),
            ..limits
        };
        tokio::spawn(async move {
            let mut next = None;
            loop {
                let first = match next.take() {
                    Some(job) => job,
                    None => match queue.recv().await {
                        Some(job) => job,
                        None => break,
                    },
                };
                let (batch, rest) = gather(first, &mut queue, limits).await;
                next = rest;
                metrics.invoke_batch_events.observe(batch.len() as f64);
                let (http, url, token) = (http.clone(), batch_url.clone(), token.clone());
                tokio::spawn(send(http, url, token, batch, metrics.clone()));
            }
        });
        Self {
            jobs,
            http: client,
            fail_url,
            token: fail_token,
        }
    }

    /// Records that `event` was dead-lettered for `reason` (`POST
    /// /invoke/fail`): its task says FAILURE and its coalescing marker is
    /// released.
    pub async fn fail(&self, event: &InvokeRequest, reason: &str) -> anyhow::Result<TaskResult> {
        let body = FailRequest {
            event: event.clone(),
            error: reason.to_string(),
        };
        let response = self
            .http
            .post(&self.fail_url)
            .bearer_auth(self.token.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| anyhow!("POST {}: {e}", self.fail_url))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let text: String = text.chars().take(300).collect();
            return Err(anyhow!("llm-invoke answered {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| anyhow!("llm-invoke answered non-JSON: {e}"))
    }

    pub async fn invoke(&self, request: InvokeRequest) -> Result<TaskResult, InvokeError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((request, reply))
            .map_err(|_| InvokeError::Transient(anyhow!("the invoker has stopped")))?;
        answer
            .await
            .unwrap_or_else(|_| Err(InvokeError::Transient(anyhow!("the batch was dropped"))))
    }
}

async fn send(
    http: reqwest::Client,
    url: String,
    token: Secret,
    batch: Vec<Job>,
    metrics: Arc<Metrics>,
) {
    let (events, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let alone = events.len() > 1;
    let batch = InvokeBatch { events };
    match call(&http, &url, &token, &batch).await {
        Ok(results) if results.len() == replies.len() => {
            for (reply, answer) in replies.into_iter().zip(results) {
                let _ = reply.send(outcome(answer));
            }
        }
        Ok(results) => {
            let e = InvokeError::Permanent(anyhow!(
                "llm-invoke answered {} results for {} events",
                results.len(),
                replies.len()
            ));
            for reply in replies {
                let _ = reply.send(Err(e.copy()));
            }
        }
        // Refused as a whole for good: which event's fault is it? Each
        // alone says.
        Err(InvokeError::Permanent(e)) if alone => {
            tracing::warn!(
                events = batch.events.len(),
                "batch refused ({e:#}); sending its events one by one"
            );
            metrics.invoke_batches_split.inc();
            let singles = batch.events.into_iter().zip(replies).map(|(event, reply)| {
                let (http, url, token) = (http.clone(), url.clone(), token.clone());
                async move {
                    let one = InvokeBatch {
                        events: vec![event],
                    };
                    let answer = call(&http, &url, &token, &one)
                        .await
                        .and_then(|mut results| match results.pop() {
                            Some(answer) if results.is_empty() => outcome(answer).map(Some),
                            _ => Ok(None),
                        });
                    let _ = reply.send(match answer {
                        Ok(Some(task)) => Ok(task),
                        Ok(None) => Err(InvokeError::Permanent(anyhow!(
                            "llm-invoke answered a batch of one with another count of results"
                        ))),
                        Err(e) => Err(e),
                    });
                }
            });
            futures::future::join_all(singles).await;
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.copy()));
            }
        }
    }
}

fn outcome(answer: BatchAnswer) -> Result<TaskResult, InvokeError> {
    match answer {
        BatchAnswer {
            task: Some(task), ..
        } => Ok(task),
        BatchAnswer { status, error, .. } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(InvokeError::from_status(status, error.unwrap_or_default()))
        }
    }
}

async fn call(
    http: &reqwest::Client,
    url: &str,
    token: &Secret,
    batch: &InvokeBatch,
) -> Result<Vec<BatchAnswer>, InvokeError> {
    let mut request = http.post(url).json(batch);
    if !token.expose().is_empty() {
        request = request.bearer_auth(token.expose());
    }
    let response = request
        .send()
        .await
        .map_err(|e| InvokeError::Transient(anyhow!("POST {url}: {e}")))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| InvokeError::Transient(anyhow!("reading the answer: {e}")))?;
    if !status.is_success() {
        return Err(InvokeError::from_status(
            status,
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    serde_json::from_slice::<BatchResponse>(&body)
        .map(|r| r.results)
        .map_err(|e| InvokeError::Permanent(anyhow!("llm-invoke answered non-JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aies_contract::TaskStatus;

    fn answer(status: u16, task: Option<TaskResult>) -> BatchAnswer {
        BatchAnswer {
            status,
            task,
            error: Some("why".into()),
        }
    }

    #[test]
    fn each_answer_of_a_batch_stands_for_its_own_event() {
        let task = TaskResult {
            task_id: "t-1".into(),
            status: TaskStatus::Success,
            result: Some("42".into()),
            error: None,
            model: None,
        };
        assert!(matches!(outcome(answer(200, Some(task))), Ok(t) if t.task_id == "t-1"));
        assert!(matches!(
            outcome(answer(422, None)),
            Err(InvokeError::Permanent(_))
        ));
        assert!(matches!(
            outcome(answer(503, None)),
            Err(InvokeError::Transient(_))
        ));
        // A status that is no status is the app's fault, not the event's.
        assert!(matches!(
            outcome(answer(0, None)),
            Err(InvokeError::Transient(_))
        ));
    }

    fn job(prompt_bytes: usize) -> Job {
        let event = InvokeRequest {
            task_id: "t".into(),
            prompt: "x".repeat(prompt_bytes),
            tenant: "default".into(),
            use_cache: true,
            generation: Default::default(),
            final_attempt: false,
            traceparent: None,
            api: false,
        };
        (event, oneshot::channel().0)
    }

    /// Batches close at their count or their bytes; the event that does
    /// not fit starts the next one, and one event larger than the limit
    /// still goes, alone.
    #[tokio::test]
    async fn batches_are_bounded_by_count_and_bytes() {
        let limits = Limits {
            events: 3,
            bytes: 10_000,
            linger: Duration::from_millis(50),
        };
        let (tx, mut queue) = mpsc::unbounded_channel();
        for n in [100, 100, 100, 100] {
            tx.send(job(n)).unwrap();
        }
        let first = queue.recv().await.unwrap();
        let (batch, rest) = gather(first, &mut queue, limits).await;
        assert_eq!((batch.len(), rest.is_none()), (3, true));
        let (batch, rest) = gather(queue.recv().await.unwrap(), &mut queue, limits).await;
        assert_eq!(
            (batch.len(), rest.is_none()),
            (1, true),
            "the fourth, after the linger"
        );

        for n in [4_000, 4_000, 4_000, 20_000, 100] {
            tx.send(job(n)).unwrap();
        }
        let (batch, rest) = gather(queue.recv().await.unwrap(), &mut queue, limits).await;
        assert_eq!(batch.len(), 2, "two 4 KB events fit in 10 KB, not three");
        let (batch, rest) = gather(rest.unwrap(), &mut queue, limits).await;
        assert_eq!(
            batch.len(),
            1,
            "the 20 KB event does not join the third 4 KB one"
        );
        let (batch, rest) = gather(rest.unwrap(), &mut queue, limits).await;
        assert_eq!(batch[0].0.prompt.len(), 20_000);
        assert_eq!(batch.len(), 1, "a large event goes alone");
        let (batch, rest) = gather(rest.unwrap(), &mut queue, limits).await;
        assert_eq!((batch.len(), rest.is_none()), (1, true));
    }

    #[test]
    fn a_long_error_body_is_cut_in_the_reason() {
        let e = InvokeError::from_status(StatusCode::BAD_REQUEST, "x".repeat(1000));
        let InvokeError::Permanent(e) = e else {
            panic!("400 is permanent")
        };
        let text = e.to_string();
        assert!(
            text.starts_with("llm-invoke answered 400 Bad Request: "),
            "{text}"
        );
        assert_eq!(text.matches('x').count(), 300);
    }
}
