//! `aies-cache-eval`: runs the real embedder and the cache guard over two
//! splits of labeled pairs and prints how many should-hit pairs and how
//! many traps the cache would serve, with and without the guard.
//!
//! - The **tuning** split (`tests/data/cache_eval/pairs.jsonl`) is where
//!   rules and thresholds are chosen: per threshold, per language and kind,
//!   the refused should-hits and served traps by name, what each check of
//!   the guard buys, and what the guard costs.
//! - The **held-out** split (`heldout.jsonl`, written apart from the guard's
//!   rules) only measures: the rates per language and kind at the
//!   configured thresholds, and nothing that names a pair, so that no rule
//!   or threshold is chosen from it.
//!
//! Thresholds come from the built-in table (`crates/cache-guard/thresholds.txt`)
//! for the model's folder name unless given. `make cache-eval` runs it with
//! all-MiniLM-L6-v2 and with multilingual-e5-small (`--prefix "query: "`).
//!
//! With the judge (`make judge`), both splits are also measured as the
//! cache decides with it: the exact tier, the cheap vetoes, then the
//! judge's score at each level; and without it (a plain Spin host): the
//! guard at the model's fallback similarity. The judge was fitted on the
//! whole tuning split, so its tuning figures are in-sample (the
//! cross-validated ones are in `make judge`'s output).

use aies_cache_guard::{normalize, verify, Analysis, Mismatch, Policy, Thresholds};
use aies_contract::JudgeLevel;
use aies_host::llm::judge::{pair_features, JudgeWeights, ModelWeights};
use aies_host::llm::{EmbeddingEngine, JudgeEngine, SentenceBert};
use aies_tests::pairs::{self, Pair};
use anyhow::Result;
use clap::Parser;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Evaluate the semantic cache's threshold and guard on labeled pairs")]
struct Args {
    /// The tuning split (JSON lines: id, lang, kind, label, a, b).
    #[arg(long, alias = "pairs", default_value = pairs::TUNING)]
    tuning: PathBuf,
    /// The held-out split, in the same format.
    #[arg(long, default_value = pairs::HELDOUT)]
    heldout: PathBuf,
    /// A sentence-transformers model folder (model.safetensors, tokenizer.json, config.json).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.spin/ai-models/all-minilm-l6-v2"))]
    model_dir: PathBuf,
    /// Text put before every prompt (multilingual-e5 expects "query: ").
    #[arg(long, default_value = "")]
    prefix: String,
    /// The similarity threshold (default: the model's, from thresholds.txt).
    #[arg(long)]
    threshold: Option<f32>,
    /// The guard's similarity for differently worded prompts (default: the model's).
    #[arg(long)]
    reworded: Option<f32>,
    /// The judge's folder (`make judge` links it); skipped when absent.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.spin/ai-models/aies-judge"))]
    judge_dir: PathBuf,
}

