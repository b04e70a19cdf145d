//! The public API's bodies: what `POST /process` takes, what a task looks
//! like, and the error body every stage answers with.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 16_000;

/// Body of `POST /process`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRequest {
    pub prompt: String,
    #[serde(default = "crate::yes")]
    pub use_cache: bool,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// System prompt / instructions for the LLM.
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// A stricter (or, down to the model's floor, looser) similarity for
    /// the semantic tier, for this request only.
    #[serde(default)]
    pub cache_threshold: Option<f32>,
    /// How sure the cache's judge must be that a nearby prompt asks the
    /// same thing, for this request only (`cache_judge` variable otherwise).
    #[serde(default)]
    pub cache_judge: Option<crate::JudgeLevel>,
}

impl ProcessRequest {
    pub fn generation(&self) -> Generation {
        Generation {
            system: self.system.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        }
    }
}

/// Largest `max_tokens` accepted.
pub const MAX_TOKENS_LIMIT: u32 = 65_536;

/// What changes an LLM's answer besides the prompt and the model. A cached
/// answer is served only to a request with the same (its scope).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Generation {
    /// System prompt / instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl Generation {
    /// Why these parameters cannot be sent to an LLM, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if let Some(system) = &self.system {
            if system.chars().count() > MAX_PROMPT_CHARS {
                return Some(format!(
                    "`system` is longer than {MAX_PROMPT_CHARS} characters"
                ));
            }
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Some(format!("`temperature` must be between 0 and 2, got {t}"));
            }
        }
        if let Some(n) = self.max_tokens {
            if !(1..=MAX_TOKENS_LIMIT).contains(&n) {
                return Some(format!(
                    "`max_tokens` must be between 1 and {MAX_TOKENS_LIMIT}, got {n}"
                ));
            }
        }
        None
    }

    /// The parameters as one unambiguous text (part of a cache scope).
    pub fn canonical(&self) -> String {
        let fields = (&self.system, self.temperature, self.max_tokens);
        serde_json::to_string(&fields).unwrap_or_default()
    }
}

/// Task states, as stored in the result backend and returned by the API.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskStatus {
    Pending,
    Started,
    Success,
    Failure,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Started => "STARTED",
            TaskStatus::Success => "SUCCESS",
            TaskStatus::Failure => "FAILURE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => TaskStatus::Pending,
            "STARTED" => TaskStatus::Started,
            "SUCCESS" => TaskStatus::Success,
            "FAILURE" => TaskStatus::Failure,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Success | TaskStatus::Failure)
    }
}

/// A task as the API and `datos_procesados` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskResult {
    pub task_id: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Which model answered, e.g. `gemini:gemini-2.0-flash` or `offline-stand-in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Every error body of every stage: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_request_rejects_unknown_fields_and_wrong_types() {
        assert!(serde_json::from_str::<ProcessRequest>(r#"{"prompt":"a","x":1}"#).is_err());
        assert!(serde_json::from_str::<ProcessRequest>(r#"{"prompt":5}"#).is_err());
        let ok: ProcessRequest = serde_json::from_str(r#"{"prompt":"a"}"#).unwrap();
        assert!(ok.use_cache);
    }

    #[test]
    fn generation_problems_name_the_field_and_its_bounds() {
        let ok = Generation {
            system: Some("be brief".into()),
            temperature: Some(2.0),
            max_tokens: Some(MAX_TOKENS_LIMIT),
        };
        assert_eq!(ok.problem(), None);
        let hot = Generation {
            temperature: Some(2.5),
            ..Generation::default()
        };
        assert_eq!(
            hot.problem().as_deref(),
            Some("`temperature` must be between 0 and 2, got 2.5")
        );
        let none = Generation {
            max_tokens: Some(0),
            ..Generation::default()
        };
        assert_eq!(
            none.problem().as_deref(),
            Some("`max_tokens` must be between 1 and 65536, got 0")
        );
        let long = Generation {
            system: Some("x".repeat(MAX_PROMPT_CHARS + 1)),
            ..Generation::default()
        };
        assert_eq!(
            long.problem().as_deref(),
            Some("`system` is longer than 16000 characters")
        );
    }

    #[test]
    fn canonical_generation_tells_parameters_apart() {
        let plain = Generation::default();
        assert_eq!(plain.canonical(), "[null,null,null]");
        let warm = Generation {
            temperature: Some(0.5),
            ..Generation::default()
        };
        assert_eq!(warm.canonical(), "[null,0.5,null]");
        // The system prompt "null" is not the absence of one.
        let null_text = Generation {
            system: Some("null".into()),
            ..Generation::default()
        };
        assert_ne!(null_text.canonical(), plain.canonical());
    }

    #[test]
    fn task_status_round_trips_through_its_text() {
        for s in [
            TaskStatus::Pending,
            TaskStatus::Started,
            TaskStatus::Success,
            TaskStatus::Failure,
        ] {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(TaskStatus::parse("success"), None);
        assert!(TaskStatus::Failure.is_final() && !TaskStatus::Started.is_final());
    }

    #[test]
    fn error_body_is_one_field() {
        let body = ErrorBody {
            error: "no task x".into(),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"no task x"}"#
        );
    }
}
