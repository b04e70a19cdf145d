//! The HTTP trigger: accepts connections, routes each request to the
//! component of the best-matching route, and shuts down on a signal:
//! it stops accepting, lets the requests in flight finish (each kept-alive
//! connection closes after its current response) for at most the drain
//! timeout, then stops, so that a graceful restart does not cut the
//! invocations it was serving (the bridge would run them again).

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::App;
use crate::config::HostConfig;
use crate::member::Reporter;
use crate::metrics::Metrics;

/// Largest request body passed to a component.
pub const MAX_REQUEST_BODY: usize = 1 << 20;
/// Requests served at once; more wait for a slot.
const MAX_CONCURRENT_REQUESTS: usize = 1000;

pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    metrics: Arc<Metrics>,
    metrics_listener: Option<TcpListener>,
    header_read_timeout: std::time::Duration,
    drain_timeout: std::time::Duration,
    member: Option<Arc<Reporter>>,
}

impl Server {
    /// Loads the application and binds `addr` (port 0 picks a free port),
    /// and `config.metrics_listen` if set.
    pub async fn bind(config: &HostConfig, addr: SocketAddr) -> Result<Self> {
        let app = App::load(config)?;
        let listener = TcpListener::bind(addr).await?;
        let metrics_listener = match config.metrics_listen {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        // Reports go where the app's Redis trigger listens, if it has one.
        let member = match (config.member_report, app.subscriptions.first()) {
            (Some(every), Some(s)) => {
                let reporter =
                    Reporter::new(&s.address, config.member_id.clone(), every, metrics.clone())
                        .context("the member report")?;
                tracing::info!(
                    member = reporter.id(),
                    "reporting this instance to /stats every {every:?}"
                );
                Some(Arc::new(reporter))
            }
            _ => None,
        };
        Ok(Self {
            app,
            listener,
            metrics,
            metrics_listener,
            header_read_timeout: config.header_read_timeout,
            drain_timeout: config.drain_timeout,
            member,
        })
    }

    /// Where the host's metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains
    /// the requests in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
        let app = self.app.clone();
        tokio::spawn(async move { app.preload().await });
        let redis_trigger = tokio::spawn(crate::redis_trigger::run(
            self.app.clone(),
            self.app.subscriptions.clone(),
        ));
        let metrics_server = self
            .metrics_listener
            .map(|l| tokio::spawn(serve_metrics(l, self.metrics.clone())));
        let reporting = self
            .member
            .clone()
            .map(|m| tokio::spawn(async move { m.run().await }));
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, client) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Without it a response written in two segments waits for the
            // client's delayed ACK (~40 ms).
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%client, "TCP_NODELAY not set: {e}");
            }
            let app = self.app.clone();
            let slots = slots.clone();
            let metrics = self.metrics.clone();
            let header_read_timeout = self.header_read_timeout;
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let app = app.clone();
                    let slots = slots.clone();
                    let metrics = metrics.clone();
                    async move {
                        let _slot = slots.acquire_owned().await;
                        Ok::<_, std::convert::Infallible>(handle(&app, &metrics, client, req).await)
                    }
                });
                let connection = http1::Builder::new()
                    .keep_alive(true)
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(connection).await {
                    tracing::debug!(%client, "connection ended: {e}");
                }
            });
        }
        // New connections are refused from now on, not left waiting in
        // the listen backlog while the drain runs.
        drop(self.listener);
        let in_flight = self.metrics.in_flight();
        tracing::info!(
            in_flight,
            "HTTP trigger stopping: draining requests in flight (at most {:?})",
            self.drain_timeout
        );
        if tokio::time::timeout(self.drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.metrics.in_flight(),
                "requests still in flight after the drain timeout are cut"
            );
        }
        redis_trigger.abort();
        if let Some(m) = metrics_server {
            m.abort();
        }
        if let (Some(reporting), Some(member)) = (reporting, &self.member) {
            reporting.abort();
            member.stopped().await;
        }
        tracing::info!("HTTP trigger stopped");
        Ok(())
    }
}

fn plain(status: u16, message: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("static response is valid")
}

/// `GET /metrics` (any path) on the metrics listener.
async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let text = metrics.encode();
                async move {
                    hyper::Response::builder()
                        .header(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                        .body(Full::new(Bytes::from(text)))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    app: &Arc<App>,
    metrics: &Metrics,
    client: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<HyperOutgoingBody> {
    let started = Instant::now();
    let _in_flight = metrics.started();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // The W3C trace the request belongs to, for its log lines (and, when
    // spans are exported, the parent of this request's span).
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| aies_contract::TraceParent::parse(v).is_some())
        .map(str::to_string);
    let trace_id = traceparent
        .as_deref()
        .and_then(aies_contract::TraceParent::parse)
        .map(|t| t.trace_id)
        .unwrap_or_default();
    let Some((index, matched)) = app.route(&path) else {
        metrics.observe("-", "unmatched", &method, 404, started.elapsed());
        return plain(404, "no route");
    };
    let component = app.component_name(index).to_string();
    let too_big = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_REQUEST_BODY);
    if too_big {
        metrics.observe(&component, &matched, &method, 413, started.elapsed());
        return plain(
            413,
            &format!("request body is larger than {MAX_REQUEST_BODY} bytes"),
        );
    }

    let (mut parts, body) = req.into_parts();
    let host = parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let full_url = format!("http://{host}{}", parts.uri);
    let matched_route = matched.clone();
    for (name, value) in [
        ("spin-full-url", full_url),
        ("spin-matched-route", matched),
        ("spin-client-addr", client.to_string()),
    ] {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
            parts.headers.insert(name, v);
        }
    }
    // Only the exporter reads this span: none at all otherwise (a span per
    // request cost ~10% of a no-op request).
    let span = if aies_telemetry::exporting() {
        tracing::info_span!(
            "request",
            otel.name = %format!("{method} {matched_route}"),
            otel.kind = "server",
            http.request.method = %method,
            url.path = %path,
            http.route = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            component = %component,
        )
    } else {
        tracing::Span::none()
    };
    aies_telemetry::set_parent(&span, traceparent.as_deref());
    // The component continues this span: its events name it as their parent.
    if let Some(own) = aies_telemetry::traceparent_of(&span) {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&own) {
            parts.headers.insert("traceparent", v);
        }
    }
    // Bodies without a Content-Length are bounded as they stream.
    let body = Limited::new(body, MAX_REQUEST_BODY)
        .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(format!("request body: {e}"))));
    let req = hyper::Request::from_parts(parts, body);

    match app.invoke(index, req, false).instrument(span.clone()).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            span.record("http.route", matched_route.as_str());
            span.record("http.response.status_code", status);
            metrics.observe(
                &component,
                &matched_route,
                &method,
                status,
                started.elapsed(),
            );
            tracing::debug!(
                %method, %path, component = %component, status, trace_id,
                ms = started.elapsed().as_millis() as u64, "request"
            );
            resp
        }
        Err(e) => {
            metrics.observe(&component, &matched_route, &method, 500, started.elapsed());
            tracing::error!(%method, %path, component = %component, trace_id, "component failed: {e:#}");
            plain(500, &format!("component `{component}` failed"))
        }
    }
}
