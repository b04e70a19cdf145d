//! `fermyon:spin/redis`: Spin's outbound Redis interface, backed by the
//! `redis` crate. Connections are multiplexed and shared by all requests
//! (one per address, in the app's [`RedisPool`]), so a request does not pay
//! for a TCP handshake.
//!
//! A connection is a `ConnectionManager`: it reconnects by itself after Redis
//! restarts, and its connect and response timeouts bound every call.
//!
//! `execute` answers as Spin does: a flat list of nil / status / int64 /
//! binary values, nested arrays (such as `FT.SEARCH`'s) flattened in order.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::allowed_hosts::AllowedHosts;
use crate::bindings::redis::{self as wit, Connection, Error};

mod host;
#[cfg(test)]
mod tests;

/// Distinct Redis addresses the host keeps connections to.
const MAX_ADDRESSES: usize = 16;
/// Open connection handles one request may hold.
const MAX_HANDLES_PER_REQUEST: usize = 32;

/// The app's connections, one per address, shared by every run.
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

/// One run's Redis: what its component may reach, and the connections it
/// holds.
pub struct RedisState {
    /// The component's name, for the logs.
    component: Arc<str>,
    allowed_hosts: Arc<AllowedHosts>,
    pool: Arc<RedisPool>,
    handles: Handles,
}

impl RedisState {
    pub fn new(
        component: Arc<str>,
        allowed_hosts: Arc<AllowedHosts>,
        pool: Arc<RedisPool>,
    ) -> Self {
        Self {
            component,
            allowed_hosts,
            pool,
            handles: Handles::default(),
        }
    }

    fn conn(&self, r: &Resource<Connection>) -> wasmtime::Result<ConnectionManager> {
        self.handles.get(r)
    }
}

/// Links `fermyon:spin/redis`, served by the state `get` picks out of a
/// store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut RedisState,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<RedisState>>(linker, get)
}

/// The connections a run holds, by the rep of the guest's handle: the
/// guest's handle is a clone of the shared multiplexed connection. A table
/// of the capability's own, as Spin's outbound-redis factor keeps one.
#[derive(Default)]
struct Handles {
    open: HashMap<u32, ConnectionManager>,
    next: u32,
}

impl Handles {
    fn len(&self) -> usize {
        self.open.len()
    }

    fn push(&mut self, conn: ConnectionManager) -> Resource<Connection> {
        while self.open.contains_key(&self.next) {
            self.next = self.next.wrapping_add(1);
        }
        let rep = self.next;
        self.next = self.next.wrapping_add(1);
        self.open.insert(rep, conn);
        Resource::new_own(rep)
    }

    fn get(&self, r: &Resource<Connection>) -> wasmtime::Result<ConnectionManager> {
        match self.open.get(&r.rep()) {
            Some(c) => Ok(c.clone()),
            None => wasmtime::bail!("unknown Redis connection handle {}", r.rep()),
        }
    }

    fn remove(&mut self, r: Resource<Connection>) -> wasmtime::Result<()> {
        match self.open.remove(&r.rep()) {
            Some(_) => Ok(()),
            None => wasmtime::bail!("unknown Redis connection handle {}", r.rep()),
        }
    }
}

fn other(e: redis::RedisError) -> Error {
    Error::Other(e.to_string())
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
