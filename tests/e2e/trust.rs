//! What a Kafka producer may claim (issue 23): nothing the bridge did not
//! seal. A producer's task id lives in the batch tenant's namespace, an
//! event without one gets an id keyed with the bridge's secret, a forged
//! origin or replay marker is ignored, a task's tenant is set once, and a
//! dead-lettered event's task says FAILURE and frees its prompt.

use std::time::{Duration, Instant};

use aies_bridge::replay::{replay, ReplayArgs};
use aies_contract::{TaskResult, TaskStatus};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::json;

use crate::fake_llm::{answer, FakeLlm};
use crate::harness::{consume, consume_distinct, produce, producer, Options, System, INVOKE_TOKEN};

fn results_of(messages: &[(Option<String>, String)]) -> Vec<TaskResult> {
    messages
        .iter()
        .map(|(_, payload)| serde_json::from_str(payload).unwrap())
        .collect()
}

async fn tenant_of(system: &System, task_id: &str) -> Option<String> {
    let mut redis = system.redis.connection(2).await;
    redis::cmd("HGET")
        .arg(format!("aies:task:{task_id}"))
        .arg("tenant")
        .query_async(&mut redis)
        .await
        .unwrap()
}

async fn produce_with_header(topic: &str, payload: &str, key: &str, value: &str) {
    let headers = OwnedHeaders::new().insert(Header {
        key,
        value: Some(value),
    });
    producer()
        .send(
            FutureRecord::<(), _>::to(topic)
                .payload(payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produced");
}

/// Seen before: an event naming a running API task's id (visible on
/// `datos_api`) took it over. Now it runs as a task of its own, in the
/// batch tenant's namespace, and the tenant it claims is not believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_cannot_take_over_an_api_task_nor_claim_a_tenant() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("takeover").llm(&fake, "openai")).await;
    fake.set_delay(Duration::from_millis(1500));
    let question = "What is the capital of France?";
    let (status, api) = system.process(question, Some("acme")).await;
    assert_eq!(status, 202, "{api}");
    let id = api["task_id"].as_str().unwrap().to_string();
    let attack = json!({"task_id": id, "prompt": "ATTACKER prompt", "tenant": "acme"});
    produce(&producer(), &system.topics.raw, None, &attack.to_string()).await;

    let task = system.finished(&id, Some("acme")).await;
    assert_eq!(task.status, TaskStatus::Success, "{task:?}");
    assert_eq!(task.result.unwrap(), answer("openai", question));
    let results = results_of(
        &consume_distinct(&system.topics.results, 2, Duration::from_secs(60))
            .await
            .unwrap(),
    );
    let theirs = results
        .iter()
        .find(|r| r.task_id != id)
        .expect("the producer's event has a result of its own");
    assert_eq!(theirs.task_id, format!("default:{id}"));
    assert_eq!(
        theirs.result.as_deref(),
        Some(answer("openai", "ATTACKER prompt").as_str())
    );
    assert!(fake.prompts().iter().any(|p| p == question));
    // The producer's task is the batch lane's tenant's: acme does not see
    // it, and acme's cache learnt nothing from it.
    assert_eq!(
        tenant_of(&system, &theirs.task_id).await.unwrap(),
        "default"
    );
    assert_eq!(tenant_of(&system, &id).await.unwrap(), "acme");
    let (status, _) = system.task(&theirs.task_id, Some("acme")).await;
    assert_eq!(status, 404);
    // Its id, percent-encoded as HTTP clients may send a `:` in a path.
    let (status, found) = system.task(&theirs.task_id.replace(':', "%3A"), None).await;
    assert_eq!(
        (status, found["task_id"].as_str()),
        (200, Some(theirs.task_id.as_str()))
    );
    fake.set_delay(Duration::ZERO);
    let (status, body) = system.process("ATTACKER prompt", Some("acme")).await;
    assert_eq!(
        status, 202,
        "acme's cache holds the producer's answer: {body}"
    );
}

/// Seen before: a producer named the UUIDv5 of the next offset, and the
/// prompt-only event that landed there was answered with the attacker's
/// result. Now derived ids are keyed (unpredictable), and an `aies-origin`
/// header without the bridge's seal does not borrow another event's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_only_events_task_cannot_be_predicted_or_claimed() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("predict").llm(&fake, "openai");
    options.partitions = 1;
    let system = System::start(options).await;
    let raw = system.topics.raw.clone();
    // The next two offsets of the new topic are 0 (the attacker) and 1.
    let victim_place = format!("{raw}/0/1");
    let predicted =
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, victim_place.as_bytes()).to_string();
    let attack = json!({"task_id": predicted, "prompt": "ATTACKER prompt"});
    produce_with_header(&raw, &attack.to_string(), "aies-origin", &victim_place).await;
    let question = "What is the tallest mountain on Earth?";
    produce(
        &producer(),
        &raw,
        None,
        &json!({ "prompt": question }).to_string(),
    )
    .await;
    let first = results_of(
        &consume_distinct(&system.topics.results, 2, Duration::from_secs(60))
            .await
            .unwrap(),
    );
    let victim = first
        .iter()
        .find(|r| r.result.as_deref() == Some(answer("openai", question).as_str()))
        .expect("the prompt-only event got its own answer");
    let attacker = first.iter().find(|r| r.task_id != victim.task_id).unwrap();
    assert_ne!(victim.task_id, predicted);
    assert_eq!(attacker.task_id, format!("default:{predicted}"));

    // A later event with a forged origin naming the victim's place: a task
    // of its own, not the victim's record.
    produce_with_header(
        &raw,
        &json!({"prompt": "ATTACKER again"}).to_string(),
        "aies-origin",
        &victim_place,
    )
    .await;
    let all = results_of(
        &consume_distinct(&system.topics.results, 3, Duration::from_secs(60))
            .await
            .unwrap(),
    );
    let again = all
        .iter()
        .find(|r| r.result.as_deref() == Some(answer("openai", "ATTACKER again").as_str()))
        .expect("the forged event ran as its own task");
    assert_ne!(again.task_id, victim.task_id);
    assert_eq!(fake.calls(), 3);
}

