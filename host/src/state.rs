//! The `T` of each request's `Store<T>`: the WASI contexts, and the
//! per-request state of each capability the host provides. Each
//! capability's host traits are implemented on its own state, linked
//! through a projection of this one (as Spin composes its factors'
//! instance states), so none of them sees the others or the app.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::allowed_hosts::AllowedHosts;
use crate::llm::{self, LlmState, Models, Priority};
use crate::outbound_http::{ChainTarget, Connections, OutboundHttp};
use crate::redis::{self, RedisPool, RedisState};
use crate::variables::{self, VariablesState};

/// What the host knows about one component, resolved at start-up.
pub struct ComponentInfo {
    pub name: Arc<str>,
    pub allowed_hosts: Arc<AllowedHosts>,
    /// The component's `[component.x.variables]`, templates already expanded.
    pub variables: Arc<HashMap<String, String>>,
    /// `environment`: the WASI environment variables of its instances.
    pub environment: Vec<(String, String)>,
    pub ai_models: Arc<[String]>,
}

/// What the runs of every component share: the capabilities' backends, and
/// the limits of a run.
pub struct Shared {
    pub redis: Arc<RedisPool>,
    pub models: Arc<Models>,
    pub connections: Arc<Connections>,
    /// The waits of an outbound HTTP request whose guest sets none.
    pub outbound_timeout: Duration,
    /// Linear memory one component instance may grow to.
    pub max_memory_bytes: usize,
}

/// The `T` of each request's `Store<T>`.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    outbound_http: OutboundHttp,
    redis: RedisState,
    variables: VariablesState,
    llm: LlmState,
}

impl RequestState {
    /// The state of one run of `component`; what it chains to goes to
    /// `chain`. `background`: nobody waits for this run (Redis trigger, and
    /// what it calls): its embeddings yield to those of requests.
    pub fn new(
        component: &ComponentInfo,
        shared: &Shared,
        chain: Arc<dyn ChainTarget>,
        background: bool,
    ) -> Self {
        let priority = if background {
            Priority::Background
        } else {
            Priority::Request
        };
        Self {
            wasi: WasiCtx::builder()
                .inherit_stderr()
                .envs(&component.environment)
                .build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(shared.max_memory_bytes)
                .instances(16)
                .build(),
            outbound_http: OutboundHttp::new(
                component.name.clone(),
                component.allowed_hosts.clone(),
                chain,
                shared.connections.clone(),
                shared.outbound_timeout,
                background,
            ),
            redis: RedisState::new(
                component.name.clone(),
                component.allowed_hosts.clone(),
                shared.redis.clone(),
            ),
            variables: VariablesState::new(component.variables.clone()),
            llm: LlmState::new(shared.models.clone(), component.ai_models.clone(), priority),
        }
    }

    /// The store's memory and instance limits.
    pub fn limits(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }
}

/// Links everything a component may import: WASI, `wasi:http`, and the
/// Spin interfaces, each to its capability's state.
pub fn add_to_linker(linker: &mut Linker<RequestState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    redis::add_to_linker(linker, |s| &mut s.redis)?;
    llm::add_to_linker(linker, |s| &mut s.llm)?;
    variables::add_to_linker(linker, |s| &mut s.variables)
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
            hooks: &mut self.outbound_http,
        }
    }
}