/// One pair, scored.
struct Scored<'a> {
    pair: &'a Pair,
    similarity: f32,
    a: Analysis,
    b: Analysis,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let model_name = args
        .model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let defaults = Thresholds::for_model(&model_name);
    let threshold = args.threshold.unwrap_or(defaults.similarity);
    let model_name = model_name
        .rsplit(':')
        .next()
        .unwrap_or(&model_name)
        .to_string();
    let policy = Policy {
        reworded_similarity: args.reworded.unwrap_or(defaults.reworded),
        ..Policy::default()
    };
    let tuning = pairs::read(&args.tuning)?;
    let heldout = if args.heldout.exists() {
        pairs::read(&args.heldout)?
    } else {
        println!("(no held-out split at {})\n", args.heldout.display());
        Vec::new()
    };
    pairs::refuse_leaks(&tuning, &heldout)?;
    let model = SentenceBert::load(&args.model_dir)?;
    let started = Instant::now();
    let mut texts: Vec<String> = tuning
        .iter()
        .chain(&heldout)
        .flat_map(|p| [p.a.clone(), p.b.clone()])
        .collect();
    texts.sort();
    texts.dedup();
    let mut vectors = HashMap::new();
    for chunk in texts.chunks(32) {
        let prefixed: Vec<String> = chunk
            .iter()
            .map(|t| format!("{}{t}", args.prefix))
            .collect();
        for (t, v) in chunk.iter().zip(model.embed(&prefixed)?.vectors) {
            vectors.insert(t.clone(), v);
        }
    }
    println!(
        "{} tuning and {} held-out pairs, {} texts embedded with {} in {:.1} s; \
         threshold {threshold:.2}, reworded {:.2}\n",
        tuning.len(),
        heldout.len(),
        texts.len(),
        args.model_dir.display(),
        started.elapsed().as_secs_f64(),
        policy.reworded_similarity,
    );
    let tuned = score(&tuning, &vectors);
    println!(
        "# Tuning split: {} (rules and thresholds are chosen here)\n",
        args.tuning.display()
    );
    sweep(&tuned, &policy);
    detail(&tuned, &policy, threshold, true);
    ablation(&tuned, &policy, threshold);
    if !heldout.is_empty() {
        println!(
            "# Held-out split: {} (measured only; no pair is named)\n",
            args.heldout.display()
        );
        detail(&score(&heldout, &vectors), &policy, threshold, false);
    }
    summary("tuning", &tuned, &policy, threshold);
    let (added, first): (Vec<Scored>, Vec<Scored>) = score(&tuning, &vectors)
        .into_iter()
        .partition(|s| s.pair.added.is_some());
    if !added.is_empty() {
        summary("tuning-first", &first, &policy, threshold);
        summary("tuning-added", &added, &policy, threshold);
    }
    if !heldout.is_empty() {
        summary("held-out", &score(&heldout, &vectors), &policy, threshold);
    }
    cost(&tuned, &policy);
    if args.judge_dir.join("judge.json").exists() {
        let weights = JudgeWeights::load(&args.judge_dir.join("judge.json"))?;
        let Some(w) = weights.models.get(&model_name) else {
            println!("\n(the judge has no weights for {model_name})");
            return Ok(());
        };
        let engine = JudgeEngine::encoder_only(&args.judge_dir)?;
        let fallback = Policy {
            reworded_similarity: policy.reworded_similarity.max(defaults.fallback),
            ..Policy::default()
        };
        let tuned = judge_pairs(&engine, w, score(&tuning, &vectors))?;
        println!("\n# With the judge (tuning figures in-sample: it was fitted there)\n");
        fallback_sweep(&tuned, &fallback);
        judge_table("tuning", &tuned, w, defaults.fallback, &fallback);
        if !heldout.is_empty() {
            let held = judge_pairs(&engine, w, score(&heldout, &vectors))?;
            judge_table("held-out", &held, w, defaults.fallback, &fallback);
        }
    }
    Ok(())
}

/// Each pair's score from the judge, and what decides around it.
fn judge_pairs<'a>(
    engine: &JudgeEngine,
    w: &ModelWeights,
    scored: Vec<Scored<'a>>,
) -> Result<Vec<Judged<'a>>> {
    let texts: Vec<(String, String)> = scored
        .iter()
        .map(|s| (s.pair.a.clone(), s.pair.b.clone()))
        .collect();
    let x = pair_features(engine, &texts)?;
    Ok(scored
        .into_iter()
        .zip(x)
        .map(|(s, x)| {
            let features: Vec<f32> = [s.similarity].into_iter().chain(x).collect();
            Judged {
                score: w.probability(&features),
                vetoed: verify(&s.b, &s.a, s.similarity, &Policy::vetoes_only()).is_err(),
                exact: normalize(&s.pair.a) == normalize(&s.pair.b),
                scored: s,
            }
        })
        .collect())
}

