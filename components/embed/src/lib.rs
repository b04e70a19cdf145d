//! embed: text -> vectors ([`aies_embedding`]) for the other stages.
//! `POST /embed` with `{"texts": [...]}`.

use aies_contract::EmbedRequest;
use aies_guest::{json, parse_body, ApiError};
use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;

/// Texts per request, and characters per text: bounds the work one call can ask for.
const MAX_TEXTS: usize = aies_contract::MAX_EMBED_TEXTS;
const MAX_CHARS: usize = aies_contract::MAX_PROMPT_CHARS;

#[http_component]
async fn handle(req: Request) -> Response {
    embed(&req).await.into_response()
}

async fn embed(req: &Request) -> Result<Response, ApiError> {
    if *req.method() != Method::Post || req.path() != "/embed" {
        return Err(ApiError::not_found("embed serves POST /embed"));
    }
    let body: EmbedRequest = parse_body(req)?;
    check(&body.texts)?;
    match aies_embedding::embed(&body.texts).await {
        Ok(resp) => Ok(json(200, &resp)),
        Err(e) => Err(ApiError::new(502, format!("{e:#}"))),
    }
}

/// Whether this request's texts are within bounds.
fn check(texts: &[String]) -> Result<(), ApiError> {
    if texts.is_empty() || texts.len() > MAX_TEXTS {
        return Err(ApiError::bad_request(format!(
            "`texts` must hold 1 to {MAX_TEXTS} strings"
        )));
    }
    if texts.iter().any(|t| t.chars().count() > MAX_CHARS) {
        return Err(ApiError::new(
            413,
            format!("a text is longer than {MAX_CHARS} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_bounded_in_number_and_length() {
        assert!(check(&["hi".into()]).is_ok());
        assert_eq!(check(&[]).unwrap_err().status, 400);
        assert_eq!(
            check(&vec!["a".into(); MAX_TEXTS + 1]).unwrap_err().status,
            400
        );
        let long = check(&["é".repeat(MAX_CHARS + 1)]).unwrap_err();
        assert_eq!(
            (long.status, long.message.as_str()),
            (413, "a text is longer than 16000 characters")
        );
    }
}
