//! `fermyon:spin/redis`: Spin's outbound Redis interface, backed by the
//! `redis` crate. Connections are multiplexed and shared by all requests
//! (one per address), so a request does not pay for a TCP handshake.
//!
//! A connection is a `ConnectionManager`: it reconnects by itself after Redis
//! restarts, and its connect and response timeouts bound every call.
//!
//! `execute` answers as Spin does: a flat list of nil / status / int64 /
//! binary values, nested arrays (such as `FT.SEARCH`'s) flattened in order.

use anyhow::Result;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::Mutex;
use wasmtime::component::Resource;

use crate::bindings::redis::{self as wit, Error, RedisParameter, RedisResult};
use crate::state::RequestState;

/// Distinct Redis addresses the host keeps connections to.
const MAX_ADDRESSES: usize = 16;
/// Open connection handles one request may hold.
const MAX_HANDLES_PER_REQUEST: usize = 32;

/// The guest's handle: a clone of the shared multiplexed connection.
pub struct RedisConnection {
    conn: ConnectionManager,
}

#[derive(Default)]
pub struct RedisPool {
    conns: Mutex<HashMap<String, ConnectionManager>>,
}

impl RedisPool {
    async fn get(&self, address: &str) -> Result<ConnectionManager, Error> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(address) {
            return Ok(c.clone());
        }
        if conns.len() >= MAX_ADDRESSES {
            return Err(Error::TooManyConnections);
        }
        let client = redis::Client::open(address).map_err(|_| Error::InvalidAddress)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(3);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| Error::Other(format!("connecting to Redis: {e}")))?;
        conns.insert(address.to_string(), conn.clone());
        Ok(conn)
    }
}

fn other(e: redis::RedisError) -> Error {
    Error::Other(e.to_string())
}

impl RequestState {
    fn conn(&self, r: &Resource<RedisConnection>) -> wasmtime::Result<ConnectionManager> {
        Ok(self.table.get(r)?.conn.clone())
    }
}

/// Runs `cmd`; a Redis error is the guest's to handle.
async fn query<T: redis::FromRedisValue>(
    conn: ConnectionManager,
    cmd: &redis::Cmd,
) -> wasmtime::Result<Result<T, Error>> {
    Ok(send(conn, cmd).await.map_err(other))
}

/// Sends `cmd`, once more if it never left: after Redis restarts, the first
/// command on the old connection finds it broken (the connection manager
/// reconnects as it reports that) and was never sent, so sending it again
/// cannot apply it twice. Any other failure is returned as it is.
async fn send<T: redis::FromRedisValue>(
    mut conn: ConnectionManager,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    match cmd.query_async(&mut conn).await {
        Err(e) if never_sent(&e) => {
            tracing::info!("Redis connection was broken; sending the command again: {e}");
            cmd.query_async(&mut conn).await
        }
        result => result,
    }
}

/// A broken pipe: the connection was gone before the command was written.
/// (The crate does not expose the I/O error's kind; its text names it.)
fn never_sent(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() && e.to_string().to_lowercase().contains("broken pipe")
}

impl wit::Host for RequestState {}

