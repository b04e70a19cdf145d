//! `Idempotency-Key` on `POST /process` and `POST /process/batch` (after
//! the IETF draft "The Idempotency-Key HTTP Header Field"): the first
//! request with a key runs and its answer is kept for [`KEEP_SECS`]; a
//! retry with the same key and body gets that answer again (same task ids,
//! header `idempotent-replayed: true`) instead of new tasks. The same key
//! with another body is 422; while the first is still running, 409. Keys
//! are per tenant; 5xx answers and answers over [`MAX_KEPT_BYTES`] are not
//! kept, so a retry runs again.
//!
//! Redis DB 1: `aies:idem:<tenant>:<hash of the key>` = JSON
//! `{"fingerprint", "status"?, "body"?}` (no status yet: running).

use aies_contract::keys::{idempotency_key, DB_COORDINATION};
use aies_guest::{arg, execute, hex, redis, text, ApiError};
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
/// Larger answers are not kept (Redis holds no unbounded record): a retry
/// runs again, which answers a hit from the cache and joins a running miss
/// (coalescing), so it still makes no second task for a prompt in flight.
const MAX_KEPT_BYTES: usize = 256 * 1024;

#[derive(Serialize, Deserialize)]
struct Saved {
    fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

/// Runs `work` once per idempotency key (every time without one); `Err`
/// is about the key itself (invalid, reused, in use, not checkable).
pub async fn once(
    req: &Request,
    tenant: &str,
    work: impl Future<Output = Response>,
) -> Result<Response, ApiError> {
    let Some(key) = req.header("idempotency-key").map(|v| v.as_bytes()) else {
        return Ok(work.await);
    };
    let key = valid_key(key)?;
    let record = idempotency_key(tenant, &hex(key, 16));
    let fingerprint = fingerprint(req.path(), req.body());
    match reserve(&record, &fingerprint) {
        Ok(None) => {}
        Ok(Some(saved)) if saved.fingerprint != fingerprint => {
            return Err(ApiError::new(
                422,
                "this Idempotency-Key was used with another request body",
            ))
        }
        Ok(Some(Saved {
            status: Some(status),
            body: Some(body),
            ..
        })) => {
            return Ok(Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .header("idempotent-replayed", "true")
                .body(body)
                .build())
        }
        Ok(Some(_)) => {
            return Err(ApiError::new(
                409,
                "a request with this Idempotency-Key is still being answered",
            ))
        }
        Err(e) => {
            return Err(ApiError::new(
                503,
                format!("checking the Idempotency-Key: {e:#}"),
            ))
        }
    }
    let resp = work.await;
    let status = *resp.status();
    let kept = if status < 500 && resp.body().len() <= MAX_KEPT_BYTES {
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
    Ok(resp)
}

/// The header's value, if it is 1 to [`MAX_KEY_CHARS`] printable ASCII
/// characters.
fn valid_key(key: &[u8]) -> Result<&str, ApiError> {
    match std::str::from_utf8(key) {
        Ok(k)
            if (1..=MAX_KEY_CHARS).contains(&k.len())
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(k)
        }
        _ => Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1-{MAX_KEY_CHARS} printable ASCII characters"
        ))),
    }
}

/// What makes two requests with one key the same request: route and body.
fn fingerprint(path: &str, body: &[u8]) -> String {
    hex(&format!("{path}\n{}", String::from_utf8_lossy(body)), 16)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii() {
        assert_eq!(valid_key(b"order-42").unwrap(), "order-42");
        assert!(valid_key("x".repeat(255).as_bytes()).is_ok());
        for bad in [&b""[..], b"a b", b"caf\xc3\xa9", &[b'x'; 256]] {
            let e = valid_key(bad).unwrap_err();
            assert_eq!(
                (e.status, e.message.as_str()),
                (
                    400,
                    "Idempotency-Key must be 1-255 printable ASCII characters"
                )
            );
        }
    }

    #[test]
    fn the_fingerprint_is_route_and_body() {
        let a = fingerprint("/process", br#"{"prompt":"a"}"#);
        assert_eq!(a.len(), 32);
        assert_eq!(a, fingerprint("/process", br#"{"prompt":"a"}"#));
        assert_ne!(a, fingerprint("/process", br#"{"prompt":"b"}"#));
        assert_ne!(a, fingerprint("/process/batch", br#"{"prompt":"a"}"#));
    }

    #[test]
    fn saved_answers_keep_their_stored_form() {
        let running = Saved {
            fingerprint: "f".into(),
            status: None,
            body: None,
        };
        assert_eq!(
            serde_json::to_string(&running).unwrap(),
            r#"{"fingerprint":"f"}"#
        );
        let done = Saved {
            fingerprint: "f".into(),
            status: Some(202),
            body: Some("{}".into()),
        };
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"fingerprint":"f","status":202,"body":"{}"}"#
        );
    }
}
