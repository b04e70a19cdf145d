//! The cache's labeled pairs (`tests/data/cache_eval/`): the tuning split,
//! where rules, thresholds and judges are chosen, and the held-out split,
//! which only measures. Read by `aies-cache-eval` and `aies-judge-dump`.

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::Path;

pub const TUNING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/cache_eval/pairs.jsonl");
pub const HELDOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/cache_eval/heldout.jsonl");

/// A cached prompt `a`, a new prompt `b`, and whether `b` may be served
/// `a`'s answer (`label` "hit") or not ("trap").
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Pair {
    pub id: String,
    pub lang: String,
    pub kind: String,
    pub label: String,
    pub a: String,
    pub b: String,
    /// When a tuning pair was added after the guard's rules were written
    /// (they were not chosen on it, so its rates are not in-sample).
    #[serde(default)]
    pub added: Option<String>,
}

impl Pair {
    pub fn hit(&self) -> bool {
        self.label == "hit"
    }
}

/// The pairs of a JSON-lines file.
pub fn read(path: &Path) -> Result<Vec<Pair>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), n + 1))
        })
        .collect()
}

/// Refuses pairs that share a prompt with the held-out split (case,
/// accents, punctuation and spacing aside): a judge chosen on them would
/// have seen it.
pub fn refuse_leaks(pairs: &[Pair], heldout: &[Pair]) -> Result<()> {
    let held: HashSet<String> = heldout
        .iter()
        .flat_map(|p| [fold(&p.a), fold(&p.b)])
        .collect();
    let shared: Vec<&str> = pairs
        .iter()
        .filter(|p| held.contains(&fold(&p.a)) || held.contains(&fold(&p.b)))
        .map(|p| p.id.as_str())
        .collect();
    anyhow::ensure!(
        shared.is_empty(),
        "pairs {shared:?} share a prompt with the held-out split: drop them from the tuning split"
    );
    Ok(())
}

/// A prompt's words, folded as the guard folds them, space-separated.
fn fold(text: &str) -> String {
    aies_cache_guard::text::tokenize(text)
        .iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(id: &str, a: &str, b: &str) -> Pair {
        Pair {
            id: id.into(),
            lang: "en".into(),
            kind: "paraphrase".into(),
            label: "hit".into(),
            a: a.into(),
            b: b.into(),
            added: None,
        }
    }

    #[test]
    fn a_prompt_of_the_held_out_split_is_refused_however_it_is_written() {
        let heldout = [pair(
            "ho-1",
            "¿Cómo cambio mi contraseña?",
            "How do I reset it?",
        )];
        let tuning = [
            pair("t-1", "What is a tuple?", "Define a tuple."),
            pair("t-2", "What is a list?", "como  cambio mi CONTRASEÑA"),
        ];
        let refused = refuse_leaks(&tuning, &heldout).unwrap_err().to_string();
        assert!(
            refused.contains("t-2") && !refused.contains("t-1"),
            "{refused}"
        );
        refuse_leaks(&tuning[..1], &heldout).unwrap();
    }

    #[test]
    fn the_splits_share_no_prompt() {
        let (tuning, heldout) = (read(Path::new(TUNING)), read(Path::new(HELDOUT)));
        refuse_leaks(&tuning.unwrap(), &heldout.unwrap()).unwrap();
    }
}
