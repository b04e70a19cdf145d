//! `GET /health` (Redis reachability) and `GET /` (the endpoints).

use crate::request::{MAX_BATCH_BODY_BYTES, MAX_BATCH_PROMPTS, MAX_BODY_BYTES};
use aies_contract::keys::{DB_CACHE, DB_TASKS};
use aies_contract::MAX_PROMPT_CHARS;
use aies_guest::{execute, json, redis};
use serde_json::json as j;
use spin_sdk::http::Response;

pub fn health() -> Response {
    let ping = |db| redis(db).and_then(|c| execute(&c, "PING", &[]));
    match ping(DB_CACHE).and(ping(DB_TASKS)) {
        Ok(_) => json(200, &j!({"status": "ok", "redis": "ok"})),
        Err(e) => json(
            503,
            &j!({"status": "unavailable", "redis": format!("{e:#}")}),
        ),
    }
}

pub fn docs() -> Response {
    json(
        200,
        &j!({
            "service": "ai-eventstream",
            "endpoints": {
                "POST /process": "{\"prompt\": str, \"use_cache\": bool = true, \"metadata\": object?, \"system\": str?, \"temperature\": 0-2?, \"max_tokens\": int?, \"cache_threshold\": 0-1?, \"cache_judge\": \"strict\"|\"default\"|\"lenient\"?}. 200 on a cache hit, 202 {task_id} otherwise; optional Idempotency-Key header",
                "POST /process/batch": "{\"requests\": [POST /process body, ...]} (1-100): one task each, {\"results\": [{\"http_status\", \"body\"}, ...]} in order",
                "GET /task/{id}[?wait=N]": "status PENDING | STARTED | SUCCESS | FAILURE, with result or error; wait long-polls up to N s (at most 30)",
                "GET /task/{id}/events": "the task's state changes as server-sent events, until it is final",
                "POST /v1/chat/completions": "OpenAI's chat completions (also stream: true), answered through the cache and the pipeline",
                "POST /v1/embeddings": "OpenAI's embeddings (float or base64) from the app's embedding model",
                "GET /metrics": "Prometheus text format",
                "GET /stats": "what /dashboard shows, as JSON: tasks by state, the latest tasks with timings, cache hits by tier, Kafka lanes and partition lag",
                "GET /health": "Redis reachability",
                "POST /admin/keys, GET /admin/keys, DELETE /admin/keys/{id}": "API keys (Authorization: Bearer <admin_token>)",
                "GET /admin/cache/stats, POST /admin/cache/invalidate, POST /admin/cache/flush": "the cache's admin endpoints (Authorization: Bearer <admin_token>)",
            },
            "tenant": "with api_keys = required: Authorization: Bearer <key> (or x-api-key); otherwise the x-tenant-id header (default `default`)",
            "limits": {
                "body_bytes": MAX_BODY_BYTES,
                "batch_body_bytes": MAX_BATCH_BODY_BYTES,
                "batch_prompts": MAX_BATCH_PROMPTS,
                "prompt_chars": MAX_PROMPT_CHARS,
            },
        }),
    )
}
