//! Requests that wait (a long poll, an event stream, a chat completion
//! waiting for its task) hold a host request slot and a wasm instance for up
//! to 30, 60 or 100 s. They are counted apart from the quick requests: at
//! most `max_waits` at once in all and `max_waits_per_tenant` per tenant;
//! past either, 429 with `Retry-After`, so waiting clients can never take
//! every slot from the quick routes, nor one tenant from the others.
//!
//! Counted in Redis (DB 1, [`WAITS_KEY`] and [`tenant_waits_key`]) as sorted
//! sets of wait ids by deadline, so that a wait whose instance was stopped
//! before it could say so expires on its own.

use aies_contract::keys::{tenant_waits_key, DB_COORDINATION, WAITS_KEY};
use aies_guest::{arg, execute, redis, var_parsed, ApiError};
use anyhow::{bail, Result};
use spin_sdk::redis::{RedisParameter, RedisResult};
use std::time::Duration;

/// What a refused client is told to wait before asking again, in seconds.
const RETRY_AFTER_SECS: u64 = 2;
/// A wait's entry outlives its deadline by this much (an instance may run a
/// little past its own limit).
const GRACE: Duration = Duration::from_secs(5);

/// A waiting request's place; given back when dropped.
pub struct Wait {
    id: String,
    tenant_key: String,
}

/// Takes a place for a request of `tenant` that may wait up to `longest`,
/// or refuses with 429 when all places, or all the tenant's, are taken.
pub fn begin(tenant: &str, longest: Duration) -> Result<Wait, ApiError> {
    let limit = |name| var_parsed::<i64>(name).map_err(|e| ApiError::internal(&e));
    let (all, per_tenant) = (limit("max_waits")?, limit("max_waits_per_tenant")?);
    let wait = Wait {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_key: tenant_waits_key(tenant),
    };
    match take(&wait, all, per_tenant, longest + GRACE) {
        Ok(Taken::Yes) => Ok(wait),
        Ok(Taken::AllBusy) => Err(ApiError::too_many(
            format!("too many waiting requests ({all} at once); ask again later"),
            RETRY_AFTER_SECS,
        )),
        Ok(Taken::TenantBusy) => Err(ApiError::too_many(
            format!(
                "too many waiting requests for this tenant ({per_tenant} at once); ask again later"
            ),
            RETRY_AFTER_SECS,
        )),
        Err(e) => Err(ApiError::unavailable(&e)),
    }
}

enum Taken {
    Yes,
    AllBusy,
    TenantBusy,
}

/// One script: drops expired places, checks both limits, takes a place in
/// both sets (whose keys expire once their last deadline has passed).
fn take(wait: &Wait, all: i64, per_tenant: i64, ttl: Duration) -> Result<Taken> {
    const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[4])
for _, k in ipairs(KEYS) do redis.call('ZREMRANGEBYSCORE', k, '-inf', now) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
for _, k in ipairs(KEYS) do
  redis.call('ZADD', k, now + ttl, ARGV[1])
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
return 0"#;
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(2),
        arg(WAITS_KEY),
        arg(&wait.tenant_key),
        arg(&wait.id),
        RedisParameter::Int64(all),
        RedisParameter::Int64(per_tenant),
        RedisParameter::Int64(ttl.as_millis() as i64),
    ];
    match execute(&redis(DB_COORDINATION)?, "EVAL", &args)?.first() {
        Some(RedisResult::Int64(0)) => Ok(Taken::Yes),
        Some(RedisResult::Int64(1)) => Ok(Taken::AllBusy),
        Some(RedisResult::Int64(2)) => Ok(Taken::TenantBusy),
        other => bail!("the wait script answered {other:?}"),
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        let given_back = redis(DB_COORDINATION).and_then(|conn| {
            for key in [WAITS_KEY, self.tenant_key.as_str()] {
                execute(&conn, "ZREM", &[arg(key), arg(&self.id)])?;
            }
            Ok(())
        });
        if let Err(e) = given_back {
            // It expires at its deadline instead.
            aies_guest::log!("waiting request's place not given back: {e:#}");
        }
    }
}