/// A pair with the judge's view of it.
struct Judged<'a> {
    scored: Scored<'a>,
    score: f32,
    vetoed: bool,
    exact: bool,
}

impl Judged<'_> {
    /// Served with the judge at `level`.
    fn by_judge(&self, w: &ModelWeights, level: JudgeLevel) -> bool {
        self.exact
            || (!self.vetoed
                && self.scored.similarity >= w.candidate_similarity
                && self.score >= w.thresholds.at(level))
    }

    /// Served by the guard alone at the fallback similarity.
    fn by_fallback(&self, t: f32, policy: &Policy) -> bool {
        self.exact || served(&self.scored, t, Some(policy))
    }
}

fn judged_rate(
    judged: &[Judged],
    filter: impl Fn(&Pair) -> bool,
    serve: impl Fn(&Judged) -> bool,
) -> String {
    let total = judged.iter().filter(|j| filter(j.scored.pair)).count();
    let yes = judged
        .iter()
        .filter(|j| filter(j.scored.pair) && serve(j))
        .count();
    if total == 0 {
        return "-".into();
    }
    format!("{:5.1}% ({yes}/{total})", 100.0 * yes as f64 / total as f64)
}

/// The guard alone at stricter similarities (the fallback is chosen here,
/// on the tuning split).
fn fallback_sweep(judged: &[Judged], policy: &Policy) {
    println!("## Without the judge: the guard at a stricter similarity (tuning)\n");
    println!("| similarity | en hits | en traps | es hits | es traps |");
    println!("|---|---|---|---|---|");
    for t in (84..=98).step_by(2).map(|t| t as f32 / 100.0) {
        let policy = Policy {
            reworded_similarity: policy.reworded_similarity.max(t),
            ..policy.clone()
        };
        let of = |lang: &'static str, hit: bool| move |p: &Pair| p.lang == lang && p.hit() == hit;
        let serve = |j: &Judged| j.by_fallback(t, &policy);
        println!(
            "| {t:.2} | {} | {} | {} | {} |",
            judged_rate(judged, of("en", true), serve),
            judged_rate(judged, of("en", false), serve),
            judged_rate(judged, of("es", true), serve),
            judged_rate(judged, of("es", false), serve),
        );
    }
    println!();
}

/// One split's table: per language and kind, what the judge serves at each
/// level and what the guard alone serves at the fallback similarity; then
/// the summary lines.
fn judge_table(split: &str, judged: &[Judged], w: &ModelWeights, fallback: f32, policy: &Policy) {
    const LEVELS: [JudgeLevel; 3] = [JudgeLevel::Strict, JudgeLevel::Default, JudgeLevel::Lenient];
    println!("## {split}: served with the judge (strict / default / lenient) and without it (guard at {fallback:.2})\n");
    println!("| language | kind | label | strict | default | lenient | without the judge |");
    println!("|---|---|---|---|---|---|---|");
    let mut groups: BTreeMap<(&str, &str, &str), ()> = BTreeMap::new();
    for j in judged {
        let p = j.scored.pair;
        groups.insert((&p.lang, &p.kind, &p.label), ());
    }
    let row = |name: String, filter: &dyn Fn(&Pair) -> bool| {
        let mut cells: Vec<String> = LEVELS
            .iter()
            .map(|l| judged_rate(judged, filter, |j| j.by_judge(w, *l)))
            .collect();
        cells.push(judged_rate(judged, filter, |j| {
            j.by_fallback(fallback, policy)
        }));
        println!("| {name} | {} |", cells.join(" | "));
    };
    for (lang, kind, label) in groups.keys() {
        row(format!("{lang} | {kind} | {label}"), &|p: &Pair| {
            p.lang == *lang && p.kind == *kind
        });
    }
    for lang in ["en", "es", "en-es"] {
        for hit in [true, false] {
            let label = if hit { "hit" } else { "trap" };
            row(format!("{lang} | all | {label}"), &|p: &Pair| {
                p.lang == lang && p.hit() == hit && p.kind != "unrelated"
            });
        }
    }
    println!();
    for lang in ["en", "es"] {
        // Unrelated pairs (tuning only) are too easy to count as traps.
        let of =
            |hit: bool| move |p: &Pair| p.lang == lang && p.hit() == hit && p.kind != "unrelated";
        for level in LEVELS {
            println!(
                "summary-judge {split} {} {lang}: hits {} traps {}",
                level.as_str(),
                judged_rate(judged, of(true), |j| j.by_judge(w, level)),
                judged_rate(judged, of(false), |j| j.by_judge(w, level)),
            );
        }
        println!(
            "summary-judge {split} without-judge {lang}: hits {} traps {}",
            judged_rate(judged, of(true), |j| j.by_fallback(fallback, policy)),
            judged_rate(judged, of(false), |j| j.by_fallback(fallback, policy)),
        );
    }
    println!();
}

