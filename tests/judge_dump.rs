//! `aies-judge-dump`: what `scripts/judge-explore.py` reads to try "same
//! question?" judges on a split of labeled pairs: every prompt's token
//! vectors (the model's last layer, special tokens and the prefix left out)
//! and pooled vector, and per pair the cosine and the guard's verdicts
//! (all checks; only the vetoes kept by issue 22: language, numbers,
//! units, negation, dates).
//!
//! `aies-judge-dump <model dir> <prefix> <out> <pairs.jsonl>...` writes
//! `<out>.bin` (f32 little-endian: each text's token rows, then its pooled
//! row), `<out>.json` (texts and token counts, in that order) and
//! `<out>.pairs.json`. It takes the tuning split only (judges are chosen
//! there): it refuses pairs that share a prompt with the held-out split.
//! With `AIES_JUDGE_LAYERS=<k>` the token vectors come from the model's
//! first k layers (the pooled vectors and verdicts stay the whole model's).

use aies_cache_guard::{verify, Analysis, Policy, Thresholds};
use aies_host::llm::{EmbeddingEngine, SentenceBert};
use aies_tests::pairs;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model_dir, prefix, out, files @ ..] = args.as_slice() else {
        bail!("usage: aies-judge-dump <model dir> <prefix> <out> <pairs.jsonl>...");
    };
    if files.is_empty() {
        bail!("usage: aies-judge-dump <model dir> <prefix> <out> <pairs.jsonl>...");
    }
    let model_dir = Path::new(model_dir);
    let name = model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let thresholds = Thresholds::for_model(&name);
    let mut labeled = Vec::new();
    for file in files {
        labeled.extend(pairs::read(Path::new(file))?);
    }
    pairs::refuse_leaks(&labeled, &pairs::read(Path::new(pairs::HELDOUT))?)?;
    let mut texts: Vec<String> = labeled
        .iter()
        .flat_map(|p| [p.a.clone(), p.b.clone()])
        .collect();
    texts.sort();
    texts.dedup();

    let model = SentenceBert::load(model_dir)?;
    let layers = match std::env::var("AIES_JUDGE_LAYERS") {
        Ok(k) => Some(k.parse()?),
        Err(_) => None,
    };
    let token_model = match layers {
        Some(k) => Some(SentenceBert::load_layers(model_dir, Some(k))?),
        None => None,
    };
    let mut index = Vec::new();
    let mut pooled = HashMap::new();
    let mut blob = std::io::BufWriter::new(std::fs::File::create(format!("{out}.bin"))?);
    for chunk in texts.chunks(16) {
        let prefixed: Vec<String> = chunk.iter().map(|t| format!("{prefix}{t}")).collect();
        let token_rows = token_model
            .as_ref()
            .unwrap_or(&model)
            .token_vectors(&prefixed, prefix.len())?;
        let vectors = model.embed(&prefixed)?.vectors;
        for ((text, rows), vector) in chunk.iter().zip(token_rows).zip(vectors) {
            index.push(serde_json::json!({"text": text, "n": rows.vectors.len()}));
            for x in rows.vectors.iter().chain([&vector]).flatten() {
                blob.write_all(&x.to_le_bytes())?;
            }
            pooled.insert(text.clone(), vector);
        }
    }
    blob.flush()?;
    std::fs::write(format!("{out}.json"), serde_json::to_string(&index)?)?;

    let vetoes = Policy::vetoes_only();
    let guard = Policy {
        reworded_similarity: thresholds.reworded,
        ..Policy::default()
    };
    let mut scored = Vec::new();
    for pair in &labeled {
        let similarity: f32 = pooled[&pair.a]
            .iter()
            .zip(&pooled[&pair.b])
            .map(|(x, y)| x * y)
            .sum();
        // As the cache asks it: the new prompt b against the cached a.
        let (asked, cached) = (Analysis::new(&pair.b), Analysis::new(&pair.a));
        let verdict = |policy: &Policy| {
            verify(&asked, &cached, similarity, policy)
                .err()
                .map_or("None", |m| m.as_str())
        };
        scored.push(serde_json::json!({
            "id": pair.id, "lang": pair.lang, "kind": pair.kind, "label": pair.label,
            "a": pair.a, "b": pair.b, "added": pair.added,
            "sim": similarity, "veto": verdict(&vetoes), "guard": verdict(&guard),
            "threshold": thresholds.similarity,
        }));
    }
    std::fs::write(format!("{out}.pairs.json"), serde_json::to_string(&scored)?)?;
    Ok(())
}
