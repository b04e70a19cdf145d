//! `GET /stats`: what the dashboard (`/dashboard`) shows, as JSON — tasks
//! by state, the latest finished tasks with their timings, cache hits by
//! tier and LLM calls saved, and from the bridge's `/metrics` each lane's
//! counters, each Kafka partition's lag and whether the broker answers;
//! what `aies-up` reports of its services (restarts, and why), and Redis's
//! memory (`INFO memory`: used, limit, policy), and every member of the
//! cluster (each bridge and app instance, from its own reports; one that
//! stopped reporting is marked `stale`). Counters count since the data
//! was created; rates are the dashboard's differences between two reads.
//! With `api_keys = "required"` it needs the admin token (it spans
//! tenants). Queue and total times are known for API tasks (ingest notes
//! when it made them); a third-party event's start is when llm-invoke took
//! it, so only its run time is shown.

use aies_contract::keys::{
    DB_CACHE, DB_TASKS, MEMBERS_KEY, METRICS_KEY, RECENT_TASKS_KEY, SERVICES_KEY,
};
use aies_contract::members::{MemberKind, MemberReport, MemberState};
use aies_guest::{
    admin_only, arg, execute, hgetall, json, now_ms, redis, text, var, ApiError, TaskRecord,
};
use anyhow::{Context, Result};
use serde_json::{json as j, Map, Value};
use spin_sdk::http::{Method, Request, Response};

/// Finished tasks listed.
const LATEST: i64 = 20;
const PROMPT_SHOWN_CHARS: usize = 80;

pub async fn stats(req: &Request) -> Result<Response, ApiError> {
    if var("api_keys").is_ok_and(|v| v.trim() == "required") {
        admin_only(req)?;
    }
    let unavailable = |e: anyhow::Error| ApiError::unavailable(&e);
    let counters = redis(DB_CACHE)
        .and_then(|c| hgetall(&c, METRICS_KEY))
        .map_err(unavailable)?;
    let counter = |name: &str| {
        counters
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let latest = latest_tasks().map_err(unavailable)?;
    let kafka = kafka().await;
    let members = members(&kafka);
    let (exact, semantic, misses, coalesced) = (
        counter("cache_hits_exact"),
        counter("cache_hits_semantic"),
        counter("cache_misses"),
        counter("cache_coalesced"),
    );
    let asked = exact + semantic + misses;
    let ratio = |n: u64| {
        if asked == 0 {
            0.0
        } else {
            n as f64 / asked as f64
        }
    };
    Ok(json(
        200,
        &j!({
            "generated_ms": now_ms(),
            "requests": counter("requests"),
            "bad_requests": counter("bad_requests"),
            "tasks": {
                "PENDING": counter("tasks_pending"),
                "STARTED": counter("tasks_started"),
                "SUCCESS": counter("tasks_success"),
                "FAILURE": counter("tasks_failure"),
            },
            "cache": {
                "hits": {"exact": exact, "semantic": semantic},
                "misses": misses,
                "coalesced": coalesced,
                "hit_ratio": {"exact": ratio(exact), "semantic": ratio(semantic), "all": ratio(exact + semantic)},
                "llm_calls_saved": exact + semantic + coalesced,
                "fills": counter("cache_fills"),
                "fills_shed": counter("cache_fills_shed"),
                "fill_wait_ms": {
                    "api": counter("cache_fill_wait_ms_api"),
                    "batch": counter("cache_fill_wait_ms_batch"),
                },
            },
            "latest": latest,
            "kafka": kafka,
            "members": members,
            "services": services(),
            "redis": match crate::metrics::redis_memory() {
                Ok(m) => j!({"used_memory": m.used, "maxmemory": m.max, "maxmemory_policy": m.policy}),
                Err(e) => j!({"error": format!("{e:#}")}),
            },
        }),
    ))
}

/// Every member's last report, bridges and app instances apart, each
/// marked `stale` when it missed reports; and per lane the partitions no
/// live bridge owns.
fn members(kafka: &Value) -> Value {
    let stored = redis(DB_CACHE)
        .and_then(|c| hgetall(&c, MEMBERS_KEY))
        .unwrap_or_default();
    members_of(stored, kafka, now_ms())
}

fn members_of(stored: Vec<(String, String)>, kafka: &Value, now: u64) -> Value {
    let mut reports: Vec<MemberReport> = stored
        .iter()
        .filter_map(|(_, json)| serde_json::from_str(json).ok())
        .collect();
    reports.sort_by(|a, b| a.id.cmp(&b.id));
    let shown = |kind: MemberKind| -> Vec<Value> {
        reports
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| {
                let mut v = j!(r);
                v["stale"] = j!(r.stale(now));
                v["silent_ms"] = j!(now.saturating_sub(r.seen_ms));
                v
            })
            .collect()
    };
    // A partition is owned when a bridge that is running and reporting
    // says so; the topic's partitions are those the lag is measured of.
    let owned = |lane: &str, partition: i64| {
        reports.iter().any(|r| {
            r.state != MemberState::Stopped
                && !r.stale(now)
                && r.lanes.iter().any(|l| {
                    l.lane == lane && l.partitions.iter().any(|p| i64::from(*p) == partition)
                })
        })
    };
    let mut unowned = Map::new();
    for p in kafka["partitions"].as_array().into_iter().flatten() {
        let (Some(lane), Some(partition)) = (p["lane"].as_str(), p["partition"].as_i64()) else {
            continue;
        };
        let entry = unowned.entry(lane.to_string()).or_insert_with(|| j!([]));
        if !owned(lane, partition) {
            entry.as_array_mut().expect("an array").push(j!(partition));
        }
    }
    j!({
        "bridges": shown(MemberKind::Bridge),
        "apps": shown(MemberKind::App),
        "unowned_partitions": unowned,
    })
}

