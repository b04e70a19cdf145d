//! `/dashboard` and `/docs` in headless Chromium (Debian's package, driven
//! by Playwright: tests/browser_check.py): no console errors, the numbers
//! `GET /stats` reports, live refresh, every operation in Swagger UI. The
//! screenshot is kept at `target/test-artifacts/dashboard.png`.

use std::path::PathBuf;
use std::process::Command;

use crate::fake_llm::FakeLlm;
use crate::harness::{tool, Options, System};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_the_api_reports() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("dashboard").llm(&fake, "openai")).await;
    // Something to show: two answered prompts, one asked again (an exact
    // hit), one that fails, one third-party event through Kafka.
    for prompt in ["Why is the sky blue?", "¿Por qué el cielo es azul?"] {
        system.complete(prompt).await;
    }
    let (status, _) = system.process("Why is the sky blue?", None).await;
    assert_eq!(status, 200);
    fake.fail_always(Some(400));
    let (_, failing) = system.process("This one fails", None).await;
    let failed = system
        .finished(failing["task_id"].as_str().unwrap(), None)
        .await;
    assert_eq!(failed.status.as_str(), "FAILURE");
    fake.fail_always(None);

    let (status, stats) = system.get_json("/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["tasks"]["SUCCESS"], 2, "{stats}");
    assert_eq!(stats["tasks"]["FAILURE"], 1, "{stats}");
    assert_eq!(stats["cache"]["hits"]["exact"], 1, "{stats}");
    assert_eq!(
        stats["latest"][0]["status"], "FAILURE",
        "newest first: {stats}"
    );
    let timed = &stats["latest"][1];
    assert!(
        timed["total_ms"].as_u64().unwrap() >= timed["run_ms"].as_u64().unwrap(),
        "{timed}"
    );
    assert_eq!(stats["kafka"]["available"], true, "{stats}");
    // The failed task's result reached the result topic too.
    assert_eq!(
        stats["kafka"]["lanes"]["api"]["succeeded"],
        json!(3.0),
        "{stats}"
    );
    assert_eq!(
        stats["kafka"]["partitions"].as_array().unwrap().len(),
        6,
        "two lanes of 3: {stats}"
    );

    let artifacts = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/test-artifacts"
    ));
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let python = tool("AIES_TEST_VENV").join("bin/python");
    let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser_check.py"));
    let base = system.url("");
    let shot = screenshot.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(base)
            .arg(shot)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("browser: ok"), "{stdout}");
    let png = std::fs::read(&screenshot).expect("the screenshot was kept");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
