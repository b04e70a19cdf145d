//! Looking up: the exact tier (a script that follows the prompt's pointer
//! or alias) and the semantic tier (a KNN query, then the guard).

use crate::index::{check_dimension, create_index};
use crate::judge;
use crate::query::{blob, is_missing_index, knn_query, parse_hits, RETURNED};
use crate::settings::{check, settings, Settings};
use aies_cache_guard::{normalize, verify, Analysis, Policy};
use aies_contract::keys::{alias_key, exact_key, tenant_lru_key, CACHE_LRU_KEY, DB_CACHE};
use aies_contract::{
    valid_scope, valid_tenant, CacheHit, CacheTier, LookupRequest, LookupResponse,
    MAX_JUDGE_CANDIDATES,
};
use aies_guest::{arg, exact_id, execute, now_ms, redis, text, var_parsed};
use anyhow::{bail, Result};
use spin_sdk::redis::{Connection, RedisParameter};

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
    let s = settings(&model, req.threshold, req.judge)?;
    check(&req.tenant, &vector, &s)?;
    let query = knn_query(&req.tenant, &req.scope);
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
    hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    let (hit, refused) = choose(&req.prompt, &model, hits, &s);
    if let Some(hit) = &hit {
        remember(&conn, &req, &model, &s, hit)?;
    }
    Ok(LookupResponse { hit, refused })
}

/// The first candidate (best first) that asks the same thing, and why the
/// others were refused: the cheap vetoes (language, numbers, units,
/// dates), then the judge; where the judge cannot be asked, the
/// whole guard at the stricter fallback similarity.
fn choose(
    prompt: &str,
    model: &str,
    hits: Vec<CacheHit>,
    s: &Settings,
) -> (Option<CacheHit>, Vec<String>) {
    let asked = Analysis::new(prompt);
    let vetoes = Policy::vetoes_only();
    let mut refused = Vec::new();
    let mut candidates = Vec::new();
    for hit in hits {
        let cached = Analysis::new(&hit.prompt);
        match verify(&asked, &cached, hit.similarity, &vetoes) {
            Ok(_) => candidates.push((hit, cached)),
            Err(why) => refused.push(why.as_str().to_string()),
        }
    }
    if candidates.is_empty() {
        return (None, refused);
    }
    candidates.truncate(MAX_JUDGE_CANDIDATES);
    let hits: Vec<CacheHit> = candidates.iter().map(|(h, _)| h.clone()).collect();
    match judge::ask(model, prompt, &hits) {
        Ok(reply) => {
            let need = reply.thresholds.at(s.level);
            let similarity = s.chosen.unwrap_or(reply.candidate_similarity);
            for ((mut hit, _), score) in candidates.into_iter().zip(reply.scores) {
                if hit.similarity < similarity {
                    continue;
                }
                if score >= need {
                    hit.judge_score = Some(score);
                    return (Some(hit), refused);
                }
                refused.push("judge".to_string());
            }
            (None, refused)
        }
        Err(e) => {
            eprintln!(
                "cache lookup without the judge (the guard at its fallback similarity): {e:#}"
            );
            for (hit, cached) in candidates {
                if hit.similarity < s.fallback_threshold {
                    continue;
                }
                match verify(&asked, &cached, hit.similarity, &s.fallback_policy) {
                    Ok(_) => return (Some(hit), refused),
                    Err(why) => refused.push(why.as_str().to_string()),
                }
            }
            (None, refused)
        }
    }
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
    'threshold', 'accepted', 'score')
  entry = alias[1]
  if not entry then return {} end
end
local found = redis.call('HMGET', entry, 'prompt', 'result', 'task_id')
if not found[1] then return {} end
-- An alias names one answer, not a later one made for the entry's prompt.
if alias[2] and alias[2] ~= found[3] then return {} end
redis.call('ZADD', KEYS[2], 'XX', ARGV[1], entry)
redis.call('ZADD', KEYS[4], 'XX', ARGV[1], entry)
return {entry, found[1], found[2], found[3], alias[3], alias[4], alias[5], alias[6], alias[7]}"#;
    let id = exact_id(&req.tenant, &req.scope, &req.prompt);
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(4),
        arg(exact_key(&id)),
        arg(CACHE_LRU_KEY),
        arg(alias_key(&id)),
        arg(tenant_lru_key(&req.tenant)),
        arg(now_ms().to_string()),
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
        judge_score: None,
    };
    match values.as_slice() {
        // The key is a hash of the folded prompt: make sure it is this one.
        [Some(entry), Some(cached), Some(result), Some(task_id)] => Ok((normalize(cached)
            == normalize(&req.prompt))
        .then(|| hit(CacheTier::Exact, entry, cached, result, task_id))),
        // An alias (its key is the hash of this prompt) serves only under
        // the thresholds that accepted it.
        [Some(entry), Some(cached), Some(result), Some(task_id), Some(similarity), Some(model), Some(threshold), Some(accepted), Some(score)] =>
        {
            let s = settings(model, req.threshold, req.judge)?;
            let same = |stored: &str, now: f32| stored.parse::<f32>().is_ok_and(|v| v == now);
            let Ok(similarity) = similarity.parse::<f32>() else {
                return Ok(None);
            };
            if !same(threshold, s.threshold)
                || (*accepted != s.accepted_by(true) && *accepted != s.accepted_by(false))
            {
                return Ok(None);
            }
            Ok(Some(CacheHit {
                similarity,
                judge_score: score.parse().ok(),
                ..hit(CacheTier::Semantic, entry, cached, result, task_id)
            }))
        }
        _ => Ok(None),
    }
}

/// Marks a semantic hit's entry as used now (what eviction goes by) and
/// remembers it for this prompt: an alias naming the entry, its answer,
/// the similarity, what accepted it and the judge's score, for `cache_alias_ttl_seconds` but
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
redis.call('ZADD', KEYS[4], 'XX', ARGV[1], KEYS[2])
local ms = tonumber(ARGV[2])
if ms <= 0 then return 0 end
local left = redis.call('PTTL', KEYS[2])
if left > 0 and left < ms then ms = left end
redis.call('HSET', KEYS[3], 'entry', KEYS[2], 'task_id', ARGV[3], 'similarity', ARGV[4],
  'model', ARGV[5], 'threshold', ARGV[6], 'accepted', ARGV[7], 'score', ARGV[8])
redis.call('PEXPIRE', KEYS[3], ms)
return 1"#;
    let ttl: i64 = var_parsed("cache_alias_ttl_seconds")?;
    let alias = alias_key(&exact_id(&req.tenant, &req.scope, &req.prompt));
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(4),
        arg(CACHE_LRU_KEY),
        arg(&hit.entry),
        arg(alias),
        arg(tenant_lru_key(&req.tenant)),
        arg(now_ms().to_string()),
        arg(ttl.saturating_mul(1000).to_string()),
        arg(&hit.task_id),
        arg(hit.similarity.to_string()),
        arg(model),
        arg(s.threshold.to_string()),
        arg(s.accepted_by(hit.judge_score.is_some())),
        arg(hit.judge_score.map_or(String::new(), |x| x.to_string())),
    ];
    execute(conn, "EVAL", &args)?;
    Ok(())
}
