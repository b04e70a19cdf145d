//! The candle model: a sentence-transformers BERT run natively with candle
//! and tokenizers, behind the [`EmbeddingEngine`] trait.
//!
//! Pooling is the sentence-transformers recipe: mean over the tokens the
//! attention mask marks as real, then L2 normalisation. Batches are padded
//! to their longest text, and padding never enters the mean, so a sentence
//! gets the same vector alone or in a batch.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use std::path::Path;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Turns texts into vectors. A trait so tests can count calls or fail on purpose.
pub trait EmbeddingEngine: Send + Sync {
    fn embed(&self, texts: &[String]) -> Result<Embeddings>;
}

pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read per text, padding excluded.
    pub tokens: Vec<usize>,
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
        Self::load_layers(dir, None)
    }

    /// [`Self::load`], keeping only the first `layers` transformer layers
    /// when given: their token vectors are less contextual than the last
    /// layer's (issue 22's judge experiments).
    pub fn load_layers(dir: &Path, layers: Option<usize>) -> Result<Self> {
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
        let mut config = config;
        if let Some(layers) = layers {
            config.num_hidden_layers = config.num_hidden_layers.min(layers);
        }
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

/// One text's contextual token vectors (the model's last layer kept, each
/// of unit length), special tokens and a leading prefix left out: what a
/// judge of "same question?" would align (issue 22's experiments, through
/// `aies-judge-dump`; no judge is built on them).
pub struct TokenVectors {
    pub vectors: Vec<Vec<f32>>,
}

impl SentenceBert {
    /// Runs the model once over `texts`: the encodings, the last layer and
    /// the attention mask.
    fn forward(&self, texts: &[String]) -> Result<(Vec<tokenizers::Encoding>, Tensor, Tensor)> {
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
        Ok((encodings, hidden, mask))
    }

    /// The token vectors of each text, leaving out the tokens within its
    /// first `prefix` bytes (e5's "query: "). A token that reaches past the
    /// prefix is kept: e5's first word carries the space before it.
    pub fn token_vectors(&self, texts: &[String], prefix: usize) -> Result<Vec<TokenVectors>> {
        let (encodings, hidden, _) = self.forward(texts)?;
        let hidden = hidden.to_vec3::<f32>()?;
        Ok(encodings
            .iter()
            .zip(hidden)
            .map(|(e, rows)| {
                let real = e
                    .get_special_tokens_mask()
                    .iter()
                    .zip(e.get_attention_mask());
                let vectors = real
                    .zip(e.get_offsets())
                    .zip(rows)
                    .filter(|(((special, mask), (_, end)), _)| {
                        **special == 0 && **mask == 1 && *end > prefix
                    })
                    .map(|(_, mut v)| {
                        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                        v.iter_mut().for_each(|x| *x /= norm);
                        v
                    })
                    .collect();
                TokenVectors { vectors }
            })
            .collect())
    }
}

impl EmbeddingEngine for SentenceBert {
    fn embed(&self, texts: &[String]) -> Result<Embeddings> {
        let (encodings, hidden, mask) = self.forward(texts)?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [n, len, 1]
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // [n, dim]
        let counts = mask.sum(1)?; // [n, 1]
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        let unit = mean.broadcast_div(&norm)?;
        let tokens = encodings
            .iter()
            .map(|e| e.get_attention_mask().iter().filter(|m| **m == 1).count())
            .collect();
        Ok(Embeddings {
            vectors: unit.to_vec2::<f32>()?,
            tokens,
        })
    }
}
