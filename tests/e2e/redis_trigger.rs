//! Spin's Redis trigger on the host: cache-fill runs on store's completion
//! notices, so results never wait for the cache; an event from another
//! producer (no vector from ingest) is embedded there; the subscription
//! comes back after Redis restarts.

use std::time::{Duration, Instant};

use crate::fake_llm::{answer, FakeLlm};
use crate::harness::{consume, metric, produce, producer, Options, System};

/// Polls `GET /metrics` until `name` reaches `value` (30 s at most).
async fn wait_metric(system: &System, name: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = metric(&system.metrics().await, name);
        if now == value {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {now}, not {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_event_is_cached_by_the_redis_triggered_fill() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("fill-raw").llm(&fake, "openai")).await;
    let prompt = "What is the boiling point of water at sea level?";
    let event = serde_json::json!({ "prompt": prompt });
    produce(&producer(), &system.topics.raw, None, &event.to_string()).await;
    let results = consume(&system.topics.results, 1, Duration::from_secs(60))
        .await
        .unwrap();
    let task_id = results[0].0.clone().unwrap();

    // Nobody computed this prompt's vector: the fill embedded it.
    wait_metric(&system, "aies_cache_fills_total", 1.0).await;
    let metrics = system.metrics().await;
    assert_eq!(metric(&metrics, "aies_cache_fill_embedded_total"), 1.0);

    let (status, hit) = system.process(prompt, None).await;
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["task_id"], task_id.as_str());
    assert_eq!(hit["result"], answer("openai", prompt));
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_miss_is_cached_without_a_second_embedding() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("fill-api").llm(&fake, "openai")).await;
    let prompt = "Which planet is closest to the sun?";
    system.complete(prompt).await;
    let metrics = system.metrics().await;
    assert_eq!(metric(&metrics, "aies_cache_fills_total"), 1.0);
    assert_eq!(metric(&metrics, "aies_cache_fill_embedded_total"), 0.0);
    let (status, hit) = system
        .process("Which planet is the closest to the sun?", None)
        .await;
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["cache"]["tier"], "semantic", "{hit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_comes_back_after_redis_restarts() {
    let fake = FakeLlm::start().await;
    let mut system = System::start(Options::new("fill-restart").llm(&fake, "openai")).await;
    system.complete("How many legs does a spider have?").await;

    // A restart loses everything (no persistence here), subscribers too.
    system.redis.restart();
    system.wait_subscribed().await;

    let prompt = "How many legs does an insect have?";
    system.complete(prompt).await;
    let (status, hit) = system.process(prompt, None).await;
    assert_eq!(status, 200, "filled after the restart: {hit}");
    assert_eq!(hit["result"], answer("openai", prompt));
}
