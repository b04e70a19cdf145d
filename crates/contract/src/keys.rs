//! The Redis layout: every key, key prefix and pub/sub channel the stages
//! read or write, and the logical database each lives in. A key is built
//! here or nowhere, so one look at this file shows what a Redis holds.
//!
//! | DB | key | type | written by |
//! |----|-----|------|------------|
//! | 0 | `aies:metrics` | hash of counters | every stage |
//! | 0 | `aies:services` | hash `<service>.<field>` | `aies-up` |
//! | 0 | `aies:cache:<model slug>:<exact id>` | hash: a cache entry | semantic-cache |
//! | 0 | `aies:exact:<exact id>` | string: the entry of a prompt | semantic-cache |
//! | 0 | `aies:alias:<exact id>` | hash: the entry a semantic hit accepted | semantic-cache |
//! | 0 | `aies:cache_lru` | sorted set: entries by last use (ms) | semantic-cache |
//! | 0 | `aies:cache_lru:<tenant>` | sorted set: a tenant's entries by last use | semantic-cache |
//! | 1 | `aies:inflight:<exact id>` | string: the task answering a prompt | ingest |
//! | 1 | `aies:idem:<tenant>:<key hash>` | string: JSON of an idempotent answer | ingest |
//! | 1 | `aies:apikey:<key hash>` | hash: an API key's tenant and name | ingest |
//! | 1 | `aies:apikeys` | hash: key id to its record | ingest |
//! | 1 | `aies:waits` | sorted set: waiting requests by deadline (ms) | ingest |
//! | 1 | `aies:waits:<tenant>` | sorted set: a tenant's waiting requests | ingest |
//! | 2 | `aies:task:<task id>` | hash: a task record | ingest, llm-invoke, store |
//! | 2 | `aies:vector:<task id>` | string: JSON [`StashedVector`](crate::StashedVector) | ingest |
//! | 2 | `aies:recent` | list: the last finished task ids | store |
//!
//! An *exact id* is `<tenant>:<scope>:<prompt hash>` ([`exact_id`]): the
//! hash is of the folded prompt, computed by the guest library (this crate
//! has no hashing). RediSearch indexes are `<cache_index>_<model slug>`
//! over the entries' prefix [`cache_model_prefix`].

/// Logical database of the cache, its counters and `aies-up`'s services.
pub const DB_CACHE: u8 = 0;
/// Logical database of short-lived coordination: in-flight markers,
/// idempotency records, API keys.
pub const DB_COORDINATION: u8 = 1;
/// Logical database of the result backend: task records and vectors.
pub const DB_TASKS: u8 = 2;

/// Hash (DB 0) of the application's counters, read by `GET /metrics`.
pub const METRICS_KEY: &str = "aies:metrics";
/// Hash (DB 0) that `aies-up` writes about its services (`<service>.<field>`).
pub const SERVICES_KEY: &str = "aies:services";
/// Hash (DB 0) of the cluster's members: `<kind>:<id>` -> its last report
/// ([`crate::members::MemberReport`], JSON).
pub const MEMBERS_KEY: &str = "aies:members";

/// Prefix (DB 0) of every cache entry, whatever its model.
pub const CACHE_ENTRY_PREFIX: &str = "aies:cache:";
/// Prefix (DB 0) of the exact tier's pointers to entries.
pub const EXACT_PREFIX: &str = "aies:exact:";
/// Prefix (DB 0) of the aliases a semantic hit leaves for its prompt.
pub const ALIAS_PREFIX: &str = "aies:alias:";
/// Sorted set (DB 0) of every entry by its last use in ms: what
/// `cache_max_entries` evicts by.
pub const CACHE_LRU_KEY: &str = "aies:cache_lru";

/// Prefix (DB 0) of each tenant's entries by last use in ms: what
/// `cache_max_entries_per_tenant` evicts by, and what a full cache evicts
/// first for the tenant that fills it.
pub const TENANT_LRU_PREFIX: &str = "aies:cache_lru:";

/// A tenant's entries by last use (DB 0).
pub fn tenant_lru_key(tenant: &str) -> String {
    format!("{TENANT_LRU_PREFIX}{tenant}")
}

