//! The parts of a Spin manifest (version 2) that this host runs: variables,
//! HTTP triggers and components. Unknown keys are ignored, as Spin's own
//! runtime ignores keys that belong to other tools (such as `build`).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Deserialize)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub trigger: ApplicationTriggers,
}

/// `[application.trigger.*]`: settings shared by all triggers of a type.
#[derive(Debug, Default, Deserialize)]
pub struct ApplicationTriggers {
    pub redis: Option<RedisTriggerSettings>,
}

#[derive(Debug, Deserialize)]
pub struct RedisTriggerSettings {
    /// The default server of `[[trigger.redis]]` entries, `redis://host:port`.
    pub address: String,
}

#[derive(Debug, Deserialize)]
pub struct VariableDecl {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
    #[serde(default)]
    pub redis: Vec<RedisTrigger>,
}

/// `[[trigger.redis]]`: messages on `channel` run `component`.
#[derive(Debug, Deserialize)]
pub struct RedisTrigger {
    pub channel: String,
    pub component: String,
    /// Overrides `[application.trigger.redis] address` for this channel.
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct HttpTrigger {
    pub route: Route,
    pub component: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Route {
    Path(String),
    Private { private: bool },
}

#[derive(Debug, Deserialize)]
pub struct ComponentDecl {
    pub source: String,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub ai_models: Vec<String>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading manifest {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("manifest {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest = toml::from_str(text)?;
        if manifest.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version must be 2, found {}",
                manifest.spin_manifest_version
            );
        }
        for t in &manifest.trigger.http {
            if !manifest.component.contains_key(&t.component) {
                bail!("HTTP trigger names unknown component `{}`", t.component);
            }
        }
        for t in &manifest.trigger.redis {
            if !manifest.component.contains_key(&t.component) {
                bail!("Redis trigger names unknown component `{}`", t.component);
            }
            if manifest
                .trigger
                .http
                .iter()
                .any(|h| h.component == t.component)
            {
                bail!(
                    "component `{}` is on both the HTTP and the Redis trigger: one component serves one trigger",
                    t.component
                );
            }
            if t.address.is_none() && manifest.application.trigger.redis.is_none() {
                bail!(
                    "Redis trigger of `{}` has no address: set [application.trigger.redis] address",
                    t.component
                );
            }
        }
        Ok(manifest)
    }
}

/// The application's variables, resolved once at start-up: an explicit
/// override, else `SPIN_VARIABLE_<NAME>` from the environment, else the
/// manifest's default.
pub struct AppVariables {
    values: HashMap<String, String>,
}

impl AppVariables {
    pub fn resolve(
        decls: &BTreeMap<String, VariableDecl>,
        overrides: &HashMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut values = HashMap::new();
        for (name, decl) in decls {
            let from_env = env(&format!("SPIN_VARIABLE_{}", name.to_uppercase()));
            let value = overrides
                .get(name)
                .cloned()
                .or(from_env)
                .or_else(|| decl.default.clone());
            match value {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None if decl.required => bail!(
                    "variable `{name}` is required: set SPIN_VARIABLE_{}",
                    name.to_uppercase()
                ),
                None => {}
            }
        }
        Ok(Self { values })
    }

    /// Expands `{{ name }}` references to application variables.
    pub fn expand(&self, template: &str) -> Result<String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("unclosed `{{{{` in {template:?}"))?;
            let name = after[..end].trim();
            let value = self
                .values
                .get(name)
                .with_context(|| format!("{template:?} refers to undefined variable `{name}`"))?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls() -> BTreeMap<String, VariableDecl> {
        toml::from_str(
            r#"
            host = { default = "127.0.0.1" }
            port = { default = "6379" }
            key = { required = true, secret = true }
            "#,
        )
        .unwrap()
    }

    #[test]
    fn override_beats_environment_beats_default() {
        let mut overrides = HashMap::new();
        overrides.insert("key".to_string(), "k".to_string());
        let env = |n: &str| (n == "SPIN_VARIABLE_PORT").then(|| "7000".to_string());
        let vars = AppVariables::resolve(&decls(), &overrides, env).unwrap();
        assert_eq!(
            vars.expand("redis://{{ host }}:{{port}}/{{ key }}")
                .unwrap(),
            "redis://127.0.0.1:7000/k"
        );
    }

    #[test]
    fn missing_required_and_undefined_names_are_errors() {
        let err = AppVariables::resolve(&decls(), &HashMap::new(), |_| None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("SPIN_VARIABLE_KEY"), "{err}");
        let mut overrides = HashMap::new();
        overrides.insert("key".to_string(), "k".to_string());
        let vars = AppVariables::resolve(&decls(), &overrides, |_| None).unwrap();
        assert!(vars.expand("{{ nope }}").is_err());
        assert!(vars.expand("{{ host").is_err());
    }

    const APP: &str = "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
                       [component.c]\nsource = \"c.wasm\"\n";

    #[test]
    fn redis_triggers_need_an_address_and_their_own_component() {
        let channel = "[[trigger.redis]]\nchannel = \"done\"\ncomponent = \"c\"\n";
        let err = Manifest::parse(&format!("{APP}{channel}")).unwrap_err();
        assert!(err.to_string().contains("no address"), "{err}");

        let with_address = format!("{APP}{channel}address = \"redis://127.0.0.1:6379\"\n");
        let manifest = Manifest::parse(&with_address).unwrap();
        assert_eq!(manifest.trigger.redis[0].channel, "done");

        let app_address = APP.replace(
            "name = \"a\"\n",
            "name = \"a\"\n[application.trigger.redis]\naddress = \"redis://r:1\"\n",
        );
        let manifest = Manifest::parse(&format!("{app_address}{channel}")).unwrap();
        let settings = manifest.application.trigger.redis.unwrap();
        assert_eq!(settings.address, "redis://r:1");

        let both = format!("{with_address}[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n");
        let err = Manifest::parse(&both).unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
    }
}
