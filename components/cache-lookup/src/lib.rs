//! cache-lookup: the semantic cache ([`aies_semantic_cache`]) served to the
//! other stages over Spin local service chaining.
//!
//! - `POST /lookup` `{"tenant","scope","prompt","vector"?,"model"?,
//!   "threshold"?}`: the exact tier without a vector, the semantic tier
//!   with one.
//! - `POST /insert` `{"model","scope","tenant","prompt","result","task_id",
//!   "vector"}`.
//! - `/admin/cache/...`: stats, invalidation, flush (see `admin`).

use aies_contract::{InsertRequest, LookupRequest};
use aies_guest::{error, json, parse_body};
use aies_semantic_cache::{insert, lookup};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

mod admin;

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
        (_, path) if path.starts_with("/admin/cache/") => return admin::handle(&req),
        _ => return error(404, "cache-lookup serves POST /lookup and POST /insert"),
    };
    result.unwrap_or_else(|e| error(500, format!("{e:#}")))
}
