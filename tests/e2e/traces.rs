//! W3C trace context end to end: the `traceparent` of an API request goes
//! with its event through Kafka (a header on the lane's topic), to
//! llm-invoke and on to the LLM provider, and with the result on
//! `datos_procesados`; a third-party event's `traceparent` header is
//! followed the same way; without one, a new trace starts.

use std::time::Duration;

use crate::fake_llm::FakeLlm;
use crate::harness::{headers_of, produce, producer, Options, System};
use aies_contract::TraceParent;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

fn trace_of(headers: &[(String, String)]) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .and_then(|(_, v)| TraceParent::parse(v))
        .map(|t| t.trace_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_follows_a_task_from_the_api_to_the_provider_and_the_result() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("traces").llm(&fake, "openai")).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = system
        .client
        .post(system.url("/process"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({"prompt": "Trace me, please"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    let id = body["task_id"].as_str().unwrap().to_string();
    system.finished(&id, None).await;

    let within = Duration::from_secs(20);
    let event = headers_of(&system.topics.api, &id, within).await.unwrap();
    assert_eq!(trace_of(&event).as_deref(), Some(trace), "{event:?}");
    let result = headers_of(&system.topics.results, &id, within)
        .await
        .unwrap();
    assert_eq!(trace_of(&result).as_deref(), Some(trace), "{result:?}");
    let sent = fake.traceparents();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let provider = TraceParent::parse(&sent[0]).expect("a valid traceparent");
    assert_eq!(provider.trace_id, trace);
    assert_ne!(provider.parent_id, "00f067aa0ba902b7", "a span of its own");

    // A third-party event with a traceparent header, and one without.
    let theirs = "0af7651916cd43dd8448eb211c80319c";
    let record_header = format!("00-{theirs}-b7ad6b7169203331-01");
    producer()
        .send(
            FutureRecord::to(&system.topics.raw)
                .key("third-party")
                .payload(r#"{"prompt": "Traced from elsewhere"}"#)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "traceparent",
                    value: Some(&record_header),
                })),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    produce(
        &producer(),
        &system.topics.raw,
        Some("untraced"),
        r#"{"prompt": "No trace here"}"#,
    )
    .await;
    let deadline = std::time::Instant::now() + within;
    while fake.traceparents().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            fake.traceparents()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let traces: Vec<String> = fake
        .traceparents()
        .iter()
        .map(|t| TraceParent::parse(t).unwrap().trace_id)
        .collect();
    assert!(traces.contains(&theirs.to_string()), "{traces:?}");
    let fresh: Vec<&String> = traces
        .iter()
        .filter(|t| *t != trace && *t != theirs)
        .collect();
    assert_eq!(
        fresh.len(),
        1,
        "the untraced event starts a trace: {traces:?}"
    );
}
