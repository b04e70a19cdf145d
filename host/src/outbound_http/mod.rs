//! Outbound HTTP from a component: `allowed_outbound_hosts` is enforced, and
//! `http://<component>.spin.internal/...` is Spin local service chaining: the
//! request goes straight to that component in this process, no socket.
//! Other requests go out on kept-alive connections ([`Connections`]).
//!
//! Chaining needs of the app only [`ChainTarget`]: one method, so this
//! capability never sees the rest of the app.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error, WasiBody};

use crate::allowed_hosts::AllowedHosts;

mod connections;
mod host;
#[cfg(test)]
mod tests;

pub use connections::Connections;

const CHAINING_SUFFIX: &str = ".spin.internal";

/// The answer of a chained component.
pub type ChainFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, Error>> + Send>>;

/// Where `http://<component>.spin.internal/...` goes: the app's own
/// components, run in this process.
pub trait ChainTarget: Send + Sync {
    /// Runs `request` through the component named `component`
    /// ([`Error::DestinationNotFound`] when there is none); `background`
    /// when nobody waits for the answer.
    fn chain(
        self: Arc<Self>,
        component: String,
        request: http::Request<WasiBody>,
        background: bool,
    ) -> ChainFuture;
}

/// One run's outbound HTTP: the hooks of its `WasiHttpCtx`.
pub struct OutboundHttp {
    /// The component's name, for the logs.
    component: Arc<str>,
    allowed_hosts: Arc<AllowedHosts>,
    chain: Arc<dyn ChainTarget>,
    connections: Arc<Connections>,
    /// The waits of a request whose guest sets none.
    timeout: Duration,
    /// Nobody waits for this run (a Redis-triggered one): what it chains
    /// to is background work too.
    background: bool,
}

impl OutboundHttp {
    pub fn new(
        component: Arc<str>,
        allowed_hosts: Arc<AllowedHosts>,
        chain: Arc<dyn ChainTarget>,
        connections: Arc<Connections>,
        timeout: Duration,
        background: bool,
    ) -> Self {
        Self {
            component,
            allowed_hosts,
            chain,
            connections,
            timeout,
            background,
        }
    }
}
