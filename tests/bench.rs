//! `make bench`: latency of the running system, with baselines measured in
//! the same run so the figures compare as ratios on a noisy machine.
//!
//! - baselines: a KNN query sent straight to Redis Stack by a native client,
//!   and multilingual-e5-small embedding one prompt natively (together, the
//!   floor for any semantic cache lookup);
//! - exact-tier hit: the same prompt again, answered without an embedding
//!   (ingest -> cache-lookup);
//! - semantic hit: a paraphrase, answered from the semantic cache (ingest ->
//!   cache-lookup -> embed (multilingual-e5-small) -> cache-lookup, guard
//!   included);
//! - the guard alone: reading a prompt and five candidates and checking them;
//! - miss: the 202 answer, and the time until the task is SUCCESS through
//!   Kafka, the bridge and an LLM that takes `LLM_MS` to answer.

use aies_host::llm::{EmbeddingEngine, SentenceBert, E5_SMALL};
use aies_tests::fake_llm::FakeLlm;
use aies_tests::harness::{model_dir, Options, System};
use anyhow::Result;
use std::time::{Duration, Instant};

const HITS: usize = 200;
const MISSES: usize = 40;
const LLM_MS: u64 = 300;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, samples: &mut [Duration]) -> Duration {
    let p50 = percentile(samples, 0.5);
    println!(
        "{name:<34} n={:<4} p50={:>8.2} ms  p95={:>8.2} ms",
        samples.len(),
        ms(p50),
        ms(percentile(samples, 0.95))
    );
    p50
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_millis(LLM_MS));
    let system = System::start(Options::new("bench").llm(&fake, "openai")).await;

    // Fill the cache with one answer, and wait for it to land.
    let (_, body) = system.process("What is the capital of France?", None).await;
    system
        .wait_final(body["task_id"].as_str().unwrap(), None)
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Baseline: the same KNN query, straight to Redis from native code.
    let mut redis = system.redis.connection(0).await;
    let vector: Vec<u8> = (0..384)
        .flat_map(|i| ((i as f32).sin()).to_le_bytes())
        .collect();
    let mut knn = Vec::new();
    for _ in 0..HITS {
        let started = Instant::now();
        let _: redis::Value = redis::cmd("FT.SEARCH")
            .arg("aies_cache_idx_local_multilingual_e5_small")
            .arg("(@tenant:{default})=>[KNN 5 @vector $q AS distance]")
            .arg("PARAMS")
            .arg(2)
            .arg("q")
            .arg(&vector)
            .arg("RETURN")
            .arg(4)
            .arg("prompt")
            .arg("result")
            .arg("task_id")
            .arg("distance")
            .arg("DIALECT")
            .arg(2)
            .query_async(&mut redis)
            .await?;
        knn.push(started.elapsed());
    }

    let model = SentenceBert::load(&model_dir().join(E5_SMALL))?;
    let prompt = vec!["query: What's the capital city of France?".to_string()];
    let mut embeds = Vec::new();
    for _ in 0..HITS {
        let started = Instant::now();
        model.embed(&prompt)?;
        embeds.push(started.elapsed());
    }

    let mut hits = Vec::new();
    for _ in 0..HITS {
        let started = Instant::now();
        let (status, body) = system
            .process("What's the capital city of France?", None)
            .await;
        hits.push(started.elapsed());
        anyhow::ensure!(status == 200, "expected a cache hit, got {status}");
        anyhow::ensure!(body["cache"]["tier"] == "semantic", "{body}");
    }
    let mut exact = Vec::new();
    for _ in 0..HITS {
        let started = Instant::now();
        let (status, body) = system.process("what is the capital of france", None).await;
        exact.push(started.elapsed());
        anyhow::ensure!(
            body["cache"]["tier"] == "exact",
            "expected an exact hit: {status} {body}"
        );
    }
    let mut guard = Vec::new();
    let policy = aies_cache_guard::Policy::default();
    for _ in 0..HITS {
        let started = Instant::now();
        let asked = aies_cache_guard::Analysis::new("What's the capital city of France?");
        for _ in 0..5 {
            let cached = aies_cache_guard::Analysis::new("What is the capital of France?");
            std::hint::black_box(aies_cache_guard::verify(&asked, &cached, 0.95, &policy).ok());
        }
        guard.push(started.elapsed());
    }

    let mut accepted = Vec::new();
    let mut completed = Vec::new();
    for i in 0..MISSES {
        // A tenant of its own makes each lookup a real miss (embed + KNN).
        let tenant = format!("bench-{i}");
        let prompt = format!("Benchmark question {i}: explain topic number {i} in detail");
        let started = Instant::now();
        let (status, body) = system.process(&prompt, Some(&tenant)).await;
        accepted.push(started.elapsed());
        anyhow::ensure!(status == 202, "expected a miss, got {status}");
        system
            .wait_final(body["task_id"].as_str().unwrap(), Some(&tenant))
            .await?;
        completed.push(started.elapsed());
    }

    println!("AI-EventStream latency (one client, sequential requests; LLM stand-in answers in {LLM_MS} ms)");
    let knn = report("baseline: native KNN in Redis", &mut knn);
    let embed = report("baseline: native e5 embedding", &mut embeds);
    let hit = report("semantic hit: POST /process -> 200", &mut hits);
    let exact = report("exact-tier hit: POST /process -> 200", &mut exact);
    let guard = report("guard: prompt + 5 candidates", &mut guard);
    let acc = report("miss: POST /process -> 202", &mut accepted);
    let done = report("miss: until SUCCESS via Kafka", &mut completed);
    println!();
    println!(
        "cache hit / (embedding + KNN)  {:>6.1}x  (the cost of the wasm pipeline around them)",
        ms(hit) / (ms(embed) + ms(knn))
    );
    println!(
        "exact-tier hit / semantic hit  {:>6.2}x  (no embedding, no KNN)",
        ms(exact) / ms(hit)
    );
    println!(
        "guard / semantic hit           {:>6.3}x  (what verifying candidates costs)",
        ms(guard) / ms(hit)
    );
    println!("miss accepted / cache hit      {:>6.1}x", ms(acc) / ms(hit));
    println!(
        "miss to SUCCESS / cache hit    {:>6.1}x  (the latency the cache saves)",
        ms(done) / ms(hit)
    );
    println!(
        "pipeline overhead on a miss    {:>8.2} ms  (until SUCCESS minus the LLM's {LLM_MS} ms)",
        ms(done) - LLM_MS as f64
    );
    Ok(())
}