/// Prefix (DB 1) of the coalescing markers.
pub const INFLIGHT_PREFIX: &str = "aies:inflight:";
/// Prefix (DB 1) of the kept answers of `Idempotency-Key` requests.
pub const IDEMPOTENCY_PREFIX: &str = "aies:idem:";
/// Prefix (DB 1) of API key records, by the hash of the key.
pub const API_KEY_PREFIX: &str = "aies:apikey:";
/// Hash (DB 1) from API key id to its record's key, for listing and revoking.
pub const API_KEY_INDEX: &str = "aies:apikeys";

/// Sorted set (DB 1) of every waiting request (long poll, event stream,
/// chat completion) by its deadline in ms.
pub const WAITS_KEY: &str = "aies:waits";

/// Sorted set (DB 1) of one tenant's waiting requests by deadline.
pub fn tenant_waits_key(tenant: &str) -> String {
    format!("{WAITS_KEY}:{tenant}")
}

/// Prefix (DB 2) of task records.
pub const TASK_PREFIX: &str = "aies:task:";
/// Prefix (DB 2) of the prompt vectors ingest keeps for the cache fill.
pub const VECTOR_PREFIX: &str = "aies:vector:";
/// List (DB 2) of the ids of the last [`RECENT_TASKS`] finished tasks,
/// newest first.
pub const RECENT_TASKS_KEY: &str = "aies:recent";
/// How many ids [`RECENT_TASKS_KEY`] keeps.
pub const RECENT_TASKS: usize = 50;

/// Redis pub/sub channel on which store announces finished tasks
/// ([`CompletionNotice`](crate::CompletionNotice)), for anyone who wants to
/// know.
pub const COMPLETION_CHANNEL: &str = "ai_eventstream:task_completed";
/// The notices of answers to put into the cache (`fill_cache`), which
/// trigger the cache-fill component: the batch lane's here, the API lane's
/// on [`API_CACHE_FILL_CHANNEL`], so that a backlog of the first never
/// delays the second (a host runs each channel's messages apart).
pub const CACHE_FILL_CHANNEL: &str = "ai_eventstream:cache_fill";
/// The notices of API tasks' answers to put into the cache.
pub const API_CACHE_FILL_CHANNEL: &str = "ai_eventstream:cache_fill:api";

/// Redis key of a task record (a hash) in the result backend, DB 2.
pub fn task_key(task_id: &str) -> String {
    format!("{TASK_PREFIX}{task_id}")
}

/// Redis key (DB 2, expiring) of the prompt vector that ingest computed for
/// a task it could not answer from the cache: the cache fill uses it rather
/// than embedding the prompt again.
pub fn vector_key(task_id: &str) -> String {
    format!("{VECTOR_PREFIX}{task_id}")
}

/// A prompt's id within a tenant and scope, given the hash of its folded
/// form: the exact tier, aliases and coalescing all key on it.
pub fn exact_id(tenant: &str, scope: &str, prompt_hash: &str) -> String {
    format!("{tenant}:{scope}:{prompt_hash}")
}

/// The coalescing marker of a prompt (DB 1), by its [`exact_id`].
pub fn inflight_key(exact_id: &str) -> String {
    format!("{INFLIGHT_PREFIX}{exact_id}")
}

/// Prefix (DB 1) of cache-fill claims.
pub const FILL_CLAIM_PREFIX: &str = "aies:fill_claim:";

/// The claim (DB 1) of a task's cache fill: every app instance hears each
/// fill notice (Redis pub/sub), and only the one that claims it fills.
pub fn fill_claim_key(task_id: &str) -> String {
    format!("{FILL_CLAIM_PREFIX}{task_id}")
}

/// The exact tier's pointer (DB 0) to the entry of a prompt.
pub fn exact_key(exact_id: &str) -> String {
    format!("{EXACT_PREFIX}{exact_id}")
}

/// The alias (DB 0) a semantic hit leaves for the prompt that asked.
pub fn alias_key(exact_id: &str) -> String {
    format!("{ALIAS_PREFIX}{exact_id}")
}

