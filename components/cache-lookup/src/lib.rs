//! cache-lookup: the semantic cache in Redis Stack (DB 0).
//!
//! - `POST /lookup` `{"tenant","prompt","vector"?}`: first the **exact
//!   tier**, the tenant's entry for this prompt up to case, accents,
//!   punctuation and spacing (no embedding needed: without a vector only
//!   this tier is asked); then the **semantic tier**, the nearest entries
//!   of the tenant with cosine similarity >= `similarity_threshold`, best
//!   first, the first that the guard ([`aies_cache_guard`]) finds to ask
//!   the same thing. Refused candidates are reported with their reason.
//!   Creates the HNSW cosine index (`cache_index`, dimension
//!   `vector_dimension`) when it does not exist yet.
//! - `POST /insert` `{"tenant","prompt","result","task_id","vector"}`: one
//!   hash per (tenant, normalized prompt); inserting it again overwrites it.
//!
//! Tenants are a TAG filter inside the KNN query itself, so one tenant's
//! entries are never candidates for another's lookup.

use aies_cache_guard::{normalize, verify, Analysis, Policy};
use aies_contract::{
    valid_tenant, CacheHit, CacheTier, InsertRequest, LookupRequest, LookupResponse,
};
use aies_guest::{arg, error, execute, json, parse_body, redis, text, var, var_parsed, DB_CACHE};
use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

const KEY_PREFIX: &str = "aies:cache:";
/// Nearest entries examined per lookup: the best one above the threshold
/// that passes the guard answers.
const CANDIDATES: usize = 5;

#[http_component]
async fn handle(req: Request) -> Response {
    let result = match (req.method(), req.path()) {
        (Method::Post, "/lookup") => match parse_body::<LookupRequest>(&req) {
            Ok(body) => lookup(body).map(|r| json(200, &r)),
            Err(resp) => return resp,
        },
        (Method::Post, "/insert") => match parse_body::<InsertRequest>(&req) {
            Ok(body) => insert(body).map(|()| json(200, &serde_json::json!({"inserted": true}))),
            Err(resp) => return resp,
        },
        _ => return error(404, "cache-lookup serves POST /lookup and POST /insert"),
    };
    result.unwrap_or_else(|e| error(500, format!("{e:#}")))
}

struct Settings {
    index: String,
    dimension: usize,
    threshold: f32,
    policy: Policy,
}

fn settings() -> Result<Settings> {
    let unit = |name: &str| -> Result<f32> {
        let value: f32 = var_parsed(name)?;
        if !(0.0..=1.0).contains(&value) {
            bail!("{name} must be between 0 and 1, got {value}");
        }
        Ok(value)
    };
    Ok(Settings {
        index: var("cache_index")?,
        dimension: var_parsed("vector_dimension")?,
        threshold: unit("similarity_threshold")?,
        policy: Policy {
            reworded_similarity: unit("reworded_similarity")?,
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

/// The key of a tenant's entry for a prompt: the exact tier is one read.
fn entry_key(tenant: &str, prompt: &str) -> String {
    let digest = Sha256::digest(normalize(prompt).as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{KEY_PREFIX}{tenant}:{hex}")
}

fn lookup(req: LookupRequest) -> Result<LookupResponse> {
    let s = settings()?;
    if !valid_tenant(&req.tenant) {
        bail!("invalid tenant {:?}", req.tenant);
    }
    let conn = redis(DB_CACHE)?;
    let Some(vector) = req.vector else {
        return Ok(LookupResponse {
            hit: exact(&conn, &req.tenant, &req.prompt)?,
            refused: Vec::new(),
        });
    };
    check(&req.tenant, &vector, &s)?;
    let query = format!(
        "(@tenant:{{{}}})=>[KNN {CANDIDATES} @vector $q AS distance]",
        escape_tag(&req.tenant)
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
                return Ok(LookupResponse {
                    hit: Some(hit),
                    refused,
                })
            }
            Err(why) => refused.push(why.as_str().to_string()),
        }
    }
    Ok(LookupResponse { hit: None, refused })
}

/// The exact tier: the tenant's entry for this very prompt.
fn exact(conn: &Connection, tenant: &str, prompt: &str) -> Result<Option<CacheHit>> {
    let key = entry_key(tenant, prompt);
    let reply = execute(
        conn,
        "HMGET",
        &[arg(&key), arg("prompt"), arg("result"), arg("task_id")],
    )?;
    let values: Vec<Option<String>> = reply.iter().map(text).collect();
    let [Some(prompt), Some(result), Some(task_id)] = values.as_slice() else {
        return Ok(None);
    };
    Ok(Some(CacheHit {
        tier: CacheTier::Exact,
        prompt: prompt.clone(),
        result: result.clone(),
        similarity: 1.0,
        task_id: task_id.clone(),
    }))
}

/// Escapes a TAG value for a query: RediSearch reads `-` and other
/// punctuation as syntax unless backslashed.
fn escape_tag(value: &str) -> String {
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
const RETURNED: [&str; 4] = ["prompt", "result", "task_id", "distance"];

/// Reads the documents of a flattened `FT.SEARCH` reply:
/// `[total, key, field, value, ..., key, field, value, ...]`, every
/// document carrying the four `RETURNED` fields (so each is 9 values long).
fn parse_hits(reply: &[RedisResult]) -> Result<Vec<CacheHit>> {
    match reply.first() {
        Some(RedisResult::Int64(_)) => {}
        other => bail!("unexpected FT.SEARCH reply start: {other:?}"),
    }
    let width = 1 + 2 * RETURNED.len();
    let mut hits = Vec::new();
    for doc in reply[1..].chunks(width) {
        // Fields come back by name, in no promised order.
        let mut values: [Option<String>; 4] = Default::default();
        for pair in doc[1..].chunks(2) {
            let (Some(field), Some(value)) = (text(&pair[0]), pair.get(1).and_then(text)) else {
                bail!("FT.SEARCH returned an incomplete document");
            };
            if let Some(i) = RETURNED.iter().position(|f| *f == field) {
                values[i] = Some(value);
            }
        }
        let [Some(prompt), Some(result), Some(task_id), Some(distance)] = values else {
            bail!("FT.SEARCH returned a document without all of {RETURNED:?}");
        };
        hits.push(CacheHit {
            tier: CacheTier::Semantic,
            prompt,
            result,
            task_id,
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
        arg(KEY_PREFIX),
        arg("SCHEMA"),
        arg("tenant"),
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

fn insert(req: InsertRequest) -> Result<()> {
    let s = settings()?;
    check(&req.tenant, &req.vector, &s)?;
    let conn = redis(DB_CACHE)?;
    let key = entry_key(&req.tenant, &req.prompt);
    let args = [
        arg(&key),
        arg("tenant"),
        arg(&req.tenant),
        arg("prompt"),
        arg(&req.prompt),
        arg("result"),
        arg(&req.result),
        arg("task_id"),
        arg(&req.task_id),
        arg("vector"),
        arg(blob(&req.vector)),
    ];
    execute(&conn, "HSET", &args)?;
    let ttl: i64 = var_parsed("cache_ttl_seconds")?;
    if ttl > 0 {
        execute(&conn, "EXPIRE", &[arg(&key), RedisParameter::Int64(ttl)])?;
    }
    Ok(())
}
