//! API traffic has its own lane: a prompt sent to `POST /process` is not
//! queued behind a batch backlog in `datos_crudos`.

use std::time::{Duration, Instant};

use crate::fake_llm::FakeLlm;
use crate::harness::{Options, System};
use aies_tests::stack::produce_events_to;

/// Sends a prompt that misses and times it until its task is final.
async fn miss_latency(system: &System, prompt: &str) -> Duration {
    let started = Instant::now();
    let (status, body) = system.process(prompt, None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().unwrap();
    loop {
        let (_, task) = system.task(id, None).await;
        if task["status"] == "SUCCESS" {
            return started.elapsed();
        }
        assert_ne!(task["status"], "FAILURE", "{task}");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{prompt}: {task}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Order, not timing: had the API prompt joined the batch backlog in
/// `datos_crudos`, its task could only finish after the whole backlog.
/// Each miss must be final while most of the backlog is still waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_miss_is_not_starved_by_a_batch_backlog() {
    // The batch lane holds at most 32 events of 250 ms each (128 events/s),
    // so the backlog lasts 45 s at least: the misses (well under a second
    // each when idle) finish long before, even on a machine 10x as busy.
    // A small backlog also spares the broker the other tests share.
    const BACKLOG: usize = 6_000;
    const MISSES: usize = 5;
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_millis(250));
    let mut options = Options::new("lanes").llm(&fake, "openai");
    options.max_in_flight = Some(32);
    let system = System::start(options).await;

    let bootstrap = crate::harness::broker().bootstrap.clone();
    produce_events_to(&bootstrap, &system.topics.raw, "backlog", 0..BACKLOG).await;
    // The batch lane is busy with the backlog before the API is asked.
    crate::harness::consume(&system.topics.results, 64, Duration::from_secs(120))
        .await
        .unwrap();
    for i in 0..MISSES {
        let took = miss_latency(&system, &format!("interactive question {i}")).await;
        // Results so far: batch events plus the API misses answered (i + 1).
        let batch_done = crate::harness::topic_size(&system.topics.results, 3) as usize - (i + 1);
        println!("API miss {i}: final after {took:?}, {batch_done} of {BACKLOG} batch events done");
        assert!(
            batch_done < BACKLOG / 2,
            "API miss {i} was final only after {batch_done} of {BACKLOG} batch events: \
             it waited behind the backlog"
        );
    }
}

/// `aies_bridge_lane_paused{lane}` on the first bridge's `/metrics` (0
/// before the lane first paused).
async fn lane_paused(system: &System, lane: &str) -> f64 {
    let text = system
        .client
        .get(format!("http://{}/metrics", system.bridge_http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let name = format!("aies_bridge_lane_paused{{lane=\"{lane}\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(&name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until both lanes have paused polling (30 s at most).
async fn wait_idle(system: &System) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while lane_paused(system, "api").await != 1.0 || lane_paused(system, "batch").await != 1.0 {
        assert!(Instant::now() < deadline, "the idle lanes never paused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An idle lane stops polling the broker (its fetches were most of an idle
/// stack's CPU) and still takes every event: an API prompt is looked for
/// at once (the bridge that enqueued it wakes its lane), a batch event
/// when the lag watcher sees it waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_lanes_stop_polling_and_still_take_events() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("idle-lanes").llm(&fake, "openai")).await;
    wait_idle(&system).await;
    let asked = system.complete("a question after a quiet time").await;
    assert_eq!(
        asked.result.as_deref(),
        Some(crate::fake_llm::answer("openai", "a question after a quiet time").as_str())
    );

    wait_idle(&system).await;
    let event = serde_json::json!({ "prompt": "a batch event after a quiet time" });
    crate::harness::produce(
        &crate::harness::producer(),
        &system.topics.raw,
        None,
        &event.to_string(),
    )
    .await;
    let results = crate::harness::consume(&system.topics.results, 2, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        results
            .iter()
            .any(|(_, r)| r.contains("a batch event after a quiet time")),
        "{results:?}"
    );
    assert_eq!(fake.calls(), 2, "{:?}", fake.prompts());
}
