//! Inserting: an entry, its exact-tier pointer and its place in the
//! eviction order, in one script.

use crate::index::{create_index, index_dimension};
use crate::query::blob;
use crate::settings::{check, settings};
use aies_contract::keys::{cache_entry_key, exact_key, CACHE_LRU_KEY, DB_CACHE};
use aies_contract::{valid_scope, InsertRequest};
use aies_guest::{arg, count_by, exact_id, execute, now_ms, redis, var_parsed};
use anyhow::{bail, Result};
use spin_sdk::redis::{RedisParameter, RedisResult};

/// Writes an entry and its exact-tier pointer, marks its use, and evicts
/// the least recently used entries beyond `cache_max_entries`, in one
/// script. The TTL is not sliding: a hit never renews it.
pub fn insert(req: InsertRequest) -> Result<()> {
    const SCRIPT: &str = r#"
local ttl, now, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'exact', KEYS[2], unpack(ARGV, 4))
redis.call('SET', KEYS[2], KEYS[1])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  -- Unused for longer than the TTL: expired already.
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl * 1000)
end
redis.call('ZADD', KEYS[3], now, KEYS[1])
local evicted = 0
local over = redis.call('ZCARD', KEYS[3]) - max
if max > 0 and over > 0 then
  local victims = redis.call('ZPOPMIN', KEYS[3], over)
  for i = 1, #victims, 2 do
    local victim = victims[i]
    local pointer = redis.call('HGET', victim, 'exact')
    if pointer and redis.call('GET', pointer) == victim then
      redis.call('DEL', pointer)
    end
    evicted = evicted + redis.call('DEL', victim)
  end
end
return evicted"#;
    let s = settings(&req.model, None)?;
    check(&req.tenant, &req.vector, &s)?;
    if !valid_scope(&req.scope) {
        bail!("invalid scope {:?}", req.scope);
    }
    let conn = redis(DB_CACHE)?;
    // The index of a model is made on its first lookup; make sure of it
    // here too, so entries inserted first are indexed.
    if index_dimension(&conn, &s.index).is_none() {
        create_index(&conn, &s)?;
    }
    let id = exact_id(&req.tenant, &req.scope, &req.prompt);
    let key = cache_entry_key(&req.model, &id);
    let pointer = exact_key(&id);
    let ttl: i64 = var_parsed("cache_ttl_seconds")?;
    let max: i64 = var_parsed("cache_max_entries")?;
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(3),
        arg(&key),
        arg(&pointer),
        arg(CACHE_LRU_KEY),
        arg(ttl.to_string()),
        arg(now_ms().to_string()),
        arg(max.to_string()),
        arg("tenant"),
        arg(&req.tenant),
        arg("scope"),
        arg(&req.scope),
        arg("prompt"),
        arg(&req.prompt),
        arg("result"),
        arg(&req.result),
        arg("task_id"),
        arg(&req.task_id),
        arg("vector"),
        arg(blob(&req.vector)),
    ];
    let reply = execute(&conn, "EVAL", &args)?;
    if let Some(RedisResult::Int64(evicted @ 1..)) = reply.first() {
        count_by("cache_evicted", *evicted);
    }
    Ok(())
}
