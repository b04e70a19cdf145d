//! API keys: who is calling, and the admin endpoints that manage keys.
//!
//! With `api_keys = "required"` every tenant route needs
//! `Authorization: Bearer <key>` (or `x-api-key: <key>`); the key names the
//! tenant. With `"off"` (the default, and `make up`'s) the tenant is the
//! `x-tenant-id` header, or `default`.
//!
//! Keys are stored hashed (SHA-256: a key is 256 random bits, so a plain
//! hash cannot be reversed by guessing), in Redis DB 1:
//! `aies:apikey:<hash>` = hash {id, tenant, name, created_at}, and the index
//! `aies:apikeys` = {id: hash} for listing and revoking.
//!
//! Admin (`Authorization: Bearer <admin_token>`, 403 while it is empty):
//! - `POST /admin/keys` `{"tenant", "name"?}` → 201 with the key, shown once.
//! - `GET /admin/keys[?tenant=<t>]` → the keys' ids, tenants, names, dates.
//! - `DELETE /admin/keys/{id}` → 200, or 404 for an unknown id.

use aies_contract::{valid_tenant, DEFAULT_TENANT};
use aies_guest::{
    admin_only, arg, error, execute, hex, hgetall, json, now_secs, redis, text, var,
    DB_COORDINATION,
};
use anyhow::Result;
use serde::Deserialize;
use serde_json::json as j;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::redis::RedisParameter;

const KEY_PREFIX: &str = "aies:apikey:";
const INDEX: &str = "aies:apikeys";
/// What every key starts with (so a leaked one is recognisable).
const KEY_MARK: &str = "aies_";
const MAX_NAME_CHARS: usize = 100;

/// Whether tenant routes need a key (`api_keys` variable).
fn required() -> Result<bool, Response> {
    match var("api_keys").as_deref().map(str::trim) {
        Ok("required") => Ok(true),
        Ok("off" | "") => Ok(false),
        Ok(other) => Err(error(
            500,
            format!("variable `api_keys` is {other:?}: use \"off\" or \"required\""),
        )),
        Err(e) => Err(error(500, format!("{e:#}"))),
    }
}

/// The tenant a request acts for; `Err` is the 400/401/403/503 answer.
pub fn tenant(req: &Request) -> Result<String, Response> {
    let header = req.header("x-tenant-id").and_then(|v| v.as_str());
    if header.is_some_and(|t| !valid_tenant(t)) {
        return Err(error(
            400,
            "x-tenant-id must be 1-64 letters, digits, '-' or '_'",
        ));
    }
    if !required()? {
        return Ok(header.unwrap_or(DEFAULT_TENANT).to_string());
    }
    let Some(key) = presented_key(req) else {
        return Err(unauthorized(
            "an API key is required: Authorization: Bearer <key>",
        ));
    };
    let owner = redis(DB_COORDINATION)
        .and_then(|c| execute(&c, "HGET", &[arg(key_record(&key)), arg("tenant")]))
        .map_err(|e| error(503, format!("checking the API key: {e:#}")))?;
    let Some(owner) = owner.first().and_then(text) else {
        return Err(unauthorized("invalid API key"));
    };
    match header {
        Some(t) if t != owner => Err(error(
            403,
            format!("this API key belongs to tenant {owner:?}, not {t:?}"),
        )),
        _ => Ok(owner),
    }
}

fn presented_key(req: &Request) -> Option<String> {
    let header = |name| req.header(name).and_then(|v| v.as_str());
    header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| header("x-api-key"))
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
}

fn unauthorized(message: &str) -> Response {
    let mut resp = error(401, message);
    resp.set_header("www-authenticate", "Bearer");
    resp
}

fn key_record(key: &str) -> String {
    format!("{KEY_PREFIX}{}", hex(key, 32))
}

