//! A prompt's whole path: miss -> PENDING -> Kafka -> bridge -> llm-invoke ->
//! LLM -> store -> SUCCESS; then a paraphrase is a cache hit with the same
//! answer, an unrelated prompt and another tenant miss.

use aies_contract::{TaskResult, TaskStatus};
use std::time::Duration;

use crate::fake_llm::{answer, FakeLlm};
use crate::harness::{consume, metric, Options, System, INVOKE_TOKEN};

async fn miss_then_hit(provider: &'static str) {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new(provider).llm(&fake, provider)).await;

    let prompt = "What is the capital of France?";
    let (status, body) = system.process(prompt, None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "PENDING");
    let task_id = body["task_id"].as_str().unwrap().to_string();

    let task = system.wait_final(&task_id, None).await.unwrap();
    assert_eq!(task.status, TaskStatus::Success, "{task:?}");
    assert_eq!(
        task.result.as_deref(),
        Some(answer(provider, prompt).as_str())
    );
    assert_eq!(fake.prompts(), vec![prompt.to_string()]);

    // The final result is on datos_procesados for other consumers.
    let results = consume(&system.topics.results, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(results[0].0.as_deref(), Some(task_id.as_str()));
    let published: TaskResult = serde_json::from_str(&results[0].1).unwrap();
    assert_eq!(published, task);

    // A paraphrase is answered from the cache, at once, with the same answer.
    let (status, hit) = system
        .process("What's the capital city of France?", None)
        .await;
    assert_eq!(status, 200, "paraphrase should hit: {hit}");
    assert_eq!(hit["cached"], true);
    assert_eq!(hit["status"], "SUCCESS");
    assert_eq!(hit["result"], task.result.clone().unwrap());
    assert_eq!(hit["task_id"], task_id);
    assert!(hit["similarity"].as_f64().unwrap() >= 0.8, "{hit}");

    // An unrelated prompt misses, and so does the same prompt for another tenant.
    let (status, miss) = system.process("How do I bake sourdough bread?", None).await;
    assert_eq!(status, 202, "unrelated prompt should miss: {miss}");
    let (status, other) = system.process(prompt, Some("other-tenant")).await;
    assert_eq!(
        status, 202,
        "another tenant must not see the cache: {other}"
    );
    // Nor can that tenant read the first tenant's task.
    let (status, _) = system.task(&task_id, Some("other-tenant")).await;
    assert_eq!(status, 404);

    let metrics = system.metrics().await;
    assert_eq!(metric(&metrics, "aies_cache_errors_total"), 0.0);
    assert_eq!(metric(&metrics, "aies_cache_hits_total"), 1.0);
    assert_eq!(metric(&metrics, "aies_cache_misses_total"), 3.0);
    assert_eq!(metric(&metrics, "aies_requests_total"), 4.0);
    assert!(metric(&metrics, "aies_tasks_total{status=\"SUCCESS\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_openai() {
    miss_then_hit("openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_gemini() {
    miss_then_hit("gemini").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_llm_errors_are_retried_and_permanent_ones_fail_the_task() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("retries").llm(&fake, "openai")).await;

    // Two overloads (one with Retry-After) and then an answer: SUCCESS.
    fake.fail_next(503, None);
    fake.fail_next(429, Some(0));
    let (status, body) = system.process("Tell me about retries", None).await;
    assert_eq!(status, 202, "{body}");
    let task = system
        .wait_final(body["task_id"].as_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Success, "{task:?}");
    assert_eq!(fake.calls(), 3);

    // A 400 will not get better with retries: FAILURE, with the reason.
    fake.fail_next(400, None);
    let (status, body) = system.process("A prompt the provider rejects", None).await;
    assert_eq!(status, 202, "{body}");
    let task = system
        .wait_final(body["task_id"].as_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Failure, "{task:?}");
    assert!(task.error.as_deref().unwrap().contains("400"), "{task:?}");
    assert_eq!(fake.calls(), 4);

    // Both final results reached datos_procesados.
    let results = consume(&system.topics.results, 2, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_does_not_call_the_llm_again() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("redelivery").llm(&fake, "openai")).await;
    let invoke = serde_json::json!({
        "task_id": "redelivered-1", "prompt": "Say hi", "tenant": "default", "use_cache": false
    });
    let call = |token: &'static str| {
        system
            .client
            .post(system.url("/invoke"))
            .bearer_auth(token)
            .json(&invoke)
            .send()
    };
    // Without the bridge's token, llm-invoke refuses.
    assert_eq!(call("wrong").await.unwrap().status(), 401);
    assert_eq!(fake.calls(), 0);

    let first: TaskResult = call(INVOKE_TOKEN).await.unwrap().json().await.unwrap();
    let second: TaskResult = call(INVOKE_TOKEN).await.unwrap().json().await.unwrap();
    assert_eq!(first.status, TaskStatus::Success);
    assert_eq!(first, second);
    assert_eq!(
        fake.calls(),
        1,
        "the second delivery must be answered from Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_llm_configured_the_offline_stand_in_answers_and_says_so() {
    let system = System::start(Options::new("offline")).await;
    let (status, body) = system.process("Anything at all", None).await;
    assert_eq!(status, 202, "{body}");
    let task = system
        .wait_final(body["task_id"].as_str().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Success);
    assert_eq!(task.model.as_deref(), Some("offline-stand-in"));
    assert!(task.result.unwrap().contains("not a real answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_that_differ_only_in_a_number_do_not_share_an_answer() {
    let system = System::start(Options::new("numbers")).await;
    system.complete("Explain topic number 3 in detail").await;
    // MiniLM scores these two 0.875, above the threshold: the numbers decide.
    let (status, other) = system
        .process("Explain topic number 4 in detail", None)
        .await;
    assert_eq!(status, 202, "a different number must miss: {other}");
    let (status, same) = system
        .process("Explain topic number 3 in detail, please", None)
        .await;
    assert_eq!(status, 200, "same number, paraphrased, should hit: {same}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_dead_lettered_without_blocking_the_partition() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("poison").llm(&fake, "openai");
    options.partitions = 1;
    let system = System::start(options).await;
    let producer = crate::harness::producer();
    let raw = &system.topics.raw;
    crate::harness::produce(&producer, raw, Some("k"), "this is not JSON").await;
    crate::harness::produce(&producer, raw, Some("k"), r#"{"prompt": "   "}"#).await;
    crate::harness::produce(
        &producer,
        raw,
        Some("k"),
        r#"{"prompt": "still processed"}"#,
    )
    .await;

    let dead = consume(&system.topics.dead_letter, 2, Duration::from_secs(30))
        .await
        .unwrap();
    let payloads: Vec<&str> = dead.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(payloads, vec!["this is not JSON", r#"{"prompt": "   "}"#]);
    // The event behind them, with the same key, still went through.
    let results = consume(&system.topics.results, 1, Duration::from_secs(30))
        .await
        .unwrap();
    let r: TaskResult = serde_json::from_str(&results[0].1).unwrap();
    assert_eq!(r.status, TaskStatus::Success);
    assert_eq!(
        r.result.as_deref(),
        Some(answer("openai", "still processed").as_str())
    );
}

/// `/invoke/batch` answers each event on its own: a bad event is a 400 in
/// its place while the others run; a redelivered one is answered from the
/// record without another LLM call; an oversized batch is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_event_on_its_own() {
    use serde_json::json;
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("invoke-batch").llm(&fake, "openai")).await;
    let event = |id: &str, prompt: &str| json!({"task_id": id, "prompt": prompt, "tenant": "default", "use_cache": false});
    let batch = json!({"events": [
        event("batch-a", "First question"),
        event("not a valid id!", "Refused"),
        event("batch-b", "Second question"),
    ]});
    let post = |body: serde_json::Value| {
        system
            .client
            .post(system.url("/invoke/batch"))
            .bearer_auth(INVOKE_TOKEN)
            .json(&body)
            .send()
    };
    let resp = post(batch.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let reply: serde_json::Value = resp.json().await.unwrap();
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{reply}");
    for (i, prompt) in [(0, "First question"), (2, "Second question")] {
        assert_eq!(results[i]["status"], 200, "{reply}");
        assert_eq!(results[i]["task"]["status"], "SUCCESS", "{reply}");
        assert_eq!(
            results[i]["task"]["result"],
            answer("openai", prompt),
            "{reply}"
        );
    }
    assert_eq!(results[1]["status"], 400, "{reply}");
    assert_eq!(fake.calls(), 2);

    // Delivered again: the same answers, no new LLM call.
    let again: serde_json::Value = post(batch).await.unwrap().json().await.unwrap();
    assert_eq!(again["results"][0], results[0]);
    assert_eq!(fake.calls(), 2);

    let too_many: Vec<_> = (0..=aies_contract::MAX_BATCH)
        .map(|i| event(&format!("many-{i}"), "x"))
        .collect();
    let resp = post(json!({ "events": too_many })).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(fake.calls(), 2);
}
