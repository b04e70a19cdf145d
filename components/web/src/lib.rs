//! web: the pages the app serves itself, with no CDN and no outbound host.
//!
//! - `GET /openapi.json`: the API's OpenAPI 3.1 document (`openapi.json`,
//!   checked against real answers by `tests/e2e/openapi.rs` and fuzzed by
//!   `tests/e2e/fuzz.rs`), with this deployment's embedding dimension (the
//!   `vector_dimension` variable) as the one `dimensions` it accepts.
//! - `GET /docs`: Swagger UI on that document; its files come from the
//!   vendored Swagger UI release (see build.rs) and are built in.
//! - `GET /dashboard`: a live page of ingest's `GET /stats` (tasks, timings,
//!   throughput, cache hits by tier, Kafka lanes and lag), refreshed every
//!   2 s; plain HTML and JavaScript, nothing fetched from elsewhere.

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

const OPENAPI: &str = include_str!("../openapi.json");
const DOCS_PAGE: &str = include_str!("docs.html");
const DASHBOARD_PAGE: &str = include_str!("dashboard.html");

macro_rules! asset {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $file))
    };
}

#[http_component]
fn handle(req: Request) -> Response {
    if *req.method() != Method::Get {
        let mut resp = plain(405, "only GET");
        resp.set_header("allow", "GET");
        return resp;
    }
    let path = req.path().trim_end_matches('/');
    match path {
        "/openapi.json" | "/docs/openapi.json" => file("application/json", &openapi()),
        "/docs" => file("text/html; charset=utf-8", DOCS_PAGE.as_bytes()),
        "/dashboard" => file("text/html; charset=utf-8", DASHBOARD_PAGE.as_bytes()),
        "/docs/swagger-ui-bundle.js" => file(
            "text/javascript; charset=utf-8",
            asset!("swagger-ui-bundle.js"),
        ),
        "/docs/swagger-ui.css" => file("text/css; charset=utf-8", asset!("swagger-ui.css")),
        "/docs/favicon.png" => file("image/png", asset!("favicon-32x32.png")),
        _ => plain(404, "no such page: see /docs"),
    }
}

/// The document, its `dimensions` set to the deployment's.
fn openapi() -> Vec<u8> {
    let dimension = spin_sdk::variables::get("vector_dimension")
        .ok()
        .and_then(|d| d.parse::<u64>().ok());
    let mut doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    let pointer = "/components/schemas/EmbeddingsRequest/properties/dimensions/enum/0";
    if let (Some(d), Some(slot)) = (dimension, doc.pointer_mut(pointer)) {
        *slot = d.into();
    }
    serde_json::to_vec(&doc).unwrap_or_else(|_| OPENAPI.as_bytes().to_vec())
}

fn file(content_type: &str, body: &[u8]) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .header("x-content-type-options", "nosniff")
        .body(body.to_vec())
        .build()
}

fn plain(status: u16, text: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(text.to_string())
        .build()
}
