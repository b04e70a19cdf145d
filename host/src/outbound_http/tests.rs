//! Outbound HTTP alone: an [`OutboundHttp`] whose chain target is a fake
//! that records the calls, sending to a local server that counts the
//! connections it gets.

use super::*;
use http_body_util::{BodyExt, Empty};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime_wasi_http::{RequestOptions, WasiHttpHooks};

/// The app's components, as chaining sees them: records each call.
#[derive(Default)]
struct Components {
    calls: Mutex<Vec<(String, String, bool)>>,
}

impl ChainTarget for Components {
    fn chain(
        self: Arc<Self>,
        component: String,
        request: http::Request<WasiBody>,
        background: bool,
    ) -> ChainFuture {
        let path = request.uri().path().to_string();
        self.calls
            .lock()
            .unwrap()
            .push((component, path, background));
        Box::pin(async { Ok(http::Response::builder().status(201).body(empty()).unwrap()) })
    }
}

fn empty() -> WasiBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A server on `127.0.0.1:<port>` answering `200 ok` to each connection's
/// first request; counts the connections.
async fn server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, accepted)
}

fn outbound(hosts: &[String], chain: &Arc<Components>, background: bool) -> OutboundHttp {
    OutboundHttp::new(
        "test".into(),
        Arc::new(AllowedHosts::parse(hosts).unwrap()),
        chain.clone(),
        Arc::default(),
        Duration::from_secs(5),
        background,
    )
}

/// The status the request got, or the error.
async fn send(hooks: &mut OutboundHttp, url: &str) -> Result<u16, Error> {
    let request = http::Request::get(url).body(empty()).unwrap();
    let sent = hooks.send_request(request, None, Box::new(async { Ok(()) }));
    let (response, _done) = Box::into_pin(sent).await?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn a_host_not_allowed_is_refused_before_any_connection() {
    let (port, accepted) = server().await;
    let components = Arc::new(Components::default());
    let mut hooks = outbound(&[format!("http://localhost:{port}")], &components, false);
    // The same server, under another name, scheme or port; and chaining to
    // a component the caller was not given.
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("https://localhost:{port}/x"),
        format!("http://localhost:{}/x", port + 1),
        "http://store.spin.internal/x".to_string(),
    ] {
        let sent = send(&mut hooks, &url).await;
        assert!(
            matches!(sent, Err(Error::HttpRequestDenied)),
            "{url}: {sent:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a refused host was reached"
    );
    assert!(components.calls.lock().unwrap().is_empty());
    // The allowed one is reached: the count above could have moved.
    let url = format!("http://localhost:{port}/x");
    assert_eq!(send(&mut hooks, &url).await.unwrap(), 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_allowed_spin_internal_host_chains_to_its_component() {
    let components = Arc::new(Components::default());
    let hosts = ["http://embed.spin.internal".to_string()];
    for background in [false, true] {
        let mut hooks = outbound(&hosts, &components, background);
        let status = send(&mut hooks, "http://embed.spin.internal/v1/x?q=1").await;
        assert_eq!(status.unwrap(), 201);
    }
    let calls = components.calls.lock().unwrap().clone();
    let call = |background| ("embed".to_string(), "/v1/x".to_string(), background);
    assert_eq!(calls, [call(false), call(true)]);
}

#[test]
fn a_guest_that_sets_no_timeouts_still_gets_bounded_waits() {
    let o = host::with_default_timeouts(None, Duration::from_secs(60));
    assert_eq!(o.connect_timeout, Some(Duration::from_secs(10)));
    assert_eq!(o.first_byte_timeout, Some(Duration::from_secs(60)));
    assert_eq!(o.between_bytes_timeout, Some(Duration::from_secs(60)));
    let short = host::with_default_timeouts(None, Duration::from_secs(3));
    assert_eq!(short.connect_timeout, Some(Duration::from_secs(3)));
    let guest = RequestOptions {
        first_byte_timeout: Some(Duration::from_millis(5)),
        ..Default::default()
    };
    let kept = host::with_default_timeouts(Some(guest), Duration::from_secs(60));
    assert_eq!(kept.first_byte_timeout, Some(Duration::from_millis(5)));
    assert_eq!(kept.connect_timeout, Some(Duration::from_secs(10)));
}
