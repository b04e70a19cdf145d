//! `Idempotency-Key` on `POST /process` and `POST /process/batch` (after
//! the IETF draft "The Idempotency-Key HTTP Header Field"): the first
//! request with a key runs and its answer is kept for [`KEEP_SECS`]; a
//! retry with the same key and body gets that answer again (same task ids,
//! header `idempotent-replayed: true`) instead of new tasks. The same key
//! with another body is 422; while the first is still running, 409. Keys
//! are per tenant; 5xx answers are not kept, so a retry runs again.
//!
//! Redis DB 1: `aies:idem:<tenant>:<hash of the key>` = JSON
//! `{"fingerprint", "status"?, "body"?}` (no status yet: running).

use aies_guest::{arg, error, execute, hex, redis, text, DB_COORDINATION};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Request, Response};
use spin_sdk::redis::RedisParameter;
use std::future::Future;

/// How long an answer is kept for retries.
const KEEP_SECS: i64 = 24 * 3600;
/// How long a running request holds its key (it then counts as lost).
const RUNNING_SECS: i64 = 120;
const MAX_KEY_CHARS: usize = 255;

#[derive(Serialize, Deserialize)]
struct Saved {
    fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

/// Runs `work` once per idempotency key (every time without one).
pub async fn once(req: &Request, tenant: &str, work: impl Future<Output = Response>) -> Response {
    let Some(key) = req.header("idempotency-key").map(|v| v.as_bytes()) else {
        return work.await;
    };
    let key = match std::str::from_utf8(key) {
        Ok(k)
            if (1..=MAX_KEY_CHARS).contains(&k.len())
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k
        }
        _ => {
            return error(
                400,
                format!("Idempotency-Key must be 1-{MAX_KEY_CHARS} printable ASCII characters"),
            )
        }
    };
    let record = format!("aies:idem:{tenant}:{}", hex(key, 16));
    let fingerprint = hex(
        &format!("{}\n{}", req.path(), String::from_utf8_lossy(req.body())),
        16,
    );
    match reserve(&record, &fingerprint) {
        Ok(None) => {}
        Ok(Some(saved)) if saved.fingerprint != fingerprint => {
            return error(
                422,
                "this Idempotency-Key was used with another request body",
            )
        }
        Ok(Some(Saved {
            status: Some(status),
            body: Some(body),
            ..
        })) => {
            return Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .header("idempotent-replayed", "true")
                .body(body)
                .build()
        }
        Ok(Some(_)) => {
            return error(
                409,
                "a request with this Idempotency-Key is still being answered",
            )
        }
        Err(e) => return error(503, format!("checking the Idempotency-Key: {e:#}")),
    }
    let resp = work.await;
    let status = *resp.status();
    let kept = if status < 500 {
        let saved = Saved {
            fingerprint,
            status: Some(status),
            body: Some(String::from_utf8_lossy(resp.body()).into_owned()),
        };
        keep(&record, &saved)
    } else {
        forget(&record)
    };
    if let Err(e) = kept {
        aies_guest::log!("Idempotency-Key answer not kept: {e:#}");
    }
    resp
}

/// Takes the key for this request, or returns what holds it.
fn reserve(record: &str, fingerprint: &str) -> Result<Option<Saved>> {
    const SCRIPT: &str = r#"
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false"#;
    let running = serde_json::to_string(&Saved {
        fingerprint: fingerprint.to_string(),
        status: None,
        body: None,
    })?;
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(1),
        arg(record),
        arg(running),
        RedisParameter::Int64(RUNNING_SECS),
    ];
    let held = execute(&redis(DB_COORDINATION)?, "EVAL", &args)?;
    Ok(match held.first().and_then(text) {
        Some(json) => Some(serde_json::from_str(&json)?),
        None => None,
    })
}

fn keep(record: &str, saved: &Saved) -> Result<()> {
    let args = [
        arg(record),
        arg(serde_json::to_vec(saved)?),
        arg("EX"),
        RedisParameter::Int64(KEEP_SECS),
    ];
    execute(&redis(DB_COORDINATION)?, "SET", &args)?;
    Ok(())
}

fn forget(record: &str) -> Result<()> {
    execute(&redis(DB_COORDINATION)?, "DEL", &[arg(record)])?;
    Ok(())
}
