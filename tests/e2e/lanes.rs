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

/// The ratio is measured within the run, like a benchmark's baseline: an
/// idle system and one with the backlog answer misses side by side, at the
/// same moment, so whatever else loads the machine loads both; the LLM's
/// 200 ms dominates an idle miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_miss_is_not_starved_by_a_batch_backlog() {
    const BACKLOG: usize = 40_000;
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_millis(200));
    let idle = System::start(Options::new("lanes-idle").llm(&fake, "openai")).await;
    let loaded = System::start(Options::new("lanes").llm(&fake, "openai")).await;

    let bootstrap = crate::harness::broker().bootstrap.clone();
    produce_events_to(&bootstrap, &loaded.topics.raw, "backlog", 0..BACKLOG).await;
    // The batch lane is busy with the backlog before the API is timed.
    crate::harness::consume(&loaded.topics.results, 64, Duration::from_secs(120))
        .await
        .unwrap();
    let mut times = Vec::new();
    for i in 0..5 {
        let (quiet, busy) = (
            format!("idle interactive question {i}"),
            format!("loaded interactive question {i}"),
        );
        let (a, b) = tokio::join!(miss_latency(&idle, &quiet), miss_latency(&loaded, &busy));
        times.push((a, b));
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let idle_median = median(times.iter().map(|t| t.0).collect());
    let loaded_median = median(times.iter().map(|t| t.1).collect());
    let batch_done = crate::harness::topic_size(&loaded.topics.results, 3) as usize - 5;
    println!(
        "API miss: idle {idle_median:?}, behind a {BACKLOG}-event batch backlog \
         {loaded_median:?} ({batch_done} batch events done by then)"
    );
    assert!(
        batch_done < BACKLOG / 2,
        "the backlog was mostly gone ({batch_done} done): the batch lane was not loaded"
    );
    assert!(
        loaded_median <= idle_median * 2,
        "an API miss took {loaded_median:?} behind the backlog, {idle_median:?} idle"
    );
}
