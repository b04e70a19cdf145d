//! The cache's near-duplicate judge through the API (issue 22): each kind
//! of trap is refused and paraphrases are served, saying the judge's
//! score; `cache_judge` moves along the trade-off per request; and where
//! the judge cannot be asked (as on a plain Spin host), the guard serves
//! at its stricter fallback similarity. None of these pairs is in the
//! held-out split (aies-judge-train refuses one that shares a prompt).

use serde_json::json;
use std::path::Path;

use crate::fake_llm::FakeLlm;
use crate::harness::{metric, model_dir, Options, System};

/// (kind, cached prompt, asked prompt): never the same question.
const TRAPS: [(&str, &str, &str); 13] = [
    ("swap", "Did Google buy YouTube?", "Did YouTube buy Google?"),
    (
        "swap",
        "¿Le debe dinero Ana a Luis?",
        "¿Le debe dinero Luis a Ana?",
    ),
    (
        "intent",
        "What exercises should I do with a sore knee?",
        "What exercises should I avoid with a sore knee?",
    ),
    (
        "intent",
        "¿Qué debo añadir a la masa del pan para que suba?",
        "¿Qué debo quitar de la masa del pan para que suba?",
    ),
    (
        "facet",
        "How much does a kitchen renovation cost?",
        "How long does a kitchen renovation take?",
    ),
    (
        "facet",
        "¿Cuánto cuesta reformar una cocina?",
        "¿Cuánto tarda reformar una cocina?",
    ),
    (
        "audience",
        "Explain how vaccines work to a child.",
        "Explain how vaccines work to an immunologist.",
    ),
    (
        "audience",
        "Explica cómo funcionan las vacunas a un niño.",
        "Explica cómo funcionan las vacunas a un inmunólogo.",
    ),
    (
        "entity",
        "What is the capital of France?",
        "What is the capital of Germany?",
    ),
    (
        "direction",
        "How do I transfer money from savings to checking?",
        "How do I transfer money from checking to savings?",
    ),
    ("number", "Convert 5 miles to km", "Convert 50 miles to km"),
    (
        "negation",
        "How do I cancel my order?",
        "How do I not cancel my order?",
    ),
    (
        "language",
        "How do I reset my password?",
        "¿Cómo restablezco mi contraseña?",
    ),
];

/// (cached prompt, asked prompt): the same question.
const PARAPHRASES: [(&str, &str); 6] = [
    (
        "How do I cancel my subscription?",
        "How can I cancel my subscription?",
    ),
    (
        "What is the capital of France?",
        "What's the capital city of France?",
    ),
    ("Give me a recipe for pancakes", "How do I make pancakes?"),
    (
        "How do I renew my passport?",
        "What's the process for renewing my passport?",
    ),
    (
        "¿Quién escribió Don Quijote?",
        "¿Quién es el autor de Don Quijote?",
    ),
    (
        "¿Cómo renuevo mi pasaporte?",
        "¿Cuál es el trámite para renovar el pasaporte?",
    ),
];

/// Caches each pair's first prompt in a tenant of its own (so that no
/// other entry is a candidate), then asks the second: status and body.
async fn ask_pairs(
    system: &System,
    name: &str,
    pairs: &[(&str, &str)],
) -> Vec<(u16, serde_json::Value)> {
    let mut answers = Vec::new();
    for (i, (cached, asked)) in pairs.iter().enumerate() {
        let tenant = format!("{name}{i}");
        system
            .complete_json(json!({ "prompt": cached }), Some(&tenant))
            .await;
        answers.push(system.process(asked, Some(&tenant)).await);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_trap_kind_is_refused_and_paraphrases_are_served() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("judge").llm(&fake, "openai")).await;
    let traps: Vec<(&str, &str)> = TRAPS.iter().map(|(_, a, b)| (*a, *b)).collect();
    for ((kind, cached, asked), (status, body)) in
        TRAPS.iter().zip(ask_pairs(&system, "trap", &traps).await)
    {
        assert_eq!(
            status, 202,
            "{kind}: {asked:?} must not get the answer of {cached:?}: {body}"
        );
    }
    for ((cached, asked), (status, body)) in PARAPHRASES
        .iter()
        .zip(ask_pairs(&system, "same", &PARAPHRASES).await)
    {
        assert_eq!(status, 200, "{asked:?} asks what {cached:?} asked: {body}");
        assert_eq!(body["cache"]["tier"], "semantic", "{body}");
        assert_eq!(body["cache"]["matched_prompt"], *cached, "{body}");
        let score = body["cache"]["judge_score"].as_f64().unwrap_or(-1.0);
        assert!((0.5..=1.0).contains(&score), "the judge's score: {body}");
    }
    // The swaps, intents, facets, audiences, entity, direction and
    // negation got past the cheap vetoes: the judge refused them.
    let metrics = system.metrics().await;
    let by_judge = metric(&metrics, "aies_cache_guard_refused_total{reason=\"judge\"}");
    assert!(by_judge >= 11.0, "{metrics}");
    for reason in ["numbers", "language"] {
        let name = format!("aies_cache_guard_refused_total{{reason=\"{reason}\"}}");
        assert!(metric(&metrics, &name) >= 1.0, "{reason}: {metrics}");
    }
}

