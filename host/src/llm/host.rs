//! The `fermyon:spin/llm` host trait.

use super::{LlmState, MAX_TEXTS};
use crate::bindings::llm::{
    EmbeddingsResult, EmbeddingsUsage, Error, Host, InferencingParams, InferencingResult,
};

impl Host for LlmState {
    async fn infer(
        &mut self,
        model: String,
        _prompt: String,
        _params: Option<InferencingParams>,
    ) -> wasmtime::Result<Result<InferencingResult, Error>> {
        tracing::warn!(%model, "llm infer asked for, but this host has no generative model");
        Ok(Err(Error::ModelNotSupported))
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
