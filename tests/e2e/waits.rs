//! Waiting requests (long polls, event streams, chat completions waiting for
//! their task) have places of their own, in all and per tenant: past them,
//! 429 with `Retry-After`, while quick requests are still answered, with
//! stalled connections open beside them.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::fake_llm::{answer, FakeLlm};
use crate::harness::{Options, System};

/// Places taken now (DB 1's sorted set of every waiting request).
async fn places(system: &System) -> usize {
    let mut redis = system.redis.connection(1).await;
    redis::cmd("ZCARD")
        .arg("aies:waits")
        .query_async(&mut redis)
        .await
        .unwrap()
}

async fn wait_places(system: &System, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while places(system).await != n {
        assert!(
            Instant::now() < deadline,
            "{} places, not {n}",
            places(system).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts a 429 with `Retry-After` whose message names `why`.
async fn assert_refused(resp: reqwest::Response, why: &str) {
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let text = resp.text().await.unwrap();
    assert!(text.contains(why), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_have_places_of_their_own() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("waits").llm(&fake, "openai");
    options.variables.insert("max_waits".into(), "6".into());
    options
        .variables
        .insert("max_waits_per_tenant".into(), "4".into());
    let system = System::start(options).await;
    let cached = "What is the speed of light?";
    system.complete(cached).await;
    // From here on tasks stay running for the whole test: the LLM answers
    // after the host's 60 s outbound timeout, and event streams last 60 s.
    // (With 30 s, a loaded CI machine saw the tasks end, and their streams
    // with them, before the last places were taken.)
    fake.set_delay(Duration::from_secs(90));
    let mut tasks = Vec::new();
    for tenant in ["acme", "globex"] {
        let (status, body) = system
            .process(&format!("A slow question for {tenant}"), Some(tenant))
            .await;
        assert_eq!(status, 202, "{body}");
        tasks.push(body["task_id"].as_str().unwrap().to_string());
    }
    let (acme, globex) = (tasks[0].clone(), tasks[1].clone());
    let get = |id: &str, tail: &str, tenant: &str| {
        system
            .client
            .get(system.url(&format!("/task/{id}{tail}")))
            .header("x-tenant-id", tenant)
            .send()
    };
    // Stalled connections alongside (the host closes them after 20 s).
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut conn = tokio::net::TcpStream::connect(system.http).await.unwrap();
        conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        stalled.push(conn);
    }

    // acme: three event streams and a 3 s long poll fill its four places.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let resp = get(&acme, "/events", "acme").await.unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(resp);
    }
    let poll = tokio::spawn(get(&acme, "?wait=3", "acme"));
    wait_places(&system, 4).await;
    assert_refused(
        get(&acme, "?wait=5", "acme").await.unwrap(),
        "for this tenant",
    )
    .await;
    assert_refused(
        get(&acme, "/events", "acme").await.unwrap(),
        "for this tenant",
    )
    .await;
    // A request that does not wait is answered as ever.
    let (status, now) = system.task(&acme, Some("acme")).await;
    assert_eq!(
        (status, now["status"].as_str()),
        (200, Some("STARTED")),
        "{now}"
    );

    // globex: a chat completion waiting for its task and a stream take the
    // last two places in all.
    let chat = {
        let client = system.client.clone();
        let url = system.url("/v1/chat/completions");
        tokio::spawn(async move {
            client
                .post(url)
                .header("x-tenant-id", "globex")
                .json(&serde_json::json!({"model": "m", "messages": [
                    {"role": "user", "content": "A slow chat for globex"}]}))
                .send()
                .await
        })
    };
    let stream = get(&globex, "/events", "globex").await.unwrap();
    assert_eq!(stream.status(), 200);
    wait_places(&system, 6).await;
    assert_refused(
        get(&globex, "?wait=5", "globex").await.unwrap(),
        "6 at once",
    )
    .await;
    let refused_chat = system
        .client
        .post(system.url("/v1/chat/completions"))
        .header("x-tenant-id", "initech")
        .json(&serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": "Another slow chat"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused_chat.status(), 429);
    let body: serde_json::Value = refused_chat.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("goes on"),
        "{body}"
    );

    // Quick requests keep their slots: a cache hit, the health route.
    let (status, hit) = system.process(cached, None).await;
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["result"], answer("openai", cached));
    let (status, _) = system.get_json("/health").await;
    assert_eq!(status, 200);

    // The long poll ends after 3 s and gives its place back.
    let polled = poll.await.unwrap().unwrap();
    assert_eq!(polled.status(), 200);
    wait_places(&system, 5).await;
    let resp = get(&acme, "?wait=1", "acme").await.unwrap();
    assert_eq!(resp.status(), 200);
    chat.abort();
    drop((streams, stream, stalled));
}
