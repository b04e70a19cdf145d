//! `fermyon:spin/llm`: embeddings, run natively with candle + tokenizers
//! from `.spin/ai-models/<model>/` (the folder Spin's own local backend
//! reads): all-MiniLM-L6-v2 (English) and multilingual-e5-small (about a
//! hundred languages, Spanish among them), each loaded on first use.
//! Spin's own local backend knows only all-MiniLM-L6-v2, so components ask
//! for the other one first and fall back. `infer` serves one model, the
//! cache's near-duplicate judge (`aies-judge`, [`judge`]); no local
//! generative model is shipped, so any other answers `model-not-supported`.
//!
//! - `host.rs`: the WIT interface, on [`LlmState`];
//! - `judge.rs`: the judge ([`JudgeEngine`]);
//! - `model.rs`: the candle model ([`SentenceBert`]) behind [`EmbeddingEngine`];
//! - `batcher.rs`: the thread that runs one model's calls in batches ([`Batcher`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::llm;

mod batcher;
mod host;
pub mod judge;
mod model;
#[cfg(test)]
mod tests;

pub use aies_contract::JUDGE_MODEL;
pub use batcher::{Batcher, Priority, MEMO_TEXTS};
pub use judge::JudgeEngine;
pub use model::{EmbeddingEngine, Embeddings, SentenceBert, TokenVectors};

pub const MINILM: &str = "all-minilm-l6-v2";
pub const E5_SMALL: &str = "multilingual-e5-small";
/// The local embedding models this host can run.
pub const EMBEDDING_MODELS: [&str; 2] = [MINILM, E5_SMALL];
/// Every model a component may name in `ai_models` here.
pub const LOCAL_MODELS: [&str; 3] = [MINILM, E5_SMALL, JUDGE_MODEL];

/// Most texts one `generate-embeddings` call may carry.
const MAX_TEXTS: usize = 256;

/// One run's view of the models: those its component may use, and whether
/// anyone waits for its embeddings.
pub struct LlmState {
    models: Arc<Models>,
    /// The component's `ai_models`: a model not named there is not supported.
    ai_models: Arc<[String]>,
    priority: Priority,
}

impl LlmState {
    pub fn new(models: Arc<Models>, ai_models: Arc<[String]>, priority: Priority) -> Self {
        Self {
            models,
            ai_models,
            priority,
        }
    }
}

/// Links `fermyon:spin/llm`, served by the state `get` picks out of a
/// store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut LlmState,
) -> wasmtime::Result<()> {
    llm::add_to_linker::<T, HasSelf<LlmState>>(linker, get)
}

/// A model, or why it could not be loaded.
pub type Loaded = Result<Arc<Batcher>, String>;

/// The local models the app's components may use, each loaded from
/// `<dir>/<name>/` on first use (a failure is remembered and reported).
pub struct Models {
    dir: PathBuf,
    loaded: HashMap<String, OnceCell<Loaded>>,
    /// The judge, when a component names it.
    judge: Option<OnceCell<Result<Arc<JudgeEngine>, String>>>,
    memo: usize,
}

impl Models {
    /// `memo`: vectors kept per model for texts asked again (0: none).
    pub fn new(dir: PathBuf, names: impl IntoIterator<Item = String>, memo: usize) -> Self {
        let (judge, embedding): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| n == JUDGE_MODEL);
        let loaded = embedding
            .into_iter()
            .map(|n| (n, OnceCell::new()))
            .collect();
        let judge = (!judge.is_empty()).then(OnceCell::new);
        Self {
            dir,
            loaded,
            judge,
            memo,
        }
    }

    /// The judge, loaded from `<dir>/aies-judge/` on first use; `None`
    /// when the app does not use it.
    pub async fn judge(&self) -> Option<Result<Arc<JudgeEngine>, String>> {
        let cell = self.judge.as_ref()?;
        let dir = self.dir.join(JUDGE_MODEL);
        let loaded = cell
            .get_or_init(|| async move {
                match tokio::task::spawn_blocking(move || JudgeEngine::load(&dir)).await {
                    Ok(Ok(engine)) => Ok(Arc::new(engine)),
                    Ok(Err(e)) => Err(format!("loading {JUDGE_MODEL}: {e:#}")),
                    Err(e) => Err(format!("loading {JUDGE_MODEL}: {e}")),
                }
            })
            .await;
        Some(loaded.clone())
    }

    /// Models already loaded: `engines` instead of files (tests).
    #[cfg(test)]
    pub(crate) fn loaded(engines: Vec<(&str, Arc<dyn EmbeddingEngine>)>, memo: usize) -> Self {
        let loaded = engines
            .into_iter()
            .map(|(name, engine)| {
                let batcher = Arc::new(Batcher::start(engine, memo));
                (name.to_string(), OnceCell::new_with(Some(Ok(batcher))))
            })
            .collect();
        Self {
            dir: PathBuf::new(),
            loaded,
            judge: None,
            memo,
        }
    }

    /// `None` when the app does not use `name`.
    pub async fn get(&self, name: &str) -> Option<Loaded> {
        let cell = self.loaded.get(name)?;
        let (dir, memo) = (self.dir.join(name), self.memo);
        let loaded = cell
            .get_or_init(|| async move {
                let load = tokio::task::spawn_blocking(move || SentenceBert::load(&dir));
                match load.await {
                    Ok(Ok(model)) => Ok(Arc::new(Batcher::start(Arc::new(model), memo))),
                    Ok(Err(e)) => Err(format!("loading {name}: {e:#}")),
                    Err(e) => Err(format!("loading {name}: {e}")),
                }
            })
            .await;
        Some(loaded.clone())
    }
}
