//! Model time for requests first (issue 22, ask 6). Third-party events
//! flood the batch lane, so their cache fills (one embedding each) fall
//! behind; meanwhile an API prompt is answered. Its fill runs on a channel
//! of its own and jumps the backlog: its paraphrase is a hit while batch
//! fills still wait. Batch fills that waited past `cache_fill_max_wait_secs`
//! are shed, counted, and the wait shows on `/metrics` and `/stats`.

use std::time::{Duration, Instant};

use crate::fake_llm::FakeLlm;
use crate::harness::{metric, produce, producer, Options, System};
use serde_json::json;

const EVENTS: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_answer_is_cached_ahead_of_a_batch_backlog() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("fill_backlog").llm(&fake, "openai");
    options
        .variables
        .insert("cache_fill_max_wait_secs".into(), "3".into());
    let system = System::start(options).await;

    let producer = producer();
    let sends = (0..EVENTS).map(|i| {
        let payload =
            json!({"prompt": format!("Batch question {i}: summarize report {}", i * 7919 % 10007)});
        let (producer, topic) = (&producer, &system.topics.raw);
        async move { produce(producer, topic, None, &payload.to_string()).await }
    });
    futures::future::join_all(sends).await;

    // A backlog: answers stored faster than their fills embed.
    let stats = |s: &serde_json::Value| {
        let cache = &s["cache"];
        (
            s["tasks"]["SUCCESS"].as_u64().unwrap(),
            cache["fills"].as_u64().unwrap() + cache["fills_shed"].as_u64().unwrap(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, s) = system.get_json("/stats").await;
        let (done, filled) = stats(&s);
        if done >= 300 && done - filled >= 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no fill backlog: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let asked = Instant::now();
    let (status, miss) = system
        .process("How do I cancel my subscription?", None)
        .await;
    assert_eq!(status, 202, "{miss}");
    let answer = system
        .wait_final(miss["task_id"].as_str().unwrap(), None)
        .await
        .unwrap();
    let answered = asked.elapsed();
    system.wait_filled(&answer.task_id).await;
    let filled = asked.elapsed() - answered;
    let (status, hit) = system
        .process("How can I cancel my subscription?", None)
        .await;
    assert_eq!(status, 200, "the paraphrase is a hit: {hit}");
    assert_eq!(hit["task_id"], answer.task_id.as_str(), "{hit}");
    let (_, s) = system.get_json("/stats").await;
    let (done, batch_filled) = stats(&s);
    assert!(
        done > batch_filled + 1,
        "the API answer's fill waited for the whole backlog: {s}"
    );
    println!(
        "API answer in {answered:?}, in the cache {filled:?} later, with {} batch fills still waiting",
        done - batch_filled - 1
    );

    // The backlog drains, the oldest batch fills shed; the API one was not.
    let deadline = Instant::now() + Duration::from_secs(180);
    let s = loop {
        let (_, s) = system.get_json("/stats").await;
        let (done, filled) = stats(&s);
        if done == EVENTS as u64 + 1 && filled == done {
            break s;
        }
        assert!(Instant::now() < deadline, "fills did not catch up: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let shed = s["cache"]["fills_shed"].as_u64().unwrap();
    assert!(shed > 0, "nothing shed: {s}");
    assert!(
        s["cache"]["fill_wait_ms"]["batch"].as_u64().unwrap() > 0,
        "{s}"
    );
    let metrics = system.metrics().await;
    assert_eq!(
        metric(&metrics, "aies_cache_fills_shed_total"),
        shed as f64,
        "{metrics}"
    );
    println!(
        "{shed} of {EVENTS} batch fills shed; {} filled",
        s["cache"]["fills"]
    );
}
