//! OpenAI's wire format, as pure functions: the requests as OpenAI's
//! clients send them, what they become here, and errors as those clients
//! read them.

use aies_contract::{ProcessRequest, MAX_PROMPT_CHARS, MAX_TOKENS_LIMIT};
use aies_guest::{json, ApiError};
use serde::Deserialize;
use serde_json::{json as j, Value};
use spin_sdk::http::Response;

/// Most inputs of one `/v1/embeddings` request.
const MAX_INPUTS: usize = 256;

/// An error in OpenAI's format (its extra fields and challenge left out);
/// the type follows the status.
pub(super) fn openai_error(e: &ApiError) -> Response {
    let kind = match e.status {
        400 | 404 | 409 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "api_error",
    };
    let mut resp = json(
        e.status,
        &j!({"error": {"message": e.message, "type": kind, "param": null, "code": null}}),
    );
    if let Some(allow) = e.allow {
        resp.set_header("allow", allow);
    }
    if let Some(secs) = e.retry_after {
        resp.set_header("retry-after", secs.to_string());
    }
    resp
}

#[derive(Deserialize)]
pub(super) struct ChatRequest {
    #[serde(default)]
    pub model: String,
    #[serde(deserialize_with = "objects")]
    messages: Vec<Message>,
    #[serde(default)]
    pub stream: bool,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    n: Option<u32>,
    tools: Option<Value>,
    functions: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Content,
}

/// A message's content: text, or parts of which only text is supported.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(#[serde(deserialize_with = "objects")] Vec<Part>),
}

/// A list of objects: serde would also read a struct from an array, which
/// OpenAI's wire format never sends.
fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Vec::<serde_json::Map<String, Value>>::deserialize(d)?
        .into_iter()
        .map(|m| serde_json::from_value(Value::Object(m)).map_err(serde::de::Error::custom))
        .collect()
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

impl Content {
    fn text(&self) -> Result<String, String> {
        match self {
            Content::Text(t) => Ok(t.clone()),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| match p.kind.as_str() {
                    "text" => Ok(p.text.as_str()),
                    other => Err(format!("content parts of type {other:?} are not supported")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|texts| texts.join("\n")),
        }
    }
}

impl ChatRequest {
    /// The task this conversation asks for; `Err` is a 400's message.
    pub(super) fn process_request(&self) -> Result<ProcessRequest, String> {
        if self.n.is_some_and(|n| n != 1) {
            return Err("only n = 1 is supported".into());
        }
        for n in [self.max_tokens, self.max_completion_tokens]
            .into_iter()
            .flatten()
        {
            if !(1..=MAX_TOKENS_LIMIT).contains(&n) {
                return Err(format!(
                    "`max_tokens` and `max_completion_tokens` must be between 1 and {MAX_TOKENS_LIMIT}, got {n}"
                ));
            }
        }
        if self.tools.is_some() || self.functions.is_some() {
            return Err("tools and functions are not supported".into());
        }
        let mut system = Vec::new();
        let mut turns = Vec::new();
        for (i, m) in self.messages.iter().enumerate() {
            let text = m.content.text()?;
            if text.trim().is_empty() {
                return Err(format!("messages[{i}] ({}) has no text", m.role));
            }
            match m.role.as_str() {
                "system" | "developer" => system.push(text),
                "user" => turns.push(("User", text)),
                "assistant" => turns.push(("Assistant", text)),
                other => return Err(format!("messages with role {other:?} are not supported")),
            }
        }
        let prompt = match turns.as_slice() {
            [] => return Err("`messages` needs at least one user or assistant message".into()),
            [("User", only)] => only.clone(),
            _ => turns
                .iter()
                .map(|(who, text)| format!("{who}: {text}"))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        Ok(ProcessRequest {
            prompt,
            use_cache: true,
            metadata: None,
            system: (!system.is_empty()).then(|| system.join("\n")),
            temperature: self.temperature,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            cache_threshold: None,
            cache_judge: None,
        })
    }
}

/// A final task's result, or its error with the status OpenAI's clients
/// expect: 429 when the provider still said so after our retries, else 502.
pub(super) fn task_answer(
    task_id: &str,
    result: Option<String>,
    error: Option<String>,
) -> Result<String, ApiError> {
    match (result, error) {
        (Some(result), None) => Ok(result),
        (_, error_text) => {
            let text = error_text.unwrap_or_else(|| "the task failed".into());
            let status = if text.contains("status 429") {
                429
            } else {
                502
            };
            Err(ApiError::new(status, format!("task {task_id}: {text}")))
        }
    }
}

#[derive(Deserialize)]
pub(super) struct EmbeddingsRequest {
    pub input: Input,
    #[serde(default)]
    pub encoding_format: Option<String>,
    pub dimensions: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Input {
    One(String),
    Many(Vec<String>),
}

/// The texts to embed, and whether to answer in base64.
pub(super) fn inputs(
    input: Input,
    encoding_format: Option<&str>,
) -> Result<(Vec<String>, bool), ApiError> {
    let texts = match input {
        Input::One(t) => vec![t],
        Input::Many(ts) => ts,
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "`input` must have 1 to {MAX_INPUTS} texts"
        )));
    }
    if texts.iter().any(|t| t.is_empty()) {
        return Err(ApiError::bad_request("`input` texts must not be empty"));
    }
    if texts.iter().any(|t| t.chars().count() > MAX_PROMPT_CHARS) {
        return Err(ApiError::bad_request(format!(
            "an input is longer than {MAX_PROMPT_CHARS} characters"
        )));
    }
    let base64 = match encoding_format {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown encoding_format {other:?}"
            )))
        }
    };
    Ok((texts, base64))
}

