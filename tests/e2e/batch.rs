//! 1,000 events produced straight into `datos_crudos` by a third-party
//! producer (prompt only, no task id, some keyed, some not) all end as
//! SUCCESS records and as messages on `datos_procesados`: none lost.

use aies_contract::{task_key, TaskResult, TaskStatus};
use redis::AsyncCommands;
use std::collections::HashSet;
use std::time::Duration;

use crate::fake_llm::FakeLlm;
use crate::harness::{consume, produce, producer, Options, System};

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
    let mut ids = HashSet::new();
    for (_, payload) in &results {
        let r: TaskResult = serde_json::from_str(payload).unwrap();
        assert_eq!(r.status, TaskStatus::Success, "{r:?}");
        ids.insert(r.task_id);
    }
    assert_eq!(ids.len(), EVENTS, "every event has its own task");

    let mut tasks = system.redis.connection(2).await;
    for id in &ids {
        let status: Option<String> = tasks.hget(task_key(id), "status").await.unwrap();
        assert_eq!(status.as_deref(), Some("SUCCESS"), "task {id}");
    }
    let keys: Vec<String> = tasks.keys("aies:task:*").await.unwrap();
    assert_eq!(keys.len(), EVENTS);
    assert_eq!(fake.calls(), EVENTS);
}