/// An embedding model's name as it appears in keys and index names: every
/// character but ASCII letters and digits becomes `_`.
pub fn model_slug(model: &str) -> String {
    model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The key prefix of one embedding model's cache entries (its index covers
/// exactly these).
pub fn cache_model_prefix(model: &str) -> String {
    format!("{CACHE_ENTRY_PREFIX}{}:", model_slug(model))
}

/// A cache entry (DB 0): one per model, tenant, scope and folded prompt.
pub fn cache_entry_key(model: &str, exact_id: &str) -> String {
    format!("{}{exact_id}", cache_model_prefix(model))
}

/// The RediSearch index of one embedding model's entries; `base` is the
/// `cache_index` variable.
pub fn cache_index(base: &str, model: &str) -> String {
    format!("{}{}", cache_index_prefix(base), model_slug(model))
}

/// What every model's index name starts with (to list them with `FT._LIST`).
pub fn cache_index_prefix(base: &str) -> String {
    format!("{base}_")
}

/// The kept answer (DB 1) of an `Idempotency-Key`, by tenant and the
/// hash of the key.
pub fn idempotency_key(tenant: &str, key_hash: &str) -> String {
    format!("{IDEMPOTENCY_PREFIX}{tenant}:{key_hash}")
}

/// An API key's record (DB 1), by the hash of the key.
pub fn api_key_record(key_hash: &str) -> String {
    format!("{API_KEY_PREFIX}{key_hash}")
}

/// The field of [`METRICS_KEY`] that counts the guard's refusals for one
/// reason (`aies_cache_guard::Mismatch::as_str`).
pub fn guard_refused_field(reason: &str) -> String {
    format!("guard_refused_{reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout is shared with data already in Redis and with the tests'
    /// `KEYS` patterns: these strings must not drift.
    #[test]
    fn keys_keep_their_layout() {
        assert_eq!(task_key("t-1"), "aies:task:t-1");
        assert_eq!(vector_key("t-1"), "aies:vector:t-1");
        let id = exact_id("acme", "0a1b", "ffee");
        assert_eq!(id, "acme:0a1b:ffee");
        assert_eq!(inflight_key(&id), "aies:inflight:acme:0a1b:ffee");
        assert_eq!(fill_claim_key("t-1"), "aies:fill_claim:t-1");
        assert_eq!(exact_key(&id), "aies:exact:acme:0a1b:ffee");
        assert_eq!(alias_key(&id), "aies:alias:acme:0a1b:ffee");
        assert_eq!(idempotency_key("acme", "99"), "aies:idem:acme:99");
        assert_eq!(api_key_record("abc"), "aies:apikey:abc");
        assert_eq!(guard_refused_field("numbers"), "guard_refused_numbers");
        assert_eq!(
            (METRICS_KEY, SERVICES_KEY, CACHE_LRU_KEY, API_KEY_INDEX),
            (
                "aies:metrics",
                "aies:services",
                "aies:cache_lru",
                "aies:apikeys"
            )
        );
        assert_eq!(RECENT_TASKS_KEY, "aies:recent");
        assert_eq!(
            (DB_CACHE, DB_COORDINATION, DB_TASKS),
            (0, 1, 2),
            "databases"
        );
    }

    #[test]
    fn cache_entries_are_grouped_by_model_slug() {
        assert_eq!(
            model_slug("local:all-MiniLM-L6-v2"),
            "local_all_MiniLM_L6_v2"
        );
        assert_eq!(
            model_slug("gemini:text-embedding-004"),
            "gemini_text_embedding_004"
        );
        let prefix = cache_model_prefix("local:all-minilm-l6-v2");
        assert_eq!(prefix, "aies:cache:local_all_minilm_l6_v2:");
        let entry = cache_entry_key("local:all-minilm-l6-v2", "default:ab:cd");
        assert_eq!(entry, "aies:cache:local_all_minilm_l6_v2:default:ab:cd");
        assert!(entry.starts_with(&prefix) && prefix.starts_with(CACHE_ENTRY_PREFIX));
        assert_eq!(
            cache_index("aies_cache", "local:all-minilm-l6-v2"),
            "aies_cache_local_all_minilm_l6_v2"
        );
        assert!(cache_index("idx", "m").starts_with(&cache_index_prefix("idx")));
    }

    #[test]
    fn task_prefix_is_what_the_task_script_strips() {
        // The finish script pushes `string.sub(key, #TASK_PREFIX + 1)` to
        // the recent list: the id alone.
        let key = task_key("abc");
        assert_eq!(&key[TASK_PREFIX.len()..], "abc");
    }
}
