//! Reading and checking the bodies of `POST /process` and
//! `POST /process/batch`: every rule a prompt's request must meet, before
//! anything is looked up or recorded.

use aies_contract::{ProcessRequest, MAX_PROMPT_CHARS};
use aies_guest::ApiError;
use serde_json::Value;

/// Largest request body accepted by `POST /process`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest body of `POST /process/batch`, and most prompts in one.
pub const MAX_BATCH_BODY_BYTES: usize = 1024 * 1024;
pub const MAX_BATCH_PROMPTS: usize = 100;

/// A request's JSON object body, within `limit` bytes.
pub fn object_body(body: &[u8], limit: usize) -> Result<Value, ApiError> {
    if body.len() > limit {
        return Err(ApiError::too_large(limit));
    }
    let mut value: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e))?;
    aies_guest::whole_numbers(&mut value);
    // serde would also read a struct from an array; only an object is valid.
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid JSON body: expected an object",
        ));
    }
    Ok(value)
}

/// The prompts of a batch body: `requests`, an array of 1 to
/// [`MAX_BATCH_PROMPTS`] items (each checked on its own later).
pub fn batch_items(mut body: Value) -> Result<Vec<Value>, ApiError> {
    match body.get_mut("requests").map(Value::take) {
        Some(Value::Array(items))
            if !items.is_empty()
                && items.len() <= MAX_BATCH_PROMPTS
                && items.iter().all(Value::is_object) =>
        {
            Ok(items)
        }
        _ => Err(ApiError::bad_request(format!(
            "`requests` must be an array of 1 to {MAX_BATCH_PROMPTS} objects"
        ))),
    }
}

/// Checks one prompt's request.
pub fn check(value: Value) -> Result<ProcessRequest, ApiError> {
    if !value.is_object() {
        return Err(ApiError::bad_request("expected an object"));
    }
    let body: ProcessRequest =
        serde_json::from_value(value).map_err(|e| ApiError::invalid_json(&e))?;
    validate(body)
}

/// Checks a prompt's fields (trimming it).
pub fn validate(mut body: ProcessRequest) -> Result<ProcessRequest, ApiError> {
    body.prompt = body.prompt.trim().to_string();
    if body.prompt.is_empty() {
        return Err(ApiError::bad_request("`prompt` must not be empty"));
    }
    if body.prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(ApiError::new(
            413,
            format!("`prompt` is longer than {MAX_PROMPT_CHARS} characters"),
        ));
    }
    if let Some(problem) = body.generation().problem() {
        return Err(ApiError::bad_request(problem));
    }
    if let Some(t) = body.cache_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(ApiError::bad_request(format!(
            "`cache_threshold` must be between 0 and 1, got {t}"
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(value: Value) -> (u16, String) {
        let e = check(value).unwrap_err();
        (e.status, e.message)
    }

    #[test]
    fn bodies_are_json_objects_within_the_limit() {
        assert!(object_body(br#"{"prompt":"hi"}"#, 100).is_ok());
        let big = object_body(&[b' '; 11], 10).unwrap_err();
        assert_eq!(
            (big.status, big.message.as_str()),
            (413, "request body is larger than 10 bytes")
        );
        let array = object_body(b"[1]", 100).unwrap_err();
        assert_eq!(array.message, "invalid JSON body: expected an object");
        let broken = object_body(b"{", 100).unwrap_err();
        assert_eq!(broken.status, 400);
        assert!(
            broken.message.starts_with("invalid JSON body: "),
            "{broken}"
        );
    }

    #[test]
    fn prompts_are_trimmed_and_bounded() {
        let ok = check(json!({"prompt": "  hi  "})).unwrap();
        assert_eq!((ok.prompt.as_str(), ok.use_cache), ("hi", true));
        assert_eq!(
            refused(json!({"prompt": " \n "})),
            (400, "`prompt` must not be empty".into())
        );
        assert_eq!(
            refused(json!({"prompt": "x".repeat(MAX_PROMPT_CHARS + 1)})),
            (413, "`prompt` is longer than 16000 characters".into())
        );
        // Characters, not bytes.
        assert!(check(json!({"prompt": "é".repeat(MAX_PROMPT_CHARS)})).is_ok());
    }

    #[test]
    fn every_field_is_checked() {
        assert_eq!(refused(json!("hi")), (400, "expected an object".into()));
        let (status, message) = refused(json!({"prompt": "a", "x": 1}));
        assert_eq!(status, 400);
        assert!(
            message.starts_with("invalid JSON body: unknown field `x`"),
            "{message}"
        );
        assert_eq!(
            refused(json!({"prompt": "a", "temperature": 3.0})),
            (400, "`temperature` must be between 0 and 2, got 3".into())
        );
        assert_eq!(
            refused(json!({"prompt": "a", "cache_threshold": 1.5})),
            (
                400,
                "`cache_threshold` must be between 0 and 1, got 1.5".into()
            )
        );
    }

    #[test]
    fn a_batch_holds_1_to_100_requests() {
        // Each object is checked on its own later (its own 400 in the
        // answer); an item that is not an object refuses the batch.
        let items = batch_items(json!({"requests": [{"prompt": "a"}, {"prompt": ""}]})).unwrap();
        assert_eq!(items.len(), 2);
        let message = "`requests` must be an array of 1 to 100 objects";
        for bad in [
            json!({"requests": [{"prompt": "a"}, 5]}),
            json!({"requests": []}),
            json!({"requests": {"prompt": "a"}}),
            json!({}),
            json!({"requests": vec![json!({"prompt": "a"}); 101]}),
        ] {
            assert_eq!(batch_items(bad).unwrap_err().message, message);
        }
    }
}
