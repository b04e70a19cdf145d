//! `GET /openapi.json` describes the API exactly: real answers of every
//! documented operation, good and bad, are validated against the schema the
//! document gives for their status; every operation is exercised; the
//! routes `GET /` lists are all documented. `GET /docs` serves Swagger UI
//! with its files built in.

use std::collections::BTreeSet;

use crate::fake_llm::FakeLlm;
use crate::harness::{Options, System};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "test-admin-token";
const DOC: &str = "urn:aies:openapi";

struct Spec {
    doc: Value,
    seen: BTreeSet<(String, String)>,
}

/// One path segment as a JSON pointer in a URI fragment.
fn escape(segment: &str) -> String {
    segment
        .replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

impl Spec {
    /// Checks one real answer of `method path` (the document's path, e.g.
    /// `/task/{id}`): its status is documented, and its body matches.
    fn check(&mut self, method: &str, path: &str, status: u16, content_type: &str, body: &str) {
        let method = method.to_lowercase();
        let operation = &self.doc["paths"][path][&method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, which is not documented: {body}"
        );
        let media = content_type.split(';').next().unwrap().trim();
        let documented = &response["content"][media];
        assert!(
            documented.is_object(),
            "{method} {path} {status} answered {media}, documented: {}",
            response["content"]
        );
        if media == "application/json" {
            let pointer = format!(
                "{DOC}#/paths/{}/{method}/responses/{status}/content/{}/schema",
                escape(path),
                escape(media)
            );
            let validator = jsonschema::draft202012::options()
                .with_resource(
                    DOC,
                    jsonschema::Draft::Draft202012.create_resource(self.doc.clone()),
                )
                .build(&json!({ "$ref": pointer }))
                .unwrap_or_else(|e| panic!("the schema of {method} {path} {status}: {e}"));
            let value: Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{method} {path} {status} is not JSON ({e}): {body}"));
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{e} (at {})", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{method} {path} {status} does not match its schema: {errors:?}\n{body}"
            );
        }
        self.seen.insert((path.to_string(), method));
    }
}

