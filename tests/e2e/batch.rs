//! 1,000 events produced straight into `datos_crudos` by a third-party
//! producer (prompt only, no task id, some keyed, some not) all end as
//! SUCCESS records and as messages on `datos_procesados`: none lost.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::producer::FutureRecord;

use crate::fake_llm::FakeLlm;
use crate::harness::{consume, consume_distinct, produce, producer, Options, System};

const EVENTS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_events_end_as_a_thousand_successes() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("batch").llm(&fake, "openai")).await;
    let producer = producer();
    for i in 0..EVENTS {
        let payload = serde_json::json!({ "prompt": format!("Batch question number {i}: what is {i} squared?") });
        // A third of the events carry a key (kept in order per key).
        let key = (i % 3 == 0).then(|| format!("customer-{}", i % 7));
        produce(
            &producer,
            &system.topics.raw,
            key.as_deref(),
            &payload.to_string(),
        )
        .await;
    }

    let results = consume(&system.topics.results, EVENTS, Duration::from_secs(600))
        .await
        .unwrap();
    let ids: HashSet<_> = results.iter().map(|(key, _)| key.clone()).collect();
    assert_eq!(ids.len(), EVENTS, "every event has its own task");
    system.assert_all_succeeded(&results, EVENTS).await;
    assert_eq!(fake.calls(), EVENTS);
}

/// Two bridges in one consumer group share the partitions; one of them is
/// stopped halfway (as a rolling restart would); every event still ends as
/// exactly one SUCCESS record and at least one result message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_share_the_work_and_a_stopped_bridge_loses_nothing() {
    const N: usize = 300;
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_millis(20));
    let mut system = System::start(Options::new("members").llm(&fake, "openai")).await;
    let second = system.add_bridge().await;
    let producer = producer();
    for i in 0..N {
        let payload = serde_json::json!({ "prompt": format!("Rolling restart question {i}") });
        produce(&producer, &system.topics.raw, None, &payload.to_string()).await;
    }
    consume(&system.topics.results, N / 4, Duration::from_secs(120))
        .await
        .unwrap();
    system.stop_bridge(0);

    let results = consume_distinct(&system.topics.results, N, Duration::from_secs(300))
        .await
        .unwrap();
    system.assert_all_succeeded(&results, N).await;
    system.stop_bridge(second);
}

/// An event waiting for its key's previous event holds no slot: with two
/// slots and a slow LLM, a key with a queue of events does not keep
/// another key's event waiting; per-key order is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_waiting_for_their_key_leave_the_slots_to_other_keys() {
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_millis(500));
    let mut options = Options::new("waiting").llm(&fake, "openai");
    options.max_in_flight = Some(2);
    let system = System::start(options).await;
    // All in one partition, the hot key's queue first: read in that order.
    let producer = producer();
    let mut events: Vec<(&str, String)> = (0..4)
        .map(|i| ("hot", format!("hot key, event {i}")))
        .collect();
    events.push(("cold", "cold key, event 0".into()));
    for (key, prompt) in &events {
        let payload = serde_json::json!({ "prompt": prompt, "use_cache": false }).to_string();
        let record = FutureRecord::to(&system.topics.raw)
            .partition(0)
            .key(*key)
            .payload(&payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("produced");
    }

    let results = consume_distinct(&system.topics.results, 5, Duration::from_secs(120))
        .await
        .unwrap();
    system.assert_all_succeeded(&results, 5).await;
    // The hot key's events ran one after another (500 ms each); the cold
    // key's event took the second slot at once instead of waiting behind
    // them in it.
    let prompts = fake.prompts();
    let at = |p: &str| prompts.iter().position(|x| x == p).unwrap();
    let hot: Vec<usize> = (0..4).map(|i| at(&format!("hot key, event {i}"))).collect();
    assert!(hot.windows(2).all(|w| w[0] < w[1]), "{prompts:?}");
    assert!(at("cold key, event 0") < hot[1], "{prompts:?}");
}
