//! The loaded application: one compiled, pre-instantiated component per
//! manifest entry, the HTTP routes, and the shared backends (Redis, model).
//!
//! Each request gets a fresh `Store` from the component's `ProxyPre`, with a
//! memory limit and an epoch deadline: a component that runs past
//! `request_timeout` is trapped, and one stuck waiting on I/O is dropped.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::StoreLimitsBuilder;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpView};

use crate::allowed_hosts::AllowedHosts;
use crate::bindings::{HostWorld, RedisTriggerPre};
use crate::connections::Connections;
use crate::llm::{Models, LOCAL_MODELS};
use crate::manifest::{component_variables, AppVariables, Manifest};
use crate::outbound_http::OutboundHttp;
use crate::redis::RedisPool;
use crate::routes::{Route, Router};
use crate::state::{ComponentInfo, RequestState};

/// How often the epoch advances; request deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of the host, from flags (the binary) or from a test.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub manifest: PathBuf,
    /// Variable values that win over `SPIN_VARIABLE_*` and defaults.
    pub variables: HashMap<String, String>,
    /// Read `SPIN_VARIABLE_*` from the process environment.
    pub env_variables: bool,
    /// Where `all-minilm-l6-v2/` lives; default `.spin/ai-models` beside the manifest.
    pub model_dir: Option<PathBuf>,
    /// Longest a component may run for one request, waits included.
    pub request_timeout: Duration,
    /// Longest an outbound HTTP request may wait to connect or for data.
    pub outbound_timeout: Duration,
    /// Linear memory one component instance may grow to.
    pub max_memory_bytes: usize,
    /// Where to serve the host's own metrics (`GET /metrics`); none: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Vectors the embedding memo keeps per model; 0 turns it off. A memo
    /// shared by all tenants tells, by its speed, that a text was embedded
    /// lately: a deployment whose tenants must not learn that sets 0.
    pub embedding_memo: usize,
}

impl HostConfig {
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            variables: HashMap::new(),
            env_variables: true,
            model_dir: None,
            request_timeout: Duration::from_secs(120),
            outbound_timeout: Duration::from_secs(60),
            max_memory_bytes: 128 << 20,
            metrics_listen: None,
            embedding_memo: crate::llm::MEMO_TEXTS,
        }
    }
}

/// A component, pre-instantiated for the exports its triggers call (Spin
/// lets one component serve both triggers).
struct Loaded {
    info: Arc<ComponentInfo>,
    http: Option<ProxyPre<RequestState>>,
    redis: Option<RedisTriggerPre<RequestState>>,
}

/// A `[[trigger.redis]]` entry, its templates expanded.
#[derive(Debug, Clone)]
pub struct RedisSubscription {
    pub address: String,
    pub channel: String,
    pub component: usize,
}

pub struct App {
    pub name: String,
    engine: Engine,
    components: Vec<Loaded>,
    by_name: HashMap<String, usize>,
    routes: Router,
    pub subscriptions: Vec<RedisSubscription>,
    pub redis: RedisPool,
    pub connections: Arc<Connections>,
    pub models: Models,
    pub outbound_timeout: Duration,
    request_timeout: Duration,
    max_memory_bytes: usize,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn engine(max_memory_bytes: usize) -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // The components are WASI 0.2 (no component-model async): without the
    // concurrent-execution state every store and host call bookkept.
    config.concurrency_support(false);
    let mut pool = PoolingAllocationConfig::default();
    pool.max_memory_size(max_memory_bytes);
    // Requests in flight (most wait on the network: an LLM answering in
    // 300 ms) each hold an instance, and a chained call one more.
    pool.total_component_instances(2000);
    pool.total_core_instances(6000);
    pool.total_memories(4000);
    pool.total_tables(4000);
    pool.total_stacks(2000);
    // Resetting a slot's memory was the largest single cost of a short
    // request (perf: 14% memset plus TLB shootdowns from madvise). With the
    // PAGEMAP_SCAN ioctl (Linux 6.7+) only the pages a request dirtied are
    // reset, and the first 256 KiB stay resident; decommits are batched.
    // No-op requests: 0.09-0.10x -> 0.17-0.23x of native hyper.
    pool.decommit_batch_size(64);
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    pool.linear_memory_keep_resident(256 << 10);
    pool.table_keep_resident(64 << 10);

    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match wasmtime::Cache::from_file(None) {
        Ok(cache) => {
            config.cache(Some(cache));
        }
        Err(e) => tracing::warn!("compilation cache off: {e:#}"),
    }
    Engine::new(&config).map_err(|e| anyhow::anyhow!("creating the wasm engine: {e}"))
}

impl App {
    pub fn load(config: &HostConfig) -> Result<Arc<Self>> {
        let manifest = Manifest::load(&config.manifest)?;
        let base = config
            .manifest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let env = |k: &str| {
            config
                .env_variables
                .then(|| std::env::var(k).ok())
                .flatten()
        };
        let vars = AppVariables::resolve(&manifest.variables, &config.variables, env)?;

        let engine = engine(config.max_memory_bytes)?;
        let mut linker: Linker<RequestState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wt)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(wt)?;
        HostWorld::add_to_linker::<_, wasmtime::component::HasSelf<RequestState>>(
            &mut linker,
            |s| s,
        )
        .map_err(wt)?;

