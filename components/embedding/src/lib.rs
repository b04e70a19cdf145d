//! Text -> vectors, as a library: the `embed` component serves it over
//! HTTP to the other stages, and `cache-fill` (on the Redis trigger, where
//! Spin allows no service chaining) embeds through it directly.
//!
//! The provider is chosen by the `embedding_provider` variable:
//! - `local` (default, offline): through Spin's `fermyon:spin/llm`
//!   `generate-embeddings`, the first model of `local_embedding_models`
//!   the host supports: multilingual-e5-small (English and Spanish alike),
//!   then all-MiniLM-L6-v2 (English; the only one Spin's own local backend
//!   has). The answer names the model used. The component needs the models
//!   in its `ai_models`.
//! - `gemini`: `gemini-embedding-001` through `:batchEmbedContents`;
//! - `openai`: any OpenAI-compatible `/v1/embeddings`.
//!
//! Every vector must have `vector_dimension` entries, or the call fails
//! with an error that says so (the cache index is built for that dimension).

use aies_contract::EmbedResponse;
use aies_guest::{post_json, var, var_parsed};
use anyhow::{bail, Context, Result};
use serde_json::{json as j, Value};
use spin_sdk::llm;

/// Embeds `texts` with the configured provider; the answer names the model.
pub async fn embed(texts: &[String]) -> Result<EmbedResponse> {
    let dimension: usize = var_parsed("vector_dimension")?;
    let provider = var("embedding_provider")?;
    let (model, vectors, tokens) = match provider.as_str() {
        "local" => local(texts)?,
        "gemini" => with_no_count(gemini(texts, dimension).await?),
        "openai" => with_no_count(openai(texts).await?),
        other => bail!("unknown embedding_provider {other:?}: use local, gemini or openai"),
    };
    if vectors.len() != texts.len() {
        bail!(
            "{model} returned {} vectors for {} texts",
            vectors.len(),
            texts.len()
        );
    }
    if let Some(v) = vectors.iter().find(|v| v.len() != dimension) {
        bail!(
            "{model} returned vectors of dimension {}, but VECTOR_DIMENSION (variable vector_dimension) is {dimension}",
            v.len()
        );
    }
    Ok(EmbedResponse {
        model,
        vectors,
        tokens,
    })
}

fn with_no_count(
    (model, vectors): (String, Vec<Vec<f32>>),
) -> (String, Vec<Vec<f32>>, Option<u32>) {
    (model, vectors, None)
}

/// Text some models expect before every input (the E5 family: "query: ").
fn prefix(model: &str) -> &'static str {
    if model.contains("e5") {
        "query: "
    } else {
        ""
    }
}

/// The first supported local model: its name, vectors and token count.
fn local(texts: &[String]) -> Result<(String, Vec<Vec<f32>>, Option<u32>)> {
    let wanted = var("local_embedding_models")?;
    for model in wanted.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let input: Vec<String> = texts
            .iter()
            .map(|t| format!("{}{t}", prefix(model)))
            .collect();
        match llm::generate_embeddings(llm::EmbeddingModel::Other(model), &input) {
            Ok(out) => {
                let tokens = out.usage.prompt_token_count;
                return Ok((format!("local:{model}"), out.embeddings, Some(tokens)));
            }
            Err(llm::Error::ModelNotSupported) => continue,
            Err(e) => bail!("local {model}: {e}"),
        }
    }
    bail!("the host supports none of local_embedding_models ({wanted})")
}

async fn gemini(texts: &[String], dimension: usize) -> Result<(String, Vec<Vec<f32>>)> {
    let model = var("gemini_embedding_model")?;
    let key = var("google_api_key")?;
    if key.is_empty() {
        bail!("embedding_provider is gemini but google_api_key (GOOGLE_API_KEY) is empty");
    }
    let requests: Vec<Value> = texts
        .iter()
        .map(|t| {
            j!({
                "model": format!("models/{model}"),
                "content": {"parts": [{"text": t}]},
                "outputDimensionality": dimension,
            })
        })
        .collect();
    let url = format!(
        "{}/v1beta/models/{model}:batchEmbedContents",
        var("gemini_base_url")?
    );
    let body = post_json(
        &url,
        &[("x-goog-api-key", &key)],
        &j!({ "requests": requests }),
    )
    .await?
    .json(&url)?;
    let vectors = body["embeddings"]
        .as_array()
        .context("Gemini answer has no `embeddings`")?
        .iter()
        .map(|e| floats(&e["values"]))
        .collect::<Result<_>>()?;
    Ok((format!("gemini:{model}"), vectors))
}

async fn openai(texts: &[String]) -> Result<(String, Vec<Vec<f32>>)> {
    let model = var("openai_embedding_model")?;
    let key = var("openai_api_key")?;
    let url = format!("{}/v1/embeddings", var("openai_base_url")?);
    let auth = format!("Bearer {key}");
    let headers: &[(&str, &str)] = if key.is_empty() {
        &[]
    } else {
        &[("authorization", &auth)]
    };
    let body = post_json(&url, headers, &j!({"model": model, "input": texts}))
        .await?
        .json(&url)?;
    let mut data: Vec<(u64, Vec<f32>)> = body["data"]
        .as_array()
        .context("embeddings answer has no `data`")?
        .iter()
        .map(|d| Ok((d["index"].as_u64().unwrap_or(0), floats(&d["embedding"])?)))
        .collect::<Result<_>>()?;
    data.sort_by_key(|(i, _)| *i);
    Ok((
        format!("openai:{model}"),
        data.into_iter().map(|(_, v)| v).collect(),
    ))
}

fn floats(v: &Value) -> Result<Vec<f32>> {
    v.as_array()
        .context("embedding is not an array")?
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .context("embedding holds a non-number")
        })
        .collect()
}
