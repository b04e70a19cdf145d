//! The OpenAI-compatible face, driven by the official `openai` Python
//! package (installed by `make setup` into the test venv) as a real client:
//! completions (plain and streamed) through the cache and the pipeline,
//! embeddings (float and base64), and the client's error classes for 400,
//! 401, 403, 404, 429 and 5xx. The script is tests/openai_client.py.

use std::path::PathBuf;
use std::process::Command;

use crate::fake_llm::{answer, FakeLlm};
use crate::harness::{tool, Options, System};
use serde_json::json;

const ADMIN_TOKEN: &str = "test-admin-token";

fn run_client(phase: &str, base_url: &str, key: &str, expected: &str) {
    let python = tool("AIES_TEST_VENV").join("bin/python");
    let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/openai_client.py"));
    let out = Command::new(python)
        .arg(script)
        .args([phase, base_url, key, expected])
        .output()
        .expect("python runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "phase {phase} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(&format!("{phase}: ok")), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_package_talks_to_the_app() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("openai-face").llm(&fake, "openai");
    for (k, v) in [
        ("api_keys", "required"),
        ("admin_token", ADMIN_TOKEN),
        ("llm_max_retries", "1"),
    ] {
        options.variables.insert(k.into(), v.into());
    }
    let system = System::start(options).await;
    let created: serde_json::Value = system
        .client
        .post(system.url("/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"tenant": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let base_url = system.url("/v1");
    let prompt = "What is the tallest mountain on Earth?";
    let expected = answer("openai", prompt);

    let (url, k, e) = (base_url.clone(), key.clone(), expected.clone());
    tokio::task::spawn_blocking(move || run_client("ok", &url, &k, &e))
        .await
        .unwrap();
    // Two completions asked the LLM (the repeat was a cache hit), plus the
    // system-prompt one and the streamed one.
    assert_eq!(fake.calls(), 3, "{:?}", fake.prompts());
    let with_system = &fake.bodies()[1];
    assert_eq!(with_system["messages"][0]["content"], "Answer in one word.");

    fake.fail_always(Some(429));
    let (url, k, e) = (base_url.clone(), key.clone(), expected.clone());
    tokio::task::spawn_blocking(move || run_client("rate-limited", &url, &k, &e))
        .await
        .unwrap();
    fake.fail_always(Some(500));
    tokio::task::spawn_blocking(move || run_client("provider-down", &base_url, &key, &expected))
        .await
        .unwrap();
}
