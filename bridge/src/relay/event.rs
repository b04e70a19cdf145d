//! One event's life, from its payload to its [`Outcome`]:
//!
//! 1. The payload is parsed and checked; an unusable event is dead-lettered
//!    at once.
//! 2. Its invocation request gets a task id (the event's own, if valid,
//!    else one derived from where it first entered Kafka) and a tenant.
//! 3. Up to `max_attempts` invocations: a final result is published to the
//!    result topic; an event the app refuses is dead-lettered; a transient
//!    failure waits out an outage of the pipeline (not counted) or is
//!    retried after a backoff, and dead-lettered after the last attempt.
//! 4. A dead-lettered event's task is recorded as FAILURE in the app
//!    (`/invoke/fail`), so that nobody waits on it for ever.

use aies_contract::{InvokeRequest, TaskResult, TraceParent, CONSUMER_HEADER};
use anyhow::{anyhow, Result};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::request::{event_span, first_request, parse};
use super::{backoff, Relay, ShuttingDown};
use crate::dead_letter::dead_letter_headers;
use crate::invoker::InvokeError;
use crate::kafka::TRACEPARENT;
use crate::metrics::{LaneLabel, Metrics};

/// The consumer an event was read by, as its events see it.
pub(super) struct Owner {
    /// Written on each result (`aies_contract::CONSUMER_HEADER`).
    pub(super) name: String,
    /// Set when the broker stayed unreachable past the session timeout
    /// while this consumer was in the group: the group has presumably
    /// given its partitions to others, so its events write nothing more.
    pub(super) fenced: AtomicBool,
}

/// How one event's life ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Its final result is on the result topic.
    Done { first_try: bool },
    /// It is on the dead-letter topic (unusable, refused, or out of
    /// attempts).
    DeadLettered { first_try: bool },
    /// Shutdown came first: the event is not finished, so its offset must
    /// not be committed.
    Shutdown,
    /// Its consumer was fenced (the broker unreachable past the session
    /// timeout: its partitions presumed given to another bridge), so it
    /// writes nothing: the partition's new owner runs it.
    Lost,
}

impl Outcome {
    /// Whether the event ended after one attempt, with no wait for the
    /// pipeline to come back: only then is its time in a slot its own.
    pub(super) fn first_try(&self) -> bool {
        match self {
            Self::Done { first_try } | Self::DeadLettered { first_try } => *first_try,
            Self::Shutdown | Self::Lost => false,
        }
    }

    /// The counter of events that ended so; none for an unfinished one.
    pub(super) fn counter<'m>(
        &self,
        metrics: &'m Metrics,
    ) -> Option<&'m Family<LaneLabel, Counter>> {
        match self {
            Self::Done { .. } => Some(&metrics.succeeded),
            Self::DeadLettered { .. } => Some(&metrics.dead_lettered),
            Self::Shutdown | Self::Lost => None,
        }
    }
}

/// One invocation's answer, as the relay acts on it.
#[derive(Debug)]
enum Answer {
    /// A final result (success or the task's own failure): publish it.
    Final(TaskResult),
    /// The app refused the event itself: no retry can help.
    Refused(anyhow::Error),
    /// The app, the network or the task was not ready: may pass later.
    Transient(anyhow::Error),
}

fn judge(answer: Result<TaskResult, InvokeError>) -> Answer {
    match answer {
        Ok(result) if result.status.is_final() => Answer::Final(result),
        Ok(result) => Answer::Transient(anyhow!(
            "llm-invoke answered a task that is not final: {:?}",
            result.status
        )),
        Err(InvokeError::Permanent(e)) => Answer::Refused(e),
        Err(InvokeError::Transient(e)) => Answer::Transient(e),
    }
}

/// What follows a transient failure of attempt `attempt` of `attempts`.
#[derive(Debug, PartialEq, Eq)]
enum Retry {
    /// The pipeline was down and answers again: not this event's fault, so
    /// the same attempt runs again.
    Same,
    /// The next attempt, after a backoff.
    Next,
    /// No attempt left: dead-letter the event for this reason.
    GiveUp(String),
}

fn after_transient(
    attempt: u32,
    attempts: u32,
    pipeline_was_down: bool,
    e: &anyhow::Error,
) -> Retry {
    if pipeline_was_down {
        Retry::Same
    } else if attempt >= attempts {
        Retry::GiveUp(format!("gave up after {attempts} attempts: {e:#}"))
    } else {
        Retry::Next
    }
}

