//! `aies-host check`: would Spin 4 start this application? Runs, without
//! serving anything, what Spin checks from `spin up` to the first request:
//!
//! 1. the manifest against Spin's own JSON schema for `spin.toml`
//!    (`spin-manifest.schema.json`, made by `spin maintenance
//!    generate-manifest-schema` from Spin's source; see that file's `$comment`);
//! 2. Spin's load-time and trigger-start rules ([`crate::manifest`]): ids,
//!    variables, hosts, trigger settings, the features each trigger offers;
//! 3. what the triggers do before serving: variables resolved (required
//!    ones given), component variable templates, every triggered
//!    component's `source` present, compiled, and exporting what its
//!    trigger calls; and the local models named in `ai_models` present
//!    (Spin's local backend reads `.spin/ai-models/<model>/` too).

use anyhow::{anyhow, bail, Context, Result};
use std::fmt::Write;
use std::path::Path;

use crate::app::App;
use crate::config::HostConfig;
use crate::manifest::Manifest;

/// Spin's JSON schema of a version 2 manifest.
pub const SPIN_MANIFEST_SCHEMA: &str = include_str!("../spin-manifest.schema.json");

/// Checks `config.manifest`; on success, a summary of what would run.
pub fn check(config: &HostConfig) -> Result<String> {
    let text = std::fs::read_to_string(&config.manifest)
        .with_context(|| format!("reading {}", config.manifest.display()))?;
    schema_errors(&text)?;
    let manifest = Manifest::parse(&text)?;
    let app = App::load(config)?;
    let base = config.manifest.parent().unwrap_or(Path::new("."));
    let model_dir = config
        .model_dir
        .clone()
        .unwrap_or_else(|| base.join(".spin/ai-models"));
    let mut missing_models = Vec::new();
    for (id, c) in &manifest.components {
        for m in &c.ai_models {
            if !model_dir.join(m).join("model.safetensors").exists() {
                missing_models.push(format!("{id}: {m}"));
            }
        }
    }
    if !missing_models.is_empty() {
        bail!(
            "ai_models not found under {} ({}): `make setup` puts them there",
            model_dir.display(),
            missing_models.join(", ")
        );
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: Spin 4 would start `{}`",
        config.manifest.display(),
        app.name
    );
    for t in &manifest.http {
        let route = t.route.as_deref().unwrap_or("(private)");
        let _ = writeln!(out, "  http  {route:<24} -> {}", t.component);
    }
    for t in &manifest.redis {
        let _ = writeln!(out, "  redis {:<24} -> {}", t.channel, t.component);
    }
    Ok(out)
}

/// Validates the manifest against Spin's schema; every violation is listed.
pub fn schema_errors(text: &str) -> Result<()> {
    let value: toml::Value = toml::from_str(text)?;
    let instance = serde_json::to_value(value)?;
    let schema: serde_json::Value = serde_json::from_str(SPIN_MANIFEST_SCHEMA)?;
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| anyhow!("Spin's manifest schema does not load: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("  at {}: {e}", e.instance_path()))
        .collect();
    if !errors.is_empty() {
        bail!(
            "not a valid Spin manifest (Spin's schema):\n{}",
            errors.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_schema_reads_our_manifest_and_refuses_a_bad_one() {
        schema_errors(include_str!("../../spin.toml")).unwrap();
        let bad = "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
                   [[trigger.http]]\nroute = 7\ncomponent = \"c\"\n\
                   [component.c]\nsource = \"c.wasm\"\nallowed_outbound_hosts = \"x\"\n";
        let err = schema_errors(bad).unwrap_err().to_string();
        assert!(err.contains("/trigger/http/0/route"), "{err}");
        assert!(err.contains("/component/c/allowed_outbound_hosts"), "{err}");
    }
}
