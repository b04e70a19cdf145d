//! The Spin manifest (`spin.toml`, version 2), read as Spin 4 reads it:
//! the same keys (an unknown one is an error, as in Spin), the same id
//! grammar, the same per-trigger settings, and the same refusals at start,
//! with Spin's messages. Where a manifest uses a Spin feature this host does
//! not provide (`files`, key-value stores, dependencies, ...), it is refused
//! too, saying so: `aies-host` may refuse more than Spin, never less.
//!
//! Spin's rules, by where Spin checks them (spinframework/spin 4.1):
//! - parsing (`crates/manifest`): `deny_unknown_fields` on the manifest,
//!   `[application]`, components, variables and `build`; kebab-case
//!   component ids, lower snake_case variable names;
//! - loading (`crates/loader`): a variable has a default or is required;
//!   `allowed_outbound_hosts` parse (templates with their defaults); a
//!   component naming a `*.spin.internal` host needs the trigger feature
//!   `local_service_chaining`;
//! - each trigger's start (`crates/trigger*`): the features it supports
//!   (HTTP: service chaining; Redis: none), its settings, component
//!   variable templates naming defined variables, required variables given,
//!   the sources of its components.
//!
//! [`Manifest::parse`] does the first two and the trigger settings;
//! [`crate::App::load`] the rest (it needs the variables' values).

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::allowed_hosts::{self, AllowedHosts};

pub mod ids;
mod template;
mod variables;

pub use template::Template;
pub use variables::AppVariables;

/// The trigger feature a component needs when it names a
/// `*.spin.internal` host (Spin's `SERVICE_CHAINING_KEY`).
pub const SERVICE_CHAINING: &str = "local_service_chaining";

/// A manifest that passed Spin's load-time checks.
#[derive(Debug)]
pub struct Manifest {
    pub name: String,
    pub variables: BTreeMap<String, VariableDecl>,
    pub components: BTreeMap<String, ComponentDecl>,
    pub http: Vec<HttpTrigger>,
    pub redis: Vec<RedisTrigger>,
}

/// `[variables.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub description: Option<String>,
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

/// `[component.<id>]`: every key Spin knows; those this host does not
/// provide are refused by [`Manifest::parse`] when they are not empty, and
/// those only other tools read (`build`, `tool`, `targets`) are kept unread.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ComponentDecl {
    source: toml::Value,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<toml::Value>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_http_hosts: Vec<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    pub ai_models: Vec<String>,
    #[serde(default)]
    targets: Option<Vec<toml::Value>>,
    #[serde(default)]
    build: Option<BuildConfig>,
    #[serde(default)]
    tool: BTreeMap<String, toml::Table>,
    #[serde(default)]
    dependencies_inherit_configuration: Option<bool>,
    #[serde(default)]
    dependencies: toml::Table,
    #[serde(default)]
    profile: BTreeMap<String, toml::Table>,
}

impl ComponentDecl {
    /// The Wasm file, relative to the manifest.
    pub fn source(&self) -> &str {
        self.source.as_str().unwrap_or_default()
    }
}

/// `[component.<id>.build]`: read by `spin build` only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct BuildConfig {
    command: Commands,
    workdir: Option<String>,
    #[serde(default)]
    watch: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Commands {
    One(String),
    Many(Vec<String>),
}

/// A `[[trigger.http]]` entry.
#[derive(Debug, Clone)]
pub struct HttpTrigger {
    pub component: String,
    /// None: private (reached only by local service chaining).
    pub route: Option<String>,
}

/// A `[[trigger.redis]]` entry: messages on `channel` (a template) at
/// `address` (a template; the application's default when not set) run
/// `component`.
#[derive(Debug, Clone)]
pub struct RedisTrigger {
    pub component: String,
    pub channel: String,
    pub address: String,
}

/// What Spin's manifest parser reads; checked and turned into a [`Manifest`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    /// Required, as in Spin (`trigger = {}` is "No triggers in app").
    trigger: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default)]
    component: BTreeMap<String, ComponentDecl>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    targets: Vec<toml::Value>,
    #[serde(default)]
    trigger: BTreeMap<String, toml::Table>,
    #[serde(default)]
    tool: BTreeMap<String, toml::Table>,
}

