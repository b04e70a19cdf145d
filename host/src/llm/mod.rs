//! `fermyon:spin/llm`: embeddings, run natively with candle + tokenizers
//! from `.spin/ai-models/<model>/` (the folder Spin's own local backend
//! reads): all-MiniLM-L6-v2 (English) and multilingual-e5-small (about a
//! hundred languages, Spanish among them), each loaded on first use.
//! Spin's own local backend knows only all-MiniLM-L6-v2, so components ask
//! for the other one first and fall back. Inferencing is not offered: no
//! local generative model is shipped, so `infer` answers
//! `model-not-supported`.
//!
//! - `host.rs`: the WIT interface, on [`LlmState`];
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
mod model;
#[cfg(test)]
mod tests;

pub use batcher::{Batcher, Priority, MEMO_TEXTS};
pub use model::{EmbeddingEngine, Embeddings, SentenceBert, TokenVectors};

pub const MINILM: &str = "all-minilm-l6-v2";
pub const E5_SMALL: &str = "multilingual-e5-small";
/// The local embedding models this host can run.
pub const LOCAL_MODELS: [&str; 2] = [MINILM, E5_SMALL];

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
    memo: usize,
}

impl Models {
    /// `memo`: vectors kept per model for texts asked again (0: none).
    pub fn new(dir: PathBuf, names: impl IntoIterator<Item = String>, memo: usize) -> Self {
        let loaded = names.into_iter().map(|n| (n, OnceCell::new())).collect();
        Self { dir, loaded, memo }
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
