//! Load for `make bench`: closed-loop HTTP clients (each sends its next
//! request when the last one answered, over one kept-alive connection, as
//! wrk does) and a native hyper server to compare the host with.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// What a run measured.
pub struct Load {
    pub requests: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Load {
    pub fn line(&self) -> String {
        format!(
            "{:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  (n={})",
            self.per_second,
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0,
            self.requests
        )
    }
}

/// One request, sent again and again.
#[derive(Clone)]
pub struct Request {
    pub method: hyper::Method,
    pub path: String,
    pub body: Bytes,
    pub headers: Vec<(&'static str, String)>,
}

impl Request {
    pub fn get(path: &str) -> Self {
        Self {
            method: hyper::Method::GET,
            path: path.to_string(),
            body: Bytes::new(),
            headers: Vec::new(),
        }
    }

    pub fn post_json(path: &str, body: &serde_json::Value) -> Self {
        Self {
            method: hyper::Method::POST,
            path: path.to_string(),
            body: Bytes::from(body.to_string()),
            headers: vec![("content-type", "application/json".into())],
        }
    }
}

/// `clients` connections send `request` to `addr` for `duration`; every
/// answer must have status `expect`.
pub async fn closed_loop(
    addr: SocketAddr,
    request: &Request,
    clients: usize,
    duration: Duration,
    expect: u16,
) -> Result<Load> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move { client(addr, request, deadline, expect).await })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    let elapsed = started.elapsed();
    if samples.is_empty() {
        bail!("no request finished");
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    Ok(Load {
        requests: samples.len(),
        per_second: samples.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    })
}

async fn client(
    addr: SocketAddr,
    request: Request,
    deadline: Instant,
    expect: u16,
) -> Result<Vec<Duration>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        let mut req = hyper::Request::builder()
            .method(request.method.clone())
            .uri(&request.path)
            .header("host", addr.to_string());
        for (k, v) in &request.headers {
            req = req.header(*k, v);
        }
        let req = req.body(Full::new(request.body.clone()))?;
        let sent = Instant::now();
        let resp = sender.send_request(req).await.context("sending")?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        samples.push(sent.elapsed());
        if status != expect {
            bail!(
                "expected {expect}, got {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    Ok(samples)
}

/// A native hyper server answering every request with 200 "ok": what the
/// host's no-op component is compared with.
pub async fn native_ok_server() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// This process's resident memory now and at its peak, in MiB (`/proc`).
pub fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
