//! `aies-bridge produce`, the batch flow's producer, run as the binary
//! against the real broker: generated events arrive keyed as asked; a file's
//! lines become events, and a bad line is reported and not sent.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use crate::harness::{broker, consume, topic_size, Topics};
use aies_tests::stack::binary;

fn produce(topic: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary("aies-bridge"))
        .env("KAFKA_BOOTSTRAP_SERVERS", &broker().bootstrap)
        .env("AIES_RAW_TOPIC", topic)
        .arg("produce")
        .arg("--quiet")
        .args(args)
        .output()
        .expect("running aies-bridge produce");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_events_arrive_keyed_and_counted() {
    let topics = Topics::create("produce", 3).await;
    let (ok, out, err) = produce(&topics.raw, &["--count", "300", "--keys", "7"]);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("sent 300, failed 0"), "{out}");
    let messages = consume(&topics.raw, 300, Duration::from_secs(60))
        .await
        .unwrap();
    let keys: HashSet<_> = messages.iter().filter_map(|(k, _)| k.clone()).collect();
    assert_eq!(keys.len(), 7, "{keys:?}");
    for (_, payload) in &messages {
        let event: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert!(event["prompt"]
            .as_str()
            .unwrap()
            .starts_with("Batch question"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_files_lines_are_sent_and_a_bad_line_is_reported() {
    let topics = Topics::create("produce-file", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(
        &file,
        "What is Kafka?\n\n{\"prompt\": \"Hola\", \"tenant\": \"acme\"}\n{\"tenant\": \"no prompt\"}\n",
    )
    .unwrap();
    let (ok, out, err) = produce(&topics.raw, &["--file", file.to_str().unwrap()]);
    assert!(!ok, "a failed line makes the exit status 1");
    assert!(out.starts_with("sent 2, failed 1"), "{out}");
    assert!(err.contains("line 4"), "{err}");
    let messages = consume(&topics.raw, 2, Duration::from_secs(60))
        .await
        .unwrap();
    let prompts: Vec<String> = messages
        .iter()
        .map(|(_, p)| serde_json::from_str::<serde_json::Value>(p).unwrap()["prompt"].to_string())
        .collect();
    assert_eq!(prompts, ["\"What is Kafka?\"", "\"Hola\""]);
    assert_eq!(topic_size(&topics.raw, 1), 2);
}
