//! The cache side of a prompt: the exact tier, then the semantic tier
//! (through cache-lookup and embed), the vector kept for the cache fill,
//! and coalescing with a running task for the same prompt.

use aies_contract::keys::{guard_refused_field, vector_key, DB_COORDINATION, DB_TASKS};
use aies_contract::{
    CacheHit, EmbedRequest, EmbedResponse, LookupRequest, LookupResponse, ProcessRequest,
    StashedVector, TaskStatus,
};
use aies_guest::{arg, call, count, execute, inflight_key, redis, stage_url, text, TaskRecord};
use anyhow::Result;
use spin_sdk::redis::RedisParameter;

/// What the cache said about a prompt.
pub enum Lookup {
    Hit(CacheHit),
    /// A miss, with the prompt's vector when the semantic tier was asked.
    Miss(Option<StashedVector>),
}

/// How long a missed prompt's vector waits for its cache fill.
const VECTOR_TTL_SECS: i64 = 3600;

pub fn stash_vector(task_id: &str, v: &StashedVector) -> Result<()> {
    let args = [
        arg(vector_key(task_id)),
        arg(serde_json::to_vec(v)?),
        arg("EX"),
        RedisParameter::Int64(VECTOR_TTL_SECS),
    ];
    execute(&redis(DB_TASKS)?, "SET", &args)?;
    Ok(())
}

/// The exact tier first (no embedding), then the semantic tier.
pub async fn cached(body: &ProcessRequest, tenant: &str, scope: &str) -> Result<Lookup> {
    let ask = |vector, model| LookupRequest {
        tenant: tenant.to_string(),
        prompt: body.prompt.clone(),
        vector,
        model,
        scope: scope.to_string(),
        threshold: body.cache_threshold,
        judge: body.cache_judge,
    };
    let lookup = stage_url("cache-lookup", "/lookup");
    let exact: LookupResponse = call(&lookup, &ask(None, None)).await?;
    if let Some(hit) = exact.hit {
        return Ok(Lookup::Hit(hit));
    }
    let embedded: EmbedResponse = call(
        &stage_url("embed", "/embed"),
        &EmbedRequest {
            texts: vec![body.prompt.clone()],
        },
    )
    .await?;
    let vector = embedded.vectors.into_iter().next().unwrap_or_default();
    let model = embedded.model;
    let found: LookupResponse =
        call(&lookup, &ask(Some(vector.clone()), Some(model.clone()))).await?;
    for why in &found.refused {
        count(&guard_refused_field(why));
    }
    Ok(match found.hit {
        Some(hit) => Lookup::Hit(hit),
        None => Lookup::Miss(Some(StashedVector { model, vector })),
    })
}

/// How long a prompt's in-flight marker lasts at most (a task still
/// running after this is no longer joined).
const INFLIGHT_TTL_SECS: i64 = 900;

/// Coalescing: marks this prompt (in its tenant and scope) as being
/// answered by `task_id`, or, if a task that is not final yet already
/// answers it, returns that task to join.
pub fn join_inflight(
    task_id: &str,
    prompt: &str,
    tenant: &str,
    scope: &str,
) -> Result<Option<(String, TaskStatus)>> {
    const SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[3] then return current end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false"#;
    let key = inflight_key(tenant, scope, prompt);
    let coordination = redis(DB_COORDINATION)?;
    let mark = |stale: &str| -> Result<Option<String>> {
        let args = [
            arg(SCRIPT),
            RedisParameter::Int64(1),
            arg(&key),
            arg(task_id),
            RedisParameter::Int64(INFLIGHT_TTL_SECS),
            arg(stale),
        ];
        Ok(execute(&coordination, "EVAL", &args)?
            .first()
            .and_then(text))
    };
    let Some(running) = mark("")? else {
        return Ok(None);
    };
    // A marker is set just before its task is recorded: no record yet is a
    // task being made now.
    let status = match TaskRecord::read(&redis(DB_TASKS)?, &running)?.task(&running) {
        None => TaskStatus::Pending,
        Some(task) if !task.status.is_final() => task.status,
        // Left behind by a task that ended without clearing it: take its
        // place (unless another request just did).
        Some(_) => {
            mark(&running)?;
            return Ok(None);
        }
    };
    Ok(Some((running, status)))
}
