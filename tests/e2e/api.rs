//! The public API's edges: API keys (hashed, per tenant, 401 without one),
//! `Idempotency-Key`, the batch form of `POST /process`, and a task's state
//! changes as server-sent events.

use std::time::Duration;

use crate::fake_llm::FakeLlm;
use crate::harness::{Options, System};
use redis::AsyncCommands;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "test-admin-token";

async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, headers, body)
}

async fn create_key(system: &System, tenant: &str) -> String {
    let req = system
        .client
        .post(system.url("/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "tenant": tenant, "name": format!("{tenant}'s test key") }));
    let (status, _, body) = send(req).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["tenant"], tenant);
    let key = body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("aies_") && key.len() > 60, "{key}");
    key
}

async fn process_with_key(system: &System, key: &str, prompt: &str) -> (u16, Value) {
    let req = system
        .client
        .post(system.url("/process"))
        .bearer_auth(key)
        .json(&json!({ "prompt": prompt }));
    let (status, _, body) = send(req).await;
    (status, body)
}

async fn task_with_key(system: &System, key: &str, id: &str) -> (u16, Value) {
    let req = system
        .client
        .get(system.url(&format!("/task/{id}?wait=20")))
        .header("x-api-key", key);
    let (status, _, body) = send(req).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_name_the_tenant_and_keep_tenants_apart() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("api-keys").llm(&fake, "openai");
    for (k, v) in [("api_keys", "required"), ("admin_token", ADMIN_TOKEN)] {
        options.variables.insert(k.into(), v.into());
    }
    let mut system = System::start(options).await;

    // No key, a made-up key, no admin token: refused.
    let (status, headers, body) = send(
        system
            .client
            .post(system.url("/process"))
            .json(&json!({"prompt": "hi"})),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _) = process_with_key(&system, "aies_made_up", "hi").await;
    assert_eq!(status, 401);
    let (status, _, _) = send(
        system
            .client
            .post(system.url("/admin/keys"))
            .json(&json!({"tenant": "acme"})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, body) = send(
        system
            .client
            .post(system.url("/admin/keys"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"tenant": "no spaces"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let acme = create_key(&system, "acme").await;
    let globex = create_key(&system, "globex").await;

    // Stored hashed: the key itself is nowhere in Redis.
    let mut redis = system.redis.connection(1).await;
    let names: Vec<String> = redis.keys("aies:apikey*").await.unwrap();
    assert_eq!(names.len(), 3, "two records and the index: {names:?}");
    for name in &names {
        assert!(!name.contains(&acme[5..]), "{name}");
        let fields: Vec<(String, String)> = redis.hgetall(name).await.unwrap();
        for (k, v) in fields {
            assert!(!v.contains(&acme[5..]) && !k.contains(&acme[5..]));
        }
    }

    // The key names the tenant: its tasks, its cache.
    let prompt = "Which planet has the most moons?";
    let (status, body) = process_with_key(&system, &acme, prompt).await;
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().unwrap().to_string();
    let (status, task) = task_with_key(&system, &acme, &id).await;
    assert_eq!(
        (status, task["status"].as_str()),
        (200, Some("SUCCESS")),
        "{task}"
    );
    system.wait_filled(&id).await;
    let (status, _) = task_with_key(&system, &globex, &id).await;
    assert_eq!(status, 404, "another tenant's task");
    let (status, body) = process_with_key(&system, &acme, prompt).await;
    assert_eq!(status, 200, "acme's cache: {body}");
    let (status, body) = process_with_key(&system, &globex, prompt).await;
    assert_eq!(status, 202, "globex does not see acme's cache: {body}");
    // A key cannot act for another tenant.
    let (status, _, body) = send(
        system
            .client
            .get(system.url(&format!("/task/{id}")))
            .bearer_auth(&acme)
            .header("x-tenant-id", "globex"),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // Listed without the keys themselves; revoked keys stop working.
    let list = |query: &'static str| {
        system
            .client
            .get(system.url(&format!("/admin/keys{query}")))
            .bearer_auth(ADMIN_TOKEN)
    };
    let (status, _, all) = send(list("")).await;
    assert_eq!(status, 200);
    let keys = all["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{all}");
    assert!(keys.iter().all(|k| k.get("key").is_none()), "{all}");
    let (_, _, acme_only) = send(list("?tenant=acme")).await;
    let acme_keys = acme_only["keys"].as_array().unwrap();
    assert_eq!(acme_keys.len(), 1, "{acme_only}");
    let acme_id = acme_keys[0]["id"].as_str().unwrap();
    assert_eq!(acme_keys[0]["name"], "acme's test key");

    let revoke = || {
        system
            .client
            .delete(system.url(&format!("/admin/keys/{acme_id}")))
            .bearer_auth(ADMIN_TOKEN)
    };
    let (status, _, body) = send(revoke()).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = process_with_key(&system, &acme, "Is the key still good?").await;
    assert_eq!(status, 401);
    let (status, _, _) = send(revoke()).await;
    assert_eq!(status, 404);
    let (status, _) = process_with_key(&system, &globex, "Still here?").await;
    assert_eq!(status, 202);

    // Keys cannot be checked without Redis: 503, never a pass.
    system.redis.stop();
    let (status, body) = process_with_key(&system, &globex, "Redis is gone").await;
    assert_eq!(status, 503, "{body}");
}

async fn post_idempotent(
    system: &System,
    key: &str,
    tenant: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let req = system
        .client
        .post(system.url("/process"))
        .header("idempotency-key", key)
        .header("x-tenant-id", tenant)
        .json(body);
    send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_gives_the_same_task() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("idempotency").llm(&fake, "openai")).await;
    // The cache off: without the key, each request would be a new task.
    let body = json!({"prompt": "Write a haiku about retries", "use_cache": false});
    let (status, headers, first) = post_idempotent(&system, "order-42", "acme", &body).await;
    assert_eq!(status, 202, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, again) = post_idempotent(&system, "order-42", "acme", &body).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again["task_id"], first["task_id"]);

    let other = json!({"prompt": "Write a limerick instead", "use_cache": false});
    let (status, _, refused) = post_idempotent(&system, "order-42", "acme", &other).await;
    assert_eq!(status, 422, "{refused}");
    // Keys are per tenant.
    let (status, _, theirs) = post_idempotent(&system, "order-42", "globex", &body).await;
    assert_eq!(status, 202);
    assert_ne!(theirs["task_id"], first["task_id"]);
    for bad in ["", "ñ", &"k".repeat(256)] {
        let req = system
            .client
            .post(system.url("/process"))
            .header("idempotency-key", bad.as_bytes())
            .json(&body);
        let (status, _, _) = send(req).await;
        assert_eq!(status, 400, "{bad:?}");
    }

    let first_id = first["task_id"].as_str().unwrap();
    system.finished(first_id, Some("acme")).await;
    system
        .finished(theirs["task_id"].as_str().unwrap(), Some("globex"))
        .await;
    assert_eq!(fake.calls(), 2, "one LLM call per tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_makes_one_task_per_prompt() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("process-batch").llm(&fake, "openai")).await;
    let batch = |requests: Value| {
        system
            .client
            .post(system.url("/process/batch"))
            .header("x-tenant-id", "acme")
            .json(&json!({ "requests": requests }))
    };
    let (status, _, body) = send(batch(json!([
        {"prompt": "What is the capital of Peru?"},
        {"prompt": "   "},
        {"prompt": "What is the capital of Chile?", "temperature": 0.2},
        {"prompt": "What is the capital of Peru?", "temperature": 7},
    ])))
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[1]["http_status"], 400, "{body}");
    assert_eq!(results[3]["http_status"], 400, "{body}");
    let ids: Vec<&str> = [&results[0], &results[2]]
        .iter()
        .map(|r| {
            assert_eq!(r["http_status"], 202, "{r}");
            r["body"]["task_id"].as_str().unwrap()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        let task = system.finished(id, Some("acme")).await;
        assert_eq!(task.status.as_str(), "SUCCESS");
    }
    assert_eq!(fake.calls(), 2);

    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"prompt": format!("p{i}")}))
        .collect();
    for bad in [json!([]), json!(too_many), json!("not a list")] {
        let (status, _, body) = send(batch(bad)).await;
        assert_eq!(status, 400, "{body}");
    }
}

