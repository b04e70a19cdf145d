//! Trust at the edges: the routes the app and the bridge call each other
//! on are public, so each fails closed without its shared token; one large
//! event never takes its neighbours to the dead-letter topic.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use aies_bridge::{Bridge, BridgeConfig};
use aies_contract::TaskStatus;
use serde_json::json;

use crate::fake_llm::FakeLlm;
use crate::harness::{
    consume_distinct, metric, produce, producer, topic_size, Options, System, ENQUEUE_TOKEN,
    INVOKE_TOKEN,
};

/// 40 events of 16,000 Japanese characters (about 48 KB each, within the
/// prompt limit; 32 of them are 1.5 MB, over the host's 1 MiB body limit)
/// all get their results, and an API miss in the same run ends SUCCESS.
/// `batch_bytes`: the bridge's byte bound (`None`: its default, which
/// keeps batches under the limit; a huge one makes the host refuse the
/// batch, which the bridge then splits).
async fn large_events_all_get_results(test: &'static str, batch_bytes: Option<usize>) -> f64 {
    const N: usize = 40;
    let fake = FakeLlm::start().await;
    let mut options = Options::new(test).llm(&fake, "openai");
    options.invoke_batch_bytes = batch_bytes;
    // Events wait for each other, so batches fill up to their bounds.
    options.invoke_linger_ms = Some(1_000);
    let system = System::start(options).await;
    let producer = producer();
    let body = "日本語の長い質問です。".repeat(1_600);
    for i in 0..N {
        let prompt: String = format!("{i:02}{body}").chars().take(16_000).collect();
        let payload = json!({ "prompt": prompt }).to_string();
        assert!(payload.len() > 45_000);
        produce(&producer, &system.topics.raw, None, &payload).await;
    }
    let (status, answer) = system.process("How many moons does Mars have?", None).await;
    assert_eq!(status, 202, "{answer}");
    let results = consume_distinct(&system.topics.results, N + 1, Duration::from_secs(300))
        .await
        .unwrap();
    system.assert_all_succeeded(&results, N + 1).await;
    let id = answer["task_id"].as_str().unwrap();
    // (Its cache fill may wait behind the 40 large ones: issue 22.)
    let task = system.wait_final(id, None).await.unwrap();
    assert_eq!(task.status, TaskStatus::Success);
    assert_eq!(
        topic_size(&system.topics.dead_letter, 3),
        0,
        "dead-lettered"
    );
    let metrics = system
        .client
        .get(format!("http://{}/metrics", system.bridge_http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(&metrics, "aies_bridge_invoke_batches_split_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_events_go_in_smaller_batches() {
    let split = large_events_all_get_results("largebatch", None).await;
    assert_eq!(split, 0.0, "a batch under the byte bound was refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_as_too_large_is_split() {
    // Without a byte bound the 40 events (read together) make requests over
    // the host's 1 MiB: refused with 413, then sent one by one.
    let split = large_events_all_get_results("largesplit", Some(64 << 20)).await;
    assert!(split >= 1.0, "no batch was large enough to be refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_invoke_refuses_every_call_while_invoke_token_is_empty() {
    let mut options = Options::new("failclosed");
    options
        .variables
        .insert("invoke_token".into(), String::new());
    let system = System::start(options).await;
    let event = json!({"task_id": "0b6f1c3e-9d4a-4c4e-8f3b-2a1d5e6f7a8b",
                       "prompt": "What is the boiling point of water?", "tenant": "default"});
    for (path, body) in [
        ("/invoke", event.clone()),
        ("/invoke/batch", json!({ "events": [event.clone()] })),
    ] {
        for token in [None, Some(""), Some(INVOKE_TOKEN), Some("anything")] {
            let mut req = system.client.post(system.url(path)).json(&body);
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{path} with {token:?}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("invoke_token is not set"),
                "{body}"
            );
        }
    }
    // Nothing was recorded for the task.
    let mut redis = system.redis.connection(2).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg("aies:task:0b6f1c3e-9d4a-4c4e-8f3b-2a1d5e6f7a8b")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_enqueues_only_for_the_holder_of_its_token() {
    let system = System::start(Options::new("enqueuetoken")).await;
    let url = format!("http://{}/enqueue", system.bridge_http);
    let event = json!({"task_id": "5a1f7c2e-3b4d-4e6f-8a9b-0c1d2e3f4a5b",
                       "prompt": "Which planet is the largest?", "tenant": "default"});
    for token in [
        None,
        Some(""),
        Some(INVOKE_TOKEN),
        Some("test-enqueue-tokem"),
    ] {
        let mut req = system.client.post(&url).json(&event);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{token:?}");
    }
    assert_eq!(
        topic_size(&system.topics.api, 3),
        0,
        "a refused event was produced"
    );
    let resp = system
        .client
        .post(&url)
        .bearer_auth(ENQUEUE_TOKEN)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(topic_size(&system.topics.api, 3), 1);
}

#[tokio::test]
async fn the_bridge_does_not_start_without_its_tokens_and_key() {
    let mut config = BridgeConfig::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let Err(refused) = Bridge::bind(config.clone()).await else {
        panic!("a bridge without tokens started");
    };
    assert!(
        refused.to_string().contains("AIES_INVOKE_TOKEN is empty"),
        "{refused}"
    );
    config.invoke_token = INVOKE_TOKEN.into();
    let Err(refused) = Bridge::bind(config.clone()).await else {
        panic!("a bridge without an enqueue token started");
    };
    assert!(
        refused.to_string().contains("AIES_ENQUEUE_TOKEN is empty"),
        "{refused}"
    );
    config.enqueue_token = ENQUEUE_TOKEN.into();
    let Err(refused) = Bridge::bind(config).await else {
        panic!("a bridge without its key started");
    };
    assert!(
        refused.to_string().contains("AIES_BRIDGE_KEY must hold"),
        "{refused}"
    );
}

/// Connections that stall halfway through their headers, or never send a
/// byte, are closed by the host after its header-read timeout, and do not
/// keep other clients from being answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed() {
    const EACH: usize = 300;
    let mut options = Options::new("stalled");
    options.header_read_timeout = Some(Duration::from_secs(1));
    options.bridge_header_read_timeout_secs = Some(1);
    let system = System::start(options).await;
    // The host's public port and the bridge's enqueue endpoint alike.
    for (addr, head) in [
        (system.http, "POST /process"),
        (system.bridge_http, "POST /enqueue"),
    ] {
        let mut stalled = Vec::new();
        for i in 0..2 * EACH {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            if i % 2 == 0 {
                let half = format!("{head} HTTP/1.1\r\nHost: x\r\nContent-");
                conn.write_all(half.as_bytes()).await.unwrap();
            }
            stalled.push(conn);
        }
        let (status, _) = system.get_json("/health").await;
        assert_eq!(status, 200, "answered while {head} connections stall");
        // The bridge's server answers (its /health says 503 only when the
        // broker, shared with the tests running beside this one, is slow
        // to answer a metadata request: not this test's concern).
        let bridge = system
            .client
            .get(format!("http://{}/health", system.bridge_http))
            .send()
            .await
            .expect("the bridge answers while connections stall");
        let status = bridge.status().as_u16();
        let body: serde_json::Value = bridge.json().await.unwrap();
        assert!(
            status == 200 || (status == 503 && body["broker"] == "down"),
            "the bridge answered {status} {body} while {head} connections stall"
        );
        for (i, conn) in stalled.into_iter().enumerate() {
            assert_closed(conn, &format!("{head} connection {i}")).await;
        }
    }
}

/// The peer closes `conn` within 30 s: at its end, or reset; never with a
/// response to half a request.
async fn assert_closed(mut conn: tokio::net::TcpStream, what: &str) {
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{what}: still open after 30 s"));
    if let Ok(n) = closed {
        assert!(
            n == 0 || rest.starts_with(b"HTTP/1.1 408"),
            "{what}: {}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// Redis keeps no unbounded record: an idempotent answer over 256 KiB is
/// not kept, so its retry runs again (and, all hits, answers the same);
/// a small one is kept and replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_answer_over_the_cap_is_not_kept() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("idemcap").llm(&fake, "openai")).await;
    let prompt = format!("Tell me about {}", "the open sea ".repeat(250));
    system.complete(&prompt).await;
    let batch = |n: usize| json!({ "requests": vec![json!({ "prompt": prompt }); n] });
    let post = |key: &'static str, body: serde_json::Value| {
        system
            .client
            .post(system.url("/process/batch"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = post("large", batch(100)).await.unwrap();
    assert_eq!(first.status(), 200);
    let first = first.text().await.unwrap();
    assert!(first.len() > 256 * 1024, "{} bytes", first.len());
    let again = post("large", batch(100)).await.unwrap();
    assert!(again.headers().get("idempotent-replayed").is_none());
    assert_eq!(
        again.text().await.unwrap(),
        first,
        "all hits: the same answer"
    );

    let small = post("small", batch(1)).await.unwrap().text().await.unwrap();
    let replayed = post("small", batch(1)).await.unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(replayed.text().await.unwrap(), small);
    let mut redis = system.redis.connection(1).await;
    let kept: Vec<String> = redis::cmd("KEYS")
        .arg("aies:idem:*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "only the small answer is kept: {kept:?}");
    assert_eq!(fake.calls(), 1);
}
