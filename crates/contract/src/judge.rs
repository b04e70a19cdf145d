//! The near-duplicate judge's wire format (issue 22). The semantic cache
//! asks it through Spin's `llm.infer`, model [`JUDGE_MODEL`]: the prompt
//! is a [`JudgeRequest`] as JSON, the answer's text a [`JudgeReply`]. A
//! host without the judge (a plain Spin host) answers with an error, and
//! the cache falls back to its guard with stricter thresholds.

use serde::{Deserialize, Serialize};

/// The model name the judge answers to in `ai_models` and `llm.infer`.
pub const JUDGE_MODEL: &str = "aies-judge";
/// Most candidates one question may carry (the KNN returns 5).
pub const MAX_JUDGE_CANDIDATES: usize = 8;

/// "Does `asked` ask the same thing as each candidate?"
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JudgeRequest {
    /// The embedding model whose similarities the candidates carry: the
    /// judge has weights per model.
    pub model: String,
    pub asked: String,
    pub candidates: Vec<JudgeCandidate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JudgeCandidate {
    /// The cached prompt.
    pub prompt: String,
    /// Its cosine similarity to the asked prompt under `model`.
    pub similarity: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JudgeReply {
    /// Per candidate, in order: the probability that it asks the same thing.
    pub scores: Vec<f32>,
    /// The similarity a candidate needs before its score counts.
    pub candidate_similarity: f32,
    /// The score each level needs, chosen on the tuning split.
    pub thresholds: JudgeThresholds,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct JudgeThresholds {
    pub strict: f32,
    pub default: f32,
    pub lenient: f32,
}

impl JudgeThresholds {
    pub fn at(&self, level: JudgeLevel) -> f32 {
        match level {
            JudgeLevel::Strict => self.strict,
            JudgeLevel::Default => self.default,
            JudgeLevel::Lenient => self.lenient,
        }
    }
}

/// How sure the judge must be: `cache_judge` per request or as a variable.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JudgeLevel {
    Strict,
    #[default]
    Default,
    Lenient,
}

impl JudgeLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            JudgeLevel::Strict => "strict",
            JudgeLevel::Default => "default",
            JudgeLevel::Lenient => "lenient",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "strict" => Some(JudgeLevel::Strict),
            "default" => Some(JudgeLevel::Default),
            "lenient" => Some(JudgeLevel::Lenient),
            _ => None,
        }
    }
}