/// `[[trigger.http]]` as Spin's HTTP trigger reads it (`HttpTriggerConfig`
/// plus the keys every trigger has).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawHttpTrigger {
    #[serde(default)]
    id: String,
    component: Option<toml::Value>,
    #[serde(default)]
    components: toml::Table,
    #[serde(default)]
    dependencies: toml::Table,
    route: Option<RawRoute>,
    static_response: Option<toml::Value>,
    executor: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Private(PrivateRoute),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateRoute {
    private: bool,
}

/// `[[trigger.redis]]` as Spin's Redis trigger reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawRedisTrigger {
    #[serde(default)]
    id: String,
    component: toml::Value,
    #[serde(default)]
    components: toml::Table,
    #[serde(default)]
    dependencies: toml::Table,
    channel: String,
    address: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSettings {
    base: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisSettings {
    address: String,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading manifest {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("manifest {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let table: toml::Table = toml::from_str(text)?;
        match table
            .get("spin_manifest_version")
            .or(table.get("spin_version"))
        {
            Some(toml::Value::Integer(2)) => {}
            Some(toml::Value::String(v)) if v == "1" => bail!(
                "spin_manifest_version \"1\" is the old manifest format, which aies-host does \
                 not read: convert it to version 2 (`spin doctor` does)"
            ),
            Some(other) => bail!("invalid manifest version: {other}"),
            None => bail!("missing field `spin_manifest_version`"),
        }
        let raw: Raw = toml::from_str(text)?;
        debug_assert_eq!(raw.spin_manifest_version.as_integer(), Some(2));
        Self::check(raw)
    }

    fn check(raw: Raw) -> Result<Self> {
        for (name, decl) in &raw.variables {
            ids::lower_snake(name).map_err(|e| anyhow!("variable name {name:?}: {e}"))?;
            if decl.required == decl.default.is_some() {
                bail!("variable `{name}`: must be `required` OR have a `default`");
            }
        }
        let defaults = AppVariables::defaults(&raw.variables);
        for (id, c) in &raw.component {
            ids::kebab(id).map_err(|e| anyhow!("component id {id:?}: {e}"))?;
            check_component(c, &defaults)
                .with_context(|| format!("Failed to load component `{id}`"))?;
        }

        let mut http = Vec::new();
        let mut redis = Vec::new();
        let settings = &raw.application.trigger;
        for (kind, triggers) in &raw.trigger {
            match kind.as_str() {
                "http" => {
                    check_http_settings(settings.get("http"))?;
                    for t in triggers {
                        http.push(http_trigger(t, &raw.component)?);
                    }
                }
                "redis" => {
                    let default = redis_default_address(settings.get("redis"))?;
                    for t in triggers {
                        redis.push(redis_trigger(t, default.as_deref(), &raw.component)?);
                    }
                }
                other => bail!(
                    "No built-in trigger named '{other}': aies-host runs the 'http' and \
                     'redis' triggers (Spin runs others as plugins, `trigger-{other}`)"
                ),
            }
        }
        if http.is_empty() && redis.is_empty() {
            bail!("No triggers in app");
        }
        let manifest = Self {
            name: raw.application.name,
            variables: raw.variables,
            components: raw.component,
            http,
            redis,
        };
        manifest.check_trigger_features()?;
        Ok(manifest)
    }

    /// Spin's `ensure_needs_only`: a trigger refuses the whole application
    /// when one of its components needs a feature it does not have. Only
    /// the HTTP trigger offers local service chaining.
    fn check_trigger_features(&self) -> Result<()> {
        for t in &self.redis {
            let c = &self.components[&t.component];
            if needs_service_chaining(c) {
                bail!(
                    "This application requires the following features that are not available \
                     in this version of the 'redis' trigger: {SERVICE_CHAINING} (component \
                     `{}` names a *.spin.internal host; Spin chains only from HTTP-triggered \
                     components)",
                    t.component
                );
            }
        }
        Ok(())
    }

    /// Components some trigger runs: Spin loads only these.
    pub fn triggered(&self) -> BTreeSet<&str> {
        self.http
            .iter()
            .map(|t| t.component.as_str())
            .chain(self.redis.iter().map(|t| t.component.as_str()))
            .collect()
    }
}

/// A literal (untemplated) `allowed_outbound_hosts` entry whose host is
/// `<x>.spin.internal` or `*.spin.internal`, whatever its scheme and port.
fn needs_service_chaining(c: &ComponentDecl) -> bool {
    c.allowed_outbound_hosts
        .iter()
        .filter(|h| !h.contains("{{"))
        .filter_map(|h| allowed_hosts::host_of(h))
        .any(|host| host.ends_with(".spin.internal"))
}

fn check_component(c: &ComponentDecl, defaults: &AppVariables) -> Result<()> {
    if !c.source.is_str() {
        bail!(
            "source {}: aies-host runs local Wasm files only (`source = \"path.wasm\"`), not \
             URL or registry sources",
            c.source
        );
    }
    let unsupported = [
        ("files", !c.files.is_empty() || !c.exclude_files.is_empty()),
        ("allowed_http_hosts", !c.allowed_http_hosts.is_empty()),
        ("key_value_stores", !c.key_value_stores.is_empty()),
        ("sqlite_databases", !c.sqlite_databases.is_empty()),
        ("dependencies", !c.dependencies.is_empty()),
        ("profile", !c.profile.is_empty()),
    ];
    for label in c.key_value_stores.iter().chain(&c.sqlite_databases) {
        ids::kebab_or_snake(label).map_err(|e| anyhow!("store label {label:?}: {e}"))?;
    }
    if let Some((key, _)) = unsupported.iter().find(|(_, used)| *used) {
        bail!("`{key}` is a Spin feature aies-host does not provide");
    }
    for name in c.variables.keys() {
        ids::lower_snake(name).map_err(|e| anyhow!("variable name {name:?}: {e}"))?;
    }
    // Spin parses each entry at load; a template only when its variables
    // all have defaults (the real values are checked when it is used).
    let mut checked = Vec::new();
    for entry in &c.allowed_outbound_hosts {
        let template = Template::parse(entry).context("`allowed_outbound_hosts` is malformed")?;
        if template.is_literal() {
            checked.push(entry.clone());
        } else if let Some(value) = defaults.try_expand(&template) {
            if !matches!(value.trim(), "" | "http://" | "https://") {
                AllowedHosts::parse(&[&value]).with_context(|| {
                    format!(
                        "using default variable value(s) with template {entry:?} results in \
                         invalid config {value:?}"
                    )
                })?;
            }
        }
    }
    if checked == ["insecure:allow-all"] {
        bail!("'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic'");
    }
    AllowedHosts::parse(&checked).context("`allowed_outbound_hosts` is malformed")?;
    Ok(())
}

fn check_http_settings(settings: Option<&toml::Table>) -> Result<()> {
    let Some(table) = settings else {
        return Ok(());
    };
    let s: HttpSettings = table
        .clone()
        .try_into()
        .map_err(|e| anyhow!("invalid metadata value for \"http\": {e}"))?;
    match s.base.as_deref() {
        None | Some("/") => Ok(()),
        Some(_) => bail!(
            "This application is using the deprecated trigger 'base' field. The base must be \
             prepended to each [[trigger.http]]'s 'route'."
        ),
    }
}

fn trigger_component(
    value: Option<&toml::Value>,
    components: &BTreeMap<String, ComponentDecl>,
) -> Result<String> {
    let Some(value) = value else {
        bail!("missing field `component`");
    };
    let Some(id) = value.as_str() else {
        bail!("inline components (`component = {{ ... }}`) are a Spin feature aies-host does not provide: name a [component.<id>]");
    };
    ids::kebab(id).map_err(|e| anyhow!("component id {id:?}: {e}"))?;
    if !components.contains_key(id) {
        bail!("no such component {id:?}");
    }
    Ok(id.to_string())
}

fn http_trigger(
    table: &toml::Table,
    components: &BTreeMap<String, ComponentDecl>,
) -> Result<HttpTrigger> {
    let t: RawHttpTrigger = table
        .clone()
        .try_into()
        .map_err(|e| anyhow!("[[trigger.http]]: {e}"))?;
    let name = if t.id.is_empty() {
        t.component
            .as_ref()
            .and_then(|c| c.as_str())
            .unwrap_or("?")
            .to_string()
    } else {
        t.id.clone()
    };
    let context = || format!("[[trigger.http]] of `{name}`");
    if !t.components.is_empty() || !t.dependencies.is_empty() {
        bail!("{}: trigger `components` and `dependencies` (middleware) are a Spin feature aies-host does not provide", context());
    }
    match (&t.component, &t.static_response) {
        (Some(_), Some(_)) => {
            bail!("Triggers must specify either component or static_response - {name} has both")
        }
        (None, None) => {
            bail!("Triggers must specify either component or static_response - {name} has neither")
        }
        (None, Some(_)) => bail!(
            "{}: `static_response` is a Spin feature aies-host does not provide",
            context()
        ),
        (Some(_), None) => {}
    }
    if let Some(executor) = &t.executor {
        if executor.get("type").and_then(|v| v.as_str()) != Some("spin") {
            bail!(
                "{}: only the `spin` executor runs here (WAGI is not provided)",
                context()
            );
        }
    }
    let component = trigger_component(t.component.as_ref(), components).with_context(context)?;
    let route = match t.route {
        None => bail!("{}: missing field `route`", context()),
        Some(RawRoute::Private(PrivateRoute { private: true })) => None,
        Some(RawRoute::Private(PrivateRoute { private: false })) => bail!(
            "route must be a string pattern or '{{ private = true }}': '{name}' has {{ private = false }}"
        ),
        Some(RawRoute::Path(p)) => {
            let route = crate::routes::Route::parse(&p).map_err(|e| {
                anyhow!("Error parsing route {p} associated with component {component}: {e}")
            })?;
            Some(route.to_string())
        }
    };
    Ok(HttpTrigger { component, route })
}

fn redis_default_address(settings: Option<&toml::Table>) -> Result<Option<String>> {
    let Some(table) = settings else {
        return Ok(None);
    };
    let s: RedisSettings = table
        .clone()
        .try_into()
        .map_err(|e| anyhow!("invalid metadata value for \"redis\": {e}"))?;
    Ok(Some(s.address))
}

fn redis_trigger(
    table: &toml::Table,
    default_address: Option<&str>,
    components: &BTreeMap<String, ComponentDecl>,
) -> Result<RedisTrigger> {
    let t: RawRedisTrigger = table
        .clone()
        .try_into()
        .map_err(|e| anyhow!("[[trigger.redis]]: {e}"))?;
    let component =
        trigger_component(Some(&t.component), components).context("[[trigger.redis]]")?;
    let context = || format!("[[trigger.redis]] of `{component}`");
    if !t.components.is_empty() || !t.dependencies.is_empty() {
        bail!("{}: this trigger should not have dependencies", context());
    }
    let address = t
        .address
        .or(default_address.map(str::to_string))
        .filter(|a| !a.trim().is_empty())
        .with_context(|| {
            format!(
                "{}: no address: set `address` here or [application.trigger.redis] address",
                context()
            )
        })?;
    Template::parse(&address).with_context(context)?;
    Template::parse(&t.channel).with_context(context)?;
    Ok(RedisTrigger {
        component,
        channel: t.channel,
        address,
    })
}

/// The values of one component's variables, its templates expanded
/// (Spin: "invalid variable template" at the trigger's start).
pub fn component_variables(
    c: &ComponentDecl,
    vars: &AppVariables,
) -> Result<HashMap<String, String>> {
    c.variables
        .iter()
        .map(|(k, v)| {
            let value = Template::parse(v)
                .and_then(|t| vars.expand(&t))
                .map_err(|e| anyhow!("invalid variable template: {e}"))
                .with_context(|| format!("variable `{k}`"))?;
            Ok((k.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests;
