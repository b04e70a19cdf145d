//! The manifest's TOML as Spin's parser reads it: its serde types, every
//! key Spin knows (an unknown one is an error), and the checked triggers.

use serde::Deserialize;
use std::collections::BTreeMap;

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
    pub(super) source: toml::Value,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) files: Vec<toml::Value>,
    #[serde(default)]
    pub(super) exclude_files: Vec<String>,
    #[serde(default)]
    pub(super) allowed_http_hosts: Vec<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub(super) key_value_stores: Vec<String>,
    #[serde(default)]
    pub(super) sqlite_databases: Vec<String>,
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
    pub(super) dependencies: toml::Table,
    #[serde(default)]
    pub(super) profile: BTreeMap<String, toml::Table>,
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

/// What Spin's manifest parser reads; checked and turned into a `Manifest`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) spin_manifest_version: toml::Value,
    pub(super) application: RawApplication,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, VariableDecl>,
    /// Required, as in Spin (`trigger = {}` is "No triggers in app").
    pub(super) trigger: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default)]
    pub(super) component: BTreeMap<String, ComponentDecl>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct RawApplication {
    pub(super) name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    targets: Vec<toml::Value>,
    #[serde(default)]
    pub(super) trigger: BTreeMap<String, toml::Table>,
    #[serde(default)]
    tool: BTreeMap<String, toml::Table>,
}

/// `[[trigger.http]]` as Spin's HTTP trigger reads it (`HttpTriggerConfig`
/// plus the keys every trigger has).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct RawHttpTrigger {
    #[serde(default)]
    pub(super) id: String,
    pub(super) component: Option<toml::Value>,
    #[serde(default)]
    pub(super) components: toml::Table,
    #[serde(default)]
    pub(super) dependencies: toml::Table,
    pub(super) route: Option<RawRoute>,
    pub(super) static_response: Option<toml::Value>,
    pub(super) executor: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawRoute {
    Path(String),
    Private(PrivateRoute),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PrivateRoute {
    pub(super) private: bool,
}

/// `[[trigger.redis]]` as Spin's Redis trigger reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(super) struct RawRedisTrigger {
    #[serde(default)]
    id: String,
    pub(super) component: toml::Value,
    #[serde(default)]
    pub(super) components: toml::Table,
    #[serde(default)]
    pub(super) dependencies: toml::Table,
    pub(super) channel: String,
    pub(super) address: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpSettings {
    pub(super) base: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedisSettings {
    pub(super) address: String,
}
