//! `GET /task/{id}?wait=N` long-polls: it answers once the task is final,
//! `wait=0` (or none) answers at once, bad values are a 400, and another
//! tenant's task stays a 404.

use std::time::Duration;

use crate::fake_llm::FakeLlm;
use crate::harness::{Options, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_gets_the_final_task() {
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_millis(1500));
    let system = System::start(Options::new("task-wait").llm(&fake, "openai")).await;
    let (status, body) = system.process("How long is a marathon?", None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().unwrap();

    let (status, now) = system.task(&format!("{id}?wait=0"), None).await;
    assert_eq!(status, 200, "{now}");
    assert!(
        ["PENDING", "STARTED"].contains(&now["status"].as_str().unwrap()),
        "the LLM takes 1.5 s: {now}"
    );
    for bad in ["31", "-1", "soon"] {
        let (status, body) = system.task(&format!("{id}?wait={bad}"), None).await;
        assert_eq!(status, 400, "wait={bad}: {body}");
    }
    let (status, other) = system
        .task(&format!("{id}?wait=5"), Some("another-tenant"))
        .await;
    assert_eq!(status, 404, "{other}");

    // One request, answered when the task is final.
    let (status, done) = system.task(&format!("{id}?wait=20"), None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert_eq!(fake.calls(), 1);
}