/// The vector as OpenAI's `encoding_format: base64`: little-endian f32s.
pub(super) fn encode_base64(vector: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_parts_are_objects() {
        let parse = |chat: Value| serde_json::from_value::<ChatRequest>(chat).is_ok();
        assert!(parse(j!({"messages": [{"role": "user", "content": "hi"}]})));
        assert!(!parse(j!({"messages": [["user", "hi"]]})));
        assert!(!parse(
            j!({"messages": [{"role": "user", "content": [["text", "hi"]]}]})
        ));
    }

    fn process(chat: Value) -> Result<ProcessRequest, String> {
        serde_json::from_value::<ChatRequest>(chat)
            .unwrap()
            .process_request()
    }

    #[test]
    fn one_user_message_is_the_prompt_and_system_messages_the_system() {
        let p = process(j!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "No lists."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
            ],
            "temperature": 0.2,
            "max_tokens": 10,
            "max_completion_tokens": 20,
        }))
        .unwrap();
        assert_eq!(p.prompt, "Hi\nthere");
        assert_eq!(p.system.as_deref(), Some("Be brief.\nNo lists."));
        assert_eq!((p.temperature, p.max_tokens), (Some(0.2), Some(20)));
        assert!(p.use_cache && p.cache_threshold.is_none());
    }

    #[test]
    fn a_conversation_becomes_its_transcript() {
        let p = process(j!({"messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "times 3?"},
        ]}))
        .unwrap();
        assert_eq!(p.prompt, "User: 2+2?\nAssistant: 4\nUser: times 3?");
        assert_eq!(p.system, None);
    }

    #[test]
    fn what_is_not_supported_says_so() {
        let refused = |chat: Value| process(chat).unwrap_err();
        let hi = j!([{"role": "user", "content": "hi"}]);
        assert_eq!(
            refused(j!({"messages": hi, "n": 2})),
            "only n = 1 is supported"
        );
        // Both limits are checked, not only the one that is used.
        assert!(
            refused(j!({"messages": hi, "max_tokens": 0, "max_completion_tokens": 5}))
                .starts_with("`max_tokens` and `max_completion_tokens` must be between 1 and")
        );
        assert_eq!(
            refused(j!({"messages": hi, "tools": []})),
            "tools and functions are not supported"
        );
        assert_eq!(
            refused(j!({"messages": [{"role": "tool", "content": "x"}]})),
            "messages with role \"tool\" are not supported"
        );
        assert_eq!(
            refused(j!({"messages": [{"role": "system", "content": "x"}]})),
            "`messages` needs at least one user or assistant message"
        );
        // Each message, not only the whole conversation, needs text.
        assert_eq!(
            refused(
                j!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]})
            ),
            "messages[1] (assistant) has no text"
        );
        assert_eq!(
            refused(
                j!({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]})
            ),
            "messages[0] (user) has no text"
        );
        assert_eq!(
            refused(j!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})),
            "content parts of type \"image_url\" are not supported"
        );
    }

    #[test]
    fn errors_take_the_type_of_their_status() {
        let body = |status: u16| {
            let resp = openai_error(&ApiError::new(status, "m").with_field("task_id", "t"));
            assert_eq!(*resp.status(), status);
            serde_json::from_slice::<Value>(resp.body()).unwrap()
        };
        assert_eq!(
            body(413),
            j!({"error": {"message": "m", "type": "invalid_request_error", "param": null, "code": null}})
        );
        assert_eq!(body(401)["error"]["type"], "authentication_error");
        assert_eq!(body(403)["error"]["type"], "permission_error");
        assert_eq!(body(429)["error"]["type"], "rate_limit_error");
        assert_eq!(body(504)["error"]["type"], "api_error");
    }

    #[test]
    fn failed_tasks_map_to_429_or_502() {
        assert_eq!(task_answer("t", Some("ok".into()), None).unwrap(), "ok");
        let limited = task_answer("t", None, Some("gave up: status 429: slow down".into()));
        let e = limited.unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (429, "task t: gave up: status 429: slow down")
        );
        let failed = task_answer("t", None, None).unwrap_err();
        assert_eq!(
            (failed.status, failed.message.as_str()),
            (502, "task t: the task failed")
        );
    }

    #[test]
    fn embedding_inputs_are_checked_and_encoded() {
        let (texts, base64) = inputs(Input::One("a".into()), None).unwrap();
        assert_eq!((texts, base64), (vec!["a".to_string()], false));
        assert!(
            inputs(Input::Many(vec!["a".into()]), Some("base64"))
                .unwrap()
                .1
        );
        let message = |input, format| inputs(input, format).unwrap_err().message;
        assert_eq!(
            message(Input::Many(vec![]), None),
            "`input` must have 1 to 256 texts"
        );
        assert_eq!(
            message(Input::One(String::new()), None),
            "`input` texts must not be empty"
        );
        assert_eq!(
            message(Input::One("a".into()), Some("int8")),
            "unknown encoding_format \"int8\""
        );
        assert_eq!(encode_base64(&[1.0]), "AACAPw==");
    }
}