/// `aies:services` (DB 0), written by `aies-up`: `<service>.<field>`
/// pairs, as `{service: {field: number or text}}`. Empty elsewhere.
fn services() -> Value {
    let fields = redis(DB_CACHE)
        .and_then(|c| hgetall(&c, SERVICES_KEY))
        .unwrap_or_default();
    services_of(fields)
}

fn services_of(fields: Vec<(String, String)>) -> Value {
    let mut out = Map::new();
    for (key, value) in fields {
        let Some((service, field)) = key.split_once('.') else {
            continue;
        };
        let value = match value.parse::<u64>() {
            Ok(n) => j!(n),
            Err(_) => j!(value),
        };
        let entry = out.entry(service.to_string()).or_insert_with(|| j!({}));
        entry[field] = value;
    }
    Value::Object(out)
}

fn latest_tasks() -> Result<Vec<Value>> {
    let conn = redis(DB_TASKS)?;
    let ids = execute(
        &conn,
        "LRANGE",
        &[
            arg(RECENT_TASKS_KEY),
            arg("0"),
            arg((LATEST - 1).to_string()),
        ],
    )?;
    let mut out = Vec::new();
    for id in ids.iter().filter_map(text) {
        let record = TaskRecord::read(&conn, &id)?;
        let Some(status) = record.get("status") else {
            continue; // expired since
        };
        let ms = |field: &str| record.get(field).and_then(|v| v.parse::<u64>().ok());
        let between = |from: Option<u64>, to: Option<u64>| match (from, to) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            _ => None,
        };
        let (created, started, finished) = (ms("created_ms"), ms("started_ms"), ms("finished_ms"));
        let prompt: String = record
            .get("prompt")
            .unwrap_or_default()
            .chars()
            .take(PROMPT_SHOWN_CHARS)
            .collect();
        out.push(j!({
            "task_id": id,
            "status": status,
            "tenant": record.get("tenant"),
            "model": record.get("model"),
            "prompt": prompt,
            "finished_ms": finished,
            "queued_ms": between(created, started),
            "run_ms": between(started, finished),
            "total_ms": between(created, finished),
        }));
    }
    Ok(out)
}

/// The bridge's lanes and partitions, read from its `/metrics`.
async fn kafka() -> Value {
    match bridge_metrics().await {
        Ok(text) => lanes(&text),
        Err(e) => j!({"available": false, "error": format!("{e:#}")}),
    }
}

async fn bridge_metrics() -> Result<String> {
    let url = format!("{}/metrics", var("bridge_url")?);
    let req = Request::builder().method(Method::Get).uri(&url).build();
    let resp: Response = spin_sdk::http::send(req)
        .await
        .with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(*resp.status() == 200, "GET {url}: status {}", resp.status());
    Ok(String::from_utf8_lossy(resp.body()).into_owned())
}

/// Samples of the bridge's metrics a lane shows, by their names there.
const LANE_SAMPLES: &[(&str, &str)] = &[
    ("aies_bridge_events_consumed_total", "consumed"),
    ("aies_bridge_events_succeeded_total", "succeeded"),
    ("aies_bridge_events_retried_total", "retried"),
    ("aies_bridge_events_dead_lettered_total", "dead_lettered"),
    ("aies_bridge_events_in_flight", "in_flight"),
    ("aies_bridge_events_in_flight_limit", "in_flight_limit"),
];

