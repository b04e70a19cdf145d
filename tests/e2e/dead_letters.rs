//! `aies-bridge replay-dlq`: dead letters moved back to `datos_crudos`, by
//! reason, with a dry run that counts, and never replayed twice.

use std::time::Duration;

use aies_bridge::replay::{replay, ReplayArgs};
use aies_contract::{TaskResult, TaskStatus};

use crate::fake_llm::FakeLlm;
use crate::harness::{consume, consume_distinct, produce, producer, Options, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_replayed_by_reason_after_the_cause_is_fixed() {
    const GOOD: usize = 20;
    let fake = FakeLlm::start().await;
    let mut options = Options::new("replay").llm(&fake, "openai");
    // A misconfigured bridge: the app refuses every invocation (401).
    options.bridge_token = "wrong-token";
    let mut system = System::start(options).await;
    let producer = producer();
    for i in 0..GOOD {
        let payload = serde_json::json!({ "prompt": format!("Replay question {i}") });
        let key = format!("k{}", i % 4);
        produce(
            &producer,
            &system.topics.raw,
            Some(&key),
            &payload.to_string(),
        )
        .await;
    }
    produce(&producer, &system.topics.raw, None, "not JSON at all").await;
    consume(
        &system.topics.dead_letter,
        GOOD + 1,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(fake.calls(), 0);

    // The bridge is fixed (right token); the dead letters stay where they are.
    system.stop_bridge(0);
    system.add_bridge().await;
    let config = system.bridge_config.clone();
    let dry = ReplayArgs {
        reason: Some("401".into()),
        dry_run: true,
        ..Default::default()
    };
    let counted = replay(&config, &dry).await.unwrap();
    assert_eq!((counted.matched, counted.skipped), (GOOD, 1), "{counted}");
    assert_eq!(counted.by_reason.len(), 1, "{counted}");
    assert!(counted.to_string().contains("401"), "{counted}");
    // A dry run changes nothing: the same count again.
    assert_eq!(replay(&config, &dry).await.unwrap(), counted);

    let replayed = replay(
        &config,
        &ReplayArgs {
            dry_run: false,
            ..dry.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(replayed.matched, GOOD);
    let results = consume_distinct(&system.topics.results, GOOD, Duration::from_secs(60))
        .await
        .unwrap();
    for (_, payload) in &results {
        let r: TaskResult = serde_json::from_str(payload).unwrap();
        assert_eq!(r.status, TaskStatus::Success, "{r:?}");
    }
    system.assert_all_succeeded(&results, GOOD).await;
    assert_eq!(fake.calls(), GOOD);

    // Moved means moved: only the poison event is left to replay.
    let left = replay(
        &config,
        &ReplayArgs {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((left.matched, left.skipped), (1, 0), "{left}");
    assert!(left.to_string().contains("not valid JSON"), "{left}");
    let again = replay(
        &config,
        &ReplayArgs {
            reason: Some("401".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(again.matched, 0, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_age_leaves_recent_dead_letters() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("replay-age").llm(&fake, "openai")).await;
    produce(&producer(), &system.topics.raw, None, "poison").await;
    consume(&system.topics.dead_letter, 1, Duration::from_secs(60))
        .await
        .unwrap();
    let args = |older_than: &str| ReplayArgs {
        older_than: Some(older_than.parse().unwrap()),
        dry_run: true,
        ..Default::default()
    };
    let config = &system.bridge_config;
    assert_eq!(replay(config, &args("1h")).await.unwrap().matched, 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(replay(config, &args("1s")).await.unwrap().matched, 1);
}