        // Spin checks every component's variable templates at the start
        // of each trigger, and compiles only the components a trigger runs.
        let mut variables_of = HashMap::new();
        for (name, decl) in &manifest.components {
            let values = component_variables(decl, &vars)
                .with_context(|| format!("failed to configure component `{name}`"))?;
            variables_of.insert(name.clone(), values);
        }
        let triggered = manifest.triggered();
        let mut components = Vec::new();
        let mut by_name = HashMap::new();
        let mut used_models = std::collections::BTreeSet::new();
        for (name, decl) in &manifest.components {
            if !triggered.contains(name.as_str()) {
                tracing::warn!(component = %name, "no trigger runs this component: not loaded");
                continue;
            }
            let path = base.join(decl.source());
            if !path.exists() {
                bail!(
                    "component `{name}`: failed to read component source from disk at path {}: \
                     build the components first (`make build`)",
                    path.display()
                );
            }
            let component = Component::from_file(&engine, &path)
                .map_err(wt)
                .with_context(|| format!("component `{name}`: compiling {}", path.display()))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(wt)
                .with_context(|| format!("component `{name}`: linking its imports"))?;
            let on_http = manifest.http.iter().any(|t| &t.component == name);
            let on_redis = manifest.redis.iter().any(|t| &t.component == name);
            let http = on_http
                .then(|| ProxyPre::new(pre.clone()))
                .transpose()
                .map_err(wt)
                .with_context(|| {
                    format!("component `{name}` does not export wasi:http/incoming-handler")
                })?;
            let redis = on_redis
                .then(|| RedisTriggerPre::new(pre))
                .transpose()
                .map_err(wt)
                .with_context(|| {
                    format!("component `{name}` does not export fermyon:spin/inbound-redis")
                })?;
            let mut hosts = Vec::new();
            for h in &decl.allowed_outbound_hosts {
                let h = vars
                    .expand_str(h)
                    .with_context(|| format!("component `{name}` allowed_outbound_hosts"))?;
                // Spin ignores an entry that a variable left empty.
                if !matches!(h.trim(), "" | "http://" | "https://") {
                    hosts.push(h);
                }
            }
            for m in &decl.ai_models {
                if !LOCAL_MODELS.contains(&m.as_str()) {
                    bail!(
                        "component `{name}`: ai_models {m:?} is not available here (only {})",
                        LOCAL_MODELS.join(", ")
                    );
                }
                used_models.insert(m.clone());
            }
            let info = ComponentInfo {
                name: name.clone(),
                allowed_hosts: AllowedHosts::parse(&hosts)
                    .with_context(|| format!("component `{name}` allowed_outbound_hosts"))?,
                variables: variables_of.remove(name).unwrap_or_default(),
                environment: decl.environment.clone().into_iter().collect(),
                ai_models: decl.ai_models.clone(),
            };
            tracing::info!(component = %name, source = %path.display(), "component loaded");
            by_name.insert(name.clone(), components.len());
            components.push(Loaded {
                info: Arc::new(info),
                http,
                redis,
            });
        }

        let mut routes = Router::default();
        for t in &manifest.http {
            if let Some(route) = &t.route {
                let route = Route::parse(route).map_err(anyhow::Error::msg)?;
                routes.add(route, by_name[&t.component]);
            }
        }

        let mut subscriptions = Vec::new();
        for t in &manifest.redis {
            let context = || format!("failed to resolve redis trigger of `{}`", t.component);
            subscriptions.push(RedisSubscription {
                address: vars.expand_str(&t.address).with_context(context)?,
                channel: vars.expand_str(&t.channel).with_context(context)?,
                component: by_name[&t.component],
            });
        }

        let model_dir = config
            .model_dir
            .clone()
            .unwrap_or_else(|| base.join(".spin/ai-models"));
        let models = Models::new(model_dir, used_models, config.embedding_memo);

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?;
        }

        Ok(Arc::new(Self {
            name: manifest.name,
            engine,
            components,
            by_name,
            routes,
            subscriptions,
            redis: RedisPool::default(),
            connections: Arc::default(),
            models,
            outbound_timeout: config.outbound_timeout,
            request_timeout: config.request_timeout,
            max_memory_bytes: config.max_memory_bytes,
            ticker_stop,
        }))
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
        self.components.iter().map(|c| c.info.name.as_str())
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
        let state = RequestState {
            app: self.clone(),
            component: loaded.info.clone(),
            wasi: WasiCtx::builder()
                .inherit_stderr()
                .envs(&loaded.info.environment)
                .build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundHttp {
                app: self.clone(),
                component: loaded.info.clone(),
                background,
            },
            limits: StoreLimitsBuilder::new()
                .memory_size(self.max_memory_bytes)
                .instances(16)
                .build(),
            redis_handles: 0,
            background,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = (self.request_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
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

/// wasmtime's error type into anyhow's, keeping the message chain.
pub(crate) fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}
