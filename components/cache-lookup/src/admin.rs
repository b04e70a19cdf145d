//! The cache's admin endpoints, public under `/admin/cache/`, each behind
//! `Authorization: Bearer <admin_token>` (an empty `admin_token`, the
//! default outside `make up`, disables them: 403).
//!
//! - `GET /admin/cache/stats[?tenant=<t>]`: entries per embedding model,
//!   hits by tier, misses, coalesced requests, LLM calls saved, evictions,
//!   guard refusals by reason, the limits.
//! - `POST /admin/cache/invalidate` `{"entry": "<id>"}` (the `cache.entry`
//!   of a hit) or `{"tenant": "<t>", "scope"?: "<scope>"}`: deletes them.
//! - `POST /admin/cache/flush`: deletes every entry.

use aies_contract::keys::{
    cache_index_prefix, guard_refused_field, CACHE_ENTRY_PREFIX, CACHE_LRU_KEY, DB_CACHE,
    METRICS_KEY,
};
use aies_contract::{valid_scope, valid_tenant};
use aies_guest::{
    admin_only, arg, execute, hgetall, json, parse_body, redis, text, var, var_parsed, ApiError,
};
use aies_semantic_cache::escape_tag;
use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json as j, Map, Value};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

pub fn handle(req: &Request) -> Result<Response, ApiError> {
    admin_only(req)?;
    let bad = |e: anyhow::Error| ApiError::bad_request(format!("{e:#}"));
    let result = match (req.method(), req.path()) {
        (Method::Get, "/admin/cache/stats") => {
            stats(query_tenant(req.query()).map_err(bad)?.as_deref())
        }
        (Method::Post, "/admin/cache/invalidate") => {
            let body: Invalidate = parse_body(req)?;
            delete(&body.selection().map_err(bad)?)
        }
        (Method::Post, "/admin/cache/flush") => delete(&Selection::everything()),
        (_, "/admin/cache/stats") => return Err(ApiError::method_not_allowed("GET")),
        (_, "/admin/cache/invalidate" | "/admin/cache/flush") => {
            return Err(ApiError::method_not_allowed("POST"))
        }
        _ => return Err(ApiError::not_found(
            "admin: GET /admin/cache/stats, POST /admin/cache/invalidate, POST /admin/cache/flush",
        )),
    };
    let body = result.map_err(|e| ApiError::unavailable(&e))?;
    Ok(json(200, &body))
}

/// The query string of `stats`: nothing, or `tenant=<t>`.
fn query_tenant(query: &str) -> Result<Option<String>> {
    match query.split_once('=') {
        _ if query.is_empty() => Ok(None),
        Some(("tenant", t)) if valid_tenant(t) => Ok(Some(t.to_string())),
        Some(("tenant", t)) => bail!("invalid tenant {t:?}"),
        _ => bail!("unknown query {query:?}: only tenant=<t>"),
    }
}