/// `{"available", "lanes": {lane: {consumed, ...}}, "partitions": [...]}`
/// from OpenMetrics text (`name{label="v",...} value` lines).
fn lanes(text: &str) -> Value {
    let mut lanes = Map::new();
    let mut partitions = Vec::new();
    let mut broker_up = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if name == "aies_bridge_broker_up" {
            broker_up = Some(value == 1.0);
            continue;
        }
        let label = |key: &str| {
            labels.split(',').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == key).then(|| v.trim_matches('"').to_string())
            })
        };
        let Some(lane) = label("lane") else { continue };
        if name == "aies_bridge_partition_lag" {
            let partition = label("partition").and_then(|p| p.parse::<i64>().ok());
            partitions.push(j!({"lane": lane, "partition": partition, "lag": value}));
        } else if let Some((_, key)) = LANE_SAMPLES.iter().find(|(n, _)| *n == name) {
            let entry = lanes.entry(lane).or_insert_with(|| j!({}));
            entry[*key] = j!(value);
        }
    }
    // A counter the bridge never moved is not in its output: it is 0.
    for lane in lanes.values_mut() {
        for (_, key) in LANE_SAMPLES {
            if lane.get(*key).is_none() {
                lane[*key] = j!(0.0);
            }
        }
    }
    partitions.sort_by_key(|p| {
        (
            p["lane"].as_str().map(String::from),
            p["partition"].as_i64(),
        )
    });
    j!({"available": true, "broker_up": broker_up, "lanes": lanes, "partitions": partitions})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_group_their_fields() {
        let field = |k: &str, v: &str| (k.to_string(), v.to_string());
        let services = services_of(vec![
            field("bridge.restarts", "2"),
            field("bridge.last_exit", "signal 9"),
            field("redis.restarts", "0"),
            field("stray", "1"),
        ]);
        assert_eq!(
            services,
            j!({
                "bridge": {"restarts": 2, "last_exit": "signal 9"},
                "redis": {"restarts": 0},
            })
        );
    }

    #[test]
    fn members_are_listed_by_kind_with_the_silent_marked_and_unowned_partitions_named() {
        use aies_contract::members::LaneReport;
        let report = |kind, id: &str, seen_ms, state, partitions: Vec<i32>| {
            let r = MemberReport {
                kind,
                id: id.into(),
                host: "h".into(),
                version: "0.1.0".into(),
                started_ms: 1,
                every_ms: 1_000,
                state,
                lanes: vec![LaneReport {
                    lane: "batch".into(),
                    topic: "datos_crudos".into(),
                    group: "g".into(),
                    partitions,
                    lag: 0,
                    in_flight: 0,
                    consumed: 0,
                    last_progress_ms: None,
                }],
                requests_in_flight: None,
                requests_total: None,
                seen_ms,
            };
            (r.field(), serde_json::to_string(&r).unwrap())
        };
        let now = 100_000;
        let stored = vec![
            report(
                MemberKind::Bridge,
                "b2",
                now - 10_000,
                MemberState::Running,
                vec![1],
            ),
            report(
                MemberKind::Bridge,
                "b1",
                now - 500,
                MemberState::Running,
                vec![0],
            ),
            report(
                MemberKind::Bridge,
                "b3",
                now - 500,
                MemberState::Stopped,
                vec![2],
            ),
            report(
                MemberKind::App,
                "a1",
                now - 500,
                MemberState::Running,
                vec![],
            ),
            ("bridge:junk".to_string(), "{".to_string()),
        ];
        let kafka = j!({"partitions": [
            {"lane": "batch", "partition": 0, "lag": 0.0},
            {"lane": "batch", "partition": 1, "lag": 3.0},
            {"lane": "batch", "partition": 2, "lag": 0.0},
        ]});
        let v = members_of(stored, &kafka, now);
        let ids = |kind: &str| -> Vec<String> {
            v[kind]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().into())
                .collect()
        };
        assert_eq!(ids("bridges"), ["b1", "b2", "b3"]);
        assert_eq!(ids("apps"), ["a1"]);
        assert_eq!(v["bridges"][0]["stale"], false);
        assert_eq!(v["bridges"][1]["stale"], true, "b2 missed its reports");
        assert_eq!(v["bridges"][1]["silent_ms"], 10_000);
        assert_eq!(v["bridges"][2]["stale"], false, "b3 stopped cleanly");
        // Partition 1's owner is silent, partition 2's has stopped.
        assert_eq!(v["unowned_partitions"], j!({"batch": [1, 2]}));
    }

    #[test]
    fn lanes_and_partitions_come_from_the_bridge_metrics() {
        let text = "\
# TYPE aies_bridge_events_consumed_total counter
aies_bridge_events_consumed_total{lane=\"api\"} 5
aies_bridge_events_succeeded_total{lane=\"api\"} 4
aies_bridge_partition_lag{lane=\"batch\",partition=\"1\"} 7
aies_bridge_partition_lag{lane=\"api\",partition=\"0\"} 0
aies_bridge_broker_up 1
aies_bridge_other{lane=\"api\"} 9
not a sample
";
        let v = lanes(text);
        assert_eq!(v["available"], true);
        assert_eq!(v["broker_up"], true);
        assert_eq!(v["lanes"]["api"]["consumed"], 5.0);
        assert_eq!(v["lanes"]["api"]["succeeded"], 4.0);
        // Counters the bridge never moved are 0, unknown samples ignored.
        assert_eq!(v["lanes"]["api"]["dead_lettered"], 0.0);
        assert_eq!(
            v["lanes"]["api"].as_object().unwrap().len(),
            LANE_SAMPLES.len()
        );
        assert_eq!(
            v["partitions"],
            j!([
                {"lane": "api", "partition": 0, "lag": 0.0},
                {"lane": "batch", "partition": 1, "lag": 7.0},
            ])
        );
        assert_eq!(lanes("")["broker_up"], Value::Null);
    }
}
