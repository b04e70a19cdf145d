//! The host's modules depend on each other in one direction only: each
//! capability (`redis`, `llm`, `variables`, `outbound_http`,
//! `redis_trigger`) stands alone, `state` composes them, `app` wires them.
//! An import circle is how a capability starts to know the whole app again;
//! this test reads the sources and refuses one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its code names through `crate::`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let module = |path: &Path| -> Option<String> {
        let relative = path.strip_prefix(src).unwrap();
        let first = relative.components().next()?.as_os_str().to_str()?;
        let name = first.trim_end_matches(".rs");
        // The crate root and the binary only declare and re-export;
        // test-only files may reach anything.
        (!matches!(name, "lib" | "main" | "tests" | "test_support")
            && !relative.ends_with("tests.rs"))
        .then(|| name.to_string())
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module(file) else { continue };
        let code: String = std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let uses = edges.entry(from.clone()).or_default();
        // `crate::name` and each name of `crate::{a, b::c}`.
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")],
            };
            for name in names {
                if modules.contains(name) && name != from {
                    uses.insert(name.to_string());
                }
            }
        }
    }
    edges
}

/// A circle, as the modules along it, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        at: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == at) {
            let mut found = path[start..].to_vec();
            found.push(at.to_string());
            return Some(found);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_string());
        for next in edges.get(at).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(at.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

#[test]
fn host_modules_import_no_circle() {
    let edges = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(edges.len() >= 10, "read too few modules: {edges:?}");
    // The capabilities know nothing of the app that wires them.
    for capability in [
        "redis",
        "llm",
        "variables",
        "outbound_http",
        "redis_trigger",
    ] {
        let uses = &edges[capability];
        for wiring in ["app", "state", "server"] {
            assert!(!uses.contains(wiring), "{capability} uses {wiring}");
        }
    }
    assert_eq!(circle(&edges), None, "import circle in host/src: {edges:?}");
}

#[test]
fn the_circle_finder_finds_one() {
    let edges: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), BTreeSet::from([b.to_string()])))
        .collect();
    assert_eq!(circle(&edges).map(|c| c.len()), Some(4));
}
