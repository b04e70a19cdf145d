//! Spin is the judge of Spin compatibility: the repository's manifest and
//! components pass `aies-host check` (Spin's schema, Spin's rules, each
//! trigger's start), and the host refuses, at start and with Spin's
//! reason, an application Spin 4 refuses: here the one real Spin 4.1
//! refused (a Redis-triggered component asking for local service chaining).

use aies_host::{HostConfig, Server};
use std::process::Command;

use crate::harness::{manifest, manifest_variant, model_dir};
use aies_tests::stack::binary;

const CHAINING_REFUSED: &str = "This application requires the following features that are not \
     available in this version of the 'redis' trigger: local_service_chaining";

fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(binary("aies-host"))
        .arg("check")
        .arg("-f")
        .arg(path)
        .arg("--model-dir")
        .arg(model_dir())
        .output()
        .unwrap()
}

#[test]
fn the_repositorys_manifest_passes_the_spin_check() {
    let out = check(&manifest());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Spin 4 would start `ai-eventstream`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("redis ai_eventstream:cache_fill"),
        "{stdout}"
    );
    assert!(stdout.contains("/task/:id"), "{stdout}");
}

#[tokio::test]
async fn a_redis_triggered_component_that_chains_is_refused_as_spin_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    // cache-fill as it was before: chaining to embed from the Redis trigger.
    let path = manifest_variant(
        dir.path(),
        &[(
            "ai_models = [\"multilingual-e5-small\", \"all-minilm-l6-v2\"]\nallowed_outbound_hosts = [\n  \"{{ redis_scheme }}://",
            "ai_models = [\"multilingual-e5-small\", \"all-minilm-l6-v2\"]\nallowed_outbound_hosts = [\n  \"http://embed.spin.internal\",\n  \"{{ redis_scheme }}://",
        )],
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let fill = &text[text.find("[component.cache-fill]").unwrap()..];
    assert!(
        fill.contains("http://embed.spin.internal"),
        "edited the wrong component"
    );

    let mut config = HostConfig::new(&path);
    config.env_variables = false;
    config.model_dir = Some(model_dir());
    let err = Server::bind(&config, "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .expect("Spin refuses this app, so the host must");
    let msg = format!("{err:#}");
    assert!(msg.contains(CHAINING_REFUSED), "{msg}");
    assert!(msg.contains("cache-fill"), "{msg}");

    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(CHAINING_REFUSED), "{stderr}");
}

#[test]
fn the_check_refuses_a_missing_component_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_variant(dir.path(), &[("release/web.wasm", "release/no-such.wasm")]);
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed to read component source from disk")
            && stderr.contains("no-such.wasm"),
        "{stderr}"
    );
}

#[test]
fn the_check_refuses_what_spins_schema_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_variant(
        dir.path(),
        &[("route = \"/dashboard\"", "route = [\"/dashboard\"]")],
    );
    let out = check(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Spin's schema") && stderr.contains("/trigger/http/"),
        "{stderr}"
    );
}
