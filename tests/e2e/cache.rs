//! The cache's tiers and guard on the real stack: a repeat is answered by
//! the exact tier without an embedding; a near-miss above the similarity
//! threshold is refused by the guard, counted by reason, and goes to the
//! LLM; a paraphrase is still answered, saying what it matched.

use crate::fake_llm::{answer, FakeLlm};
use crate::harness::{metric, Options, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_is_answered_by_the_exact_tier_without_an_embedding() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("exact").llm(&fake, "openai");
    // Remote embeddings, so that every embedding is counted.
    options
        .variables
        .insert("embedding_provider".into(), "openai".into());
    let system = System::start(options).await;
    let prompt = "¿Cuántos kilómetros son 10 millas?";
    system.complete(prompt).await;
    let embedded = fake.embedding_calls();

    let (status, hit) = system
        .process("  cuantos KILOMETROS son 10 millas ", None)
        .await;
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["cache"]["tier"], "exact", "{hit}");
    assert_eq!(hit["cache"]["matched_prompt"], prompt);
    assert_eq!(hit["result"], answer("openai", prompt));
    assert_eq!(
        fake.embedding_calls(),
        embedded,
        "no embedding for a repeat"
    );

    // Numbers are never folded: another number is not a repeat.
    let (status, body) = system
        .process("¿Cuántos kilómetros son 100 millas?", None)
        .await;
    assert_eq!(status, 202, "{body}");
    let metrics = system.metrics().await;
    assert_eq!(metric(&metrics, "aies_cache_hits_exact_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_misses_are_refused_by_the_guard_and_paraphrases_still_hit() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("guard").llm(&fake, "openai")).await;
    for cached in ["Convert 5 miles to km", "How do I cancel my subscription?"] {
        system.complete(cached).await;
    }
    // Near-misses that all-MiniLM-L6-v2 scores above the threshold.
    for (near_miss, reason) in [
        ("Convert 5 km to miles", "units"),
        ("How do I not cancel my subscription?", "negation"),
    ] {
        let (status, body) = system.process(near_miss, None).await;
        assert_eq!(
            status, 202,
            "{near_miss:?} must not get a cached answer: {body}"
        );
        let task = system
            .wait_final(body["task_id"].as_str().unwrap(), None)
            .await;
        assert_eq!(task.unwrap().result.unwrap(), answer("openai", near_miss));
        let metrics = system.metrics().await;
        let refused = format!("aies_cache_guard_refused_total{{reason=\"{reason}\"}}");
        assert!(
            metric(&metrics, &refused) >= 1.0,
            "{near_miss:?}: {metrics}"
        );
    }
    let (status, hit) = system
        .process("How can I cancel my subscription?", None)
        .await;
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["cache"]["tier"], "semantic");
    assert_eq!(
        hit["cache"]["matched_prompt"],
        "How do I cancel my subscription?"
    );
    assert_eq!(
        hit["result"],
        answer("openai", "How do I cancel my subscription?")
    );
    // The two cached prompts and the two near-misses reached the LLM; the
    // paraphrase did not.
    assert_eq!(fake.calls(), 4);
}
