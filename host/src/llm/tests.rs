//! The llm interface alone: an [`LlmState`] over models that are fakes (or
//! missing), asked through its host trait.

use super::*;
use crate::bindings::llm::{Error, Host};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Each text's vector is `[length, 1]`; counts the texts it embeds.
#[derive(Default)]
struct Lengths(AtomicUsize);

impl EmbeddingEngine for Lengths {
    fn embed(&self, texts: &[String]) -> anyhow::Result<Embeddings> {
        self.0.fetch_add(texts.len(), Ordering::SeqCst);
        Ok(Embeddings {
            vectors: texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect(),
            tokens: texts.iter().map(|t| t.len() + 2).collect(),
        })
    }
}

/// A component allowed `ai_models`, on an app that has `loaded` loaded,
/// each model run by `engine`.
fn state(ai_models: &[&str], loaded: &[&str], engine: &Arc<Lengths>) -> LlmState {
    let ai_models: Vec<String> = ai_models.iter().map(|m| m.to_string()).collect();
    let engines = loaded
        .iter()
        .map(|m| (*m, engine.clone() as Arc<dyn EmbeddingEngine>))
        .collect();
    LlmState::new(
        Arc::new(Models::loaded(engines, 0)),
        ai_models.into(),
        Priority::Request,
    )
}

#[tokio::test]
async fn infer_is_not_supported_even_for_an_allowed_model() {
    let engine = Arc::new(Lengths::default());
    let mut llm = state(&[MINILM], &[MINILM], &engine);
    let answer = llm.infer(MINILM.into(), "hi".into(), None).await.unwrap();
    assert!(
        matches!(answer, Err(Error::ModelNotSupported)),
        "{answer:?}"
    );
    assert_eq!(engine.0.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn embeddings_come_from_the_allowed_model_with_their_token_count() {
    let engine = Arc::new(Lengths::default());
    let mut llm = state(&[MINILM], &[MINILM], &engine);
    let texts = vec!["hola".to_string(), "mundo!".to_string()];
    let out = llm
        .generate_embeddings(MINILM.into(), texts)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.embeddings, vec![vec![4.0, 1.0], vec![6.0, 1.0]]);
    assert_eq!(out.usage.prompt_token_count, 6 + 8);
    assert_eq!(engine.0.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_model_not_in_the_components_ai_models_is_refused_unrun() {
    // The app has E5 loaded (another component uses it); this one may not.
    let engine = Arc::new(Lengths::default());
    let mut llm = state(&[MINILM], &[MINILM, E5_SMALL], &engine);
    let answer = llm
        .generate_embeddings(E5_SMALL.into(), vec!["hola".into()])
        .await
        .unwrap();
    assert!(
        matches!(answer, Err(Error::ModelNotSupported)),
        "{answer:?}"
    );
    let answer = llm
        .generate_embeddings("gpt-4".into(), vec!["hola".into()])
        .await
        .unwrap();
    assert!(
        matches!(answer, Err(Error::ModelNotSupported)),
        "{answer:?}"
    );
    assert_eq!(engine.0.load(Ordering::SeqCst), 0, "the model ran");
}

#[tokio::test]
async fn too_many_texts_in_one_call_are_invalid_input() {
    let engine = Arc::new(Lengths::default());
    let mut llm = state(&[MINILM], &[MINILM], &engine);
    let answer = llm
        .generate_embeddings(MINILM.into(), vec!["x".into(); MAX_TEXTS + 1])
        .await
        .unwrap();
    assert!(
        matches!(&answer, Err(Error::InvalidInput(m)) if m.contains("at most 256")),
        "{answer:?}"
    );
    let most = llm
        .generate_embeddings(MINILM.into(), vec!["x".into(); MAX_TEXTS])
        .await
        .unwrap();
    assert_eq!(most.unwrap().embeddings.len(), MAX_TEXTS);
}

#[tokio::test]
async fn a_model_whose_files_are_missing_is_a_runtime_error_that_says_why() {
    let dir = std::env::temp_dir().join(format!("aies-no-models-{}", std::process::id()));
    let models = Models::new(dir, [MINILM.to_string()], 0);
    let mut llm = LlmState::new(
        Arc::new(models),
        vec![MINILM.into()].into(),
        Priority::Request,
    );
    let answer = llm
        .generate_embeddings(MINILM.into(), vec!["hola".into()])
        .await
        .unwrap();
    match answer {
        Err(Error::RuntimeError(why)) => {
            assert!(why.contains("loading all-minilm-l6-v2"), "{why}");
            assert!(why.contains("make setup"), "{why}");
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
}
