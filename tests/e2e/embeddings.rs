//! The host's all-MiniLM-L6-v2 gives the reference sentence-transformers
//! cosines, alone and in batches of different lengths (padding must not
//! change a sentence's vector); each local model's default thresholds hold.

use aies_host::llm::{EmbeddingEngine, SentenceBert, MINILM};

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
    let model = SentenceBert::load(&dir).expect("model files: run `make setup`");
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

/// The default thresholds of each local model, with the guard, on a few
/// pairs (the full evidence is `make cache-eval`): paraphrases are served,
/// different questions and near-misses are not, in English and Spanish.
#[test]
fn each_models_defaults_serve_paraphrases_and_refuse_near_misses() {
    use aies_cache_guard::{verify, Analysis, Policy, Thresholds};
    use aies_host::llm::E5_SMALL;
    let paraphrases = [
        (
            "What is the capital of France?",
            "What's the capital city of France?",
        ),
        (
            "How do I reset my password?",
            "How can I reset my password?",
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
        (
            "What is the capital of France?",
            "How do I bake sourdough bread?",
        ),
        ("Convert 5 miles to km", "Convert 5 km to miles"),
        ("How do I cancel my order?", "How do I not cancel my order?"),
        (
            "How do I reset my password?",
            "¿Cómo restablezco mi contraseña?",
        ),
    ];
    let spanish = [
        (
            "Dame una receta de panqueques",
            "Dame una receta para hacer panqueques",
        ),
        (
            "¿Quién escribió Don Quijote?",
            "¿Quién es el autor de Don Quijote?",
        ),
    ];
    for (name, prefix) in [(MINILM, ""), (E5_SMALL, "query: ")] {
        let dir = manifest()
            .parent()
            .unwrap()
            .join(".spin/ai-models")
            .join(name);
        let model = SentenceBert::load(&dir).expect("model files: run `make setup`");
        let t = Thresholds::for_model(name);
        let policy = Policy {
            reworded_similarity: t.reworded,
            ..Policy::default()
        };
        let served = |a: &str, b: &str| {
            let texts = [format!("{prefix}{a}"), format!("{prefix}{b}")];
            let v = model.embed(&texts).unwrap().vectors;
            let sim = cosine(&v[0], &v[1]);
            let ok = sim >= t.similarity
                && verify(&Analysis::new(b), &Analysis::new(a), sim, &policy).is_ok();
            println!("{name} {sim:.3} served={ok}  {a} / {b}");
            ok
        };
        for (a, b) in paraphrases {
            assert!(served(a, b), "{name}: {a} / {b} should be served");
        }
        for (a, b) in different {
            assert!(!served(a, b), "{name}: {a} / {b} must not be served");
        }
        if name == E5_SMALL {
            for (a, b) in spanish {
                assert!(served(a, b), "{name}: {a} / {b} should be served");
            }
        }
    }
}
