//! The host stops what misbehaves: a component that never returns, one that
//! grows its memory without bound, and outbound calls to hosts the manifest
//! does not allow. It keeps serving afterwards.

use aies_contract::TaskStatus;
use aies_host::{HostConfig, Server};
use std::time::Duration;
use tokio::sync::oneshot;

use crate::fake_llm::FakeLlm;
use crate::harness::{manifest_variant, model_dir, test_component_manifest, Options, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_component_is_stopped_and_the_host_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = HostConfig::new(test_component_manifest(dir.path()));
    config.env_variables = false;
    config.request_timeout = Duration::from_secs(1);
    config.max_memory_bytes = 64 << 20;
    let server = Server::bind(&config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    // A component that was not stopped would leave this client waiting
    // past its own timeout, and the send would fail.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let spin = client.get(format!("{base}/spin")).send().await.unwrap();
    assert_eq!(spin.status(), 500);

    let grow = client.get(format!("{base}/grow")).send().await.unwrap();
    assert_eq!(grow.status(), 500);

    let ok = client.get(format!("{base}/ok")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_calls_reach_only_the_hosts_the_manifest_allows() {
    let fake = FakeLlm::start().await;
    // The app's manifest, with llm-invoke no longer allowed to reach the
    // OpenAI-compatible base URL.
    let dir = tempfile::tempdir().unwrap();
    let denied = manifest_variant(
        dir.path(),
        &[(
            "  \"{{ gemini_base_url }}\",\n  \"{{ openai_base_url }}\",\n]",
            "  \"{{ gemini_base_url }}\",\n]",
        )],
    );
    let mut options = Options::new("denied").llm(&fake, "openai");
    // The fake serves both formats; keep Gemini's allowed host elsewhere.
    options.variables.insert(
        "gemini_base_url".into(),
        "https://generativelanguage.googleapis.com".into(),
    );
    options.manifest = Some(denied);
    options.model_dir = Some(model_dir());
    let system = System::start(options).await;

    let task = system.invoke_last_attempt("denied-1", "Say hi").await;
    assert_eq!(task.status, TaskStatus::Failure, "{task:?}");
    assert!(task.error.unwrap().contains("HttpRequestDenied"));
    assert_eq!(fake.calls(), 0, "the request must never leave the host");
}
