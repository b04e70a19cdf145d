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
use aies_guest::{json, parse_body, ApiError};
use aies_semantic_cache::{insert, lookup};
use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;

mod admin;

#[http_component]
async fn handle(req: Request) -> Response {
    route(&req).into_response()
}

fn route(req: &Request) -> Result<Response, ApiError> {
    let internal = |e: anyhow::Error| ApiError::internal(&e);
    match (req.method(), req.path()) {
        (Method::Post, "/lookup") => {
            let found = lookup(parse_body::<LookupRequest>(req)?).map_err(internal)?;
            Ok(json(200, &found))
        }
        (Method::Post, "/insert") => {
            insert(parse_body::<InsertRequest>(req)?).map_err(internal)?;
            Ok(json(200, &serde_json::json!({"inserted": true})))
        }
        (_, path) if path.starts_with("/admin/cache/") => admin::handle(req),
        _ => Err(ApiError::not_found(
            "cache-lookup serves POST /lookup and POST /insert",
        )),
    }
}
