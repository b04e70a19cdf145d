//! Outbound HTTP/1.1 connections, kept alive and reused per scheme and
//! authority (as Spin's own host does), instead of a TCP connection (and a
//! TLS handshake) per request: an LLM call to `https://` costs a round trip
//! less, and a busy pipeline no longer opens a socket per event.
//!
//! A connection goes back to the pool once its response body has been read
//! to the end; one whose body was dropped half-read is closed. Idle
//! connections are dropped after [`IDLE_TIMEOUT`]. A request that a pooled
//! connection could not even send (the server closed it meanwhile) is sent
//! again on a new one.

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Idle connections kept per scheme and authority: as many as the calls a
/// busy pipeline has open at once (a 300 ms LLM at ~1,000 events in
/// flight). With 64, each wave of calls closed ~900 connections and opened
/// them again, and the connect storm overflowed the server's accept queue
/// (a dropped SYN costs 1 s: 97 in one `make bench`).
const MAX_IDLE_PER_HOST: usize = 1024;
/// An idle connection older than this is not reused (servers close theirs
/// after 60 s or more).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type Sender = SendRequest<WasiBody>;

pub struct Connections {
    idle: Mutex<HashMap<String, Vec<(Sender, Instant)>>>,
    tls: tokio_rustls::TlsConnector,
}

impl Default for Connections {
    fn default() -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            idle: Mutex::default(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }
}

impl Connections {
    /// Sends `request` (absolute URI) on a pooled or new connection.
    pub async fn send(
        self: &Arc<Self>,
        mut request: http::Request<WasiBody>,
        options: &RequestOptions,
    ) -> Result<http::Response<WasiBody>, Error> {
        let uri = request.uri().clone();
        let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host = authority.host().to_string();
        let key = format!("{}://{host}:{port}", if tls { "https" } else { "http" });
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        // On the wire the request line carries the path only.
        *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
        if !request.headers().contains_key(http::header::HOST) {
            let value = authority
                .as_str()
                .parse()
                .map_err(|_| Error::HttpRequestUriInvalid)?;
            request.headers_mut().insert(http::header::HOST, value);
        }
        let first_byte = options
            .first_byte_timeout
            .unwrap_or(Duration::from_secs(600));

        let (mut sender, mut fresh) = match self.take(&key) {
            Some(s) => (s, false),
            None => (self.connect(&host, port, tls, options).await?, true),
        };
        let response = loop {
            let sent = tokio::time::timeout(first_byte, sender.try_send_request(request)).await;
            match sent {
                Err(_) => return Err(Error::ConnectionReadTimeout),
                Ok(Ok(response)) => break response,
                Ok(Err(mut e)) => match e.take_message() {
                    // Never sent: the pooled connection was closed under us.
                    Some(unsent) if !fresh => {
                        request = unsent;
                        sender = self.connect(&host, port, tls, options).await?;
                        fresh = true;
                    }
                    _ => return Err(Error::from(e.into_error())),
                },
            }
        };
        let between = options
            .between_bytes_timeout
            .unwrap_or(Duration::from_secs(600))
            .max(Duration::from_nanos(1));
        let mut timeout = tokio::time::interval(between);
        timeout.reset();
        let pool = self.clone();
        Ok(response.map(move |incoming| {
            PooledBody {
                incoming,
                timeout,
                give_back: Some((pool, key, sender)),
            }
            .boxed_unsync()
        }))
    }

    fn take(&self, key: &str) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap();
        let list = idle.get_mut(key)?;
        while let Some((sender, since)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT && sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn give_back(&self, key: String, sender: Sender) {
        if !sender.is_ready() {
            return;
        }
        let mut idle = self.idle.lock().unwrap();
        let list = idle.entry(key).or_default();
        let now = Instant::now();
        drop_stale(list, now);
        if list.len() >= MAX_IDLE_PER_HOST {
            list.retain(|(s, _)| !s.is_closed());
        }
        if list.len() < MAX_IDLE_PER_HOST {
            list.push((sender, now));
        }
    }

    async fn connect(
        &self,
        host: &str,
        port: u16,
        tls: bool,
        options: &RequestOptions,
    ) -> Result<Sender, Error> {
        let limit = options.connect_timeout.unwrap_or(Duration::from_secs(600));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let connecting = async {
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(Error::Connect)?;
            let _ = tcp.set_nodelay(true);
            if !tls {
                return handshake(tcp).await;
            }
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(Error::InvalidDnsNameError)?;
            let stream = self.tls.connect(name, tcp).await.map_err(Error::Tls)?;
            handshake(stream).await
        };
        tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| Error::ConnectionTimeout)?
    }
}

/// Drops the connections idle for [`IDLE_TIMEOUT`] or more. A list is
/// oldest first (each connection is pushed when given back, and taken from
/// the end), so a binary search finds them: reading the clock for every
/// idle connection on every answer cost ~1,000 clock reads per LLM answer
/// in a busy pipeline, under the pool's lock.
fn drop_stale<T>(list: &mut Vec<(T, Instant)>, now: Instant) {
    let stale = list.partition_point(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT);
    list.drain(..stale);
}

async fn handshake<S>(stream: S) -> Result<Sender, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("outbound connection ended: {e}");
        }
    });
    Ok(sender)
}

/// A response body that hands its connection back to the pool once read
/// to the end, and fails a read that waits longer than the between-bytes
/// timeout.
struct PooledBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
    give_back: Option<(Arc<Connections>, String, Sender)>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                if let Some((pool, key, sender)) = self.give_back.take() {
                    pool.give_back(key, sender);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(e)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connections_idle_too_long_are_dropped() {
        let now = Instant::now() + IDLE_TIMEOUT * 2;
        let ages = [
            IDLE_TIMEOUT * 2,
            IDLE_TIMEOUT,
            IDLE_TIMEOUT / 2,
            Duration::ZERO,
        ];
        let mut list: Vec<(usize, Instant)> = ages
            .iter()
            .enumerate()
            .map(|(i, age)| (i, now - *age))
            .collect();
        drop_stale(&mut list, now);
        let kept: Vec<usize> = list.iter().map(|(i, _)| *i).collect();
        assert_eq!(kept, [2, 3]);
        drop_stale(&mut list, now);
        assert_eq!(list.len(), 2, "nothing more is stale");
        let mut empty: Vec<(usize, Instant)> = Vec::new();
        drop_stale(&mut empty, now);
        assert!(empty.is_empty());
    }
}
