//! Span export over OTLP: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, aies-host
//! and aies-bridge (run as processes) send their spans to a local OTLP/HTTP
//! receiver (JSON encoding here), in the trace of the API request's
//! `traceparent`: the host's request span is the child of the caller's
//! span, and the bridge's span for the event is the child of the host's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fake_llm::FakeLlm;
use aies_tests::stack::{Setup, Stack};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// An exported span: service, trace, span, parent, name.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_lowercase()
}

/// The spans of one OTLP/JSON `ExportTraceServiceRequest`.
fn spans(body: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .map(|a| text(&a["value"]["stringValue"]))
            .unwrap_or_default();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                out.push(Span {
                    service: service.clone(),
                    trace: text(&s["traceId"]),
                    id: text(&s["spanId"]),
                    parent: text(&s["parentSpanId"]),
                    name: s["name"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    out
}

/// A local OTLP/HTTP receiver: its endpoint and the spans it got.
async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let value: Value = serde_json::from_slice(&body).expect("OTLP/JSON");
                store.lock().unwrap().extend(spans(&value));
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_bridge_export_their_spans_in_the_callers_trace() {
    let fake = FakeLlm::start().await;
    let (endpoint, got) = receiver().await;
    let mut setup = Setup::new(&fake);
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    for (k, v) in otel {
        setup.host_env.push((k.into(), v.into()));
        setup.bridge_env.push((k.into(), v.into()));
    }
    let stack = Stack::start(setup).await;
    let base = format!("http://127.0.0.1:{}", stack.setup.ports.http);
    let (trace, caller) = ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174");
    let client = reqwest::Client::new();
    let body: Value = client
        .post(format!("{base}/process"))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&serde_json::json!({"prompt": "Export my spans"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = body["task_id"].as_str().expect("a task id").to_string();
    let task: Value = client
        .get(format!("{base}/task/{id}?wait=30"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(task["status"], "SUCCESS", "{task}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let (request, event) = loop {
        let spans = got.lock().unwrap().clone();
        let request = spans
            .iter()
            .find(|s| s.service == "aies-host" && s.trace == trace && s.parent == caller)
            .cloned();
        let event = request.as_ref().and_then(|r| {
            spans
                .iter()
                .find(|s| s.service == "aies-bridge" && s.trace == trace && s.parent == r.id)
                .cloned()
        });
        if let (Some(r), Some(e)) = (request, event) {
            break (r, e);
        }
        assert!(
            Instant::now() < deadline,
            "spans received: {spans:#?}\nhost log:\n{}",
            stack.setup.log_text("host")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(request.name.starts_with("POST "), "{request:?}");
    assert!(event.name.starts_with("process "), "{event:?}");
    // The provider's call is in the same trace.
    assert!(
        fake.traceparents().iter().any(|t| t.contains(trace)),
        "{:?}",
        fake.traceparents()
    );
}