impl Relay {
    /// Runs one event to its end: a result on `datos_procesados`, or the
    /// dead-letter topic, unless shutdown comes first.
    /// `owner.fenced` turns true when the event's consumer is presumed to
    /// have lost its partitions: from then on the event writes nothing.
    pub(super) async fn process(
        &self,
        lane: &'static str,
        message: &OwnedMessage,
        owner: &Owner,
    ) -> Outcome {
        self.life(lane, message, owner)
            .await
            .unwrap_or(Outcome::Shutdown)
    }

    async fn life(
        &self,
        lane: &'static str,
        message: &OwnedMessage,
        owner: &Owner,
    ) -> Result<Outcome, ShuttingDown> {
        let lost = || owner.fenced.load(Ordering::SeqCst);
        // The event's span: a child of the producer's `traceparent` (the
        // Kafka header, else the event's field), or a new trace. With span
        // export on, it is the exported span itself.
        let trace = aies_telemetry::traceparent_of(&tracing::Span::current())
            .as_deref()
            .and_then(TraceParent::parse)
            .unwrap_or_else(|| event_span(message));
        tracing::Span::current().record("trace_id", &trace.trace_id);
        let event = match parse(message) {
            Ok(e) => e,
            Err(_) if lost() => return Ok(Outcome::Lost),
            Err(e) => {
                if !self.dead_letter(message, &format!("{e:#}"), owner).await? {
                    return Ok(Outcome::Lost);
                }
                return Ok(Outcome::DeadLettered { first_try: true });
            }
        };
        let mut request = first_request(event, message, &trace, &self.trust);
        tracing::Span::current().record("task_id", &request.task_id);
        let label = Metrics::lane(lane);
        let attempts = self.config.max_attempts.max(1);
        let mut attempt = 1;
        let mut first_try = true;
        loop {
            request.final_attempt = attempt == attempts;
            let started = Instant::now();
            let answer = self.invoker.invoke(request.clone()).await;
            self.metrics
                .invoke_seconds
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
            let answer = judge(answer);
            if lost() && !matches!(answer, Answer::Transient(_)) {
                return Ok(Outcome::Lost);
            }
            let e = match answer {
                Answer::Final(result) => {
                    if !self.publish_result(&result, &trace, owner).await? {
                        return Ok(Outcome::Lost);
                    }
                    return Ok(Outcome::Done { first_try });
                }
                Answer::Refused(e) => {
                    let reason = format!("{e:#}");
                    if !self.dead_letter(message, &reason, owner).await? {
                        return Ok(Outcome::Lost);
                    }
                    self.record_failure(&request, &reason).await;
                    return Ok(Outcome::DeadLettered { first_try });
                }
                Answer::Transient(e) => e,
            };
            first_try = false;
            // The pipeline being down is not this event's fault.
            let down = self.wait_while_pipeline_down().await?;
            match after_transient(attempt, attempts, down, &e) {
                Retry::Same => {}
                Retry::GiveUp(_) if lost() => return Ok(Outcome::Lost),
                Retry::GiveUp(reason) => {
                    if !self.dead_letter(message, &reason, owner).await? {
                        return Ok(Outcome::Lost);
                    }
                    self.record_failure(&request, &reason).await;
                    return Ok(Outcome::DeadLettered { first_try });
                }
                Retry::Next => {
                    self.metrics.retried.get_or_create(&label).inc();
                    let wait = backoff(attempt, self.config.retry_backoff_ms);
                    tracing::warn!(attempt, "invoke failed, retrying in {wait:?}: {e:#}");
                    self.sleep(wait).await?;
                    attempt += 1;
                }
            }
        }
    }

    async fn publish_result(
        &self,
        result: &TaskResult,
        trace: &TraceParent,
        owner: &Owner,
    ) -> Result<bool, ShuttingDown> {
        // Strings and a unit enum: serializing cannot fail.
        let payload = serde_json::to_vec(result).expect("a TaskResult serializes");
        let topic = &self.config.result_topic;
        let traceparent = trace.header();
        let published = self
            .produce(&format!("the result to {topic}"), owner, || {
                FutureRecord::to(topic)
                    .key(result.task_id.as_bytes())
                    .payload(&payload[..])
                    .headers(
                        OwnedHeaders::new()
                            .insert(Header {
                                key: TRACEPARENT,
                                value: Some(&traceparent),
                            })
                            .insert(Header {
                                key: CONSUMER_HEADER,
                                value: Some(&owner.name),
                            }),
                    )
            })
            .await?;
        if published {
            tracing::info!(task_id = %result.task_id, status = ?result.status, "result published");
        }
        Ok(published)
    }

