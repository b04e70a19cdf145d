//! Calls llm-invoke for the relay, several events per request.
//!
//! Events that become ready (their key's previous event is done) within
//! `linger` of each other are sent together to `POST /invoke/batch`, up to
//! `max_batch`. Each event gets its own answer, so
//! retries, dead letters and per-key order stay per event; a request that
//! fails as a whole fails each of its events the same way.

use aies_contract::{BatchAnswer, BatchResponse, InvokeBatch, InvokeRequest, TaskResult};
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

#[derive(Clone)]
pub struct Invoker {
    jobs: mpsc::UnboundedSender<(InvokeRequest, Reply)>,
}

impl Invoker {
    /// `url` is llm-invoke's `/invoke`; batches go to `<url>/batch`.
    pub fn start(
        http: reqwest::Client,
        url: &str,
        token: Secret,
        max_batch: usize,
        linger: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (jobs, mut queue) = mpsc::unbounded_channel::<(InvokeRequest, Reply)>();
        let batch_url = format!("{}/batch", url.trim_end_matches('/'));
        let max_batch = max_batch.clamp(1, aies_contract::MAX_BATCH);
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + linger;
                while batch.len() < max_batch {
                    match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some(job)) => batch.push(job),
                        _ => break,
                    }
                }
                metrics.invoke_batch_events.observe(batch.len() as f64);
                let (http, url, token) = (http.clone(), batch_url.clone(), token.clone());
                tokio::spawn(send(http, url, token, batch));
            }
        });
        Self { jobs }
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
    batch: Vec<(InvokeRequest, Reply)>,
) {
    let (events, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    match call(&http, &url, &token, InvokeBatch { events }).await {
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
    batch: InvokeBatch,
) -> Result<Vec<BatchAnswer>, InvokeError> {
    let mut request = http.post(url).json(&batch);
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