fn stats(tenant: Option<&str>) -> Result<Value> {
    let conn = redis(DB_CACHE)?;
    let prefix = cache_index_prefix(&var("cache_index")?);
    let query = match tenant {
        Some(t) => format!("@tenant:{{{}}}", escape_tag(t)),
        None => "*".to_string(),
    };
    let mut by_model = Map::new();
    let mut total = 0;
    for index in execute(&conn, "FT._LIST", &[])?.iter().filter_map(text) {
        let Some(model) = index.strip_prefix(&prefix) else {
            continue;
        };
        let n = count_docs(&conn, &index, &query)?;
        total += n;
        by_model.insert(model.to_string(), j!(n));
    }
    let counters = hgetall(&conn, METRICS_KEY)?;
    let counter = |name: &str| -> i64 {
        counters
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    let refused: Map<String, Value> = aies_cache_guard::Mismatch::ALL
        .iter()
        .map(|m| {
            let why = m.as_str();
            (why.to_string(), j!(counter(&guard_refused_field(why))))
        })
        .collect();
    let (exact, semantic, coalesced) = (
        counter("cache_hits_exact"),
        counter("cache_hits_semantic"),
        counter("cache_coalesced"),
    );
    Ok(j!({
        "tenant": tenant,
        "entries": {"total": total, "by_model": by_model},
        "hits": {"exact": exact, "semantic": semantic},
        "misses": counter("cache_misses"),
        "coalesced": coalesced,
        "llm_calls_saved": exact + semantic + coalesced,
        "evicted": counter("cache_evicted"),
        "guard_refused": refused,
        "max_entries": var_parsed::<i64>("cache_max_entries")?,
        "ttl_seconds": var_parsed::<i64>("cache_ttl_seconds")?,
    }))
}

/// Documents of an index matching a query: `FT.SEARCH .. LIMIT 0 0`
/// answers with the count alone.
fn count_docs(conn: &Connection, index: &str, query: &str) -> Result<i64> {
    let args = [
        arg(index),
        arg(query),
        arg("LIMIT"),
        arg("0"),
        arg("0"),
        arg("DIALECT"),
        arg("2"),
    ];
    match execute(conn, "FT.SEARCH", &args)?.first() {
        Some(RedisResult::Int64(n)) => Ok(*n),
        other => bail!("unexpected FT.SEARCH reply: {other:?}"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Invalidate {
    entry: Option<String>,
    tenant: Option<String>,
    scope: Option<String>,
}

/// Entries to delete: those whose key matches `pattern` (no glob
/// characters but `*`) and whose tenant and scope are these, if given.
struct Selection {
    pattern: String,
    tenant: String,
    scope: String,
}

impl Selection {
    fn everything() -> Self {
        Self {
            pattern: format!("{CACHE_ENTRY_PREFIX}*"),
            tenant: String::new(),
            scope: String::new(),
        }
    }
}

impl Invalidate {
    fn selection(self) -> Result<Selection> {
        let plain = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
        };
        match (self.entry, self.tenant, self.scope) {
            (Some(entry), None, None) => {
                if !entry.starts_with(CACHE_ENTRY_PREFIX) || !plain(&entry) || entry.len() > 256 {
                    bail!("`entry` is not a cache entry id (the `cache.entry` of a hit)");
                }
                Ok(Selection {
                    pattern: entry,
                    tenant: String::new(),
                    scope: String::new(),
                })
            }
            (None, Some(tenant), scope) => {
                if !valid_tenant(&tenant) {
                    bail!("invalid tenant {tenant:?}");
                }
                if let Some(s) = scope.as_deref().filter(|s| !valid_scope(s)) {
                    bail!("invalid scope {s:?} (the `cache.scope` of a hit)");
                }
                Ok(Selection {
                    pattern: format!("{CACHE_ENTRY_PREFIX}*"),
                    tenant,
                    scope: scope.unwrap_or_default(),
                })
            }
            _ => bail!("give either {{\"entry\"}} or {{\"tenant\", \"scope\"?}}"),
        }
    }
}

/// Deletes the selected entries, their exact-tier pointers and their place
/// in the eviction order, in one script (a scan of the cache's keys).
fn delete(sel: &Selection) -> Result<Value> {
    const SCRIPT: &str = r#"
local deleted, cursor = 0, '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    if redis.call('TYPE', key).ok == 'hash' then
      local f = redis.call('HMGET', key, 'tenant', 'scope', 'exact')
      if (ARGV[2] == '' or f[1] == ARGV[2]) and (ARGV[3] == '' or f[2] == ARGV[3]) then
        if f[3] and redis.call('GET', f[3]) == key then
          redis.call('DEL', f[3])
        end
        redis.call('ZREM', KEYS[1], key)
        deleted = deleted + redis.call('DEL', key)
      end
    end
  end
until cursor == '0'
return deleted"#;
    let conn = redis(DB_CACHE)?;
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(1),
        arg(CACHE_LRU_KEY),
        arg(&sel.pattern),
        arg(&sel.tenant),
        arg(&sel.scope),
    ];
    match execute(&conn, "EVAL", &args)?.first() {
        Some(RedisResult::Int64(n)) => Ok(j!({"deleted": n})),
        other => bail!("unexpected reply: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalidate(body: &str) -> Result<Selection> {
        serde_json::from_str::<Invalidate>(body)
            .unwrap()
            .selection()
    }

    #[test]
    fn stats_take_only_a_tenant() {
        assert_eq!(query_tenant("").unwrap(), None);
        assert_eq!(
            query_tenant("tenant=acme").unwrap().as_deref(),
            Some("acme")
        );
        assert!(query_tenant("tenant=a*b").is_err());
        assert!(query_tenant("model=x").is_err());
    }

    #[test]
    fn invalidation_selects_an_entry_or_a_tenant() {
        let one = invalidate(r#"{"entry": "aies:cache:m:acme:ab:cd"}"#).unwrap();
        assert_eq!(
            (
                one.pattern.as_str(),
                one.tenant.as_str(),
                one.scope.as_str()
            ),
            ("aies:cache:m:acme:ab:cd", "", "")
        );
        let tenant = invalidate(r#"{"tenant": "acme", "scope": "ab12"}"#).unwrap();
        assert_eq!(
            (
                tenant.pattern.as_str(),
                tenant.tenant.as_str(),
                tenant.scope.as_str()
            ),
            ("aies:cache:*", "acme", "ab12")
        );
        // Not a cache entry, or a glob that would match more than one.
        assert!(invalidate(r#"{"entry": "aies:task:x"}"#).is_err());
        assert!(invalidate(r#"{"entry": "aies:cache:*"}"#).is_err());
        assert!(invalidate(r#"{"tenant": "acme", "scope": "zz"}"#).is_err());
        assert!(invalidate(r#"{"entry": "aies:cache:m:x", "tenant": "acme"}"#).is_err());
        assert_eq!(Selection::everything().pattern, "aies:cache:*");
    }
}
