//! The loaded application: one compiled, pre-instantiated component per
//! manifest entry, the HTTP routes, and the shared backends (Redis, model).
//!
//! Each request gets a fresh `Store` from the component's `ProxyPre`, with a
//! memory limit and an epoch deadline: a component that runs past
//! `request_timeout` is trapped, and one stuck waiting on I/O is dropped.
//!
//! The capabilities see the app only through narrow traits: outbound HTTP
//! chains through [`ChainTarget`], the Redis trigger runs messages through
//! [`MessageHandler`].

use anyhow::{bail, Result};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use crate::bindings::RedisTriggerPre;
use crate::engine::EpochTicker;
use crate::outbound_http::{ChainFuture, ChainTarget};
use crate::redis_trigger::MessageHandler;
use crate::routes::Router;
use crate::state::{ComponentInfo, RequestState, Shared};

mod load;

pub use crate::config::HostConfig;
pub use crate::redis_trigger::RedisSubscription;

/// A component, pre-instantiated for the exports its triggers call (Spin
/// lets one component serve both triggers).
struct Loaded {
    info: Arc<ComponentInfo>,
    http: Option<ProxyPre<RequestState>>,
    redis: Option<RedisTriggerPre<RequestState>>,
}

pub struct App {
    pub name: String,
    engine: Engine,
    components: Vec<Loaded>,
    by_name: HashMap<String, usize>,
    routes: Router,
    pub subscriptions: Vec<RedisSubscription>,
    shared: Shared,
    request_timeout: Duration,
    _ticker: EpochTicker,
}

impl App {
    /// Loads the cache's judge now, if a component uses it, rather than
    /// on the first lookup (loading takes seconds on a busy machine).
    pub async fn preload(&self) {
        if let Some(Err(e)) = self.shared.models.judge().await {
            tracing::warn!("the judge is not available, the cache will use its guard: {e}");
        }
    }

    /// The component a public request path goes to, with its matched route.
    pub fn route(&self, path: &str) -> Option<(usize, String)> {
        self.routes
            .route(path)
            .map(|(i, route)| (i, route.to_string()))
    }

    pub fn component_name(&self, index: usize) -> &str {
        &self.components[index].info.name
    }

    pub fn component_names(&self) -> impl Iterator<Item = &str> {
        self.components.iter().map(|c| &*c.info.name)
    }

    /// Runs one request through component `index`; `background` when no
    /// request waits for it (a Redis-triggered run chaining to it).
    pub async fn invoke<B>(
        self: &Arc<Self>,
        index: usize,
        req: hyper::Request<B>,
        background: bool,
    ) -> Result<hyper::Response<HyperOutgoingBody>>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let loaded = &self.components[index];
        let Some(pre) = &loaded.http else {
            bail!(
                "component `{}` is not on the HTTP trigger",
                loaded.info.name
            );
        };
        let mut store = self.new_store(loaded, background);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(wt)?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(wt)?;
        let pre = pre.clone();
        let name = loaded.info.name.clone();
        let timeout = self.request_timeout;
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(r) => r.map_err(wt),
                Err(_) => Err(anyhow::anyhow!(
                    "component `{name}` did not finish within {timeout:?} and was stopped"
                )),
            }
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(anyhow::anyhow!("component answered with an error: {e:?}")),
            Err(_) => {
                let e = match task.await {
                    Ok(Ok(())) => anyhow::anyhow!("component never set a response"),
                    Ok(Err(e)) => e,
                    Err(e) => anyhow::Error::from(e),
                };
                Err(e.context(format!(
                    "component `{}` failed before answering",
                    loaded.info.name
                )))
            }
        }
    }

    /// Runs one Redis message through component `index`'s
    /// `fermyon:spin/inbound-redis` export, under the same limits as a request.
    pub async fn handle_message(self: &Arc<Self>, index: usize, payload: Vec<u8>) -> Result<()> {
        let loaded = &self.components[index];
        let Some(pre) = &loaded.redis else {
            bail!(
                "component `{}` is not on the Redis trigger",
                loaded.info.name
            );
        };
        let mut store = self.new_store(loaded, true);
        let name = &loaded.info.name;
        let run = async {
            let guest = pre.instantiate_async(&mut store).await.map_err(wt)?;
            guest
                .fermyon_spin_inbound_redis()
                .call_handle_message(&mut store, &payload)
                .await
                .map_err(wt)
        };
        match tokio::time::timeout(self.request_timeout, run).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => bail!("component `{name}` returned {e:?}"),
            Ok(Err(e)) => Err(e.context(format!("component `{name}` failed"))),
            Err(_) => bail!(
                "component `{name}` did not finish within {:?} and was stopped",
                self.request_timeout
            ),
        }
    }

    /// A fresh store for one run of a component: its own WASI context,
    /// memory limit and epoch deadline.
    fn new_store(self: &Arc<Self>, loaded: &Loaded, background: bool) -> Store<RequestState> {
        let state = RequestState::new(&loaded.info, &self.shared, self.clone(), background);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s.limits());
        store.set_epoch_deadline(EpochTicker::ticks(self.request_timeout));
        store.epoch_deadline_trap();
        store
    }

    /// Local service chaining: `http://<name>.spin.internal/...`.
    pub async fn invoke_chained(
        self: &Arc<Self>,
        name: &str,
        req: http::Request<WasiBody>,
        background: bool,
    ) -> Result<http::Response<WasiBody>, wasmtime_wasi_http::Error> {
        let Some(&index) = self.by_name.get(name) else {
            return Err(wasmtime_wasi_http::Error::DestinationNotFound);
        };
        self.invoke(index, req, background).await.map_err(|e| {
            tracing::error!(component = name, "chained request failed: {e:#}");
            wasmtime_wasi_http::Error::InternalError(Some(format!("{e:#}")))
        })
    }
}

impl ChainTarget for App {
    fn chain(
        self: Arc<Self>,
        component: String,
        request: http::Request<WasiBody>,
        background: bool,
    ) -> ChainFuture {
        Box::pin(async move { self.invoke_chained(&component, request, background).await })
    }
}

impl MessageHandler for App {
    fn on_message(
        self: Arc<Self>,
        component: usize,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move { self.handle_message(component, payload).await })
    }

    fn component_name(&self, component: usize) -> &str {
        App::component_name(self, component)
    }
}

/// wasmtime's error type into anyhow's, keeping the message chain.
pub(crate) fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}
