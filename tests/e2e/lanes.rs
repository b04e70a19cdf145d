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

async fn median_miss(system: &System, label: &str) -> Duration {
    let mut times = Vec::new();
    for i in 0..5 {
        times.push(miss_latency(system, &format!("{label} interactive question {i}")).await);
    }
    times.sort();
    times[2]
}

/// The ratio is measured within the run (same machine, same moment), like
/// a benchmark's baseline; the LLM's 100 ms dominates an idle miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_miss_is_not_starved_by_a_batch_backlog() {
    const BACKLOG: usize = 5_000;
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_millis(100));
    let system = System::start(Options::new("lanes").llm(&fake, "openai")).await;
    let idle = median_miss(&system, "idle").await;

    let bootstrap = crate::harness::broker().bootstrap.clone();
    produce_events_to(&bootstrap, &system.topics.raw, "backlog", 0..BACKLOG).await;
    let loaded = median_miss(&system, "loaded").await;
    let batch_done = crate::harness::topic_size(&system.topics.results, 3) as usize - 10;
    println!("API miss: idle {idle:?}, behind {BACKLOG} batch events {loaded:?} ({batch_done} of them done by then)");
    assert!(
        batch_done < BACKLOG / 2,
        "the backlog was mostly gone ({batch_done} done): the test did not load the batch lane"
    );
    assert!(
        loaded <= idle * 2,
        "an API miss took {loaded:?} behind the backlog, {idle:?} idle"
    );
}
