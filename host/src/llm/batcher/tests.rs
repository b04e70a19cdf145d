//! The batcher alone, over fake engines that count or record their batches.

use super::*;
use anyhow::bail;
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
    // After a request, fills run one text at a time: the next request
    // waits for one text at most.
    let batches = engine.0.lock().unwrap().clone();
    let one = |t: &str| vec![t.to_string()];
    assert_eq!(
        batches,
        vec![
            one("first"),
            one("request"),
            one("fill 0"),
            one("fill 1"),
            one("fill 2")
        ]
    );
}

#[tokio::test]
async fn background_calls_share_small_batches_while_no_request_comes() {
    let engine = Arc::new(Recorder(Mutex::default()));
    let batcher = Arc::new(Batcher::start(engine.clone(), MEMO_TEXTS));
    let call = |text: String| {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.embed(vec![text], Priority::Background).await })
    };
    let first = call("first".into());
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let fills: Vec<_> = (0..BACKGROUND_BATCH_TEXTS + 2)
        .map(|i| call(format!("fill {i}")))
        .collect();
    for f in fills {
        f.await.unwrap().unwrap();
    }
    first.await.unwrap().unwrap();
    let sizes: Vec<usize> = engine.0.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![1, BACKGROUND_BATCH_TEXTS, 2]);
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