/// Sends a request and checks its answer against the document.
async fn call(
    spec: &mut Spec,
    system: &System,
    method: &str,
    path: &str,
    documented: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = system
        .client
        .request(method.parse().unwrap(), system.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    let text = resp.text().await.unwrap();
    spec.check(method, documented, status, &content_type, &text);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_openapi_document() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("openapi").llm(&fake, "openai");
    options
        .variables
        .insert("admin_token".into(), ADMIN_TOKEN.into());
    let mut system = System::start(options).await;
    let (_, doc) = system.get_json("/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut spec = Spec {
        doc,
        seen: BTreeSet::new(),
    };
    let s = &mut spec;
    let admin = [("authorization", "Bearer test-admin-token")];

    // Tasks: a miss, its task, a hit, a coalesced repeat, bad input.
    let prompt = json!({"prompt": "What is the boiling point of water at sea level?"});
    let (_, miss) = call(
        s,
        &system,
        "POST",
        "/process",
        "/process",
        Some(prompt.clone()),
        &[],
    )
    .await;
    let id = miss["task_id"].as_str().unwrap().to_string();
    call(
        s,
        &system,
        "GET",
        &format!("/task/{id}?wait=20"),
        "/task/{id}",
        None,
        &[],
    )
    .await;
    system.wait_filled(&id).await;
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/process",
        "/process",
        Some(prompt),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    fake.set_delay(std::time::Duration::from_millis(800));
    let slow = json!({"prompt": "Name a prime number above 100"});
    call(
        s,
        &system,
        "POST",
        "/process",
        "/process",
        Some(slow.clone()),
        &[],
    )
    .await;
    let (status, joined) = call(s, &system, "POST", "/process", "/process", Some(slow), &[]).await;
    assert_eq!(
        (status, &joined["coalesced"]),
        (202, &json!(true)),
        "{joined}"
    );
    for bad in [
        json!({"prompt": ""}),
        json!({"prompt": "x", "colour": 1}),
        json!([1]),
    ] {
        let (status, _) = call(s, &system, "POST", "/process", "/process", Some(bad), &[]).await;
        assert_eq!(status, 400);
    }
    let long = json!({"prompt": "x".repeat(16_001)});
    let (status, _) = call(s, &system, "POST", "/process", "/process", Some(long), &[]).await;
    assert_eq!(status, 413);
    let keyed = |k: &'static str| [("idempotency-key", k)];
    let body = json!({"prompt": "Spell 'necessary'", "use_cache": false});
    for _ in 0..2 {
        let (status, _) = call(
            s,
            &system,
            "POST",
            "/process",
            "/process",
            Some(body.clone()),
            &keyed("k1"),
        )
        .await;
        assert_eq!(status, 202);
    }
    let other = json!({"prompt": "Spell 'separate'"});
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/process",
        "/process",
        Some(other),
        &keyed("k1"),
    )
    .await;
    assert_eq!(status, 422);
    let batch = json!({"requests": [{"prompt": "Capital of Kenya?"}, {"prompt": ""}]});
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/process/batch",
        "/process/batch",
        Some(batch),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/process/batch",
        "/process/batch",
        Some(json!({"requests": []})),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    for (path, want) in [
        ("/task/nope", 404),
        ("/task/a%20b", 400),
        ("/task/x?wait=99", 400),
    ] {
        let (status, _) = call(s, &system, "GET", path, "/task/{id}", None, &[]).await;
        assert_eq!(status, want, "{path}");
    }
    let events = format!("/task/{id}/events");
    let (status, _) = call(s, &system, "GET", &events, "/task/{id}/events", None, &[]).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        s,
        &system,
        "GET",
        "/task/nope/events",
        "/task/{id}/events",
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);

    // Admin: keys and the cache.
    let new_key = json!({"tenant": "acme", "name": "ci"});
    let (status, created) = call(
        s,
        &system,
        "POST",
        "/admin/keys",
        "/admin/keys",
        Some(new_key),
        &admin,
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/admin/keys",
        "/admin/keys",
        Some(json!({"tenant": "a b"})),
        &admin,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(s, &system, "GET", "/admin/keys", "/admin/keys", None, &[]).await;
    assert_eq!(status, 401);
    call(
        s,
        &system,
        "GET",
        "/admin/keys?tenant=acme",
        "/admin/keys",
        None,
        &admin,
    )
    .await;
    let revoke = format!("/admin/keys/{}", created["id"].as_str().unwrap());
    for want in [200, 404] {
        let (status, _) = call(
            s,
            &system,
            "DELETE",
            &revoke,
            "/admin/keys/{id}",
            None,
            &admin,
        )
        .await;
        assert_eq!(status, want);
    }
    call(
        s,
        &system,
        "GET",
        "/admin/cache/stats",
        "/admin/cache/stats",
        None,
        &admin,
    )
    .await;
    call(
        s,
        &system,
        "GET",
        "/admin/cache/stats?tenant=default",
        "/admin/cache/stats",
        None,
        &admin,
    )
    .await;
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/admin/cache/invalidate",
        "/admin/cache/invalidate",
        Some(json!({})),
        &admin,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/admin/cache/invalidate",
        "/admin/cache/invalidate",
        Some(json!({"tenant": "default"})),
        &admin,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/admin/cache/flush",
        "/admin/cache/flush",
        None,
        &admin,
    )
    .await;
    assert_eq!(status, 200);

    // The OpenAI face: a completion (plain and streamed), embeddings, errors.
    let chat = |stream: bool| {
        json!({"model": "m", "stream": stream,
               "messages": [{"role": "user", "content": "Name a large ocean"}]})
    };
    for stream in [false, true] {
        let (status, _) = call(
            s,
            &system,
            "POST",
            "/v1/chat/completions",
            "/v1/chat/completions",
            Some(chat(stream)),
            &[],
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/v1/chat/completions",
        "/v1/chat/completions",
        Some(json!({"messages": []})),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    for input in [json!("a cat"), json!(["a cat", "un gato"])] {
        for format in ["float", "base64"] {
            let body = json!({"model": "m", "input": input, "encoding_format": format});
            let (status, _) = call(
                s,
                &system,
                "POST",
                "/v1/embeddings",
                "/v1/embeddings",
                Some(body),
                &[],
            )
            .await;
            assert_eq!(status, 200);
        }
    }
    // More inputs than one call of the embed stage takes (64): all
    // answered, in order, each the vector its text gets alone.
    let texts: Vec<String> = (0..150).map(|i| format!("text number {i}")).collect();
    let (status, many) = call(
        s,
        &system,
        "POST",
        "/v1/embeddings",
        "/v1/embeddings",
        Some(json!({"input": texts, "dimensions": 384})),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{many}");
    let data = many["data"].as_array().unwrap();
    assert_eq!(data.len(), 150);
    assert!(data.iter().enumerate().all(|(i, d)| d["index"] == i));
    let (_, last) = call(
        s,
        &system,
        "POST",
        "/v1/embeddings",
        "/v1/embeddings",
        Some(json!({"input": "text number 149"})),
        &[],
    )
    .await;
    let close = |a: &Value, b: &Value| {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-4)
    };
    assert!(close(
        &data[149]["embedding"],
        &last["data"][0]["embedding"]
    ));
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/v1/embeddings",
        "/v1/embeddings",
        Some(json!({"input": []})),
        &[],
    )
    .await;
    assert_eq!(status, 400);

    // The bridge's routes: a redelivery of the finished task is answered
    // from its record; a bad event is refused in its place.
    let token = format!("Bearer {}", crate::harness::INVOKE_TOKEN);
    let bridge = [("authorization", token.as_str())];
    let event = |task_id: &str| {
        json!({"task_id": task_id, "prompt": "What is the boiling point of water at sea level?",
               "tenant": "default", "use_cache": true})
    };
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/invoke",
        "/invoke",
        Some(event(&id)),
        &[],
    )
    .await;
    assert_eq!(status, 401);
    let (status, task) = call(
        s,
        &system,
        "POST",
        "/invoke",
        "/invoke",
        Some(event(&id)),
        &bridge,
    )
    .await;
    assert_eq!(
        (status, &task["status"]),
        (200, &json!("SUCCESS")),
        "{task}"
    );
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/invoke",
        "/invoke",
        Some(json!({"x": 1})),
        &bridge,
    )
    .await;
    assert_eq!(status, 400);
    let batch = json!({"events": [event(&id), event("not valid")]});
    let (status, answers) = call(
        s,
        &system,
        "POST",
        "/invoke/batch",
        "/invoke/batch",
        Some(batch),
        &bridge,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answers["results"][1]["status"], 400, "{answers}");
    let too_many: Vec<Value> = (0..257).map(|i| event(&format!("t{i}"))).collect();
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/invoke/batch",
        "/invoke/batch",
        Some(json!({"events": too_many})),
        &bridge,
    )
    .await;
    assert_eq!(status, 400);
    // A task's tenant is set once; a dead letter fails its task.
    let mut foreign = event(&id);
    foreign["tenant"] = json!("globex");
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/invoke",
        "/invoke",
        Some(foreign.clone()),
        &bridge,
    )
    .await;
    assert_eq!(status, 409);
    for (body, want) in [
        (json!({"event": event("dead-1"), "error": "gave up"}), 200),
        (json!({"event": foreign, "error": "gave up"}), 409),
        (
            json!({"event": event("not valid"), "error": "gave up"}),
            400,
        ),
    ] {
        let (status, task) = call(
            s,
            &system,
            "POST",
            "/invoke/fail",
            "/invoke/fail",
            Some(body),
            &bridge,
        )
        .await;
        assert_eq!(status, want, "{task}");
        if want == 200 {
            assert_eq!(task["status"], "FAILURE", "{task}");
        }
    }

    // A bridge's report of itself, and one the app refuses.
    let report = json!({
        "kind": "bridge", "id": "openapi-bridge", "host": "h", "version": "0.1.0",
        "started_ms": 1, "every_ms": 5000,
        "lanes": [{"lane": "api", "topic": "t", "group": "g", "partitions": [0],
                   "lag": 0, "in_flight": 0, "consumed": 0, "last_progress_ms": null}],
    });
    for (body, want) in [(report, 200), (json!({"kind": "app"}), 400)] {
        let (status, answer) = call(
            s,
            &system,
            "POST",
            "/invoke/member",
            "/invoke/member",
            Some(body),
            &bridge,
        )
        .await;
        assert_eq!(status, want, "{answer}");
    }

    // The service routes.
    let (_, index) = call(s, &system, "GET", "/", "/", None, &[]).await;
    call(s, &system, "GET", "/health", "/health", None, &[]).await;
    call(s, &system, "GET", "/stats", "/stats", None, &[]).await;
    call(s, &system, "GET", "/dashboard", "/dashboard", None, &[]).await;
    call(s, &system, "GET", "/metrics", "/metrics", None, &[]).await;
    call(
        s,
        &system,
        "GET",
        "/openapi.json",
        "/openapi.json",
        None,
        &[],
    )
    .await;
    call(s, &system, "GET", "/docs", "/docs", None, &[]).await;

    // Redis gone: the documented 503s.
    system.redis.stop();
    let (status, _) = call(s, &system, "GET", "/health", "/health", None, &[]).await;
    assert_eq!(status, 503);
    let (status, _) = call(s, &system, "GET", "/stats", "/stats", None, &[]).await;
    assert_eq!(status, 503);
    let (status, _) = call(
        s,
        &system,
        "GET",
        &format!("/task/{id}"),
        "/task/{id}",
        None,
        &[],
    )
    .await;
    assert_eq!(status, 503);
    let (status, _) = call(
        s,
        &system,
        "POST",
        "/process",
        "/process",
        Some(json!({"prompt": "down?"})),
        &[],
    )
    .await;
    assert_eq!(status, 503);

    // Every documented operation was exercised.
    let documented: BTreeSet<(String, String)> = spec.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    let missed: Vec<_> = documented.difference(&spec.seen).collect();
    assert!(missed.is_empty(), "not exercised: {missed:?}");

    // What GET / lists is documented (`METHOD /path[?query]`, comma-separated).
    for listed in index["endpoints"].as_object().unwrap().keys() {
        for route in listed.split(", ") {
            let (method, path) = route.split_once(' ').unwrap();
            let path = path.split('[').next().unwrap();
            assert!(
                documented.contains(&(path.to_string(), method.to_lowercase())),
                "GET / lists {route}, which /openapi.json does not describe"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_serve_swagger_ui_from_the_app() {
    let system = System::start(Options::new("docs")).await;
    let get = |path: &str| system.client.get(system.url(path)).send();
    let page = get("/docs").await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no outside assets: {html}"
    );
    for (asset, kind, least) in [
        ("/docs/swagger-ui-bundle.js", "text/javascript", 500_000),
        ("/docs/swagger-ui.css", "text/css", 50_000),
        ("/docs/favicon.png", "image/png", 100),
    ] {
        assert!(html.contains(asset), "{asset} is not on the page");
        let resp = get(asset).await.unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert!(resp.bytes().await.unwrap().len() > least, "{asset}");
    }
    assert_eq!(get("/docs/nothing.js").await.unwrap().status(), 404);
}
