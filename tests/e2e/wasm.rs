//! The stages really are Spin components run as wasm by the host: each file
//! is a component that imports Spin's interfaces and exports the wasi:http
//! handler, and the host refuses a file that is not one.

use aies_host::{HostConfig, Server};
use std::collections::HashMap;
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::harness::{manifest, manifest_variant, model_dir};

/// component -> (wasm file, interfaces it must import)
fn expected() -> HashMap<&'static str, (&'static str, Vec<&'static str>)> {
    HashMap::from([
        (
            "ingest",
            (
                "ingest.wasm",
                vec![
                    "fermyon:spin/redis@2.0.0",
                    "wasi:http/outgoing-handler@0.2.6",
                ],
            ),
        ),
        (
            "embed",
            (
                "embed.wasm",
                vec!["fermyon:spin/llm@2.0.0", "fermyon:spin/variables@2.0.0"],
            ),
        ),
        (
            "cache-lookup",
            ("cache_lookup.wasm", vec!["fermyon:spin/redis@2.0.0"]),
        ),
        (
            "llm-invoke",
            (
                "llm_invoke.wasm",
                vec![
                    "fermyon:spin/redis@2.0.0",
                    "wasi:http/outgoing-handler@0.2.6",
                ],
            ),
        ),
        ("store", ("store.wasm", vec!["fermyon:spin/redis@2.0.0"])),
    ])
}

fn wasm_dir() -> std::path::PathBuf {
    manifest()
        .parent()
        .unwrap()
        .join("components/target/wasm32-wasip2/release")
}

#[test]
fn every_stage_is_a_spin_http_component() {
    let engine = Engine::default();
    for (name, (file, imports)) in expected() {
        let path = wasm_dir().join(file);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}: run `make components`", path.display()));
        // The component-model preamble (layer 1), not a core module (layer 0).
        assert_eq!(&bytes[..4], b"\0asm", "{name}");
        assert_eq!(&bytes[6..8], &[1, 0], "{name} is not a component");
        let component = Component::new(&engine, &bytes).unwrap();
        let ty = component.component_type();
        let got: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
        for want in imports {
            assert!(
                got.iter().any(|g| g == want),
                "{name} should import {want}: {got:?}"
            );
        }
        let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
        assert!(
            exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler@0.2")),
            "{name} exports {exports:?}"
        );
    }
}

#[tokio::test]
async fn the_host_refuses_a_file_that_is_not_a_component() {
    // Same app, the embed component replaced by a corrupt file.
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("embed.wasm");
    std::fs::write(&corrupt, b"\0asm\x0d\0\x01\0 not really").unwrap();
    let built = format!("{}/embed.wasm", wasm_dir().display());
    let path = manifest_variant(dir.path(), &[(&built, &corrupt.display().to_string())]);
    let mut config = HostConfig::new(path);
    config.env_variables = false;
    config.model_dir = Some(model_dir());
    let err = Server::bind(&config, "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .expect("a corrupt component must not load");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("component `embed`") && msg.contains("embed.wasm"),
        "{msg}"
    );
}
