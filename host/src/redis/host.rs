//! The `fermyon:spin/redis` host traits.

use redis::Value;
use wasmtime::component::Resource;

use super::{other, query, send, RedisState, MAX_HANDLES_PER_REQUEST};
use crate::bindings::redis::{self as wit, Connection, Error, RedisParameter, RedisResult};

impl wit::Host for RedisState {}

impl wit::HostConnection for RedisState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        if !self.allowed_hosts.allows_url(&address) {
            tracing::warn!(
                component = %self.component,
                "Redis address not in allowed_outbound_hosts"
            );
            return Ok(Err(Error::InvalidAddress));
        }
        if self.handles.len() >= MAX_HANDLES_PER_REQUEST {
            return Ok(Err(Error::TooManyConnections));
        }
        let conn = match self.pool.get(&address).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.handles.push(conn)))
    }

    async fn publish(
        &mut self,
        r: Resource<Connection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let cmd = redis::cmd("PUBLISH").arg(channel).arg(payload).to_owned();
        let sent: Result<i64, Error> = query(self.conn(&r)?, &cmd).await?;
        Ok(sent.map(|_| ()))
    }

    async fn get(
        &mut self,
        r: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        query(self.conn(&r)?, redis::cmd("GET").arg(key)).await
    }

    async fn set(
        &mut self,
        r: Resource<Connection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        query(self.conn(&r)?, redis::cmd("SET").arg(key).arg(value)).await
    }

    async fn incr(
        &mut self,
        r: Resource<Connection>,
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
        r: Resource<Connection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        query(self.conn(&r)?, redis::cmd("DEL").arg(keys)).await
    }

    async fn sadd(
        &mut self,
        r: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        query(self.conn(&r)?, redis::cmd("SADD").arg(key).arg(values)).await
    }

    async fn smembers(
        &mut self,
        r: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        query(self.conn(&r)?, redis::cmd("SMEMBERS").arg(key)).await
    }

    async fn srem(
        &mut self,
        r: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        query(self.conn(&r)?, redis::cmd("SREM").arg(key).arg(values)).await
    }

    async fn execute(
        &mut self,
        r: Resource<Connection>,
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

    async fn drop(&mut self, r: Resource<Connection>) -> wasmtime::Result<()> {
        self.handles.remove(r)
    }
}

/// Appends a reply to `out` in Spin's flat form.
pub(super) fn flatten(value: Value, out: &mut Vec<RedisResult>) -> Result<(), Error> {
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
