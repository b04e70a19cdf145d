//! The host's all-MiniLM-L6-v2 gives the reference sentence-transformers
//! cosines, alone and in batches of different lengths (padding must not
//! change a sentence's vector).

use aies_host::llm::{EmbeddingEngine, MiniLm, MINILM};

use crate::harness::manifest;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

const PAIRS: &[(&str, &str, f32)] = &[
    (
        "A man is eating food.",
        "A man is eating a piece of bread.",
        0.755,
    ),
    (
        "A man is eating food.",
        "The girl is carrying a baby.",
        -0.105,
    ),
    (
        "What is the capital of France?",
        "How do I bake sourdough bread?",
        0.133,
    ),
];

#[test]
fn reference_cosines_one_at_a_time_and_batched() {
    let dir = manifest()
        .parent()
        .unwrap()
        .join(".spin/ai-models")
        .join(MINILM);
    let model = MiniLm::load(&dir).expect("model files: run `make setup`");
    let embed = |texts: &[&str]| {
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        model.embed(&texts).unwrap().vectors
    };
    for (a, b, want) in PAIRS {
        let single = cosine(&embed(&[a])[0], &embed(&[b])[0]);
        assert!(
            (single - want).abs() < 0.01,
            "{a} / {b}: {single} != {want}"
        );
        // In one batch with a much longer sentence, so both get padded.
        let long =
            "This sentence is here only to make the batch pad the shorter ones with many tokens.";
        let batch = embed(&[a, long, b]);
        let batched = cosine(&batch[0], &batch[2]);
        assert!(
            (batched - want).abs() < 0.01,
            "batched {a} / {b}: {batched} != {want}"
        );
        assert_eq!(batch[0].len(), 384);
    }
}

/// The evidence behind the default `similarity_threshold` in spin.toml:
/// paraphrases must score above it, different questions below. (Prompts
/// that differ only in a number score as high as paraphrases; the cache
/// tells those apart by their numbers, see `pipeline.rs`.)
#[test]
fn the_default_threshold_separates_paraphrases_from_different_questions() {
    let toml = std::fs::read_to_string(manifest()).unwrap();
    let threshold: f32 = toml
        .lines()
        .find_map(|l| l.strip_prefix("similarity_threshold = { default = \""))
        .and_then(|rest| rest.split('"').next())
        .and_then(|v| v.parse().ok())
        .expect("similarity_threshold default in spin.toml");
    let dir = manifest()
        .parent()
        .unwrap()
        .join(".spin/ai-models")
        .join(MINILM);
    let model = MiniLm::load(&dir).unwrap();
    let sim = |a: &str, b: &str| {
        let v = model
            .embed(&[a.to_string(), b.to_string()])
            .unwrap()
            .vectors;
        cosine(&v[0], &v[1])
    };
    let paraphrases = [
        (
            "What is the capital of France?",
            "What's the capital city of France?",
        ),
        (
            "How do I reset my password?",
            "How can I reset my password?",
        ),
        (
            "What is the weather like in Paris today?",
            "How is the weather in Paris today?",
        ),
        ("Give me a recipe for pancakes", "Give me a pancake recipe"),
        (
            "Who wrote Don Quixote?",
            "Who is the author of Don Quixote?",
        ),
    ];
    let different = [
        (
            "What is the capital of France?",
            "What is the capital of Germany?",
        ),
        (
            "How do I bake sourdough bread?",
            "How do I bake banana bread?",
        ),
        ("A man is eating food.", "A man is eating a piece of bread."),
        (
            "What is the capital of France?",
            "How do I bake sourdough bread?",
        ),
    ];
    for (a, b) in paraphrases {
        let s = sim(a, b);
        println!("paraphrase {s:.3}  {a} / {b}");
    }
    for (a, b) in different {
        let s = sim(a, b);
        println!("different  {s:.3}  {a} / {b}");
    }
    for (a, b) in paraphrases {
        assert!(
            sim(a, b) >= threshold,
            "{a} / {b} should hit at {threshold}"
        );
    }
    for (a, b) in different {
        assert!(
            sim(a, b) < threshold,
            "{a} / {b} should miss at {threshold}"
        );
    }
}
