//! embed: text -> vectors ([`aies_embedding`]) for the other stages.
//! `POST /embed` with `{"texts": [...]}`.

use aies_contract::EmbedRequest;
use aies_guest::{error, json, parse_body};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

/// Texts per request, and characters per text: bounds the work one call can ask for.
const MAX_TEXTS: usize = 64;
const MAX_CHARS: usize = aies_contract::MAX_PROMPT_CHARS;

#[http_component]
async fn handle(req: Request) -> Response {
    if *req.method() != Method::Post || req.path() != "/embed" {
        return error(404, "embed serves POST /embed");
    }
    let body: EmbedRequest = match parse_body(&req) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if body.texts.is_empty() || body.texts.len() > MAX_TEXTS {
        return error(400, format!("`texts` must hold 1 to {MAX_TEXTS} strings"));
    }
    if body.texts.iter().any(|t| t.chars().count() > MAX_CHARS) {
        return error(413, format!("a text is longer than {MAX_CHARS} characters"));
    }
    match aies_embedding::embed(&body.texts).await {
        Ok(resp) => json(200, &resp),
        Err(e) => error(502, format!("{e:#}")),
    }
}
