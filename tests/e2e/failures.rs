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
    let system = &system;
    let refused = eventually(|| async move {
        let (status, body) = system.process("Anyone there?", None).await;
        status == 503
            && body["error"]
                .as_str()
                .unwrap()
                .contains("could not enqueue")
    })
    .await;
    assert!(refused, "a prompt that cannot be enqueued must get a 503");
    let metrics = system.metrics().await;
    assert!(crate::harness::metric(&metrics, "aies_tasks_total{status=\"FAILURE\"}") >= 1.0);
}