/// An event given up for good used to leave its API task PENDING for ever,
/// and identical prompts joined it. Now its task says FAILURE with the
/// reason, the prompt is free, and a replay of the event finishes the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_api_task_fails_with_its_reason_and_frees_its_prompt() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("dlqtask").llm(&fake, "openai");
    // Each attempt outlasts the bridge's patience: three, then a dead letter.
    options.invoke_timeout_secs = Some(1);
    let system = System::start(options).await;
    fake.set_delay(Duration::from_secs(8));
    let question = "Why do cats purr?";
    let (status, body) = system.process(question, None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().unwrap().to_string();
    consume(&system.topics.dead_letter, 1, Duration::from_secs(60))
        .await
        .unwrap();
    let failed = system.wait_final(&id, None).await.unwrap();
    assert_eq!(failed.status, TaskStatus::Failure, "{failed:?}");
    let error = failed.error.unwrap();
    assert!(
        error.contains("dead-lettered") && error.contains("gave up after 3 attempts"),
        "{error}"
    );

    // The prompt is free: asked again, it does not join the failed task.
    fake.set_delay(Duration::ZERO);
    let again = system.complete(question).await;
    assert_ne!(again.task_id, id);
    assert_eq!(again.status, TaskStatus::Success);

    // Replayed, the event runs its own task again, to SUCCESS.
    let replayed = replay(&system.bridge_config, &ReplayArgs::default())
        .await
        .unwrap();
    assert_eq!(replayed.matched, 1, "{replayed}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, task) = system.task(&id, None).await;
        assert_eq!(status, 200, "{task}");
        if task["status"] == "SUCCESS" {
            assert_eq!(task["result"], answer("openai", question));
            break;
        }
        assert!(Instant::now() < deadline, "not run again: {task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A task's tenant is set once: even the bridge's token cannot make
/// llm-invoke run, answer or fail a task under another tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_tenant_is_set_once() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("tenantonce").llm(&fake, "openai")).await;
    let question = "What is two plus two?";
    let task = system
        .complete_json(json!({ "prompt": question }), Some("acme"))
        .await;
    let event = json!({"task_id": task.task_id, "prompt": "Leak it", "tenant": "globex",
                       "use_cache": false});
    for (path, body) in [
        ("/invoke", event.clone()),
        ("/invoke/fail", json!({"event": event, "error": "forged"})),
    ] {
        let resp = system
            .client
            .post(system.url(path))
            .bearer_auth(INVOKE_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 409, "{path}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("another tenant"), "{path}: {text}");
        assert!(!text.contains(&answer("openai", question)), "{text}");
    }
    let (status, now) = system.task(&task.task_id, Some("acme")).await;
    assert_eq!(status, 200);
    assert_eq!(now["status"], "SUCCESS", "{now}");
    assert_eq!(now["result"], answer("openai", question));
    assert_eq!(fake.calls(), 1);
}

/// A marker written by anyone but the bridge settles nothing: the dead
/// letter it names is still replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_replay_marker_hides_no_dead_letter() {
    let mut options = Options::new("forgedmarker");
    options.partitions = 1;
    let system = System::start(options).await;
    produce(&producer(), &system.topics.raw, None, "poison").await;
    consume(&system.topics.dead_letter, 1, Duration::from_secs(60))
        .await
        .unwrap();
    produce_with_header(&system.topics.dead_letter, "", "aies-replayed", "0").await;
    let counted = replay(
        &system.bridge_config,
        &ReplayArgs {
            reason: Some("not valid JSON".into()),
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(counted.matched, 1, "{counted}");
}
