//! The semantic cache in Redis Stack (DB 0), as a library: the
//! `cache-lookup` component serves it over HTTP to the other stages, and
//! `cache-fill` (on the Redis trigger, where Spin allows no service
//! chaining) inserts through it directly.
//!
//! - [`lookup`] without a vector is the **exact tier**: the scope's entry
//!   for this prompt up to case, accents, punctuation and spacing (no
//!   embedding needed). With a vector and the embedding model that made it,
//!   the **semantic tier**: the tenant's nearest entries in that model's
//!   index with cosine similarity >= `similarity_threshold`, best first, the
//!   first that the guard ([`aies_cache_guard`]) finds to ask the same thing.
//!   Refused candidates are reported with their reason. Creates the model's
//!   HNSW cosine index (`<cache_index>_<model>`, dimension
//!   `vector_dimension`) when it does not exist yet.
//!   A semantic hit is remembered for the prompt that asked it (an
//!   **alias**, `cache_alias_ttl_seconds`, at most the entry's own TTL):
//!   the same prompt asked again is answered by the exact tier's script,
//!   with no embedding and no KNN, for as long as the entry still holds
//!   that very answer and the thresholds that accepted it are unchanged.
//! - [`insert`]: one hash per (model, tenant, scope, folded prompt), and the
//!   exact tier's pointer to it; inserting again overwrites both.
//!
//! Every entry belongs to a scope (`aies_guest::scope_id`: the LLM model and
//! generation parameters), filtered inside the KNN query like the tenant.
//! Entries expire on a fixed TTL; beyond `cache_max_entries` the least
//! recently used are evicted. Each embedding model has its own index over
//! its own key prefix, so vectors of two models never meet; its thresholds
//! default to the values measured for it (`auto`). Tenants are a TAG filter
//! inside the KNN query itself, so one tenant's entries are never
//! candidates for another's.
//!
//! Variables read: `vector_dimension`, `similarity_threshold`,
//! `reworded_similarity`, `cache_index`, `cache_ttl_seconds`,
//! `cache_max_entries`, `cache_alias_ttl_seconds`, `redis_host`,
//! `redis_port`.

use aies_cache_guard::{normalize, verify, Analysis, Policy, Thresholds};
use aies_contract::{
    valid_tenant, CacheHit, CacheTier, InsertRequest, LookupRequest, LookupResponse,
};
use aies_guest::{arg, count_by, exact_id, execute, redis, text, var, var_parsed, DB_CACHE};
use anyhow::{bail, Result};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

/// Entries: `aies:cache:<model>:<tenant>:<scope>:<prompt hash>`, a hash each.
pub const KEY_PREFIX: &str = "aies:cache:";
/// The exact tier: `aies:exact:<tenant>:<scope>:<prompt hash>` names the
/// entry.
const EXACT_PREFIX: &str = "aies:exact:";
/// Aliases: `aies:alias:<tenant>:<scope>:<prompt hash>` names the entry a
/// semantic lookup of that prompt accepted, and what accepted it.
const ALIAS_PREFIX: &str = "aies:alias:";
/// Every entry by its last use (ms): what `cache_max_entries` evicts by.
pub const LRU_KEY: &str = "aies:cache_lru";
/// Nearest entries examined per lookup: the best one above the threshold
/// that passes the guard answers.
const CANDIDATES: usize = 5;

/// One embedding model's part of the cache: its own index over its own
/// key prefix, so vectors of two models never meet, and its thresholds.
struct Settings {
    index: String,
    prefix: String,
    dimension: usize,
    threshold: f32,
    policy: Policy,
}

/// `requested`: this request's `cache_threshold`, raised to the model's
/// floor if it is below it.
fn settings(model: &str, requested: Option<f32>) -> Result<Settings> {
    let defaults = Thresholds::for_model(model);
    // A number, or "auto" for the model's default.
    let unit = |name: &str, default: f32| -> Result<f32> {
        if var(name)?.trim() == "auto" {
            return Ok(default);
        }
        let value: f32 = var_parsed(name)?;
        if !(0.0..=1.0).contains(&value) {
            bail!("{name} must be between 0 and 1 (or auto), got {value}");
        }
        Ok(value)
    };
    let slug: String = model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut threshold = unit("similarity_threshold", defaults.similarity)?;
    let mut reworded = unit("reworded_similarity", defaults.reworded)?;
    if let Some(asked) = requested {
        threshold = asked.clamp(defaults.floor, 1.0);
        reworded = reworded.max(threshold);
    }
    Ok(Settings {
        index: format!("{}_{slug}", var("cache_index")?),
        prefix: format!("{KEY_PREFIX}{slug}:"),
        dimension: var_parsed("vector_dimension")?,
        threshold,
        policy: Policy {
            reworded_similarity: reworded,
            ..Policy::default()
        },
    })
}

