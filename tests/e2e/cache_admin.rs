//! The cache stays bounded and can be inspected and cleared: entries
//! expire on a fixed TTL, the least recently used go beyond
//! `cache_max_entries`, and the admin endpoints report and invalidate.

use crate::fake_llm::FakeLlm;
use crate::harness::{metric, Options, System};
use serde_json::{json, Value};
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub async fn admin(system: &System, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = system.url(&format!("/admin/cache/{path}"));
    let mut req = match method {
        "GET" => system.client.get(url),
        _ => system.client.post(url),
    };
    req = req.bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_entries_are_evicted() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("evict").llm(&fake, "openai");
    options
        .variables
        .insert("cache_max_entries".into(), "3".into());
    let system = System::start(options).await;
    let prompts = [
        "Name three primary colours",
        "¿Cuál es la montaña más alta de España?",
        "How many legs does a spider have?",
        "Explain photosynthesis to a child",
    ];
    for p in &prompts[..3] {
        system.complete(p).await;
    }
    // The first is used again, so the second is now the least recent.
    let (status, _) = system.process(prompts[0], None).await;
    assert_eq!(status, 200);
    system.complete(prompts[3]).await;
    let metrics = system.metrics().await;
    assert_eq!(metric(&metrics, "aies_cache_evicted_total"), 1.0);
    for p in [prompts[0], prompts[2], prompts[3]] {
        let (status, body) = system.process(p, None).await;
        assert_eq!(status, 200, "{p}: {body}");
    }
    let (status, body) = system.process(prompts[1], None).await;
    assert_eq!(status, 202, "evicted: {body}");
}

/// The TTL is not sliding: an entry hit again and again still expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_do_not_renew_an_entry() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("ttl").llm(&fake, "openai");
    options
        .variables
        .insert("cache_ttl_seconds".into(), "6".into());
    let system = System::start(options).await;
    let prompt = "Name three primary colours";
    system.complete(prompt).await;
    let mut hits = 0;
    // A sliding TTL would keep answering for as long as it is asked.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = system.process(prompt, None).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        hits += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "still served after 20 s of hits ({hits})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(hits > 0, "the entry was never served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_invalidate_and_flush() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("admin").llm(&fake, "openai");
    options
        .variables
        .insert("admin_token".into(), ADMIN_TOKEN.into());
    let system = System::start(options).await;
    let a = "What is the tallest mountain in Africa?";
    let b = "¿Qué idioma se habla en Brasil?";
    system.complete(a).await;
    system.complete(b).await;
    system
        .complete_json(json!({"prompt": a}), Some("acme"))
        .await;
    system
        .complete_json(json!({"prompt": b, "system": "Be brief."}), Some("acme"))
        .await;
    let (status, hit) = system.process(a, None).await;
    assert_eq!(status, 200, "{hit}");

    // Without the token, or with another: refused.
    assert_eq!(system.get_status("/admin/cache/stats").await, 401);

    let (status, stats) = admin(&system, "GET", "stats", None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["entries"]["total"], 4, "{stats}");
    assert_eq!(stats["hits"]["exact"], 1);
    assert_eq!(stats["llm_calls_saved"], 1);
    assert_eq!(stats["misses"], 4);
    let (_, acme) = admin(&system, "GET", "stats?tenant=acme", None).await;
    assert_eq!(acme["entries"]["total"], 2, "{acme}");
    let (status, _) = admin(&system, "GET", "stats?tenant=a%7Db", None).await;
    assert_eq!(status, 400);

    // One entry, by the id a hit reports.
    let entry = hit["cache"]["entry"].clone();
    let (status, gone) = admin(&system, "POST", "invalidate", Some(json!({"entry": entry}))).await;
    assert_eq!((status, gone["deleted"].as_i64()), (200, Some(1)), "{gone}");
    let (status, again) = system.process(a, None).await;
    assert_eq!(status, 202, "an invalidated entry is not served");
    // Answered again, it is cached again.
    system
        .finished(again["task_id"].as_str().unwrap(), None)
        .await;

    // One scope of one tenant: acme's "Be brief." entry only.
    let (_, brief) = system
        .process_json(json!({"prompt": b, "system": "Be brief."}), Some("acme"))
        .await;
    let scope = brief["cache"]["scope"].clone();
    let selection = json!({"tenant": "acme", "scope": scope});
    let (_, gone) = admin(&system, "POST", "invalidate", Some(selection)).await;
    assert_eq!(gone["deleted"], 1, "{gone}");
    let (status, _) = system
        .process_json(json!({"prompt": a}), Some("acme"))
        .await;
    assert_eq!(status, 200, "acme's other scope is kept");
    let (_, stats) = admin(&system, "GET", "stats", None).await;
    assert_eq!(stats["entries"]["total"], 3, "{stats}");

    for bad in [
        json!({}),
        json!({"tenant": "a*"}),
        json!({"entry": "aies:task:x"}),
    ] {
        let (status, body) = admin(&system, "POST", "invalidate", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    let (_, flushed) = admin(&system, "POST", "flush", None).await;
    assert_eq!(flushed["deleted"], 3, "{flushed}");
    let (_, stats) = admin(&system, "GET", "stats", None).await;
    assert_eq!(stats["entries"]["total"], 0, "{stats}");
    let (status, _) = system.process(b, None).await;
    assert_eq!(status, 202);
}
