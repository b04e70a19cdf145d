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

/// The bridge binary, built beside this test binary by `cargo test --workspace`.
fn bridge_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join("aies-bridge");
    assert!(bin.exists(), "{} missing: run `make test`", bin.display());
    bin
}

/// A bridge killed with SIGKILL mid-batch loses nothing: its uncommitted
/// events are redelivered to the next bridge and finish exactly once in
/// the result backend.
///
/// Ignored by default: with Tansu 0.6 as the broker, twice in about eleven
/// runs (always within the parallel suite, never alone) the next bridge never got
/// one of the dead bridge's partitions, so that partition's events waited
/// past the test's deadline; nothing was lost. Run it with
/// `make test ARGS=--ignored` (see NOTES.md).
#[ignore = "Tansu 0.6 sometimes keeps a SIGKILLed member's partition assigned (NOTES.md)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_mid_batch_loses_no_event() {
    const N: usize = 300;
    let fake = crate::fake_llm::FakeLlm::start().await;
    fake.set_delay(Duration::from_millis(100));
    let mut system = System::start(Options::new("sigkill").llm(&fake, "openai")).await;
    // This test's bridges are processes, so one can be killed for real.
    system.stop_bridge(0);
    let spawn = || {
        std::process::Command::new(bridge_binary())
            .env(
                "KAFKA_BOOTSTRAP_SERVERS",
                &crate::harness::broker().bootstrap,
            )
            .env("AIES_RAW_TOPIC", &system.topics.raw)
            .env("AIES_RESULT_TOPIC", &system.topics.results)
            .env("AIES_DEAD_LETTER_TOPIC", &system.topics.dead_letter)
            .env("AIES_CONSUMER_GROUP", &system.topics.group)
            .env("AIES_BRIDGE_LISTEN", "127.0.0.1:0")
            .env("AIES_INVOKE_URL", system.url("/invoke"))
            .env("AIES_INVOKE_TOKEN", crate::harness::INVOKE_TOKEN)
            .env("AIES_SESSION_TIMEOUT_MS", "6000")
            // AIES_TEST_BRIDGE_LOG=librdkafka=debug (with AIES_KAFKA_DEBUG=cgrp)
            // shows the group's joins and assignments.
            .env(
                "RUST_LOG",
                std::env::var("AIES_TEST_BRIDGE_LOG").unwrap_or("warn".into()),
            )
            .spawn()
            .map(crate::harness::Process)
            .expect("starting aies-bridge")
    };
    let producer = crate::harness::producer();
    for i in 0..N {
        let payload = serde_json::json!({ "prompt": format!("Crash test question {i}") });
        crate::harness::produce(&producer, &system.topics.raw, None, &payload.to_string()).await;
    }
    let first = spawn();
    crate::harness::consume(&system.topics.results, N / 4, Duration::from_secs(120))
        .await
        .unwrap();
    drop(first); // SIGKILL: no drain, no final commit
    let done_at_kill = crate::harness::topic_size(&system.topics.results, 3);
    assert!(
        done_at_kill < N as i64,
        "the kill came after the batch: {done_at_kill}"
    );
    // Let the group drop the dead member (session timeout) before the next
    // one joins: Tansu 0.6 was seen to stall a rebalance that a new member
    // starts while a dead one is still in the group (see NOTES.md).
    tokio::time::sleep(Duration::from_secs(8)).await;

    let second = spawn();
    let results =
        crate::harness::consume_distinct(&system.topics.results, N, Duration::from_secs(300)).await;
    drop(second);
    system.assert_all_succeeded(&results.unwrap(), N).await;
    // Only the events in flight at the kill (at most AIES_MAX_IN_FLIGHT, 32)
    // may reach the LLM twice: redelivered events that had finished were
    // answered from Redis.
    println!(
        "results at kill: {done_at_kill}, LLM calls: {}",
        fake.calls()
    );
    assert!(
        fake.calls() <= N + 32,
        "{} LLM calls for {N} events",
        fake.calls()
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