fn score<'a>(pairs: &'a [Pair], vectors: &HashMap<String, Vec<f32>>) -> Vec<Scored<'a>> {
    pairs
        .iter()
        .map(|p| Scored {
            pair: p,
            similarity: cosine(&vectors[&p.a], &vectors[&p.b]),
            a: Analysis::new(&p.a),
            b: Analysis::new(&p.b),
        })
        .collect()
}

/// One line per split and language: the figures the README's tables carry
/// (`tuning-first`: the pairs the guard's rules were written on;
/// `tuning-added`: those added after them).
fn summary(split: &str, scored: &[Scored], policy: &Policy, t: f32) {
    for lang in ["en", "es", "en-es"] {
        let of = |hit: bool| move |s: &Scored| s.pair.lang == lang && s.pair.hit() == hit;
        println!(
            "summary {split} {lang}: hits {} traps {}",
            rate(scored, of(true), |s| served(s, t, Some(policy))),
            rate(scored, of(false), |s| served(s, t, Some(policy))),
        );
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Whether the cache serves B the answer cached for A.
fn served(s: &Scored, threshold: f32, guard: Option<&Policy>) -> bool {
    s.similarity >= threshold
        && guard.is_none_or(|policy| verify(&s.b, &s.a, s.similarity, policy).is_ok())
}

/// Share served among the pairs `filter` keeps, as "41.2% (7/17)".
fn rate(
    scored: &[Scored],
    filter: impl Fn(&Scored) -> bool,
    serve: impl Fn(&Scored) -> bool,
) -> String {
    let total = scored.iter().filter(|s| filter(s)).count();
    let yes = scored.iter().filter(|s| filter(s) && serve(s)).count();
    if total == 0 {
        return "-".into();
    }
    format!("{:5.1}% ({yes}/{total})", 100.0 * yes as f64 / total as f64)
}

fn sweep(scored: &[Scored], policy: &Policy) {
    println!("## Served per threshold (should-hit pairs / traps), all languages\n");
    println!("| threshold | hits, cosine only | traps, cosine only | hits, with guard | traps, with guard |");
    println!("|---|---|---|---|---|");
    for t in (50..=95).step_by(5).map(|t| t as f32 / 100.0) {
        let hits = |s: &Scored| s.pair.hit();
        let traps = |s: &Scored| !s.pair.hit();
        println!(
            "| {t:.2} | {} | {} | {} | {} |",
            rate(scored, hits, |s| served(s, t, None)),
            rate(scored, traps, |s| served(s, t, None)),
            rate(scored, hits, |s| served(s, t, Some(policy))),
            rate(scored, traps, |s| served(s, t, Some(policy))),
        );
    }
    println!();
}

fn detail(scored: &[Scored], policy: &Policy, t: f32, name_pairs: bool) {
    println!("## At threshold {t:.2}, per language and kind (served, with guard; cosine only)\n");
    println!("| language | kind | label | with guard | cosine only |");
    println!("|---|---|---|---|---|");
    let mut groups: BTreeMap<(&str, &str, &str), ()> = BTreeMap::new();
    for s in scored {
        groups.insert((&s.pair.lang, &s.pair.kind, &s.pair.label), ());
    }
    for (lang, kind, label) in groups.keys() {
        let filter = |s: &Scored| s.pair.lang == *lang && s.pair.kind == *kind;
        println!(
            "| {lang} | {kind} | {label} | {} | {} |",
            rate(scored, filter, |s| served(s, t, Some(policy))),
            rate(scored, filter, |s| served(s, t, None)),
        );
    }
    for lang in ["en", "es", "en-es"] {
        let of = |hit: bool| move |s: &Scored| s.pair.lang == lang && s.pair.hit() == hit;
        println!(
            "| {lang} | all | hit | {} | {} |",
            rate(scored, of(true), |s| served(s, t, Some(policy))),
            rate(scored, of(true), |s| served(s, t, None)),
        );
        println!(
            "| {lang} | all | trap | {} | {} |",
            rate(scored, of(false), |s| served(s, t, Some(policy))),
            rate(scored, of(false), |s| served(s, t, None)),
        );
    }
    if !name_pairs {
        println!();
        return;
    }
    println!("\nShould-hits above {t:.2} that the guard refused:");
    for s in scored.iter().filter(|s| s.pair.hit() && s.similarity >= t) {
        if let Err(why) = verify(&s.b, &s.a, s.similarity, policy) {
            println!(
                "  {} ({:.3}, {}): {:?} / {:?}",
                s.pair.id,
                s.similarity,
                why.as_str(),
                s.pair.a,
                s.pair.b
            );
        }
    }
    println!("\nTraps served at {t:.2} with the guard:");
    for s in scored
        .iter()
        .filter(|s| !s.pair.hit() && served(s, t, Some(policy)))
    {
        println!(
            "  {} ({:.3}): {:?} / {:?}",
            s.pair.id, s.similarity, s.pair.a, s.pair.b
        );
    }
    println!();
}

fn ablation(scored: &[Scored], policy: &Policy, t: f32) {
    println!("## What each check buys at {t:.2}\n");
    println!("| check | traps it alone stops | traps served without it | should-hits it refuses |");
    println!("|---|---|---|---|");
    let above: Vec<&Scored> = scored.iter().filter(|s| s.similarity >= t).collect();
    for check in Mismatch::ALL {
        let without = Policy {
            skip: vec![check.clone()],
            ..policy.clone()
        };
        let passes = |s: &Scored, p: &Policy| verify(&s.b, &s.a, s.similarity, p).is_ok();
        let alone = above
            .iter()
            .filter(|s| !s.pair.hit() && !passes(s, policy) && passes(s, &without))
            .count();
        let served_without = above
            .iter()
            .filter(|s| !s.pair.hit() && passes(s, &without))
            .count();
        let refused = above
            .iter()
            .filter(|s| {
                s.pair.hit() && verify(&s.b, &s.a, s.similarity, policy) == Err(check.clone())
            })
            .count();
        println!(
            "| {} | {alone} | {served_without} | {refused} |",
            check.as_str()
        );
    }
    println!();
}

fn cost(scored: &[Scored], policy: &Policy) {
    // A lookup reads the new prompt once and checks up to five candidates.
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        for s in scored {
            let query = Analysis::new(&s.pair.b);
            for _ in 0..5 {
                let candidate = Analysis::new(&s.pair.a);
                std::hint::black_box(verify(&query, &candidate, s.similarity, policy).ok());
            }
        }
    }
    let per_lookup = started.elapsed() / (rounds * scored.len()) as u32;
    println!("## Cost\n\nguard per lookup (the prompt and 5 candidates read and checked): {per_lookup:?}");
}
