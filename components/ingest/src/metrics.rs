//! `GET /metrics`: the counters of the metrics hash as Prometheus text.

use aies_contract::keys::{guard_refused_field, DB_CACHE, METRICS_KEY};
use aies_guest::{hgetall, redis, ApiError};
use spin_sdk::http::Response;

/// Counters kept in the metrics hash, with their Prometheus names and help.
const METRICS: &[(&str, &str, &str)] = &[
    (
        "requests",
        "aies_requests_total",
        "POST /process requests received",
    ),
    (
        "bad_requests",
        "aies_bad_requests_total",
        "POST /process requests rejected as invalid",
    ),
    (
        "cache_hits",
        "aies_cache_hits_total",
        "Prompts answered from the semantic cache",
    ),
    (
        "cache_hits_exact",
        "aies_cache_hits_exact_total",
        "Prompts answered by the exact tier (no embedding)",
    ),
    (
        "cache_hits_semantic",
        "aies_cache_hits_semantic_total",
        "Prompts answered by the semantic tier",
    ),
    (
        "cache_misses",
        "aies_cache_misses_total",
        "Prompts not found in the semantic cache",
    ),
    (
        "cache_coalesced",
        "aies_cache_coalesced_total",
        "Prompts that joined a running task for the same prompt instead of calling the LLM",
    ),
    (
        "cache_fills",
        "aies_cache_fills_total",
        "Answers put into the cache by cache-fill",
    ),
    (
        "cache_fills_shed",
        "aies_cache_fills_shed_total",
        "Batch-lane cache fills dropped after waiting longer than cache_fill_max_wait_secs",
    ),
    (
        "cache_fill_embedded",
        "aies_cache_fill_embedded_total",
        "Cache fills that had to embed the prompt (no vector kept by ingest)",
    ),
    (
        "cache_evicted",
        "aies_cache_evicted_total",
        "Cache entries evicted by cache_max_entries (least recently used first)",
    ),
    (
        "cache_errors",
        "aies_cache_errors_total",
        "Cache lookups that failed (treated as misses)",
    ),
];

/// How long each lane's latest cache fill waited after store published it
/// (a gauge: a backlog of fills shows here first).
const FILL_WAITS: &[(&str, &str)] = &[
    ("cache_fill_wait_ms_api", "api"),
    ("cache_fill_wait_ms_batch", "batch"),
];

const STATES: &[(&str, &str)] = &[
    ("tasks_pending", "PENDING"),
    ("tasks_started", "STARTED"),
    ("tasks_success", "SUCCESS"),
    ("tasks_failure", "FAILURE"),
];

pub fn metrics() -> Result<Response, ApiError> {
    let fields = redis(DB_CACHE)
        .and_then(|c| hgetall(&c, METRICS_KEY))
        .map_err(|e| ApiError::unavailable(&e))?;
    let mut text = render(&fields);
    match redis_memory() {
        Ok(memory) => text += &memory.render(),
        Err(e) => aies_guest::log!("Redis memory not read: {e:#}"),
    }
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain; version=0.0.4")
        .body(text)
        .build())
}

/// Redis's memory, as `INFO memory` says.
#[derive(Debug, PartialEq)]
pub struct RedisMemory {
    pub used: u64,
    /// The limit (`maxmemory`); 0: none.
    pub max: u64,
    pub policy: String,
}

impl RedisMemory {
    fn parse(info: &str) -> Self {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or_default()
        };
        Self {
            used: field("used_memory").parse().unwrap_or(0),
            max: field("maxmemory").parse().unwrap_or(0),
            policy: field("maxmemory_policy").to_string(),
        }
    }

    fn render(&self) -> String {
        format!(
            "# HELP aies_redis_used_memory_bytes Memory Redis uses\n\
             # TYPE aies_redis_used_memory_bytes gauge\naies_redis_used_memory_bytes {}\n\
             # HELP aies_redis_maxmemory_bytes Redis's memory limit (0: none)\n\
             # TYPE aies_redis_maxmemory_bytes gauge\naies_redis_maxmemory_bytes {}\n",
            self.used, self.max
        )
    }
}

