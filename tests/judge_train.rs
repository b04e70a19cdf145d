//! `aies-judge-train`: what `scripts/judge-train.py` fits the judge on,
//! from the tuning split only (it refuses pairs that share a prompt with
//! the held-out split): per pair the judge's features (the host's own
//! code, `aies_host::llm::judge::features`, so training and serving never
//! differ), the cosine under each embedding model, whether the exact tier
//! would answer it, and the guard's cheap vetoes (numbers, units, dates,
//! negation, language), which run before the judge.
//!
//! `aies-judge-train <ai-models dir> <out.json> [pairs.jsonl]`

use aies_cache_guard::{normalize, verify, Analysis, Policy, Thresholds};
use aies_host::llm::judge::{pair_features, FEATURES, JUDGE_LAYERS};
use aies_host::llm::{EmbeddingEngine, JudgeEngine, SentenceBert, E5_SMALL, MINILM};
use aies_tests::pairs;
use anyhow::{bail, Result};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// The prefix each embedding model expects before a query.
pub const MODELS: [(&str, &str); 2] = [(E5_SMALL, "query: "), (MINILM, "")];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (models_dir, out, file) = match args.as_slice() {
        [_, dir, out] => (dir, out, pairs::TUNING),
        [_, dir, out, file] => (dir, out, file.as_str()),
        _ => bail!("usage: aies-judge-train <ai-models dir> <out.json> [pairs.jsonl]"),
    };
    let models_dir = Path::new(models_dir);
    let labeled = pairs::read(Path::new(file))?;
    pairs::refuse_leaks(&labeled, &pairs::read(Path::new(pairs::HELDOUT))?)?;
    let started = Instant::now();

    let engine = JudgeEngine::encoder_only(&models_dir.join(E5_SMALL))?;
    let texts: Vec<(String, String)> = labeled.iter().map(|p| (p.a.clone(), p.b.clone())).collect();
    let x = pair_features(&engine, &texts)?;
    eprintln!(
        "features of {} pairs in {:.1} s",
        labeled.len(),
        started.elapsed().as_secs_f32()
    );

    let mut by_model = serde_json::Map::new();
    for (name, prefix) in MODELS {
        let started = Instant::now();
        let model = SentenceBert::load(&models_dir.join(name))?;
        let mut unique: Vec<&str> = labeled
            .iter()
            .flat_map(|p| [p.a.as_str(), p.b.as_str()])
            .collect();
        unique.sort();
        unique.dedup();
        let mut pooled: HashMap<&str, Vec<f32>> = HashMap::new();
        for chunk in unique.chunks(32) {
            let prefixed: Vec<String> = chunk.iter().map(|t| format!("{prefix}{t}")).collect();
            for (text, v) in chunk.iter().zip(model.embed(&prefixed)?.vectors) {
                pooled.insert(text, v);
            }
        }
        let sims: Vec<f32> = labeled
            .iter()
            .map(|p| {
                let (a, b) = (&pooled[p.a.as_str()], &pooled[p.b.as_str()]);
                a.iter().zip(b).map(|(x, y)| x * y).sum()
            })
            .collect();
        by_model.insert(name.to_string(), json!({"similarity": sims}));
        eprintln!(
            "{name}: {} texts embedded in {:.1} s",
            unique.len(),
            started.elapsed().as_secs_f32()
        );
    }

    let vetoes = Policy::vetoes_only();
    let rows: Vec<_> = labeled
        .iter()
        .zip(&x)
        .map(|(p, x)| {
            // As the cache asks it: the new prompt b against the cached a.
            let veto = verify(&Analysis::new(&p.b), &Analysis::new(&p.a), 1.0, &vetoes)
                .err()
                .map(|m| m.as_str());
            json!({
                "id": p.id, "lang": p.lang, "kind": p.kind, "hit": p.hit(),
                "exact": normalize(&p.a) == normalize(&p.b), "veto": veto, "x": x,
            })
        })
        .collect();
    let dump = json!({
        "features": FEATURES.as_slice(), "layers": JUDGE_LAYERS, "models": by_model, "pairs": rows,
        // Where the judge has no weights for a model (remote providers):
        // the candidates' similarity, on a scale nobody measured here.
        "any_model_floor": Thresholds::for_model("*").floor,
    });
    std::fs::write(out, serde_json::to_string(&dump)?)?;
    Ok(())
}