fn check(tenant: &str, vector: &[f32], s: &Settings) -> Result<()> {
    if !valid_tenant(tenant) {
        bail!("invalid tenant {tenant:?}");
    }
    if vector.len() != s.dimension {
        bail!(
            "vector has dimension {}, but VECTOR_DIMENSION (variable vector_dimension) is {}",
            vector.len(),
            s.dimension
        );
    }
    Ok(())
}

fn blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|f| f.to_le_bytes()).collect()
}

pub fn lookup(mut req: LookupRequest) -> Result<LookupResponse> {
    if !valid_tenant(&req.tenant) {
        bail!("invalid tenant {:?}", req.tenant);
    }
    if !valid_scope(&req.scope) {
        bail!("invalid scope {:?}", req.scope);
    }
    let conn = redis(DB_CACHE)?;
    let (Some(vector), Some(model)) = (req.vector.take(), req.model.take()) else {
        return Ok(LookupResponse {
            hit: exact(&conn, &req)?,
            refused: Vec::new(),
        });
    };
    let s = settings(&model, req.threshold)?;
    check(&req.tenant, &vector, &s)?;
    // Tenant and scope filter the KNN itself: other entries are never
    // candidates.
    let query = format!(
        "(@tenant:{{{}}} @scope:{{{}}})=>[KNN {CANDIDATES} @vector $q AS distance]",
        escape_tag(&req.tenant),
        escape_tag(&req.scope)
    );
    let args = [
        arg(&s.index),
        arg(&query),
        arg("PARAMS"),
        arg("2"),
        arg("q"),
        arg(blob(&vector)),
        arg("RETURN"),
        arg(RETURNED.len().to_string()),
        arg(RETURNED[0]),
        arg(RETURNED[1]),
        arg(RETURNED[2]),
        arg(RETURNED[3]),
        arg(RETURNED[4]),
        arg("DIALECT"),
        arg("2"),
    ];
    let reply = match execute(&conn, "FT.SEARCH", &args) {
        Ok(reply) => reply,
        Err(e) if is_missing_index(&e) => {
            create_index(&conn, &s)?;
            return Ok(LookupResponse {
                hit: None,
                refused: Vec::new(),
            });
        }
        Err(e) => {
            check_dimension(&conn, &s)?;
            return Err(e);
        }
    };
    let mut hits = parse_hits(&reply)?;
    if hits.is_empty() {
        // RediSearch answers a query of the wrong dimension with nothing at
        // all (no error) while the index is empty or small: a miss is when a
        // dimension mismatch must be ruled out, or it would never end.
        check_dimension(&conn, &s)?;
    }
    hits.retain(|h| h.similarity >= s.threshold);
    hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    let asked = Analysis::new(&req.prompt);
    let mut refused = Vec::new();
    for hit in hits {
        match verify(
            &asked,
            &Analysis::new(&hit.prompt),
            hit.similarity,
            &s.policy,
        ) {
            Ok(_) => {
                remember(&conn, &req, &model, &s, &hit)?;
                return Ok(LookupResponse {
                    hit: Some(hit),
                    refused,
                });
            }
            Err(why) => refused.push(why.as_str().to_string()),
        }
    }
    Ok(LookupResponse { hit: None, refused })
}