    /// Tells the app that `request`'s event is dead-lettered, so its task
    /// says FAILURE (not PENDING for ever) and later identical prompts stop
    /// joining it. The dead letter is written already: a failure here is
    /// logged, and a replay of the event still finishes the task.
    async fn record_failure(&self, request: &InvokeRequest, reason: &str) {
        match self.invoker.fail(request, reason).await {
            Ok(task) => {
                tracing::info!(task_id = %task.task_id, status = ?task.status, "dead letter recorded")
            }
            Err(e) => {
                tracing::warn!(task_id = %request.task_id, "dead letter not recorded on its task: {e:#}")
            }
        }
    }

    /// True once written; false if `owner` was fenced first.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
        owner: &Owner,
    ) -> Result<bool, ShuttingDown> {
        tracing::error!("dead-lettering event: {reason}");
        let headers = dead_letter_headers(message, reason, &self.trust.seal);
        let topic = &self.config.dead_letter_topic;
        self.produce(&format!("a dead letter to {topic}"), owner, || {
            let mut record = FutureRecord::to(topic)
                .payload(message.payload().unwrap_or_default())
                .headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            record
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aies_contract::TaskStatus;
    use reqwest::StatusCode;

    fn task(status: TaskStatus) -> TaskResult {
        TaskResult {
            task_id: "t-1".into(),
            status,
            result: None,
            error: None,
            model: None,
        }
    }

    fn answered(status: u16) -> Answer {
        let status = StatusCode::from_u16(status).unwrap();
        judge(Err(InvokeError::from_status(status, "why".into())))
    }

    #[test]
    fn a_final_task_is_published_and_an_unfinished_one_is_retried() {
        for status in [TaskStatus::Success, TaskStatus::Failure] {
            assert!(matches!(judge(Ok(task(status))), Answer::Final(t) if t.status == status));
        }
        for status in [TaskStatus::Pending, TaskStatus::Started] {
            let Answer::Transient(e) = judge(Ok(task(status))) else {
                panic!("{status:?} is not final")
            };
            assert!(e.to_string().contains("not final"), "{e}");
        }
    }

    #[test]
    fn a_client_error_is_the_events_own_and_a_server_error_may_pass() {
        for status in [400, 401, 404, 413, 422] {
            assert!(matches!(answered(status), Answer::Refused(_)), "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(answered(status), Answer::Transient(_)), "{status}");
        }
        let Answer::Refused(e) = answered(422) else {
            unreachable!()
        };
        assert!(format!("{e:#}").contains("422"), "{e:#}");
    }

    #[test]
    fn an_outage_does_not_spend_attempts() {
        let e = anyhow!("connection refused");
        // Even on the last attempt: the pipeline, not the event, failed.
        assert_eq!(after_transient(3, 3, true, &e), Retry::Same);
        assert_eq!(after_transient(1, 3, true, &e), Retry::Same);
    }

    #[test]
    fn a_transient_failure_is_retried_until_the_last_attempt() {
        let e = anyhow!("llm-invoke answered 503");
        assert_eq!(after_transient(1, 3, false, &e), Retry::Next);
        assert_eq!(after_transient(2, 3, false, &e), Retry::Next);
        let Retry::GiveUp(reason) = after_transient(3, 3, false, &e) else {
            panic!("the last attempt gives up")
        };
        assert_eq!(reason, "gave up after 3 attempts: llm-invoke answered 503");
        assert!(matches!(after_transient(1, 1, false, &e), Retry::GiveUp(_)));
    }

    #[test]
    fn only_a_finished_event_is_counted_and_only_a_first_try_times_the_slot() {
        let m = Metrics::default();
        let done = Outcome::Done { first_try: true };
        assert!(std::ptr::eq(done.counter(&m).unwrap(), &m.succeeded));
        assert!(done.first_try());
        let dead = Outcome::DeadLettered { first_try: false };
        assert!(std::ptr::eq(dead.counter(&m).unwrap(), &m.dead_lettered));
        assert!(!dead.first_try());
        assert!(Outcome::Shutdown.counter(&m).is_none());
        assert!(!Outcome::Shutdown.first_try());
    }
}