/// `cache_judge` per request: a paraphrase that only the lenient level
/// serves (e5 judge score about 0.85: for English prompts default needs
/// 0.88, lenient 0.62, from `make judge`); an unknown level is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_chooses_how_sure_the_judge_must_be() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("judge-level").llm(&fake, "openai")).await;
    let (cached, asked) = ("Give me a recipe for pancakes", "Give me a pancake recipe");
    // A tenant per level: a refused ask caches its own answer.
    for (level, served) in [("strict", false), ("default", false), ("lenient", true)] {
        let tenant = format!("level-{level}");
        system
            .complete_json(json!({ "prompt": cached }), Some(&tenant))
            .await;
        let (status, body) = system
            .process_json(
                json!({"prompt": asked, "cache_judge": level}),
                Some(&tenant),
            )
            .await;
        assert_eq!(status, if served { 200 } else { 202 }, "{level}: {body}");
        if served {
            assert_eq!(body["cache"]["matched_prompt"], cached, "{body}");
            assert!(
                body["cache"]["judge_score"].as_f64().unwrap() >= 0.5,
                "{body}"
            );
        }
    }
    let (status, bad) = system
        .process_json(json!({"prompt": asked, "cache_judge": "maybe"}), None)
        .await;
    assert_eq!(status, 400, "{bad}");
}

/// A model folder like the repository's, but the judge has no weights: the
/// host cannot answer `llm.infer` for it, as a plain Spin host cannot.
fn models_without_the_judge(dir: &Path) {
    for entry in std::fs::read_dir(model_dir()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let into = dir.join(&name);
        std::fs::create_dir_all(&into).unwrap();
        for file in std::fs::read_dir(entry.path()).unwrap() {
            let file = file.unwrap();
            if file.file_name() != "judge.json" {
                std::os::unix::fs::symlink(file.path(), into.join(file.file_name())).unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_judge_the_guard_serves_only_at_its_fallback_similarity() {
    let fake = FakeLlm::start().await;
    let models = tempfile::tempdir().unwrap();
    models_without_the_judge(models.path());
    let mut options = Options::new("no-judge").llm(&fake, "openai");
    options.model_dir = Some(models.path().to_path_buf());
    let system = System::start(options).await;
    let pairs = [
        // e5 similarity 0.998: above the fallback's 0.98, the same words.
        (
            "How do I reset my password?",
            "How can I reset my password?",
        ),
        // 0.973: a paraphrase the judge serves, below the fallback.
        (
            "How do I renew my passport?",
            "What's the process for renewing my passport?",
        ),
        // 0.996: a trap the guard's direction check sees.
        (
            "How do I transfer money from savings to checking?",
            "How do I transfer money from checking to savings?",
        ),
    ];
    let answers = ask_pairs(&system, "fallback", &pairs).await;
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    assert!(
        answers[0].1["cache"]["judge_score"].is_null(),
        "{}",
        answers[0].1
    );
    assert_eq!(answers[1].0, 202, "below the fallback: {}", answers[1].1);
    assert_eq!(answers[2].0, 202, "the guard refuses: {}", answers[2].1);
}