/// `/admin/keys[/...]`.
pub fn admin(req: &Request) -> Response {
    if let Err(refused) = admin_only(req) {
        return refused;
    }
    let path = req.path();
    let result = match (req.method(), path) {
        (Method::Post, "/admin/keys") => match serde_json::from_slice::<NewKey>(req.body()) {
            Ok(body) => match body.problem() {
                Some(problem) => return error(400, problem),
                None => create(&body).map(|v| json(201, &v)),
            },
            Err(e) => return error(400, format!("invalid JSON body: {e}")),
        },
        (Method::Get, "/admin/keys") => match query_tenant(req.query()) {
            Ok(t) => list(t.as_deref()).map(|v| json(200, &v)),
            Err(resp) => return resp,
        },
        (Method::Delete, p) if p.starts_with("/admin/keys/") => revoke(&p["/admin/keys/".len()..]),
        _ => {
            return error(
                404,
                "admin: POST /admin/keys, GET /admin/keys, DELETE /admin/keys/{id}",
            )
        }
    };
    result.unwrap_or_else(|e| error(503, format!("{e:#}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    tenant: String,
    #[serde(default)]
    name: String,
}

impl NewKey {
    fn problem(&self) -> Option<String> {
        if !valid_tenant(&self.tenant) {
            return Some("`tenant` must be 1-64 letters, digits, '-' or '_'".into());
        }
        if self.name.chars().count() > MAX_NAME_CHARS || self.name.chars().any(char::is_control) {
            return Some(format!(
                "`name` must be at most {MAX_NAME_CHARS} printable characters"
            ));
        }
        None
    }
}

fn query_tenant(query: &str) -> Result<Option<String>, Response> {
    match query.split_once('=') {
        _ if query.is_empty() => Ok(None),
        Some(("tenant", t)) if valid_tenant(t) => Ok(Some(t.to_string())),
        _ => Err(error(400, "the only query is tenant=<tenant>")),
    }
}

fn create(body: &NewKey) -> Result<serde_json::Value> {
    let random = || uuid::Uuid::new_v4().simple().to_string();
    let key = format!("{KEY_MARK}{}{}", random(), random());
    let id = format!("key_{}", &random()[..16]);
    let record = key_record(&key);
    let created_at = now_secs();
    const SCRIPT: &str = r#"
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'tenant', ARGV[2], 'name', ARGV[3], 'created_at', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], KEYS[1])
return 1"#;
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(2),
        arg(&record),
        arg(INDEX),
        arg(&id),
        arg(&body.tenant),
        arg(&body.name),
        arg(created_at.to_string()),
    ];
    execute(&redis(DB_COORDINATION)?, "EVAL", &args)?;
    Ok(j!({
        "id": id,
        "key": key,
        "tenant": body.tenant,
        "name": body.name,
        "created_at": created_at,
    }))
}

fn list(tenant: Option<&str>) -> Result<serde_json::Value> {
    let conn = redis(DB_COORDINATION)?;
    let mut keys = Vec::new();
    for (id, record) in hgetall(&conn, INDEX)? {
        let fields = hgetall(&conn, &record)?;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if tenant.is_some_and(|t| t != field("tenant")) {
            continue;
        }
        keys.push(j!({
            "id": id,
            "tenant": field("tenant"),
            "name": field("name"),
            "created_at": field("created_at").parse::<u64>().unwrap_or(0),
        }));
    }
    keys.sort_by_key(|k| (k["created_at"].as_u64(), k["id"].as_str().map(String::from)));
    Ok(j!({ "keys": keys }))
}

fn revoke(id: &str) -> Result<Response> {
    const SCRIPT: &str = r#"
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
redis.call('DEL', record)
redis.call('HDEL', KEYS[1], ARGV[1])
return 1"#;
    let args = [arg(SCRIPT), RedisParameter::Int64(1), arg(INDEX), arg(id)];
    let revoked = execute(&redis(DB_COORDINATION)?, "EVAL", &args)?;
    Ok(match revoked.first() {
        Some(spin_sdk::redis::RedisResult::Int64(1)) => json(200, &j!({ "revoked": id })),
        _ => error(404, format!("no API key {id}")),
    })
}
