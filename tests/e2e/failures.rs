//! When a dependency is down, the API says so plainly and loses nothing it
//! accepted; when it comes back, the system recovers by itself.

use std::time::{Duration, Instant};

use crate::harness::{Options, System};

/// Retries `f` until it returns true, for up to 20 s.
async fn eventually<F: std::future::Future<Output = bool>>(mut f: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_a_clear_503_and_the_app_recovers_when_it_returns() {
    let mut system = System::start(Options::new("redisdown")).await;
    let (status, body) = system.process("Is Redis there?", None).await;
    assert_eq!(status, 202, "{body}");

    system.redis.stop();
    let health = system
        .client
        .get(system.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let (status, body) = system.process("Is Redis still there?", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("redis"), "{body}");

    system.redis.restart();
    let system = &system;
    let recovered =
        eventually(|| async move { system.process("Redis is back", None).await.0 == 202 }).await;
    assert!(recovered, "the app did not recover after Redis came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_down_is_a_503_and_the_task_is_not_left_pending() {
    let mut system = System::start(Options::new("bridgedown")).await;
    system.stop_bridge(0);
    // The bridge's listener closes as it shuts down; until then a prompt
    // may still be accepted.
    let mut refused = None;
    for _ in 0..200 {
        let (status, body) = system.process("Anyone there?", None).await;
        if status == 503 {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = refused.expect("a prompt that cannot be enqueued must get a 503");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("could not enqueue"),
        "{body}"
    );
    assert_eq!(body["status"], "FAILURE");
    // The task it names is recorded as FAILURE, with the reason.
    let (status, task) = system.task(body["task_id"].as_str().unwrap(), None).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["status"], "FAILURE");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .contains("could not enqueue"),
        "{task}"
    );
}

/// An LLM that does not answer in time is given up on (the host's outbound
/// timeout), retried, and on the bridge's last attempt the task fails with
/// the reason, instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_that_never_answers_times_out_and_fails_the_task() {
    use aies_contract::TaskStatus;
    let fake = crate::fake_llm::FakeLlm::start().await;
    fake.set_delay(Duration::from_secs(30));
    let mut options = Options::new("llm-timeout").llm(&fake, "openai");
    options.outbound_timeout = Some(Duration::from_millis(500));
    options
        .variables
        .insert("llm_max_retries".into(), "1".into());
    let system = System::start(options).await;
    let task = system.invoke_last_attempt("slow-1", "Take your time").await;
    assert_eq!(task.status, TaskStatus::Failure, "{task:?}");
    let error = task.error.unwrap();
    assert!(
        error.contains("gave up after retries") && error.to_lowercase().contains("timeout"),
        "{error}"
    );
    assert_eq!(fake.calls(), 2, "one call and one retry");
}
