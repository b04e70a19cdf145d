//! Inserting: an entry, its exact-tier pointer and its place in the
//! eviction order, in one script.

use crate::index::{create_index, index_dimension};
use crate::query::blob;
use crate::settings::{check, settings};
use aies_contract::keys::{
    cache_entry_key, exact_key, tenant_lru_key, CACHE_LRU_KEY, DB_CACHE, TENANT_LRU_PREFIX,
};
use aies_contract::{valid_scope, InsertRequest, JudgeLevel};
use aies_guest::{arg, count_by, exact_id, execute, now_ms, redis, var_parsed};
use anyhow::{bail, Result};
use spin_sdk::redis::{RedisParameter, RedisResult};

/// Writes an entry and its exact-tier pointer, marks its use, and evicts
/// least recently used entries, in one script: the tenant's own beyond
/// `cache_max_entries_per_tenant`, then, beyond `cache_max_entries`, the
/// tenant's own first (a tenant that fills the cache evicts its own entries,
/// not another's), others' only when it has none left. The TTL is not
/// sliding: a hit never renews it.
pub fn insert(req: InsertRequest) -> Result<()> {
    const SCRIPT: &str = r#"
local ttl, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local max, quota = tonumber(ARGV[3]), tonumber(ARGV[4])
local entry, all, own = KEYS[1], KEYS[3], KEYS[4]
redis.call('HSET', entry, 'exact', KEYS[2], unpack(ARGV, 6))
redis.call('SET', KEYS[2], entry)
if ttl > 0 then
  redis.call('EXPIRE', entry, ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  -- Unused for longer than the TTL: expired already.
  redis.call('ZREMRANGEBYSCORE', all, '-inf', now - ttl * 1000)
  redis.call('ZREMRANGEBYSCORE', own, '-inf', now - ttl * 1000)
end
redis.call('ZADD', all, now, entry)
redis.call('ZADD', own, now, entry)
local evicted = 0
local function evict(victim)
  local tenant = redis.call('HGET', victim, 'tenant')
  local pointer = redis.call('HGET', victim, 'exact')
  if pointer and redis.call('GET', pointer) == victim then
    redis.call('DEL', pointer)
  end
  redis.call('ZREM', all, victim)
  redis.call('ZREM', own, victim)
  if tenant then redis.call('ZREM', ARGV[5] .. tenant, victim) end
  evicted = evicted + redis.call('DEL', victim)
end
local over = redis.call('ZCARD', own) - quota
if quota > 0 and over > 0 then
  for _, victim in ipairs(redis.call('ZRANGE', own, 0, over)) do
    if victim ~= entry and over > 0 then evict(victim); over = over - 1 end
  end
end
over = redis.call('ZCARD', all) - max
if max > 0 and over > 0 then
  for _, victim in ipairs(redis.call('ZRANGE', own, 0, over)) do
    if victim ~= entry and over > 0 then evict(victim); over = over - 1 end
  end
  if over > 0 then
    for _, victim in ipairs(redis.call('ZRANGE', all, 0, over)) do
      if victim ~= entry and over > 0 then evict(victim); over = over - 1 end
    end
  end
end
return evicted"#;
    let s = settings(&req.model, None, Some(JudgeLevel::Default))?;
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
    let quota: i64 = var_parsed("cache_max_entries_per_tenant")?;
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(4),
        arg(&key),
        arg(&pointer),
        arg(CACHE_LRU_KEY),
        arg(tenant_lru_key(&req.tenant)),
        arg(ttl.to_string()),
        arg(now_ms().to_string()),
        arg(max.to_string()),
        arg(quota.to_string()),
        arg(TENANT_LRU_PREFIX),
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
