//! `/openapi.json` is the contract, checked by a fuzzer we did not write:
//! schemathesis (PyPI) generates requests from the document, valid and
//! invalid, for every operation (the internal and admin routes with their
//! tokens) and runs every one of its checks: no 5xx, every status, header
//! and body documented, what the document allows accepted and what it
//! forbids refused, 405 with `Allow` for other methods. A bounded number of
//! cases with a fixed seed (`AIES_FUZZ_SEED`, `AIES_FUZZ_EXAMPLES` to
//! explore further); its report is kept in `target/test-artifacts/`.

use std::path::PathBuf;
use std::process::Command;

use crate::fake_llm::FakeLlm;
use crate::harness::{tool, Options, System, INVOKE_TOKEN};

const ADMIN_TOKEN: &str = "fuzz-admin-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_app_keeps_to_its_openapi_document() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("fuzz").llm(&fake, "openai");
    options
        .variables
        .insert("admin_token".into(), ADMIN_TOKEN.into());
    let system = System::start(options).await;

    let artifacts = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/test-artifacts/schemathesis"
    ));
    std::fs::create_dir_all(&artifacts).unwrap();
    let schemathesis = tool("AIES_TEST_VENV").join("bin/schemathesis");
    let config = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml"));
    let seed = std::env::var("AIES_FUZZ_SEED").unwrap_or_else(|_| "20261206".into());
    let examples = std::env::var("AIES_FUZZ_EXAMPLES").unwrap_or_else(|_| "8".into());
    let schema = system.url("/openapi.json");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .arg("--no-color")
            .arg("--config-file")
            .arg(config)
            .args(["run", &schema, "--max-examples", &examples, "--seed", &seed])
            .args(["--workers", "2", "--report", "junit", "--report-dir"])
            .arg(&artifacts)
            .env("AIES_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("AIES_INVOKE_TOKEN", INVOKE_TOKEN)
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // It ran, and ran many cases: a run that tested nothing also exits 0.
    // "Test cases:" then "  503 generated, 503 passed, 16 skipped".
    let generated = stdout
        .lines()
        .skip_while(|l| l.trim() != "Test cases:")
        .nth(1)
        .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no test case count in:\n{stdout}"));
    assert!(generated >= 200, "only {generated} cases:\n{stdout}");
    println!("{stdout}");
}