impl wit::HostConnection for RequestState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<RedisConnection>, Error>> {
        if !self.component.allowed_hosts.allows_url(&address) {
            tracing::warn!(
                component = %self.component.name,
                "Redis address not in allowed_outbound_hosts"
            );
            return Ok(Err(Error::InvalidAddress));
        }
        if self.redis_handles >= MAX_HANDLES_PER_REQUEST {
            return Ok(Err(Error::TooManyConnections));
        }
        let conn = match self.app.redis.get(&address).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        self.redis_handles += 1;
        Ok(Ok(self.table.push(RedisConnection { conn })?))
    }

    async fn publish(
        &mut self,
        r: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let cmd = redis::cmd("PUBLISH").arg(channel).arg(payload).to_owned();
        let sent: Result<i64, Error> = query(self.conn(&r)?, &cmd).await?;
        Ok(sent.map(|_| ()))
    }

    async fn get(
        &mut self,
        r: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        query(self.conn(&r)?, redis::cmd("GET").arg(key)).await
    }

    async fn set(
        &mut self,
        r: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        query(self.conn(&r)?, redis::cmd("SET").arg(key).arg(value)).await
    }

    async fn incr(
        &mut self,
        r: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        // A key holding a non-integer is Redis's only failure here.
        let result = send(self.conn(&r)?, redis::cmd("INCR").arg(key)).await;
        Ok(result.map_err(|e| match e.kind() {
            redis::ErrorKind::Server(_) => Error::TypeError,
            _ => other(e),
        }))
    }

    async fn del(
        &mut self,
        r: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        query(self.conn(&r)?, redis::cmd("DEL").arg(keys)).await
    }

    async fn sadd(
        &mut self,
        r: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        query(self.conn(&r)?, redis::cmd("SADD").arg(key).arg(values)).await
    }

    async fn smembers(
        &mut self,
        r: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        query(self.conn(&r)?, redis::cmd("SMEMBERS").arg(key)).await
    }

    async fn srem(
        &mut self,
        r: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        query(self.conn(&r)?, redis::cmd("SREM").arg(key).arg(values)).await
    }

    async fn execute(
        &mut self,
        r: Resource<RedisConnection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, Error>> {
        let c = self.conn(&r)?;
        let mut cmd = redis::cmd(&command);
        for a in arguments {
            match a {
                RedisParameter::Int64(i) => cmd.arg(i),
                RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let value: Value = match send(c, &cmd).await {
            Ok(v) => v,
            Err(e) => return Ok(Err(other(e))),
        };
        let mut out = Vec::new();
        Ok(flatten(value, &mut out).map(|()| out))
    }

    async fn drop(&mut self, r: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        self.redis_handles = self.redis_handles.saturating_sub(1);
        Ok(())
    }
}

/// Appends a reply to `out` in Spin's flat form.
fn flatten(value: Value, out: &mut Vec<RedisResult>) -> Result<(), Error> {
    match value {
        Value::Nil => out.push(RedisResult::Nil),
        Value::Int(i) => out.push(RedisResult::Int64(i)),
        Value::BulkString(b) => out.push(RedisResult::Binary(b)),
        Value::SimpleString(s) => out.push(RedisResult::Status(s)),
        Value::Okay => out.push(RedisResult::Status("OK".into())),
        Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
        Value::Boolean(b) => out.push(RedisResult::Int64(b as i64)),
        Value::Array(items) | Value::Set(items) => {
            for v in items {
                flatten(v, out)?;
            }
        }
        Value::ServerError(e) => return Err(Error::Other(format!("{e:?}"))),
        other => {
            return Err(Error::Other(format!(
                "unsupported reply type (RESP3 maps and others are not supported): {other:?}"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_replies_arrive_flat() {
        let reply = Value::Array(vec![
            Value::Int(1),
            Value::BulkString(b"k".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"f".to_vec()),
                Value::BulkString(b"v".to_vec()),
            ]),
            Value::Nil,
        ]);
        let mut out = Vec::new();
        flatten(reply, &mut out).unwrap();
        assert_eq!(out.len(), 5);
        assert!(matches!(out[0], RedisResult::Int64(1)));
        assert!(matches!(&out[3], RedisResult::Binary(b) if b == b"v"));
        assert!(matches!(out[4], RedisResult::Nil));
        let mut out = Vec::new();
        assert!(flatten(Value::Map(vec![]), &mut out).is_err());
    }

    #[test]
    fn only_a_command_that_never_left_is_sent_again() {
        let io = |kind| redis::RedisError::from(std::io::Error::new(kind, "gone"));
        let broken = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(never_sent(&broken), "{broken}");
        // A reset may come after the command was written: it may have run.
        assert!(!never_sent(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(!never_sent(&io(std::io::ErrorKind::TimedOut)));
    }
}
