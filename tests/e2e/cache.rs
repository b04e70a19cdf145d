//! The cache's tiers and guard on the real stack: a repeat is answered by
//! the exact tier without an embedding; a near-miss above the similarity
//! threshold is refused by the guard, counted by reason, and goes to the
//! LLM; a paraphrase is still answered, saying what it matched, and asked
//! again it is answered by its alias.

use crate::cache_admin::{admin, ADMIN_TOKEN};
use crate::fake_llm::{answer, FakeLlm};
use crate::harness::{metric, Options, System};
use serde_json::json;

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
    // Near-misses that the embedding scores above the threshold: a cheap
    // veto refuses the first, the judge the second (negation is one of
    // its features, not a veto).
    for (near_miss, reason) in [
        ("Convert 5 km to miles", "units"),
        ("How do I not cancel my subscription?", "judge"),
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

/// A paraphrase asked again is answered by the alias its first semantic
/// hit left (the same entry and similarity, no embedding), but only in its
/// tenant, under the thresholds that accepted it, and while its entry lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_paraphrase_is_answered_by_its_alias() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("alias").llm(&fake, "openai");
    // Remote embeddings, so that every embedding is counted.
    for (k, v) in [
        ("embedding_provider", "openai"),
        ("admin_token", ADMIN_TOKEN),
    ] {
        options.variables.insert(k.into(), v.into());
    }
    let system = System::start(options).await;
    let prompt = "Where is the Eiffel Tower?";
    let paraphrase = "Where is the Eiffel Tower, please?";
    for tenant in [None, Some("acme")] {
        system
            .complete_json(json!({ "prompt": prompt }), tenant)
            .await;
    }
    let (status, first) = system.process(paraphrase, None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["cache"]["tier"], "semantic", "{first}");
    let embedded = fake.embedding_calls();

    let (status, again) = system
        .process("  where is the EIFFEL tower please", None)
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["cache"], first["cache"],
        "the same entry, tier and similarity"
    );
    assert_eq!(again["result"], answer("openai", prompt));
    assert_eq!(
        fake.embedding_calls(),
        embedded,
        "no embedding for a repeat"
    );

    // Another tenant's lookup is its own: embedded, and its own entry.
    let (status, theirs) = system.process(paraphrase, Some("acme")).await;
    assert_eq!(status, 200, "{theirs}");
    assert_ne!(theirs["cache"]["entry"], first["cache"]["entry"]);
    assert_eq!(fake.embedding_calls(), embedded + 1);

    // A stricter threshold than the one that accepted it: not served.
    let similarity = first["cache"]["similarity"].as_f64().unwrap();
    let strict = json!({"prompt": paraphrase, "cache_threshold": (similarity + 1.0) / 2.0});
    let (status, body) = system.process_json(strict, None).await;
    assert_eq!(status, 202, "{body}");
    system
        .finished(body["task_id"].as_str().unwrap(), None)
        .await;

    // Its entry invalidated, acme's alias answers nothing.
    let entry = json!({ "entry": theirs["cache"]["entry"] });
    let (status, gone) = admin(&system, "POST", "invalidate", Some(entry)).await;
    assert_eq!((status, gone["deleted"].as_i64()), (200, Some(1)), "{gone}");
    let (status, body) = system.process(paraphrase, Some("acme")).await;
    assert_eq!(status, 202, "{body}");
    system
        .finished(body["task_id"].as_str().unwrap(), Some("acme"))
        .await;

    // Its entry answered again (a new task at the same key), beta's alias
    // does not serve the new answer: the lookup embeds and searches again.
    let beta = Some("beta");
    system
        .complete_json(json!({ "prompt": prompt }), beta)
        .await;
    let (_, old) = system.process(paraphrase, beta).await;
    let entry = json!({ "entry": old["cache"]["entry"] });
    admin(&system, "POST", "invalidate", Some(entry)).await;
    system
        .complete_json(json!({ "prompt": prompt }), beta)
        .await;
    let embedded = fake.embedding_calls();
    let (status, new) = system.process(paraphrase, beta).await;
    assert_eq!(status, 200, "{new}");
    assert_eq!(new["cache"]["entry"], old["cache"]["entry"]);
    assert_ne!(new["task_id"], old["task_id"], "the new answer's task");
    assert_eq!(
        fake.embedding_calls(),
        embedded + 1,
        "the stale alias served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_served_only_within_their_scope() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("scope").llm(&fake, "openai")).await;
    let prompt = "What is the capital of France?";
    system.complete(prompt).await;
    let french = json!({"prompt": prompt, "system": "Answer in French.", "temperature": 0.2});
    system.complete_json(french.clone(), None).await;
    let sent = fake.bodies().pop().unwrap();
    assert_eq!(sent["messages"][0]["role"], "system", "{sent}");
    assert_eq!(sent["messages"][0]["content"], "Answer in French.");
    assert_eq!(sent["messages"][1]["content"], prompt);
    assert!((sent["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);

    let (status, plain) = system.process(prompt, None).await;
    assert_eq!(status, 200, "{plain}");
    let (status, again) = system.process_json(french, None).await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(plain["cache"]["scope"], again["cache"]["scope"]);
    assert_ne!(plain["cache"]["entry"], again["cache"]["entry"]);
    assert_eq!(fake.calls(), 2);

    // Another temperature, max_tokens, system prompt or tenant: a miss.
    for (body, tenant) in [
        (
            json!({"prompt": prompt, "system": "Answer in French.", "temperature": 0.9}),
            None,
        ),
        (json!({"prompt": prompt, "max_tokens": 20}), None),
        (
            json!({"prompt": prompt, "system": "Answer in German."}),
            None,
        ),
        (json!({"prompt": prompt}), Some("other-tenant")),
    ] {
        let (status, answer) = system.process_json(body.clone(), tenant).await;
        assert_eq!(status, 202, "{body} {tenant:?}: {answer}");
    }

    // Another LLM model on the same Redis: nothing of the first is served.
    let mut options = Options::new("scope-model").llm(&fake, "openai");
    options
        .variables
        .insert("redis_port".into(), system.redis.port.to_string());
    options
        .variables
        .insert("openai_model".into(), "another-model".into());
    let other = System::start(options).await;
    let (status, answer) = other.process(prompt, None).await;
    assert_eq!(status, 202, "another LLM model must miss: {answer}");
}

/// While a prompt is being answered, the same prompt in the same scope
/// joins that task instead of calling the LLM again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_while_pending_joins_the_running_task() {
    let fake = FakeLlm::start().await;
    // Slow enough that the first task is still running, even on a loaded
    // machine, when the repeat arrives.
    fake.set_delay(std::time::Duration::from_secs(8));
    let system = System::start(Options::new("coalesce").llm(&fake, "openai")).await;
    let prompt = "Summarise the French revolution in one line";
    let (status, first) = system.process(prompt, None).await;
    assert_eq!(status, 202, "{first}");
    let (status, joined) = system.process(&prompt.to_uppercase(), None).await;
    assert_eq!(status, 202, "{joined}");
    assert_eq!(joined["task_id"], first["task_id"], "{joined}");
    assert_eq!(joined["coalesced"], true);
    // Not across tenants, and not when the cache is not wanted.
    let (_, other_tenant) = system.process(prompt, Some("t2")).await;
    assert_ne!(other_tenant["task_id"], first["task_id"]);
    let fresh = json!({"prompt": prompt, "use_cache": false});
    let (_, uncached) = system.process_json(fresh, None).await;
    assert_ne!(uncached["task_id"], first["task_id"]);
    assert_eq!(uncached.get("coalesced"), None);

    let id = first["task_id"].as_str().unwrap();
    let task = system.finished(id, None).await;
    assert_eq!(task.result.unwrap(), answer("openai", prompt));
    for t in [&other_tenant, &uncached] {
        let tenant = (t == &other_tenant).then_some("t2");
        system
            .finished(t["task_id"].as_str().unwrap(), tenant)
            .await;
    }
    assert_eq!(fake.calls(), 3, "{:?}", fake.prompts());
    // Done: the next one is a cache hit, not a join.
    let (status, hit) = system.process(prompt, None).await;
    assert_eq!(status, 200, "{hit}");
    let metrics = system.metrics().await;
    assert_eq!(metric(&metrics, "aies_cache_coalesced_total"), 1.0);
}

/// `cache_threshold` tightens the semantic tier for one request (never
/// below the model's floor); `use_cache: false` skips the cache; bad values
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_may_ask_for_a_stricter_threshold_or_no_cache() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("threshold").llm(&fake, "openai")).await;
    let cached = "How do I cancel my subscription?";
    system.complete(cached).await;
    let paraphrase = "How can I cancel my subscription?";
    let strict = json!({"prompt": paraphrase, "cache_threshold": 0.9999});
    let (status, body) = system.process_json(strict, None).await;
    assert_eq!(status, 202, "{body}");
    system
        .finished(body["task_id"].as_str().unwrap(), None)
        .await;
    // A looser one than the floor is raised to it: an unrelated prompt
    // still misses.
    let loose = json!({"prompt": "What is the boiling point of water?", "cache_threshold": 0.0});
    let (status, body) = system.process_json(loose, None).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = system
        .process_json(json!({"prompt": cached, "use_cache": false}), None)
        .await;
    assert_eq!(status, 202, "use_cache false must not be served: {body}");
    for bad in [
        json!({"prompt": cached, "cache_threshold": 1.5}),
        json!({"prompt": cached, "temperature": 3}),
        json!({"prompt": cached, "max_tokens": 0}),
    ] {
        let (status, body) = system.process_json(bad.clone(), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // The admin endpoints are off without an admin_token.
    assert_eq!(system.get_status("/admin/cache/stats").await, 403);
}

/// The cache's entries, as (tenant, prompt), sorted.
async fn entries(system: &System) -> Vec<(String, String)> {
    let mut redis = system.redis.connection(0).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("aies:cache:*")
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut out = Vec::new();
    for key in keys {
        let (tenant, prompt): (String, String) = redis::cmd("HMGET")
            .arg(&key)
            .arg("tenant")
            .arg("prompt")
            .query_async(&mut redis)
            .await
            .unwrap();
        out.push((tenant, prompt));
    }
    out.sort();
    out
}

/// A tenant's quota evicts its own entries, and a full cache evicts the
/// writing tenant's own entries first: one tenant cannot flush another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_fills_the_cache_evicts_its_own_entries_first() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("quota").llm(&fake, "openai");
    options
        .variables
        .insert("cache_max_entries".into(), "3".into());
    options
        .variables
        .insert("cache_max_entries_per_tenant".into(), "2".into());
    let system = System::start(options).await;
    let ask = |tenant: &'static str, prompt: &'static str| {
        system.complete_json(json!({ "prompt": prompt }), Some(tenant))
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<_> = list
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect();
        v.sort();
        v
    };
    ask("globex", "Who painted the Mona Lisa?").await;
    ask("acme", "What is the boiling point of water?").await;
    ask("acme", "How many legs does a spider have?").await;
    // acme's third entry: over its quota of 2, its oldest goes.
    ask("acme", "What is the capital of Japan?").await;
    assert_eq!(
        entries(&system).await,
        pairs(&[
            ("acme", "How many legs does a spider have?"),
            ("acme", "What is the capital of Japan?"),
            ("globex", "Who painted the Mona Lisa?"),
        ])
    );
    // initech has no entry of its own: the cache's least recently used goes.
    ask("initech", "Which is the largest ocean?").await;
    // Its second: the cache is full, so its own entry goes, not acme's older one.
    ask("initech", "What is the speed of sound?").await;
    assert_eq!(
        entries(&system).await,
        pairs(&[
            ("acme", "How many legs does a spider have?"),
            ("acme", "What is the capital of Japan?"),
            ("initech", "What is the speed of sound?"),
        ])
    );
    let metrics = system.metrics().await;
    assert_eq!(metric(&metrics, "aies_cache_evicted_total"), 3.0);
}