pub fn redis_memory() -> anyhow::Result<RedisMemory> {
    let reply = aies_guest::execute(&redis(DB_CACHE)?, "INFO", &[aies_guest::arg("memory")])?;
    let info = reply.first().and_then(aies_guest::text).unwrap_or_default();
    Ok(RedisMemory::parse(&info))
}

/// The metrics hash's fields as Prometheus text: every counter, 0 when the
/// hash does not have it yet.
fn render(fields: &[(String, String)]) -> String {
    let value = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("0")
            .to_string()
    };
    let mut out = String::new();
    for (field, name, help) in METRICS {
        out += &format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            value(field)
        );
    }
    out +=
        "# HELP aies_tasks_total Tasks that entered each state\n# TYPE aies_tasks_total counter\n";
    for (field, state) in STATES {
        out += &format!("aies_tasks_total{{status=\"{state}\"}} {}\n", value(field));
    }
    out += "# HELP aies_cache_fill_wait_seconds How long the latest cache fill of each lane waited\n# TYPE aies_cache_fill_wait_seconds gauge\n";
    for (field, lane) in FILL_WAITS {
        let ms: f64 = value(field).parse().unwrap_or(0.0);
        out += &format!(
            "aies_cache_fill_wait_seconds{{lane=\"{lane}\"}} {}\n",
            ms / 1000.0
        );
    }
    out += "# HELP aies_cache_guard_refused_total Cache candidates that the guard's checks or the judge (reason judge) refused, by reason\n# TYPE aies_cache_guard_refused_total counter\n";
    let reasons = aies_cache_guard::Mismatch::ALL.map(|m| m.as_str());
    for why in reasons.into_iter().chain(["judge"]) {
        out += &format!(
            "aies_cache_guard_refused_total{{reason=\"{why}\"}} {}\n",
            value(&guard_refused_field(why))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_memory_is_read_from_info() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\
                    maxmemory:2147483648\r\nmaxmemory_human:2.00G\r\nmaxmemory_policy:noeviction\r\n";
        let memory = RedisMemory::parse(info);
        assert_eq!(
            memory,
            RedisMemory {
                used: 1_048_576,
                max: 2_147_483_648,
                policy: "noeviction".into()
            }
        );
        assert!(memory
            .render()
            .contains("\naies_redis_maxmemory_bytes 2147483648\n"));
        assert_eq!(RedisMemory::parse("").used, 0);
    }

    #[test]
    fn every_counter_is_shown_with_0_for_the_missing() {
        let fields = vec![
            ("requests".to_string(), "7".to_string()),
            ("tasks_success".to_string(), "3".to_string()),
            ("guard_refused_numbers".to_string(), "2".to_string()),
            ("cache_fill_wait_ms_batch".to_string(), "2500".to_string()),
        ];
        let text = render(&fields);
        assert!(text.starts_with(
            "# HELP aies_requests_total POST /process requests received\n\
             # TYPE aies_requests_total counter\naies_requests_total 7\n"
        ));
        assert!(text.contains("\naies_cache_hits_total 0\n"));
        assert!(text.contains("\naies_tasks_total{status=\"SUCCESS\"} 3\n"));
        assert!(text.contains("\naies_tasks_total{status=\"PENDING\"} 0\n"));
        assert!(text.contains("\naies_cache_guard_refused_total{reason=\"numbers\"} 2\n"));
        assert!(text.contains("\naies_cache_fill_wait_seconds{lane=\"batch\"} 2.5\n"));
        assert!(text.contains("\naies_cache_fill_wait_seconds{lane=\"api\"} 0\n"));
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(
            samples,
            METRICS.len()
                + FILL_WAITS.len()
                + STATES.len()
                + aies_cache_guard::Mismatch::ALL.len()
                + 1 // the judge
        );
        assert!(text.contains("\naies_cache_guard_refused_total{reason=\"judge\"} 0\n"));
    }
}
