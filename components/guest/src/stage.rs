//! Calls to other stages through Spin local service chaining.

use aies_contract::ErrorBody;
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use spin_sdk::http::{Method, Request, Response};

/// The local-service-chaining URL of a stage's route.
pub fn stage_url(component: &str, path: &str) -> String {
    format!("http://{component}.spin.internal{path}")
}

/// POSTs `body` as JSON to another stage (or the bridge) and decodes the
/// JSON answer; a non-2xx answer is an error carrying its status and body.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(url: &str, body: &Req) -> Result<Resp> {
    call_as(url, None, body).await
}

/// [`call`], proving itself with `Authorization: Bearer <token>`.
pub async fn call_as<Req: Serialize, Resp: DeserializeOwned>(
    url: &str,
    token: Option<&str>,
    body: &Req,
) -> Result<Resp> {
    let mut builder = Request::builder();
    builder
        .method(Method::Post)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(token) = token {
        builder.header("authorization", format!("Bearer {token}"));
    }
    let req = builder.body(serde_json::to_vec(body)?).build();
    let resp: Response = spin_sdk::http::send(req)
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = *resp.status();
    if !(200..300).contains(&status) {
        return Err(StageError::new(status, resp.body())).with_context(|| format!("calling {url}"));
    }
    serde_json::from_slice(resp.body()).with_context(|| format!("decoding the answer of {url}"))
}

/// A stage answered with an error status.
#[derive(Debug)]
pub struct StageError {
    pub status: u16,
    pub detail: String,
}

impl StageError {
    /// The error of an answer: its `{"error"}` message, or its whole body.
    fn new(status: u16, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let detail = serde_json::from_str::<ErrorBody>(&text)
            .map(|e| e.error)
            .unwrap_or_else(|_| text.into_owned());
        Self { status, detail }
    }
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {}: {}", self.status, self.detail)
    }
}

impl std::error::Error for StageError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_errors_carry_the_message_or_the_body() {
        let e = StageError::new(400, br#"{"error":"invalid tenant"}"#);
        assert_eq!(e.to_string(), "status 400: invalid tenant");
        let e = StageError::new(502, b"Bad Gateway");
        assert_eq!(e.to_string(), "status 502: Bad Gateway");
        assert_eq!(
            stage_url("cache-lookup", "/lookup"),
            "http://cache-lookup.spin.internal/lookup"
        );
    }
}
