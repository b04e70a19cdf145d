//! The application's variables, resolved once at start-up: an explicit
//! override, else `SPIN_VARIABLE_<NAME>` from the environment, else the
//! manifest's default.

use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};

use super::schema::VariableDecl;
use super::template::{Part, Template};

pub struct AppVariables {
    values: HashMap<String, String>,
    declared: Vec<String>,
}

impl AppVariables {
    pub fn resolve(
        decls: &BTreeMap<String, VariableDecl>,
        overrides: &HashMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut values = HashMap::new();
        let mut missing = Vec::new();
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
                None => missing.push(name.clone()),
            }
        }
        // Spin refuses to start while a required variable has no value.
        if !missing.is_empty() {
            let set: Vec<String> = missing
                .iter()
                .map(|n| format!("SPIN_VARIABLE_{}", n.to_uppercase()))
                .collect();
            bail!(
                "no provider resolved required variable(s): {missing:?}: set {}",
                set.join(", ")
            );
        }
        Ok(Self {
            values,
            declared: decls.keys().cloned().collect(),
        })
    }

    /// The defaults alone: what Spin checks templated hosts with at load.
    pub fn defaults(decls: &BTreeMap<String, VariableDecl>) -> Self {
        Self {
            values: decls
                .iter()
                .filter_map(|(k, d)| Some((k.clone(), d.default.clone()?)))
                .collect(),
            declared: decls.keys().cloned().collect(),
        }
    }

    /// Expands a template; a name that is not an application variable is
    /// an error.
    pub fn expand(&self, template: &Template) -> Result<String> {
        let mut out = String::new();
        for part in &template.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => match self.values.get(name) {
                    Some(v) => out.push_str(v),
                    None if self.declared.contains(name) => {
                        bail!("variable {name:?} has no value")
                    }
                    None => bail!("unknown variable {name:?}"),
                },
            }
        }
        Ok(out)
    }

    /// Parses and expands `text`.
    pub fn expand_str(&self, text: &str) -> Result<String> {
        self.expand(&Template::parse(text)?)
    }

    /// The expansion, when every name has a value.
    pub fn try_expand(&self, template: &Template) -> Option<String> {
        self.expand(template).ok()
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
            vars.expand_str("redis://{{ host }}:{{port}}/{{ key }}")
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
        assert!(err.to_string().contains("required variable"), "{err}");
        let mut overrides = HashMap::new();
        overrides.insert("key".to_string(), "k".to_string());
        let vars = AppVariables::resolve(&decls(), &overrides, |_| None).unwrap();
        let err = vars.expand_str("{{ nope }}").unwrap_err().to_string();
        assert_eq!(err, "unknown variable \"nope\"");
        assert!(vars.expand_str("{{ host").is_err());
        // Defaults only: a required variable has no value yet.
        let defaults = AppVariables::defaults(&decls());
        assert!(defaults
            .try_expand(&Template::parse("{{ key }}").unwrap())
            .is_none());
    }
}
