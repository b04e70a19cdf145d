//! Spin's `{{ name }}` templates (spin-expressions `template.rs`): in
//! component variables, `allowed_outbound_hosts` and Redis trigger settings.

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Lit(String),
    /// A variable name, trimmed.
    Var(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(expr) = rest.strip_prefix("{{") {
                let Some((name, after)) = expr.split_once("}}") else {
                    bail!("unmatched '{{{{' in template");
                };
                parts.push(Part::Var(name.trim().to_string()));
                rest = after;
            } else {
                let end = rest.find("{{").unwrap_or(rest.len());
                parts.push(Part::Lit(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        Ok(Self { parts })
    }

    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Lit(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_variables() {
        let t = Template::parse("redis://{{ host }}:{{port}}").unwrap();
        assert_eq!(t.names().collect::<Vec<_>>(), ["host", "port"]);
        assert!(!t.is_literal());
        assert!(Template::parse("http://x.spin.internal")
            .unwrap()
            .is_literal());
        let err = Template::parse("{{ host").unwrap_err().to_string();
        assert_eq!(err, "unmatched '{{' in template");
    }
}
