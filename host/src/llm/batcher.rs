//! The batching thread: one model's embedding calls merged into batches,
//! requests before background work, and a memo of recent vectors.

use anyhow::{Context, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use super::model::{EmbeddingEngine, Embeddings};

/// Texts one merged batch of requests' calls carries at most.
const BATCH_TEXTS: usize = 32;
/// Texts one merged batch of background calls carries at most while no
/// request has asked for an embedding lately (about 80 ms of e5 on one
/// core; bigger batches fill no faster on a CPU).
const BACKGROUND_BATCH_TEXTS: usize = 8;
/// For this long after a request's call, background calls run one text at
/// a time, so that the next request waits for one text at most (measured:
/// an unseen prompt during a fill backlog took 3.4x its idle time with
/// batches of 4, 1.0x with single texts; single texts all the time would
/// fill 40% slower).
const REQUESTS_RECENT: std::time::Duration = std::time::Duration::from_secs(2);
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
    /// When a request's call last came.
    last_request: Option<std::time::Instant>,
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
                let requests_lately = q
                    .last_request
                    .is_some_and(|at| at.elapsed() < REQUESTS_RECENT);
                let (queue, most) = match (q.request.is_empty(), requests_lately) {
                    (false, _) => (&mut q.request, BATCH_TEXTS),
                    (true, true) => (&mut q.background, 1),
                    (true, false) => (&mut q.background, BACKGROUND_BATCH_TEXTS),
                };
                let mut batch = vec![queue.pop_front().expect("not empty")];
                let mut texts = batch[0].texts.len();
                while texts < most {
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
                Priority::Request => {
                    q.request.push_back(job);
                    q.last_request = Some(std::time::Instant::now());
                }
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
mod tests;
