//! Test doubles the capabilities' tests share: a Redis that speaks just
//! enough RESP2 for the `redis` crate (the commands below, and pub/sub),
//! counting the connections it gets; and a real `redis-server`, when one is
//! installed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};

/// A Redis on `127.0.0.1:<port>` that answers PING, GET, SET, INCR, DEL,
/// PUBLISH and SUBSCRIBE (anything else: `+OK`), in memory.
pub struct FakeRedis {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    data: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    /// Subscribers per channel.
    subscribed: Mutex<HashMap<Vec<u8>, usize>>,
    messages: broadcast::Sender<(Vec<u8>, Vec<u8>)>,
    accepted: AtomicUsize,
    /// Bumped to close every open connection.
    hang_up: watch::Sender<u64>,
}

impl FakeRedis {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            data: Mutex::default(),
            subscribed: Mutex::default(),
            messages: broadcast::channel(64).0,
            accepted: AtomicUsize::new(0),
            hang_up: watch::channel(0).0,
        });
        let accepting = shared.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepting.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, accepting.clone()));
            }
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections were accepted (panics after 5 s).
    pub async fn connected(&self, n: usize) {
        for _ in 0..500 {
            if self.connections() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never {n} connections, {} only", self.connections());
    }

    /// Sends a message to the channel's subscribers.
    pub fn publish(&self, channel: &str, payload: &[u8]) {
        let message = (channel.as_bytes().to_vec(), payload.to_vec());
        let _ = self.shared.messages.send(message);
    }

    /// Waits until `channel` has `n` subscribers (panics after 5 s).
    pub async fn subscribed(&self, channel: &str, n: usize) {
        for _ in 0..500 {
            if self.subscribers(channel) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("`{channel}` never had {n} subscribers");
    }

    fn subscribers(&self, channel: &str) -> usize {
        let subscribed = self.shared.subscribed.lock().unwrap();
        subscribed.get(channel.as_bytes()).copied().unwrap_or(0)
    }

    /// Closes every open connection, as a Redis restart would.
    pub fn hang_up(&self) {
        self.shared.hang_up.send_modify(|n| *n += 1);
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.server.abort();
        self.hang_up();
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let (commands, mut incoming) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        let mut read = BufReader::new(read);
        while let Some(command) = read_command(&mut read).await {
            if commands.send(command).await.is_err() {
                break;
            }
        }
    });
    let mut messages = shared.messages.subscribe();
    let mut hang_up = shared.hang_up.subscribe();
    let mut channels: Vec<Vec<u8>> = Vec::new();
    loop {
        let out = tokio::select! {
            command = incoming.recv() => match command {
                Some(command) => answer(&shared, &mut channels, command),
                None => break,
            },
            message = messages.recv() => match message {
                Ok((channel, payload)) if channels.contains(&channel) => {
                    array(&[bulk(b"message"), bulk(&channel), bulk(&payload)])
                }
                _ => continue,
            },
            _ = hang_up.changed() => break,
        };
        if write.write_all(&out).await.is_err() {
            break;
        }
    }
    reader.abort();
    let mut subscribed = shared.subscribed.lock().unwrap();
    for channel in channels {
        *subscribed.entry(channel).or_default() -= 1;
    }
}

fn answer(shared: &Shared, channels: &mut Vec<Vec<u8>>, command: Vec<Vec<u8>>) -> Vec<u8> {
    let name = String::from_utf8_lossy(&command[0]).to_ascii_uppercase();
    let args = &command[1..];
    let mut data = shared.data.lock().unwrap();
    match name.as_str() {
        "PING" => b"+PONG\r\n".to_vec(),
        "GET" => match data.get(&args[0]) {
            Some(v) => bulk(v),
            None => b"$-1\r\n".to_vec(),
        },
        "SET" => {
            data.insert(args[0].clone(), args[1].clone());
            b"+OK\r\n".to_vec()
        }
        "INCR" => {
            let now = data.get(&args[0]).cloned().unwrap_or_else(|| b"0".to_vec());
            match String::from_utf8_lossy(&now).parse::<i64>() {
                Ok(n) => {
                    data.insert(args[0].clone(), (n + 1).to_string().into_bytes());
                    format!(":{}\r\n", n + 1).into_bytes()
                }
                Err(_) => b"-ERR value is not an integer or out of range\r\n".to_vec(),
            }
        }
        "DEL" => {
            let gone = args.iter().filter(|k| data.remove(*k).is_some()).count();
            format!(":{gone}\r\n").into_bytes()
        }
        "PUBLISH" => {
            let _ = shared.messages.send((args[0].clone(), args[1].clone()));
            let n = shared.subscribed.lock().unwrap();
            format!(":{}\r\n", n.get(&args[0]).copied().unwrap_or(0)).into_bytes()
        }
        "SUBSCRIBE" => {
            let mut out = Vec::new();
            let mut subscribed = shared.subscribed.lock().unwrap();
            for channel in args {
                channels.push(channel.clone());
                *subscribed.entry(channel.clone()).or_default() += 1;
                let count = format!(":{}\r\n", channels.len()).into_bytes();
                out.extend(array(&[bulk(b"subscribe"), bulk(channel), count]));
            }
            out
        }
        _ => b"+OK\r\n".to_vec(),
    }
}

/// One command: an array of bulk strings. `None` at the end of the stream.
async fn read_command<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R) -> Option<Vec<Vec<u8>>> {
    let count: usize = read_header(read, b'*').await?;
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        let len: usize = read_header(read, b'$').await?;
        let mut part = vec![0; len + 2];
        read.read_exact(&mut part).await.ok()?;
        part.truncate(len);
        parts.push(part);
    }
    Some(parts)
}

async fn read_header<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R, kind: u8) -> Option<usize> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let line = line.trim_end();
    assert_eq!(
        line.as_bytes().first(),
        Some(&kind),
        "unexpected RESP: {line:?}"
    );
    line[1..].parse().ok()
}

fn bulk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

/// A `redis-server` of its own, on a free port, without persistence.
pub struct RealRedis {
    child: Child,
    pub port: u16,
}

impl RealRedis {
    /// `REDIS_SERVER_BIN`, else `redis-server` on PATH; `None` (said on
    /// stderr) when neither is there: the caller skips its test.
    pub async fn start(test: &str) -> Option<Self> {
        let bin = std::env::var_os("REDIS_SERVER_BIN")
            .map(std::path::PathBuf::from)
            .filter(|p| p.is_file())
            .or_else(|| {
                let path = std::env::var_os("PATH")?;
                std::env::split_paths(&path)
                    .map(|dir| dir.join("redis-server"))
                    .find(|p| p.is_file())
            });
        let Some(bin) = bin else {
            eprintln!("{test}: skipped, no redis-server on PATH (nor REDIS_SERVER_BIN)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let redis = Self { child, port };
        for _ in 0..500 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(redis);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} did not listen on {port}", bin.display());
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RealRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
