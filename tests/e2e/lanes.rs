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
