//! Per-request store data, and the `fermyon:spin/variables` host.

use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::allowed_hosts::AllowedHosts;
use crate::app::App;
use crate::bindings::variables;
use crate::outbound_http::OutboundHttp;

/// What the host knows about one component, resolved at start-up.
pub struct ComponentInfo {
    pub name: String,
    pub allowed_hosts: AllowedHosts,
    /// The component's `[component.x.variables]`, templates already expanded.
    pub variables: HashMap<String, String>,
    /// `environment`: the WASI environment variables of its instances.
    pub environment: Vec<(String, String)>,
    pub ai_models: Vec<String>,
}

/// The `T` of each request's `Store<T>`.
pub struct RequestState {
    pub app: Arc<App>,
    pub component: Arc<ComponentInfo>,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub outbound: OutboundHttp,
    pub limits: StoreLimits,
    pub redis_handles: usize,
    /// Nobody waits for this run (Redis trigger, and what it calls): its
    /// embeddings yield to those of requests.
    pub background: bool,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl variables::Host for RequestState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(self
            .component
            .variables
            .get(&name)
            .cloned()
            .ok_or(variables::Error::Undefined(name)))
    }
}
