//! Each malformed request gets its 4xx with a JSON error saying what is
//! wrong, and nothing is enqueued or recorded.

use redis::AsyncCommands;

use crate::harness::{metric, topic_size, Options, System};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_and_nothing_is_enqueued() {
    let system = System::start(Options::new("badinput")).await;
    let long_prompt = "x".repeat(16_001);
    let huge_body = format!(r#"{{"prompt":"{}"}}"#, "y".repeat(70 * 1024));
    let cases: Vec<(&str, String, Option<&str>, u16, &str)> = vec![
        (
            "malformed JSON",
            r#"{"prompt": "#.into(),
            None,
            400,
            "invalid JSON",
        ),
        (
            "not an object",
            r#"["prompt"]"#.into(),
            None,
            400,
            "invalid JSON",
        ),
        (
            "missing prompt",
            r#"{"use_cache": true}"#.into(),
            None,
            400,
            "missing field `prompt`",
        ),
        (
            "empty prompt",
            r#"{"prompt": ""}"#.into(),
            None,
            400,
            "must not be empty",
        ),
        (
            "blank prompt",
            r#"{"prompt": "   \n"}"#.into(),
            None,
            400,
            "must not be empty",
        ),
        (
            "prompt of wrong type",
            r#"{"prompt": 42}"#.into(),
            None,
            400,
            "invalid type",
        ),
        (
            "use_cache of wrong type",
            r#"{"prompt": "hi", "use_cache": "yes"}"#.into(),
            None,
            400,
            "invalid type",
        ),
        (
            "metadata of wrong type",
            r#"{"prompt": "hi", "metadata": [1]}"#.into(),
            None,
            400,
            "invalid type",
        ),
        (
            "unknown field",
            r#"{"prompt": "hi", "promt": "typo"}"#.into(),
            None,
            400,
            "unknown field `promt`",
        ),
        (
            "prompt too long",
            format!(r#"{{"prompt":"{long_prompt}"}}"#),
            None,
            413,
            "longer than 16000",
        ),
        (
            "body too large",
            huge_body,
            None,
            413,
            "larger than 65536 bytes",
        ),
        (
            "bad tenant",
            r#"{"prompt": "hi"}"#.into(),
            Some("a b}"),
            400,
            "x-tenant-id",
        ),
    ];
    for (what, body, tenant, want, says) in &cases {
        let (status, json) = system.process_raw(body, *tenant).await;
        assert_eq!(status, *want, "{what}: {json}");
        let error = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error: {json}"));
        assert!(
            error.contains(says),
            "{what}: {error:?} should mention {says:?}"
        );
    }

    // Wrong method and unknown task ids are clear too.
    let resp = system
        .client
        .get(system.url("/process"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    // Every 405 says what the route serves (RFC 9110: `Allow`).
    for (method, path, allow) in [
        ("GET", "/process", "POST"),
        ("TRACE", "/process/batch", "POST"),
        ("POST", "/health", "GET"),
        ("DELETE", "/task/no-such-task", "GET"),
        ("PUT", "/v1/chat/completions", "POST"),
        ("POST", "/docs", "GET"),
    ] {
        let resp = system
            .client
            .request(method.parse().unwrap(), system.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        let header = resp.headers().get("allow").map(|v| v.to_str().unwrap());
        assert_eq!(header, Some(allow), "{method} {path}");
    }
    let (status, _) = system.task("no-such-task", None).await;
    assert_eq!(status, 404);
    let (status, _) = system.task("bad%20id", None).await;
    assert_eq!(status, 400);

    for lane in [&system.topics.api, &system.topics.raw] {
        assert_eq!(topic_size(lane, 3), 0, "nothing may be enqueued");
    }
    let mut tasks = system.redis.connection(2).await;
    let keys: Vec<String> = tasks.keys("*").await.unwrap();
    assert!(keys.is_empty(), "no task may be recorded: {keys:?}");
    let metrics = system.metrics().await;
    assert_eq!(
        metric(&metrics, "aies_bad_requests_total"),
        cases.len() as f64
    );
}
