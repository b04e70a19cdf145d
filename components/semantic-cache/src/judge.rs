//! Asking the near-duplicate judge through Spin's `llm.infer` (model
//! `aies-judge`): the host's judge where there is one (`aies-host`); on a
//! plain Spin host the call fails and the lookup falls back to the guard
//! with stricter thresholds.

use aies_contract::{CacheHit, JudgeCandidate, JudgeReply, JudgeRequest, JUDGE_MODEL};
use anyhow::{anyhow, ensure, Result};
use spin_sdk::llm;

/// Each candidate's score, in order, and the thresholds to read them by.
pub(crate) fn ask(model: &str, asked: &str, candidates: &[CacheHit]) -> Result<JudgeReply> {
    let question = JudgeRequest {
        model: model.rsplit(':').next().unwrap_or(model).to_string(),
        asked: asked.to_string(),
        candidates: candidates
            .iter()
            .map(|c| JudgeCandidate {
                prompt: c.prompt.clone(),
                similarity: c.similarity,
            })
            .collect(),
    };
    let answer = llm::infer(
        llm::InferencingModel::Other(JUDGE_MODEL),
        &serde_json::to_string(&question)?,
    )
    .map_err(|e| anyhow!("the judge is not available: {e:?}"))?;
    let reply: JudgeReply = serde_json::from_str(&answer.text)
        .map_err(|e| anyhow!("the judge's answer is not a JudgeReply: {e}"))?;
    ensure!(
        reply.scores.len() == candidates.len(),
        "the judge scored {} of {} candidates",
        reply.scores.len(),
        candidates.len()
    );
    Ok(reply)
}
