//! Loading the app: the manifest read, its variables resolved, each
//! triggered component compiled and pre-instantiated, routes and Redis
//! subscriptions resolved.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::{wt, App, Loaded};
use crate::allowed_hosts::AllowedHosts;
use crate::bindings::RedisTriggerPre;
use crate::config::HostConfig;
use crate::engine::{self, EpochTicker};
use crate::llm::{Models, LOCAL_MODELS};
use crate::manifest::{component_variables, AppVariables, Manifest};
use crate::redis_trigger::RedisSubscription;
use crate::routes::{Route, Router};
use crate::state::{self, ComponentInfo, RequestState, Shared};

impl App {
    /// Reads `config.manifest` and loads what its triggers run.
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

        let engine = engine::new(config.max_memory_bytes)?;
        let mut linker: Linker<RequestState> = Linker::new(&engine);
        state::add_to_linker(&mut linker).map_err(wt)?;

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
            let allowed_hosts = AllowedHosts::parse(&hosts)
                .with_context(|| format!("component `{name}` allowed_outbound_hosts"))?;
            let info = ComponentInfo {
                name: name.as_str().into(),
                allowed_hosts: Arc::new(allowed_hosts),
                variables: Arc::new(variables_of.remove(name).unwrap_or_default()),
                environment: decl.environment.clone().into_iter().collect(),
                ai_models: decl.ai_models.clone().into(),
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

        let ticker = EpochTicker::start(&engine)?;

        Ok(Arc::new(Self {
            name: manifest.name,
            engine,
            components,
            by_name,
            routes,
            subscriptions,
            shared: Shared {
                redis: Arc::default(),
                models: Arc::new(models),
                connections: Arc::default(),
                outbound_timeout: config.outbound_timeout,
                max_memory_bytes: config.max_memory_bytes,
            },
            request_timeout: config.request_timeout,
            _ticker: ticker,
        }))
    }
}
