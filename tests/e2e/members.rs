//! The cluster's members on `/stats` (issue 24 ask 6): every bridge and app
//! instance from its own reports, the partitions each bridge owns, a member
//! that stopped cleanly shown as stopped, one that fell silent as stale,
//! and the report route's refusals. (The cluster tests kill a bridge
//! container and see it marked stale.)

use crate::harness::{Options, System, INVOKE_TOKEN, MEMBER_REPORT_MS};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Polls `/stats` until `done` holds of its `members`, for up to 60 s.
async fn members_until(system: &System, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, stats) = system.get_json("/stats").await;
        assert_eq!(status, 200, "{stats}");
        if done(&stats["members"]) {
            return stats["members"].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s; /stats members: {:#}",
            stats["members"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn running(members: &Value, kind: &str) -> Vec<Value> {
    members[kind]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "running" && m["stale"] == false)
        .cloned()
        .collect()
}

/// The partitions of `lane` that the running bridges own, all together.
fn owned(members: &Value, lane: &str) -> BTreeSet<i64> {
    running(members, "bridges")
        .iter()
        .flat_map(|b| b["lanes"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["lane"] == lane)
        .flat_map(|l| l["partitions"].as_array().unwrap().clone())
        .map(|p| p.as_i64().unwrap())
        .collect()
}

fn all_three(members: &Value) -> bool {
    let every: BTreeSet<i64> = (0..3).collect();
    owned(members, "api") == every && owned(members, "batch") == every
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bridge_and_app_instance_is_listed_with_what_it_owns() {
    let mut system = System::start(Options::new("members")).await;
    system.complete("Who reports here?").await;
    let members = members_until(&system, "one bridge owning every partition", |m| {
        running(m, "bridges").len() == 1 && running(m, "apps").len() == 1 && all_three(m)
    })
    .await;
    let bridge = &running(&members, "bridges")[0];
    let first = bridge["id"].as_str().unwrap().to_string();
    assert_eq!(bridge["every_ms"], MEMBER_REPORT_MS, "{bridge}");
    assert!(
        bridge["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{bridge}"
    );
    let api = bridge["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lane"] == "api")
        .unwrap();
    assert_eq!(api["group"], format!("{}_api", system.bridge_config.group));
    assert!(api["consumed"].as_u64().unwrap() >= 1, "{api}");
    assert!(api["last_progress_ms"].as_u64().is_some(), "{api}");
    let app = &running(&members, "apps")[0];
    assert!(app["requests_total"].as_u64().unwrap() >= 2, "{app}");
    assert_eq!(
        members["unowned_partitions"],
        json!({"api": [], "batch": []})
    );

    // A second bridge joins the group: both are listed, and together they
    // still own every partition once the group has settled.
    let second = system.add_bridge().await;
    let members = members_until(&system, "two bridges sharing the partitions", |m| {
        running(m, "bridges").len() == 2 && all_three(m)
    })
    .await;
    let ids: BTreeSet<String> = running(&members, "bridges")
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() == 2 && ids.contains(&first), "{ids:?}");

    // Stopped as SIGTERM would: its last word says so, and it owns nothing.
    system.stop_bridge(second);
    let members = members_until(&system, "the second bridge stopped", |m| {
        m["bridges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] != first.as_str() && b["state"] == "stopped")
            && all_three(m)
    })
    .await;
    let stopped = members["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["state"] == "stopped")
        .unwrap()
        .clone();
    assert_eq!(
        stopped["stale"], false,
        "a clean stop is not silence: {stopped}"
    );
    assert!(
        stopped["lanes"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|l| l["partitions"] == json!([])),
        "{stopped}"
    );
}

/// A bridge that reports once and then falls silent (as a killed or cut
/// off one does) is shown as stale, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_is_marked_stale_and_bad_reports_are_refused() {
    let system = System::start(Options::new("members-stale")).await;
    let report = |id: &str, every_ms: u64| {
        json!({
            "kind": "bridge", "id": id, "host": "gone-host", "version": "0.1.0",
            "started_ms": 1, "every_ms": every_ms, "state": "running",
            "lanes": [{"lane": "batch", "topic": "datos_crudos", "group": "g",
                       "partitions": [7], "lag": 3, "in_flight": 1, "consumed": 9,
                       "last_progress_ms": null}],
        })
    };
    let post = |body: Value, token: &'static str| {
        system
            .client
            .post(system.url("/invoke/member"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let sent = post(report("ghost-1", 200), INVOKE_TOKEN).await.unwrap();
    assert_eq!(sent.status(), 200);
    let kept: Value = sent.json().await.unwrap();
    assert_eq!(kept["member"], "bridge:ghost-1", "{kept}");
    let members = members_until(&system, "the ghost marked stale", |m| {
        m["bridges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == "ghost-1" && b["stale"] == true)
    })
    .await;
    let ghost = members["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "ghost-1")
        .unwrap();
    assert_eq!(ghost["host"], "gone-host");
    assert!(ghost["silent_ms"].as_u64().unwrap() > 600, "{ghost}");
    // The real bridge is running beside it.
    assert_eq!(running(&members, "bridges").len(), 1, "{members:#}");

    // Refused: no token, an app's report (apps write their own), an id
    // that is not plain, a report every 10 ms, a host name too long, a
    // body over 128 KiB, a GET.
    assert_eq!(
        post(report("x", 1000), "wrong").await.unwrap().status(),
        401
    );
    let mut app = report("x", 1000);
    app["kind"] = json!("app");
    assert_eq!(post(app, INVOKE_TOKEN).await.unwrap().status(), 400);
    assert_eq!(
        post(report("a b", 1000), INVOKE_TOKEN)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post(report("fast", 10), INVOKE_TOKEN)
            .await
            .unwrap()
            .status(),
        400
    );
    let mut long = report("long", 1000);
    long["host"] = json!("h".repeat(256));
    assert_eq!(post(long, INVOKE_TOKEN).await.unwrap().status(), 400);
    let mut big = report("big", 1000);
    big["padding"] = json!("p".repeat(200 * 1024));
    assert_eq!(post(big, INVOKE_TOKEN).await.unwrap().status(), 413);
    let got = system
        .client
        .get(system.url("/invoke/member"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 405);
    let (_, stats) = system.get_json("/stats").await;
    let ids: Vec<&str> = stats["members"]["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.iter()
            .any(|id| ["x", "a b", "fast", "long", "big"].contains(id)),
        "{ids:?}"
    );
}
