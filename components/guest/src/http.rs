//! Answering HTTP: JSON responses, request bodies, bearer tokens, and the
//! answer of a stage that takes one item or a batch.

use crate::{var, ApiError};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use spin_sdk::http::{Request, Response};

pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .build()
}

/// `{"error": message}` with `status` (an [`ApiError`] with nothing more).
pub fn error(status: u16, message: impl Into<String>) -> Response {
    ApiError::new(status, message).into()
}

/// Parses a JSON request body; `Err` is a 400 with serde's explanation.
pub fn parse_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    from_json(req.body())
}

/// Parses JSON into `T`, reading a number written with a zero fraction
/// (`256.0`) as the integer it is, as JSON Schema does (`"type":
/// "integer"` allows it; serde alone refuses it for an integer field).
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Straight into `T` first: the bridge's batches take this path on every
    // event, and only a body serde refuses is read again.
    let first = match serde_json::from_slice(bytes) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let mut value: Value =
        serde_json::from_slice(bytes).map_err(|_| ApiError::invalid_json(&first))?;
    whole_numbers(&mut value);
    serde_json::from_value(value).map_err(|e| ApiError::invalid_json(&e))
}

/// Rewrites every float with no fraction within `i64` as that integer.
pub fn whole_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| !n.is_i64() && !n.is_u64()) {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *n = (f as i64).into();
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// Whether the request carries `Authorization: Bearer <token>`, compared
/// in constant time (the time taken does not reveal a matching prefix).
pub fn bearer_is(req: &Request, token: &str) -> bool {
    let given = req
        .header("authorization")
        .and_then(|v| v.as_str())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    same_secret(given, token)
}

fn same_secret(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The admin endpoints' guard: `Err` when the request does not carry
/// `Authorization: Bearer <admin_token>` (403 while the token is empty:
/// the endpoints are off).
pub fn admin_only(req: &Request) -> Result<(), ApiError> {
    let token = var("admin_token").map_err(|e| ApiError::internal(&e))?;
    admin_check(req, &token)
}

fn admin_check(req: &Request, token: &str) -> Result<(), ApiError> {
    if token.is_empty() {
        return Err(ApiError::new(
            403,
            "the admin endpoints are disabled: set admin_token (SPIN_VARIABLE_ADMIN_TOKEN)",
        ));
    }
    if !bearer_is(req, token) {
        return Err(ApiError::new(401, "missing or wrong bearer token"));
    }
    Ok(())
}

/// The answer of a stage that takes one item or a batch of them: the
/// batch's answers, or the one item's answer as its own response.
pub fn batch_answer(batch: bool, results: Vec<aies_contract::BatchAnswer>) -> Response {
    if batch {
        return json(200, &aies_contract::BatchResponse { results });
    }
    match results.into_iter().next() {
        Some(aies_contract::BatchAnswer {
            task: Some(task), ..
        }) => json(200, &task),
        Some(aies_contract::BatchAnswer {
            status,
            error: Some(e),
            ..
        }) => error(status, e),
        _ => error(500, "no answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aies_contract::{BatchAnswer, TaskResult, TaskStatus};
    use spin_sdk::http::Method;

    fn with_auth(value: Option<&str>) -> Request {
        let mut req = Request::builder();
        req.method(Method::Get).uri("/admin/keys");
        if let Some(v) = value {
            req.header("authorization", v);
        }
        req.build()
    }

    #[test]
    fn whole_numbers_with_a_fraction_of_zero_are_integers() {
        #[derive(serde::Deserialize)]
        struct Body {
            max_tokens: u32,
            temperature: f32,
            items: Vec<u8>,
        }
        let body: Body =
            from_json(br#"{"max_tokens": 9441.0, "temperature": 1.0, "items": [2.0, 3]}"#).unwrap();
        assert_eq!(
            (body.max_tokens, body.temperature, body.items),
            (9441, 1.0, vec![2, 3])
        );
        // A real fraction, or a negative count, is still refused.
        assert!(
            from_json::<Body>(br#"{"max_tokens": 1.5, "temperature": 1, "items": []}"#).is_err()
        );
        assert!(
            from_json::<Body>(br#"{"max_tokens": -1.0, "temperature": 1, "items": []}"#).is_err()
        );
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        assert!(bearer_is(&with_auth(Some("Bearer s3cret")), "s3cret"));
        assert!(!bearer_is(&with_auth(Some("Bearer s3cre")), "s3cret"));
        assert!(!bearer_is(&with_auth(Some("Bearer s3cretx")), "s3cret"));
        assert!(!bearer_is(&with_auth(Some("s3cret")), "s3cret"));
        assert!(!bearer_is(&with_auth(None), "s3cret"));
        assert!(same_secret("", ""));
    }

    #[test]
    fn admin_endpoints_are_off_without_a_token() {
        let off = admin_check(&with_auth(Some("Bearer ")), "").unwrap_err();
        assert_eq!(off.status, 403);
        let wrong = admin_check(&with_auth(Some("Bearer nope")), "tok").unwrap_err();
        assert_eq!(
            (wrong.status, wrong.message.as_str(), wrong.challenge),
            (401, "missing or wrong bearer token", false)
        );
        assert_eq!(admin_check(&with_auth(Some("Bearer tok")), "tok"), Ok(()));
    }

    #[test]
    fn one_item_is_answered_as_its_own_request() {
        let task = TaskResult {
            task_id: "t".into(),
            status: TaskStatus::Failure,
            result: None,
            error: Some("boom".into()),
            model: None,
        };
        let one = batch_answer(false, vec![BatchAnswer::done(task.clone())]);
        assert_eq!(*one.status(), 200);
        assert_eq!(one.body(), serde_json::to_vec(&task).unwrap().as_slice());
        let refused = batch_answer(false, vec![BatchAnswer::failed(400, "invalid")]);
        assert_eq!(*refused.status(), 400);
        assert_eq!(refused.body(), br#"{"error":"invalid"}"#);
        assert_eq!(*batch_answer(false, vec![]).status(), 500);
        let all = batch_answer(true, vec![BatchAnswer::failed(503, "later")]);
        assert_eq!(
            all.body(),
            br#"{"results":[{"status":503,"error":"later"}]}"#
        );
    }
}
