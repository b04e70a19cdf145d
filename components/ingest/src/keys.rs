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
//! `aies:apikeys` = {id: hash} for listing and revoking (see
//! `aies_contract::keys`).
//!
//! Admin (`Authorization: Bearer <admin_token>`, 403 while it is empty):
//! - `POST /admin/keys` `{"tenant", "name"?}` → 201 with the key, shown once.
//! - `GET /admin/keys[?tenant=<t>]` → the keys' ids, tenants, names, dates.
//! - `DELETE /admin/keys/{id}` → 200, or 404 for an unknown id.

use aies_contract::keys::{api_key_record, API_KEY_INDEX, DB_COORDINATION};
use aies_contract::{valid_tenant, DEFAULT_TENANT};
use aies_guest::{
    admin_only, arg, execute, hex, hgetall, json, now_secs, parse_body, redis, text, var, ApiError,
};
use anyhow::Result;
use serde::Deserialize;
use serde_json::json as j;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::redis::RedisParameter;

/// What every key starts with (so a leaked one is recognisable).
const KEY_MARK: &str = "aies_";
const MAX_NAME_CHARS: usize = 100;

/// Whether tenant routes need a key (`api_keys` variable).
fn required() -> Result<bool, ApiError> {
    let mode = var("api_keys").map_err(|e| ApiError::internal(&e))?;
    required_by(&mode)
}

fn required_by(mode: &str) -> Result<bool, ApiError> {
    match mode.trim() {
        "required" => Ok(true),
        "off" | "" => Ok(false),
        other => Err(ApiError::new(
            500,
            format!("variable `api_keys` is {other:?}: use \"off\" or \"required\""),
        )),
    }
}

/// The tenant a request acts for; `Err` is the 400/401/403/503 answer.
pub fn tenant(req: &Request) -> Result<String, ApiError> {
    let header = req.header("x-tenant-id").and_then(|v| v.as_str());
    if header.is_some_and(|t| !valid_tenant(t)) {
        return Err(ApiError::bad_request(
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
        .map_err(|e| ApiError::new(503, format!("checking the API key: {e:#}")))?;
    let Some(owner) = owner.first().and_then(text) else {
        return Err(unauthorized("invalid API key"));
    };
    match header {
        Some(t) if t != owner => Err(ApiError::new(
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

/// 401, asking for a bearer token.
fn unauthorized(message: &str) -> ApiError {
    ApiError::new(401, message).with_challenge()
}

/// The record of an API key: keys are stored by their hash only.
fn key_record(key: &str) -> String {
    api_key_record(&hex(key, 32))
}

/// `/admin/keys[/...]`.
pub fn admin(req: &Request) -> Result<Response, ApiError> {
    admin_only(req)?;
    let unavailable = |e: anyhow::Error| ApiError::unavailable(&e);
    match (req.method(), req.path()) {
        (Method::Post, "/admin/keys") => {
            let body: NewKey = parse_body(req)?;
            if let Some(problem) = body.problem() {
                return Err(ApiError::bad_request(problem));
            }
            Ok(json(201, &create(&body).map_err(unavailable)?))
        }
        (Method::Get, "/admin/keys") => {
            let tenant = query_tenant(req.query())?;
            Ok(json(200, &list(tenant.as_deref()).map_err(unavailable)?))
        }
        (_, "/admin/keys") => Err(ApiError::method_not_allowed("GET, POST")),
        (Method::Delete, p) if p.starts_with("/admin/keys/") => {
            let id = &p["/admin/keys/".len()..];
            if !revoke(id).map_err(unavailable)? {
                return Err(ApiError::not_found(format!("no API key {id}")));
            }
            Ok(json(200, &j!({ "revoked": id })))
        }
        (_, p) if p.len() > "/admin/keys/".len() => Err(ApiError::method_not_allowed("DELETE")),
        _ => Err(ApiError::not_found(
            "admin: POST /admin/keys, GET /admin/keys, DELETE /admin/keys/{id}",
        )),
    }
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

fn query_tenant(query: &str) -> Result<Option<String>, ApiError> {
    match query.split_once('=') {
        _ if query.is_empty() => Ok(None),
        Some(("tenant", t)) if valid_tenant(t) => Ok(Some(t.to_string())),
        _ => Err(ApiError::bad_request("the only query is tenant=<tenant>")),
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
        arg(API_KEY_INDEX),
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
    for (id, record) in hgetall(&conn, API_KEY_INDEX)? {
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

/// Deletes a key and its place in the index; false when there is no such key.
fn revoke(id: &str) -> Result<bool> {
    const SCRIPT: &str = r#"
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
redis.call('DEL', record)
redis.call('HDEL', KEYS[1], ARGV[1])
return 1"#;
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(1),
        arg(API_KEY_INDEX),
        arg(id),
    ];
    let revoked = execute(&redis(DB_COORDINATION)?, "EVAL", &args)?;
    Ok(matches!(
        revoked.first(),
        Some(spin_sdk::redis::RedisResult::Int64(1))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spin_sdk::http::Method;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut req = Request::builder();
        req.method(Method::Post).uri("/process");
        for (k, v) in headers {
            req.header(*k, *v);
        }
        req.build()
    }

    #[test]
    fn keys_come_as_bearer_or_x_api_key() {
        let bearer = request(&[("authorization", "Bearer aies_abc ")]);
        assert_eq!(presented_key(&bearer).as_deref(), Some("aies_abc"));
        let header = request(&[("x-api-key", "aies_def")]);
        assert_eq!(presented_key(&header).as_deref(), Some("aies_def"));
        assert_eq!(
            presented_key(&request(&[("authorization", "Basic x")])),
            None
        );
        assert_eq!(presented_key(&request(&[("x-api-key", " ")])), None);
        assert_eq!(presented_key(&request(&[])), None);
    }

    #[test]
    fn a_missing_key_asks_for_one() {
        let e = unauthorized("invalid API key");
        assert_eq!((e.status, e.challenge), (401, true));
        // Hashed: the key itself is never a Redis key.
        let record = key_record("aies_secret");
        assert!(record.starts_with("aies:apikey:") && !record.contains("secret"));
        assert_eq!(record.len(), "aies:apikey:".len() + 64);
    }

    #[test]
    fn api_keys_is_off_or_required() {
        assert!(required_by(" required ").unwrap());
        assert!(!required_by("off").unwrap());
        assert!(!required_by("").unwrap());
        let e = required_by("on").unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                500,
                r#"variable `api_keys` is "on": use "off" or "required""#
            )
        );
    }

    #[test]
    fn new_keys_name_a_valid_tenant() {
        let key = |tenant: &str, name: &str| NewKey {
            tenant: tenant.into(),
            name: name.into(),
        };
        assert_eq!(key("acme", "ci").problem(), None);
        assert!(key("a b", "")
            .problem()
            .unwrap()
            .starts_with("`tenant` must be"));
        assert_eq!(
            key("acme", "a\tb").problem().as_deref(),
            Some("`name` must be at most 100 printable characters")
        );
        assert!(key("acme", &"n".repeat(101)).problem().is_some());
        assert_eq!(query_tenant("").unwrap(), None);
        assert_eq!(
            query_tenant("tenant=acme").unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(query_tenant("name=x").unwrap_err().status, 400);
    }
}