/// The exact tier: the entry for this very prompt in its tenant and scope,
/// or the one a semantic lookup of it accepted (its alias), in one round
/// trip (a script follows the pointer and marks the use).
fn exact(conn: &Connection, req: &LookupRequest) -> Result<Option<CacheHit>> {
    const SCRIPT: &str = r#"
local entry = redis.call('GET', KEYS[1])
local alias = {}
if not entry then
  alias = redis.call('HMGET', KEYS[3], 'entry', 'task_id', 'similarity', 'model',
    'threshold', 'reworded')
  entry = alias[1]
  if not entry then return {} end
end
local found = redis.call('HMGET', entry, 'prompt', 'result', 'task_id')
if not found[1] then return {} end
-- An alias names one answer, not a later one made for the entry's prompt.
if alias[2] and alias[2] ~= found[3] then return {} end
redis.call('ZADD', KEYS[2], 'XX', ARGV[1], entry)
return {entry, found[1], found[2], found[3], alias[3], alias[4], alias[5], alias[6]}"#;
    let id = exact_id(&req.tenant, &req.scope, &req.prompt);
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(3),
        arg(format!("{EXACT_PREFIX}{id}")),
        arg(LRU_KEY),
        arg(format!("{ALIAS_PREFIX}{id}")),
        arg(now_millis().to_string()),
    ];
    let reply = execute(conn, "EVAL", &args)?;
    let values: Vec<Option<String>> = reply.iter().map(text).collect();
    let hit = |tier, entry: &String, prompt: &String, result: &String, task_id: &String| CacheHit {
        tier,
        prompt: prompt.clone(),
        result: result.clone(),
        similarity: 1.0,
        task_id: task_id.clone(),
        entry: entry.clone(),
        scope: req.scope.clone(),
    };
    match values.as_slice() {
        // The key is a hash of the folded prompt: make sure it is this one.
        [Some(entry), Some(cached), Some(result), Some(task_id)] => Ok((normalize(cached)
            == normalize(&req.prompt))
        .then(|| hit(CacheTier::Exact, entry, cached, result, task_id))),
        // An alias (its key is the hash of this prompt) serves only under
        // the thresholds that accepted it.
        [Some(entry), Some(cached), Some(result), Some(task_id), Some(similarity), Some(model), Some(threshold), Some(reworded)] =>
        {
            let s = settings(model, req.threshold)?;
            let same = |stored: &str, now: f32| stored.parse::<f32>().is_ok_and(|v| v == now);
            let Ok(similarity) = similarity.parse::<f32>() else {
                return Ok(None);
            };
            if !same(threshold, s.threshold) || !same(reworded, s.policy.reworded_similarity) {
                return Ok(None);
            }
            Ok(Some(CacheHit {
                similarity,
                ..hit(CacheTier::Semantic, entry, cached, result, task_id)
            }))
        }
        _ => Ok(None),
    }
}

/// Marks a semantic hit's entry as used now (what eviction goes by) and
/// remembers it for this prompt: an alias naming the entry, its answer,
/// the similarity and what accepted it, for `cache_alias_ttl_seconds` but
/// never longer than the entry lives (0: no aliases).
fn remember(
    conn: &Connection,
    req: &LookupRequest,
    model: &str,
    s: &Settings,
    hit: &CacheHit,
) -> Result<()> {
    const SCRIPT: &str = r#"
redis.call('ZADD', KEYS[1], 'XX', ARGV[1], KEYS[2])
local ms = tonumber(ARGV[2])
if ms <= 0 then return 0 end
local left = redis.call('PTTL', KEYS[2])
if left > 0 and left < ms then ms = left end
redis.call('HSET', KEYS[3], 'entry', KEYS[2], 'task_id', ARGV[3], 'similarity', ARGV[4],
  'model', ARGV[5], 'threshold', ARGV[6], 'reworded', ARGV[7])
redis.call('PEXPIRE', KEYS[3], ms)
return 1"#;
    let ttl: i64 = var_parsed("cache_alias_ttl_seconds")?;
    let alias = format!(
        "{ALIAS_PREFIX}{}",
        exact_id(&req.tenant, &req.scope, &req.prompt)
    );
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(3),
        arg(LRU_KEY),
        arg(&hit.entry),
        arg(alias),
        arg(now_millis().to_string()),
        arg(ttl.saturating_mul(1000).to_string()),
        arg(&hit.task_id),
        arg(hit.similarity.to_string()),
        arg(model),
        arg(s.threshold.to_string()),
        arg(s.policy.reworded_similarity.to_string()),
    ];
    execute(conn, "EVAL", &args)?;
    Ok(())
}

fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// A scope id is hex (`aies_guest::scope_id`): safe in keys, patterns and
/// TAG queries.
pub fn valid_scope(scope: &str) -> bool {
    !scope.is_empty() && scope.len() <= 64 && scope.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Escapes a TAG value for a query: RediSearch reads `-` and other
/// punctuation as syntax unless backslashed.
pub fn escape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        if !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The fields each search result returns, in this order.
const RETURNED: [&str; 5] = ["prompt", "result", "task_id", "scope", "distance"];

/// Reads the documents of a flattened `FT.SEARCH` reply:
/// `[total, key, field, value, ..., key, field, value, ...]`, every
/// document carrying all the `RETURNED` fields.
fn parse_hits(reply: &[RedisResult]) -> Result<Vec<CacheHit>> {
    match reply.first() {
        Some(RedisResult::Int64(_)) => {}
        other => bail!("unexpected FT.SEARCH reply start: {other:?}"),
    }
    let width = 1 + 2 * RETURNED.len();
    let mut hits = Vec::new();
    for doc in reply[1..].chunks(width) {
        // Fields come back by name, in no promised order.
        let mut values: [Option<String>; 5] = Default::default();
        for pair in doc[1..].chunks(2) {
            let (Some(field), Some(value)) = (text(&pair[0]), pair.get(1).and_then(text)) else {
                bail!("FT.SEARCH returned an incomplete document");
            };
            if let Some(i) = RETURNED.iter().position(|f| *f == field) {
                values[i] = Some(value);
            }
        }
        let [Some(prompt), Some(result), Some(task_id), Some(scope), Some(distance)] = values
        else {
            bail!("FT.SEARCH returned a document without all of {RETURNED:?}");
        };
        let Some(entry) = text(&doc[0]) else {
            bail!("FT.SEARCH returned a document without its key");
        };
        hits.push(CacheHit {
            tier: CacheTier::Semantic,
            prompt,
            result,
            task_id,
            entry,
            scope,
            // RediSearch's COSINE metric reports 1 - cosine similarity.
            similarity: 1.0 - distance.parse::<f32>()?,
        });
    }
    Ok(hits)
}

fn is_missing_index(e: &anyhow::Error) -> bool {
    let msg = e.to_string().to_lowercase();
    msg.contains("no such index") || msg.contains("unknown index")
}

fn create_index(conn: &Connection, s: &Settings) -> Result<()> {
    let args = [
        arg(&s.index),
        arg("ON"),
        arg("HASH"),
        arg("PREFIX"),
        arg("1"),
        arg(&s.prefix),
        arg("SCHEMA"),
        arg("tenant"),
        arg("TAG"),
        arg("scope"),
        arg("TAG"),
        arg("vector"),
        arg("VECTOR"),
        arg("HNSW"),
        arg("6"),
        arg("TYPE"),
        arg("FLOAT32"),
        arg("DIM"),
        RedisParameter::Int64(s.dimension as i64),
        arg("DISTANCE_METRIC"),
        arg("COSINE"),
    ];
    match execute(conn, "FT.CREATE", &args) {
        Ok(_) => Ok(()),
        // Another request created it first.
        Err(e) if e.to_string().to_lowercase().contains("already exists") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Fails with a plain explanation when the index was built for another
/// `VECTOR_DIMENSION` (left by an earlier deployment).
fn check_dimension(conn: &Connection, s: &Settings) -> Result<()> {
    match index_dimension(conn, &s.index) {
        Some(dim) if dim != s.dimension as i64 => bail!(
            "cache index `{}` was created with dimension {dim}, but VECTOR_DIMENSION is {}: \
             drop the index (FT.DROPINDEX {}) or set VECTOR_DIMENSION={dim}",
            s.index,
            s.dimension,
            s.index
        ),
        _ => Ok(()),
    }
}

/// The `dim` of the index's vector field, read from the flattened `FT.INFO`.
fn index_dimension(conn: &Connection, index: &str) -> Option<i64> {
    let info = execute(conn, "FT.INFO", &[arg(index)]).ok()?;
    let at = info
        .iter()
        .position(|v| text(v).as_deref() == Some("dim"))?;
    text(info.get(at + 1)?)?.parse().ok()
}

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
    let key = format!("{}{id}", s.prefix);
    let pointer = format!("{EXACT_PREFIX}{id}");
    let ttl: i64 = var_parsed("cache_ttl_seconds")?;
    let max: i64 = var_parsed("cache_max_entries")?;
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(3),
        arg(&key),
        arg(&pointer),
        arg(LRU_KEY),
        arg(ttl.to_string()),
        arg(now_millis().to_string()),
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
