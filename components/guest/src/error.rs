//! [`ApiError`]: the one error type of the HTTP boundaries. A handler
//! returns `Result<Response, ApiError>`; the error becomes its response
//! here and nowhere else, as `{"error": "<message>", ..}` with its status.

use serde_json::{Map, Value};
use spin_sdk::http::{IntoResponse, Response};

/// An error a client sees: its status, its message, and what else its body
/// carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// More fields of the body besides `error` (e.g. the `task_id` of a
    /// task that was recorded although the request failed).
    pub fields: Vec<(&'static str, Value)>,
    /// Whether the response asks for a bearer token
    /// (`WWW-Authenticate: Bearer`).
    pub challenge: bool,
    /// The methods the route serves, for a 405 (`Allow`, RFC 9110 15.5.6).
    pub allow: Option<&'static str>,
    /// Seconds after which to ask again (`Retry-After`), for a 429 or 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            fields: Vec::new(),
            challenge: false,
            allow: None,
            retry_after: None,
        }
    }

    /// 405 for a route that serves only `allow` (e.g. "GET", "GET, POST").
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(405, format!("method not allowed: use {allow}"))
        }
    }

    /// 429: too many at once; ask again after `retry_after` seconds.
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(429, message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 500 with the cause chain (a configuration or program error).
    pub fn internal(cause: &anyhow::Error) -> Self {
        Self::new(500, format!("{cause:#}"))
    }

    /// 503 with the cause chain (a backend is out of reach: try again).
    pub fn unavailable(cause: &anyhow::Error) -> Self {
        Self::new(503, format!("{cause:#}"))
    }

    /// 400 for a body serde could not read, with its explanation.
    pub fn invalid_json(cause: &serde_json::Error) -> Self {
        Self::bad_request(format!("invalid JSON body: {cause}"))
    }

    /// 413 for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self::new(413, format!("request body is larger than {limit} bytes"))
    }

    /// The same error with one more field in its body.
    pub fn with_field(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    /// The same error, asking for a bearer token.
    pub fn with_challenge(mut self) -> Self {
        self.challenge = true;
        self
    }

    /// The JSON body: `{"error": message}` and the extra fields.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.message.clone()));
        for (name, value) in &self.fields {
            body.insert((*name).into(), value.clone());
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = crate::json(self.status, &self.body());
        if self.challenge {
            resp.set_header("www-authenticate", "Bearer");
        }
        if let Some(allow) = self.allow {
            resp.set_header("allow", allow);
        }
        if let Some(secs) = self.retry_after {
            resp.set_header("retry-after", secs.to_string());
        }
        resp
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Self {
        e.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_method_says_which_are_allowed() {
        let resp = ApiError::method_not_allowed("GET, POST").into_response();
        assert_eq!(*resp.status(), 405);
        let allow = resp
            .headers()
            .find(|(k, _)| *k == "allow")
            .map(|(_, v)| v.as_str());
        assert_eq!(allow.flatten(), Some("GET, POST"));
    }

    fn header(resp: &Response, name: &str) -> Option<String> {
        resp.header(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }

    #[test]
    fn an_error_is_its_status_and_an_error_body() {
        let resp: Response = ApiError::not_found("no task x").into();
        assert_eq!(*resp.status(), 404);
        assert_eq!(resp.body(), br#"{"error":"no task x"}"#);
        assert_eq!(
            header(&resp, "content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(header(&resp, "www-authenticate"), None);
    }

    #[test]
    fn extra_fields_join_the_body() {
        let e = ApiError::new(503, "could not enqueue the task: down")
            .with_field("task_id", "t1")
            .with_field("status", "FAILURE");
        let resp = e.into_response();
        assert_eq!(*resp.status(), 503);
        // serde_json's map is ordered by key, as `json!` bodies always were.
        assert_eq!(
            resp.body(),
            br#"{"error":"could not enqueue the task: down","status":"FAILURE","task_id":"t1"}"#
        );
    }

    #[test]
    fn a_challenge_asks_for_a_bearer_token() {
        let resp = ApiError::new(401, "invalid API key")
            .with_challenge()
            .into_response();
        assert_eq!(*resp.status(), 401);
        assert_eq!(header(&resp, "www-authenticate").as_deref(), Some("Bearer"));
    }

    #[test]
    fn too_many_says_when_to_ask_again() {
        let resp = ApiError::too_many("too many waiting requests", 2).into_response();
        assert_eq!(*resp.status(), 429);
        assert_eq!(header(&resp, "retry-after").as_deref(), Some("2"));
        let plain: Response = ApiError::not_found("x").into();
        assert_eq!(header(&plain, "retry-after"), None);
    }

    #[test]
    fn causes_keep_their_chain() {
        let cause = anyhow::anyhow!("connection refused").context("opening Redis db 2");
        let e = ApiError::unavailable(&cause);
        assert_eq!(
            (e.status, e.message.as_str()),
            (503, "opening Redis db 2: connection refused")
        );
        assert_eq!(ApiError::internal(&cause).status, 500);
        assert_eq!(
            ApiError::too_large(10).message,
            "request body is larger than 10 bytes"
        );
        let bad = serde_json::from_str::<Value>("{").unwrap_err();
        assert!(ApiError::invalid_json(&bad)
            .message
            .starts_with("invalid JSON body: EOF"));
    }
}
