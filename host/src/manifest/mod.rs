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
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::allowed_hosts::{self, AllowedHosts};

pub mod ids;
mod schema;
mod template;
mod triggers;
mod variables;

pub use schema::{ComponentDecl, HttpTrigger, RedisTrigger, VariableDecl};
pub use template::Template;
pub use variables::AppVariables;

use schema::Raw;
use triggers::{check_http_settings, http_trigger, redis_default_address, redis_trigger};

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
