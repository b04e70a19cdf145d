//! Round trips that tell whether a service answers: Redis `PING`, a Kafka
//! metadata request (served by the broker's storage, so a broker whose
//! store has stopped fails it), an HTTP `GET` (any status: the app's and
//! the bridge's `/health` say 503 when something they depend on is down,
//! which is not theirs to be restarted for).

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest a round trip may take.
const TIMEOUT: Duration = Duration::from_secs(3);

pub enum Probe {
    None,
    Redis(SocketAddr),
    Kafka(ClientConfig),
    Http(SocketAddr, &'static str),
}

impl Probe {
    /// A Kafka probe for `bootstrap`. Each check makes a new client: one
    /// kept across a restart carries what it learnt of the dead process
    /// (connections timing out, a reconnect backoff growing to 10 s) and
    /// can fail the new broker's first checks, so a healthy broker is
    /// restarted again.
    pub fn kafka(bootstrap: &str) -> Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("socket.timeout.ms", "3000");
        let _: BaseConsumer = config
            .create()
            .context("creating the broker's health client")?;
        Ok(Self::Kafka(config))
    }
}

/// One round trip; an error says what failed.
pub async fn check(probe: &Probe) -> Result<()> {
    match probe {
        Probe::None => Ok(()),
        Probe::Redis(addr) => tokio::time::timeout(TIMEOUT, redis_ping(*addr))
            .await
            .context("PING timed out")?,
        Probe::Http(addr, path) => tokio::time::timeout(TIMEOUT, http_get(*addr, path))
            .await
            .with_context(|| format!("GET {path} timed out"))?,
        Probe::Kafka(config) => {
            let config = config.clone();
            tokio::task::spawn_blocking(move || {
                let client: BaseConsumer = config.create()?;
                client.fetch_metadata(None, TIMEOUT)
            })
            .await?
            .map(|_| ())
            .context("metadata request")
        }
    }
}

/// Any reply counts (`-LOADING` too: the server is there).
async fn redis_ping(addr: SocketAddr) -> Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(b"PING\r\n").await?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await?;
    if !line.starts_with(['+', '-']) {
        bail!("PING answered {line:?}");
    }
    Ok(())
}

async fn http_get(addr: SocketAddr, path: &str) -> Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await?;
    if !line.starts_with("HTTP/1.") {
        bail!("GET {path} answered {line:?}");
    }
    Ok(())
}

/// `HSET key field value ...` on DB `db` of the Redis at `addr`, in RESP.
pub async fn redis_hset(addr: &str, db: u8, key: &str, fields: &[(String, String)]) -> Result<()> {
    let mut command = vec!["SELECT".to_string(), db.to_string()];
    let mut out = resp(&command);
    command = vec!["HSET".to_string(), key.to_string()];
    for (f, v) in fields {
        command.push(f.clone());
        command.push(v.clone());
    }
    out.extend(resp(&command));
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await??;
    stream.write_all(&out).await?;
    let mut reader = BufReader::new(stream);
    for _ in 0..2 {
        let mut line = String::new();
        tokio::time::timeout(TIMEOUT, reader.read_line(&mut line)).await??;
        if line.starts_with('-') {
            bail!("Redis answered {}", line.trim());
        }
    }
    Ok(())
}

fn resp(args: &[String]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).as_bytes());
        out.extend(a.as_bytes());
        out.extend(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays() {
        let out = resp(&["HSET".into(), "k".into(), "f".into(), "vé".into()]);
        assert_eq!(
            out,
            b"*4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$1\r\nf\r\n$3\r\nv\xc3\xa9\r\n"
        );
    }

    #[tokio::test]
    async fn a_port_that_is_not_listening_fails_each_probe() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(check(&Probe::Redis(addr)).await.is_err());
        assert!(check(&Probe::Http(addr, "/health")).await.is_err());
    }

    #[tokio::test]
    async fn a_listener_that_never_answers_times_out() {
        // Accepts (the kernel does) but never writes: as a stopped process.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let err = check(&Probe::Http(addr, "/health")).await.unwrap_err();
        assert!(format!("{err:#}").contains("timed out"), "{err:#}");
    }
}
