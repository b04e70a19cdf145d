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
//! Entries expire on a fixed TTL; beyond `cache_max_entries_per_tenant` a
//! tenant's least recently used are evicted, and beyond `cache_max_entries`
//! the inserting tenant's own first (one tenant cannot flush another's). Each embedding model has its own index over
//! its own key prefix, so vectors of two models never meet; its thresholds
//! default to the values measured for it (`auto`). Tenants are a TAG filter
//! inside the KNN query itself, so one tenant's entries are never
//! candidates for another's.
//!
//! Variables read: `vector_dimension`, `similarity_threshold`,
//! `reworded_similarity`, `cache_index`, `cache_ttl_seconds`,
//! `cache_max_entries`, `cache_max_entries_per_tenant`,
//! `cache_alias_ttl_seconds`, `redis_host`,
//! `redis_port`.
//!
//! Keys and index names are [`aies_contract::keys`]'s. Modules: `lookup`
//! and `insert` (the two operations), `settings` (a model's index and
//! thresholds), `index` (creating and checking indexes), [`query`]
//! (RediSearch text and replies).

mod index;
mod insert;
mod judge;
mod lookup;
pub mod query;
mod settings;

pub use insert::insert;
pub use lookup::lookup;
pub use query::escape_tag;
