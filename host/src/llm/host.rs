//! The `fermyon:spin/llm` host trait.

use aies_contract::JudgeRequest;

use super::{LlmState, JUDGE_MODEL, MAX_TEXTS};
use crate::bindings::llm::{
    EmbeddingsResult, EmbeddingsUsage, Error, Host, InferencingParams, InferencingResult,
    InferencingUsage,
};

/// Most bytes of a judge question (a prompt and up to 8 candidates).
const MAX_JUDGE_PROMPT: usize = 256 * 1024;

impl Host for LlmState {
    /// Only the judge: its prompt a `JudgeRequest` as JSON, its answer's
    /// text a `JudgeReply`.
    async fn infer(
        &mut self,
        model: String,
        prompt: String,
        _params: Option<InferencingParams>,
    ) -> wasmtime::Result<Result<InferencingResult, Error>> {
        if model != JUDGE_MODEL || !self.ai_models.contains(&model) {
            tracing::warn!(%model, "llm infer asked for, but this host has no generative model");
            return Ok(Err(Error::ModelNotSupported));
        }
        if prompt.len() > MAX_JUDGE_PROMPT {
            return Ok(Err(Error::InvalidInput(format!(
                "a judge question is at most {MAX_JUDGE_PROMPT} bytes"
            ))));
        }
        let req: JudgeRequest = match serde_json::from_str(&prompt) {
            Ok(req) => req,
            Err(e) => return Ok(Err(Error::InvalidInput(format!("judge question: {e}")))),
        };
        let engine = match self.models.judge().await {
            Some(Ok(engine)) => engine,
            Some(Err(e)) => return Ok(Err(Error::RuntimeError(e))),
            None => return Ok(Err(Error::ModelNotSupported)),
        };
        let judged = tokio::task::spawn_blocking(move || engine.judge(&req)).await;
        Ok(match judged {
            Ok(Ok(reply)) => Ok(InferencingResult {
                text: serde_json::to_string(&reply)?,
                usage: InferencingUsage {
                    prompt_token_count: 0,
                    generated_token_count: 0,
                },
            }),
            Ok(Err(e)) => Err(Error::InvalidInput(format!("{e:#}"))),
            Err(e) => Err(Error::RuntimeError(format!("the judge failed: {e}"))),
        })
    }

    async fn generate_embeddings(
        &mut self,
        model: String,
        text: Vec<String>,
    ) -> wasmtime::Result<Result<EmbeddingsResult, Error>> {
        if !self.ai_models.contains(&model) {
            return Ok(Err(Error::ModelNotSupported));
        }
        if text.len() > MAX_TEXTS {
            return Ok(Err(Error::InvalidInput(format!(
                "at most {MAX_TEXTS} texts per call"
            ))));
        }
        let engine = match self.models.get(&model).await {
            Some(Ok(engine)) => engine,
            Some(Err(e)) => return Ok(Err(Error::RuntimeError(e))),
            None => return Ok(Err(Error::ModelNotSupported)),
        };
        let result = engine.embed(text, self.priority).await;
        Ok(match result {
            Ok(out) => Ok(EmbeddingsResult {
                embeddings: out.vectors,
                usage: EmbeddingsUsage {
                    prompt_token_count: out.tokens.iter().sum::<usize>() as u32,
                },
            }),
            Err(e) => Err(Error::RuntimeError(format!("{e:#}"))),
        })
    }
}
