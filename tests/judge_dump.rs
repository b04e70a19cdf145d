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
//! `<out>.pairs.json`. Give it the tuning split only: judges are chosen
//! there, never on the held-out split.

use aies_cache_guard::{verify, Analysis, Mismatch, Policy, Thresholds};
use aies_host::llm::{EmbeddingEngine, SentenceBert};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model_dir, prefix, out, files @ ..] = args.as_slice() else {
        bail!("usage: aies-judge-dump <model dir> <prefix> <out> <pairs.jsonl>...");
    };
    let model_dir = Path::new(model_dir);
    let name = model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let thresholds = Thresholds::for_model(&name);
    let mut pairs: Vec<serde_json::Value> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            pairs.push(serde_json::from_str(line).with_context(|| format!("in {file}"))?);
        }
    }
    let prompt = |p: &serde_json::Value, k: &str| p[k].as_str().unwrap_or_default().to_string();
    let mut texts: Vec<String> = pairs
        .iter()
        .flat_map(|p| [prompt(p, "a"), prompt(p, "b")])
        .collect();
    texts.sort();
    texts.dedup();

    let model = SentenceBert::load(model_dir)?;
    let mut index = Vec::new();
    let mut pooled = HashMap::new();
    let mut blob = std::io::BufWriter::new(std::fs::File::create(format!("{out}.bin"))?);
    for chunk in texts.chunks(16) {
        let prefixed: Vec<String> = chunk.iter().map(|t| format!("{prefix}{t}")).collect();
        let token_rows = model.token_vectors(&prefixed, prefix.len())?;
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

    let vetoes = Policy {
        skip: vec![
            Mismatch::Direction,
            Mismatch::Order,
            Mismatch::Content,
            Mismatch::Name,
            Mismatch::Reworded,
        ],
        ..Policy::default()
    };
    let guard = Policy {
        reworded_similarity: thresholds.reworded,
        ..Policy::default()
    };
    for pair in &mut pairs {
        let (a, b) = (prompt(pair, "a"), prompt(pair, "b"));
        let similarity: f32 = pooled[&a].iter().zip(&pooled[&b]).map(|(x, y)| x * y).sum();
        // As the cache asks it: the new prompt b against the cached a.
        let (asked, cached) = (Analysis::new(&b), Analysis::new(&a));
        let verdict = |policy: &Policy| {
            verify(&asked, &cached, similarity, policy)
                .err()
                .map_or("None", |m| m.as_str())
                .to_string()
        };
        pair["sim"] = similarity.into();
        pair["veto"] = verdict(&vetoes).into();
        pair["guard"] = verdict(&guard).into();
        pair["threshold"] = thresholds.similarity.into();
    }
    std::fs::write(format!("{out}.pairs.json"), serde_json::to_string(&pairs)?)?;
    Ok(())
}