/// Reads a server-sent event stream to its end: (event, data) pairs.
async fn read_events(resp: reqwest::Response) -> Vec<(String, Value)> {
    read_events_after(resp, String::new()).await
}

async fn read_events_after(mut resp: reqwest::Response, mut text: String) -> Vec<(String, Value)> {
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), resp.chunk())
        .await
        .expect("the stream goes on or ends within 30 s")
        .unwrap()
    {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::to_string))
            };
            Some((
                field("event: ")?,
                serde_json::from_str(&field("data: ")?).unwrap(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_stream_each_state_change() {
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_millis(1200));
    let mut system = System::start(Options::new("task-events").llm(&fake, "openai")).await;
    let (status, body) = system.process("How far away is the Moon?", None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().unwrap();

    let resp = system
        .client
        .get(system.url(&format!("/task/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // Streamed, not sent at the end: the first event arrives while the
    // task still runs.
    let mut resp = resp;
    let first = resp.chunk().await.unwrap().unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    let (_, now) = system.task(id, None).await;
    assert_ne!(now["status"], "SUCCESS", "{first}");
    let events = read_events_after(resp, first).await;
    let states: Vec<&str> = events
        .iter()
        .map(|(event, data)| {
            assert_eq!(event, "status");
            assert_eq!(data["task_id"], id);
            data["status"].as_str().unwrap()
        })
        .collect();
    assert_eq!(states.last(), Some(&"SUCCESS"), "{events:?}");
    assert!(
        states.contains(&"STARTED"),
        "the LLM takes 1.2 s: {states:?}"
    );
    let order = ["PENDING", "STARTED", "SUCCESS"];
    let ranks: Vec<usize> = states
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{states:?}");
    assert!(events.last().unwrap().1["result"].is_string());

    // A final task: one event, then the end. Unknown or another's: 404.
    let resp = system
        .client
        .get(system.url(&format!("/task/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(read_events(resp).await.len(), 1);
    for (path, tenant) in [
        (format!("/task/{id}/events"), "globex"),
        ("/task/nope/events".into(), "default"),
    ] {
        let resp = system
            .client
            .get(system.url(&path))
            .header("x-tenant-id", tenant)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path} as {tenant}");
    }

    // Redis gone while a stream waits: an `error` event ends it.
    fake.set_delay(Duration::from_secs(3));
    let (_, slow) = system.process("A slow one", None).await;
    let slow_id = slow["task_id"].as_str().unwrap().to_string();
    let mut resp = system
        .client
        .get(system.url(&format!("/task/{slow_id}/events")))
        .send()
        .await
        .unwrap();
    let first = String::from_utf8(resp.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    system.redis.stop();
    let events = read_events_after(resp, first).await;
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error", "{events:?}");
    assert!(data["error"].is_string(), "{data}");
}

/// No header of the platform's own (or the host's `spin-*` request
/// headers) reaches a client: the route the metrics name comes from the
/// manifest, not from a response header that a Spin host would pass on.
fn no_internal_headers(resp: &reqwest::Response) {
    for name in resp.headers().keys() {
        let name = name.as_str();
        assert!(
            !name.starts_with("aies-") && !name.starts_with("spin-"),
            "{} answered with the internal header {name}",
            resp.url()
        );
    }
}

/// `aies_host_http_request_duration_seconds{component, route, method,
/// status}` count of one series, 0 when absent.
fn request_count(metrics: &str, labels: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "aies_host_http_request_duration_seconds_count{{{labels}}} "
            ))
        })
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_times_each_route_with_bounded_labels() {
    let fake = FakeLlm::start().await;
    let system = System::start(Options::new("host-metrics").llm(&fake, "openai")).await;
    let (status, body) = system.process("What is a quark?", None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["task_id"].as_str().unwrap();
    system.finished(id, None).await;
    for _ in 0..3 {
        let unknown = uuid::Uuid::new_v4();
        let resp = system
            .client
            .get(system.url(&format!("/task/{unknown}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        no_internal_headers(&resp);
    }
    for path in ["/health", "/docs", "/process", "/stats"] {
        let resp = system.client.get(system.url(path)).send().await.unwrap();
        no_internal_headers(&resp);
    }

    let metrics = system
        .client
        .get(format!("http://{}/metrics", system.host_metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |labels: &str| request_count(&metrics, labels);
    assert_eq!(
        count(r#"component="ingest",route="/process",method="POST",status="2xx""#),
        1,
        "{metrics}"
    );
    assert_eq!(
        count(r#"component="ingest",route="/task/:id",method="GET",status="4xx""#),
        3,
        "three ids, one label: {metrics}"
    );
    assert_eq!(
        count(r#"component="ingest",route="/health",method="GET",status="2xx""#),
        1
    );
    assert_eq!(
        count(r#"component="ingest",route="/process",method="GET",status="4xx""#),
        1,
        "a 405 is labelled by its route: {metrics}"
    );
    // No route header from web: the manifest's route names it.
    assert_eq!(
        count(r#"component="web",route="/docs/...",method="GET",status="2xx""#),
        1
    );
    // The bridge's invocations are timed too.
    assert!(metrics.contains(r#"component="llm-invoke""#), "{metrics}");
    assert!(!metrics.contains(id), "no task ids in labels");
    assert!(
        metrics.contains("aies_host_http_requests_in_flight"),
        "{metrics}"
    );
}
