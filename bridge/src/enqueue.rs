//! `POST /enqueue`: the way events enter Kafka from the Spin app, which
//! cannot speak the Kafka protocol. Answers 202 only once the broker has
//! acknowledged the event (`acks=all`). Events go to the API lane
//! (`datos_api`), never behind the batch lane's backlog, sealed
//! ([`crate::seal`]) so that their task id and tenant are believed.

use aies_contract::{valid_task_id, ErrorBody, RawEvent, TraceParent, MAX_PROMPT_CHARS};
use anyhow::Result;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::dead_letter::enqueued_seal;
use crate::seal::{Seal, ENQUEUED};
use crate::{BridgeConfig, Metrics};

#[derive(Clone)]
struct Ctx {
    producer: FutureProducer,
    topic: String,
    token: crate::config::Secret,
    seal: Seal,
}

pub async fn serve(
    listener: TcpListener,
    producer: FutureProducer,
    config: BridgeConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let header_read_timeout = config.header_read_timeout();
    let ctx = Ctx {
        producer,
        seal: config.seal(),
        topic: config.api_topic,
        token: config.enqueue_token,
    };
    let health_metrics = metrics.clone();
    let health = get(move || async move { health(&health_metrics) });
    let metrics = get(move || async move {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics.encode(),
        )
    });
    let app = Router::new()
        .route("/enqueue", post(enqueue))
        .route("/health", health)
        .route("/metrics", metrics)
        .layer(DefaultBodyLimit::max(256 * 1024))
        .with_state(ctx);
    tracing::info!("enqueue endpoint on http://{}", listener.local_addr()?);
    let mut shutdown = std::pin::pin!(shutdown);
    // Tells the open connections that the endpoint is shutting down.
    let (closing, _) = tokio::sync::watch::channel(false);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers go out at once, not after the client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
        let service = TowerToHyperService::new(app.clone());
        let mut stop = closing.subscribe();
        tokio::spawn(async move {
            // A client that stalls in its headers, or idles between
            // requests, past the timeout is closed (hyper starts the timer
            // whenever it waits for a request head).
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stop.changed() => {
                    // Shutdown: finish the request in progress, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%client, "enqueue connection ended: {e}");
            }
        });
    }
    let _ = closing.send(true);
    Ok(())
}

type Answer = (StatusCode, Json<Value>);

/// 200 while the broker answers, else 503; either way it says which of
/// the broker and the app (the pipeline) answer.
fn health(metrics: &Metrics) -> Answer {
    let broker = metrics.broker_up.get() == 1;
    let pipeline = metrics.pipeline_down.get() == 0;
    let word = |up: bool| if up { "up" } else { "down" };
    let status = if broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if broker && pipeline { "ok" } else { "degraded" },
        "broker": word(broker),
        "pipeline": word(pipeline),
    });
    (status, Json(body))
}

fn reject(status: StatusCode, error: String) -> Answer {
    (status, Json(json!(ErrorBody { error })))
}

async fn enqueue(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    body: Result<Json<RawEvent>, JsonRejection>,
) -> Answer {
    // Only the app (ingest, with the enqueue_token) may put events on the
    // API lane: they carry their task id and tenant.
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !ctx.token.matches(given) {
        return reject(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (the enqueue_token)".into(),
        );
    }
    let Json(event) = match body {
        Ok(b) => b,
        Err(e) => return reject(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(task_id) = event.task_id.clone().filter(|id| valid_task_id(id)) else {
        return reject(
            StatusCode::BAD_REQUEST,
            "a valid task_id is required".into(),
        );
    };
    if event.prompt.trim().is_empty() || event.prompt.chars().count() > MAX_PROMPT_CHARS {
        return reject(
            StatusCode::BAD_REQUEST,
            format!("prompt must hold 1 to {MAX_PROMPT_CHARS} characters"),
        );
    }
    let payload = match serde_json::to_vec(&event) {
        Ok(p) => p,
        Err(e) => return reject(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // The seal says the bridge wrote it: the relay believes the task id and
    // tenant of a sealed event only.
    let mut headers = OwnedHeaders::new().insert(Header {
        key: ENQUEUED,
        value: Some(&enqueued_seal(&ctx.seal, &payload)),
    });
    // The request's trace goes along as the W3C header Kafka clients read.
    if let Some(tp) = event
        .traceparent
        .as_deref()
        .filter(|t| TraceParent::parse(t).is_some())
    {
        headers = headers.insert(Header {
            key: crate::kafka::TRACEPARENT,
            value: Some(tp),
        });
    }
    let record = FutureRecord::to(&ctx.topic)
        .key(&task_id)
        .payload(&payload)
        .headers(headers);
    match ctx.producer.send(record, Duration::from_secs(10)).await {
        Ok(delivery) => {
            let trace_id = event
                .traceparent
                .as_deref()
                .and_then(TraceParent::parse)
                .map(|t| t.trace_id)
                .unwrap_or_default();
            tracing::info!(
                task_id,
                trace_id,
                partition = delivery.partition,
                offset = delivery.offset,
                "enqueued"
            );
            (
                StatusCode::ACCEPTED,
                Json(json!({"task_id": task_id, "status": "PENDING"})),
            )
        }
        Err((e, _)) => {
            tracing::error!(task_id, "enqueue failed: {e}");
            reject(StatusCode::SERVICE_UNAVAILABLE, format!("Kafka: {e}"))
        }
    }
}
