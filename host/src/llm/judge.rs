//! The near-duplicate judge (issue 22), served as `llm.infer` model
//! `aies-judge`: "does the asked prompt ask the same thing as this cached
//! one?" as a probability.
//!
//! It aligns the two prompts' token vectors from the first
//! [`JUDGE_LAYERS`] layers of multilingual-e5-small, where a replaced or
//! swapped word is still itself (the last layer is so contextual that a
//! trap's words align as well as a paraphrase's: docs/measurements.md),
//! adds a few lexical features, and scores them with a logistic regression
//! trained by `make judge` on the tuning split
//! (`scripts/judge-train.py`, from the features [`features`] computes,
//! dumped by `aies-judge-train`). Its weights and thresholds are
//! `judge.json` in the model's folder: trained here, never downloaded.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::LazyLock;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use aies_cache_guard::text::Lang;
use aies_cache_guard::{verify, Analysis, Match, Policy};
use aies_contract::{JudgeReply, JudgeRequest, JudgeThresholds, MAX_JUDGE_CANDIDATES};

use super::model::SentenceBert;

/// Transformer layers whose token vectors the judge aligns.
pub const JUDGE_LAYERS: usize = 2;
/// multilingual-e5's prefix for a query, left out of the alignment.
pub const JUDGE_PREFIX: &str = "query: ";
/// The weights for an embedding model the judge was not trained with.
pub const ANY_MODEL: &str = "*";
/// Characters of a prompt the judge reads (the tokenizer keeps 256 tokens).
const MAX_CHARS: usize = 4096;

/// The features' names, in [`features`]' order: the training script's
/// columns and `judge.json`'s weights.
pub const FEATURES: [&str; 38] = [
    "similarity",
    "ordered_over_free",
    "cached_unmatched_07",
    "asked_unmatched_07",
    "recall",
    "precision",
    "f1",
    "worst_match_min",
    "worst_match_max",
    "mean_minus_worst",
    "crossed_alignments",
    "length_ratio",
    "cached_below_05",
    "cached_below_06",
    "cached_below_08",
    "cached_below_09",
    "asked_below_05",
    "asked_below_06",
    "asked_below_08",
    "asked_below_09",
    "cached_two_worst",
    "asked_two_worst",
    "crossed_content_words",
    "same_words",
    "content_jaccard",
    "same_content_words",
    "cached_only_words",
    "asked_only_words",
    "reordered_content",
    "content_words",
    "guard_same_words",
    "stem_jaccard",
    "same_stems",
    "cached_only_stems",
    "asked_only_stems",
    "negation_differs",
    "question_words_differ",
    "asked_spanish",
];

/// One pair's features: `cached` and `asked` are the two prompts (without
/// the prefix; the asked one read by [`Asked::new`]), `*_tokens` their
/// token vectors (unit length), `similarity` the embedding model's cosine
/// of the two.
pub fn features(
    cached: &str,
    asked: &Asked,
    cached_tokens: &[Vec<f32>],
    asked_tokens: &[Vec<f32>],
    similarity: f32,
) -> Vec<f32> {
    let mut out = vec![similarity];
    out.extend(alignment(cached_tokens, asked_tokens));
    out.extend(lexical(cached, asked));
    debug_assert_eq!(out.len(), FEATURES.len());
    out
}

fn mean(xs: &[f32]) -> f32 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.iter().sum::<f32>() / xs.len() as f32
}

fn share_below(xs: &[f32], t: f32) -> f32 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.iter().filter(|x| **x < t).count() as f32 / xs.len() as f32
}

fn min(xs: &[f32]) -> f32 {
    xs.iter().copied().fold(f32::INFINITY, f32::min)
}

fn two_worst(xs: &[f32]) -> f32 {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f32::total_cmp);
    mean(&sorted[..sorted.len().min(2)])
}

/// Share of the pairs of `order` (positions, in the first text's order)
/// that the second text crosses.
fn crossed(order: &[usize]) -> f32 {
    let (mut crossing, mut all) = (0usize, 0usize);
    for (i, x) in order.iter().enumerate() {
        for y in &order[i + 1..] {
            all += 1;
            crossing += usize::from(x > y);
        }
    }
    if all == 0 {
        0.0
    } else {
        crossing as f32 / all as f32
    }
}

/// BERTScore-style greedy alignment of the two prompts' token vectors,
/// with the best order-keeping alignment against the free one (a swap
/// keeps every word but crosses its alignments).
fn alignment(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<f32> {
    let (m, n) = (a.len(), b.len());
    if m == 0 || n == 0 {
        return vec![0.0; 21];
    }
    let s: Vec<Vec<f32>> = a
        .iter()
        .map(|x| {
            b.iter()
                .map(|y| x.iter().zip(y).map(|(p, q)| p * q).sum())
                .collect()
        })
        .collect();
    let ra: Vec<f32> = s.iter().map(|row| best_match(row)).collect();
    let pb: Vec<f32> = (0..n)
        .map(|j| s.iter().map(|row| row[j]).fold(f32::NEG_INFINITY, f32::max))
        .collect();
    let best: Vec<usize> = s
        .iter()
        .map(|row| {
            (0..n)
                .max_by(|x, y| row[*x].total_cmp(&row[*y]).then(y.cmp(x)))
                .unwrap_or(0)
        })
        .collect();
    let confident: Vec<usize> = (0..m).filter(|i| ra[*i] > 0.85).map(|i| best[i]).collect();
    let mut dp = vec![vec![0f32; n + 1]; m + 1];
    for i in 1..=m {
        for j in 1..=n {
            let diagonal = dp[i - 1][j - 1] + (s[i - 1][j - 1] - 0.5).max(0.0);
            dp[i][j] = dp[i - 1][j].max(dp[i][j - 1]).max(diagonal);
        }
    }
    let over = |xs: &[f32]| xs.iter().map(|x| (x - 0.5).max(0.0)).sum::<f32>();
    let free = (over(&ra) + over(&pb)) / 2.0;
    let (r, p) = (mean(&ra), mean(&pb));
    let (min_a, min_b) = (min(&ra), min(&pb));
    let mut out = vec![
        dp[m][n] / free.max(1e-6),
        share_below(&ra, 0.7),
        share_below(&pb, 0.7),
        r,
        p,
        if r + p > 0.0 {
            2.0 * r * p / (r + p)
        } else {
            0.0
        },
        min_a.min(min_b),
        min_a.max(min_b),
        (r - min_a).max(p - min_b),
        crossed(&confident),
        m.min(n) as f32 / m.max(n) as f32,
    ];
    for t in [0.5, 0.6, 0.8, 0.9] {
        out.push(share_below(&ra, t));
    }
    for t in [0.5, 0.6, 0.8, 0.9] {
        out.push(share_below(&pb, t));
    }
    out.push(two_worst(&ra));
    out.push(two_worst(&pb));
    out
}

/// The row's best match.
fn best_match(row: &[f32]) -> f32 {
    row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Words folded: lower case, accents dropped, split on what is not a
/// letter, digit or underscore.
fn words(s: &str) -> Vec<String> {
    let folded: String = s
        .to_lowercase()
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .collect();
    folded
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

const STOP: &str = "the a an of to in on for and or is are was were be do does did i my me you \
    your it this that what how which who whom why when where can could should would will with \
    from by as at about into than then so if el la los las un una de del al y o es son fue ser \
    que como cual quien por para con en mi mis te tu tus se lo le les su sus";

/// What the lexical features read of a prompt: its folded words, its
/// content words (not in [`STOP`]) and the guard's analysis.
struct Prompt {
    words: Vec<String>,
    content: Vec<String>,
    analysis: Analysis,
}

impl Prompt {
    fn new(text: &str) -> Self {
        static STOP_WORDS: LazyLock<HashSet<&str>> =
            LazyLock::new(|| STOP.split_whitespace().collect());
        let words = words(text);
        let content = words
            .iter()
            .filter(|w| !STOP_WORDS.contains(w.as_str()))
            .cloned()
            .collect();
        Self {
            words,
            content,
            analysis: Analysis::new(text),
        }
    }
}

/// The asked prompt, read once per question however many candidates it
/// is compared with.
pub struct Asked {
    prompt: Prompt,
    /// Snowball stems in the asked prompt's language, used for both sides:
    /// "tomate" / "tomates", "cancelé" / "cancelar".
    stemmer: rust_stemmers::Stemmer,
    stems: HashSet<String>,
}

impl Asked {
    pub fn new(text: &str) -> Self {
        let prompt = Prompt::new(text);
        let stemmer = rust_stemmers::Stemmer::create(match prompt.analysis.lang {
            Lang::Es => rust_stemmers::Algorithm::Spanish,
            _ => rust_stemmers::Algorithm::English,
        });
        let stems = stems(&stemmer, &prompt.content);
        Self {
            prompt,
            stemmer,
            stems,
        }
    }

    pub fn lang(&self) -> Lang {
        self.prompt.analysis.lang
    }
}

fn stems(stemmer: &rust_stemmers::Stemmer, words: &[String]) -> HashSet<String> {
    words.iter().map(|w| stemmer.stem(w).into_owned()).collect()
}

fn lexical(cached: &str, asked: &Asked) -> Vec<f32> {
    let a = Prompt::new(cached);
    let b = &asked.prompt;
    let (ca, cb) = (&a.content, &b.content);
    let sa: HashSet<&String> = ca.iter().collect();
    let sb: HashSet<&String> = cb.iter().collect();
    let union = sa.union(&sb).count();
    let jaccard = sa.intersection(&sb).count() as f32 / union.max(1) as f32;
    let (mut sorted_a, mut sorted_b) = (ca.clone(), cb.clone());
    sorted_a.sort();
    sorted_b.sort();
    let reordered = sorted_a == sorted_b && ca != cb;
    // The shared content words in a's order (first occurrences), at their
    // first place in b.
    let mut seen = HashSet::new();
    let order: Vec<usize> = ca
        .iter()
        .filter(|w| seen.insert(w.as_str()))
        .filter_map(|w| cb.iter().position(|x| x == w))
        .collect();
    // The guard's reading: the same meaningful words (stems, synonyms),
    // no direction or role swapped that it can see.
    let same = verify(&b.analysis, &a.analysis, 1.0, &Policy::default());
    let (ta, tb) = (stems(&asked.stemmer, ca), &asked.stems);
    let stem_union = ta.union(tb).count();
    let stem_jaccard = ta.intersection(tb).count() as f32 / stem_union.max(1) as f32;
    let lang = match asked.lang() {
        Lang::Es => "es",
        _ => "en",
    };
    let flag = |x: bool| f32::from(u8::from(x));
    let mut out = vec![
        crossed(&order),
        f32::from(u8::from(a.words == b.words)),
        jaccard,
        f32::from(u8::from(jaccard == 1.0)),
        sa.difference(&sb).count().min(3) as f32,
        sb.difference(&sa).count().min(3) as f32,
        f32::from(u8::from(reordered)),
        union as f32,
        f32::from(u8::from(same == Ok(Match::Same))),
    ];
    out.extend([
        stem_jaccard,
        flag(ta == *tb),
        ta.difference(tb).count() as f32,
        tb.difference(&ta).count() as f32,
        flag(negated(&a.words) != negated(&b.words)),
        flag(question_words(&a.words, lang) != question_words(&b.words, lang)),
        flag(asked.lang() == Lang::Es),
    ]);
    out
}

/// Words that negate (folded); the "n't" of a contraction ("don't" folds
/// to "don", "t") is counted apart.
const NEGATIONS: [&str; 26] = [
    "no", "not", "never", "nobody", "nothing", "none", "without", "nor", "nunca", "jamas", "ni",
    "sin", "nadie", "nada", "ningun", "ninguna", "ninguno", "tampoco", "dont", "doesnt", "cant",
    "wont", "isnt", "arent", "didnt", "shouldnt",
];

/// Whether the prompt is negated: an odd number of negations.
fn negated(words: &[String]) -> bool {
    let contractions = words
        .windows(2)
        .filter(|w| w[1] == "t" && w[0].ends_with('n'))
        .count();
    let plain = words
        .iter()
        .filter(|w| NEGATIONS.contains(&w.as_str()))
        .count();
    (plain + contractions) % 2 == 1
}

/// Question words, longest first: "how much" is not "how long".
const QUESTIONS_EN: [&str; 13] = [
    "how much",
    "how many",
    "how long",
    "how often",
    "how old",
    "how far",
    "when",
    "where",
    "who",
    "why",
    "which",
    "what",
    "how",
];
const QUESTIONS_ES: [&str; 14] = [
    "cada cuanto",
    "cuanto",
    "cuanta",
    "cuantos",
    "cuantas",
    "cuando",
    "donde",
    "quien",
    "quienes",
    "por que",
    "cual",
    "cuales",
    "que",
    "como",
];

/// The question words a prompt uses (each occurrence taken once, the
/// longest first).
fn question_words(words: &[String], lang: &str) -> Vec<&'static str> {
    let list: &[&str] = if lang == "es" {
        &QUESTIONS_ES
    } else {
        &QUESTIONS_EN
    };
    let mut taken = vec![false; words.len()];
    let mut found = Vec::new();
    for q in list {
        let parts: Vec<&str> = q.split(' ').collect();
        for start in 0..words.len().saturating_sub(parts.len() - 1) {
            let span = start..start + parts.len();
            let free = span.clone().all(|i| !taken[i]);
            if free && parts.iter().zip(&words[span.clone()]).all(|(p, w)| p == w) {
                span.for_each(|i| taken[i] = true);
                if !found.contains(q) {
                    found.push(*q);
                }
            }
        }
    }
    found.sort_unstable();
    found
}

/// A logistic regression over standardized features, for one embedding
/// model's similarities.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ModelWeights {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub coef: Vec<f32>,
    pub intercept: f32,
    pub candidate_similarity: f32,
    /// For a prompt in neither language the judge knows.
    pub thresholds: JudgeThresholds,
    /// Per language of the asked prompt (`en`, `es`), each chosen on that
    /// language's tuning pairs: one threshold for both held Spanish to
    /// what English traps allowed.
    #[serde(default)]
    pub language_thresholds: BTreeMap<String, JudgeThresholds>,
}

impl ModelWeights {
    /// The thresholds for a prompt in `lang`.
    pub fn thresholds_for(&self, lang: Lang) -> JudgeThresholds {
        let key = match lang {
            Lang::En => "en",
            Lang::Es => "es",
            Lang::Unknown => return self.thresholds,
        };
        self.language_thresholds
            .get(key)
            .copied()
            .unwrap_or(self.thresholds)
    }

    pub fn probability(&self, x: &[f32]) -> f32 {
        let z: f32 = x
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(&self.coef)
            .map(|(((x, m), s), c)| (x - m) / s * c)
            .sum::<f32>()
            + self.intercept;
        1.0 / (1.0 + (-z).exp())
    }
}

/// `judge.json`: what `scripts/judge-train.py` wrote.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct JudgeWeights {
    pub features: Vec<String>,
    pub layers: usize,
    pub models: BTreeMap<String, ModelWeights>,
}

impl JudgeWeights {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "{} is missing: run `make judge` (it trains the judge on the tuning split)",
                path.display()
            )
        })?;
        let weights: Self =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if weights.features != FEATURES || weights.layers != JUDGE_LAYERS {
            bail!(
                "{} was trained on other features: run `make judge` again",
                path.display()
            );
        }
        for (model, w) in &weights.models {
            let n = FEATURES.len();
            if w.mean.len() != n || w.scale.len() != n || w.coef.len() != n {
                bail!("{}: weights for {model} are not {n} long", path.display());
            }
        }
        Ok(weights)
    }
}

/// The judge: e5's first layers for the token vectors, and the weights
/// (absent while training, when only features are asked for).
pub struct JudgeEngine {
    encoder: SentenceBert,
    weights: Option<JudgeWeights>,
}

impl JudgeEngine {
    /// The encoder from `dir` (multilingual-e5-small's files) and
    /// `dir/judge.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let weights = JudgeWeights::load(&dir.join("judge.json"))?;
        Ok(Self {
            encoder: SentenceBert::load_layers(dir, Some(JUDGE_LAYERS))?,
            weights: Some(weights),
        })
    }

    /// The encoder alone, for computing features to train on.
    pub fn encoder_only(e5_dir: &Path) -> Result<Self> {
        Ok(Self {
            encoder: SentenceBert::load_layers(e5_dir, Some(JUDGE_LAYERS))?,
            weights: None,
        })
    }

    /// Each text's token vectors, in one forward pass.
    pub fn token_vectors(&self, texts: &[&str]) -> Result<Vec<Vec<Vec<f32>>>> {
        let prefixed: Vec<String> = texts
            .iter()
            .map(|t| {
                let t: String = t.chars().take(MAX_CHARS).collect();
                format!("{JUDGE_PREFIX}{t}")
            })
            .collect();
        Ok(self
            .encoder
            .token_vectors(&prefixed, JUDGE_PREFIX.len())?
            .into_iter()
            .map(|t| t.vectors)
            .collect())
    }

    /// Answers one question: every candidate's score, in one forward pass.
    pub fn judge(&self, req: &JudgeRequest) -> Result<JudgeReply> {
        let Some(weights) = &self.weights else {
            bail!("the judge has no weights loaded");
        };
        // A model it has no weights for (a remote provider): the weights
        // fitted without the cosine, which it then does not read.
        let (w, known) = match weights.models.get(&req.model) {
            Some(w) => (w, true),
            None => match weights.models.get(ANY_MODEL) {
                Some(w) => (w, false),
                None => bail!(
                    "judge.json has no weights for {:?} nor {ANY_MODEL:?}",
                    req.model
                ),
            },
        };
        if req.candidates.len() > MAX_JUDGE_CANDIDATES {
            bail!("at most {MAX_JUDGE_CANDIDATES} candidates per question");
        }
        let mut texts = vec![req.asked.as_str()];
        texts.extend(req.candidates.iter().map(|c| c.prompt.as_str()));
        let vectors = self.token_vectors(&texts)?;
        let asked = Asked::new(&req.asked);
        let scores = req
            .candidates
            .iter()
            .zip(&vectors[1..])
            .map(|(c, tokens)| {
                let similarity = if known { c.similarity } else { 0.0 };
                let x = features(&c.prompt, &asked, tokens, &vectors[0], similarity);
                w.probability(&x)
            })
            .collect();
        Ok(JudgeReply {
            scores,
            candidate_similarity: w.candidate_similarity,
            thresholds: w.thresholds_for(asked.lang()),
        })
    }
}

/// Features of many pairs (cached, asked, similarity per model), their
/// texts run through the encoder in batches: for training.
pub fn pair_features(engine: &JudgeEngine, pairs: &[(String, String)]) -> Result<Vec<Vec<f32>>> {
    let mut texts: Vec<&str> = pairs
        .iter()
        .flat_map(|(a, b)| [a.as_str(), b.as_str()])
        .collect();
    texts.sort();
    texts.dedup();
    let mut tokens: HashMap<&str, Vec<Vec<f32>>> = HashMap::new();
    for chunk in texts.chunks(16) {
        for (text, rows) in chunk.iter().zip(engine.token_vectors(chunk)?) {
            tokens.insert(text, rows);
        }
    }
    Ok(pairs
        .iter()
        .map(|(a, b)| {
            let (ta, tb) = (&tokens[a.as_str()], &tokens[b.as_str()]);
            features(a, &Asked::new(b), ta, tb, 0.0)[1..].to_vec()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn words_are_folded_and_split() {
        assert_eq!(
            words("¿Cuánto cuesta el_envío?"),
            ["cuanto", "cuesta", "el_envio"]
        );
    }

    #[test]
    fn a_swap_keeps_the_words_and_crosses_their_order() {
        let x = lexical(
            "Did Google buy YouTube?",
            &Asked::new("Did YouTube buy Google?"),
        );
        assert_eq!(x[0], 1.0, "every shared pair crossed");
        assert_eq!(x[2], 1.0, "the same content words");
        assert_eq!(x[6], 1.0, "reordered");
        let same = lexical(
            "Did Google buy YouTube?",
            &Asked::new("did google buy youtube"),
        );
        assert_eq!((same[0], same[1], same[6]), (0.0, 1.0, 0.0));
    }

    #[test]
    fn alignment_sees_a_replaced_token() {
        let (x, y, z) = (unit(&[1.0, 0.0]), unit(&[0.0, 1.0]), unit(&[1.0, 1.0]));
        let same = alignment(&[x.clone(), y.clone()], &[x.clone(), y.clone()]);
        let replaced = alignment(&[x.clone(), y.clone()], &[x.clone(), z]);
        assert_eq!(same[3], 1.0, "recall of identical tokens");
        assert!(replaced[3] < same[3]);
        assert!(
            replaced[6] < 0.75,
            "the worst match shows the replaced token"
        );
        assert_eq!(alignment(&[], &[x]), vec![0.0; 21]);
    }

    #[test]
    fn negation_counts_contractions_and_cancels_out() {
        assert!(negated(&words("Why don't cats like water?")));
        assert!(negated(&words("¿Por qué no funciona?")));
        assert!(!negated(&words("Can't I not go?")), "two negations");
        assert!(!negated(&words("Can I cancel it?")));
    }

    #[test]
    fn question_words_tell_facets_apart() {
        let en = |s| question_words(&words(s), "en");
        assert_eq!(en("How much does it cost?"), ["how much"]);
        assert_ne!(en("How much does it cost?"), en("How long does it take?"));
        assert_eq!(en("When and where?"), ["when", "where"]);
        let es = |s| question_words(&words(s), "es");
        assert_eq!(es("¿Cada cuánto riego un cactus?"), ["cada cuanto"]);
        assert_ne!(es("¿Cuánto cuesta?"), es("¿Cuándo abre?"));
    }

    #[test]
    fn stems_see_a_plural_as_the_same_word() {
        let i = FEATURES.iter().position(|f| *f == "same_stems").unwrap() - 22;
        let x = lexical(
            "¿El tomate es fruta?",
            &Asked::new("¿Los tomates son frutas?"),
        );
        assert_eq!(x[i], 1.0, "{x:?}");
        assert_eq!(x[i + 5], 1.0, "Spanish");
    }

    #[test]
    fn each_language_gets_its_own_thresholds() {
        let t = |x: f32| JudgeThresholds {
            strict: x,
            default: x,
            lenient: x,
        };
        let mut w = ModelWeights {
            mean: vec![],
            scale: vec![],
            coef: vec![],
            intercept: 0.0,
            candidate_similarity: 0.6,
            thresholds: t(0.9),
            language_thresholds: BTreeMap::from([("en".into(), t(0.8)), ("es".into(), t(0.7))]),
        };
        assert_eq!(w.thresholds_for(Lang::En), t(0.8));
        assert_eq!(w.thresholds_for(Lang::Es), t(0.7));
        assert_eq!(w.thresholds_for(Lang::Unknown), t(0.9));
        w.language_thresholds.clear();
        assert_eq!(w.thresholds_for(Lang::Es), t(0.9), "an older judge.json");
    }

    #[test]
    fn features_have_their_names() {
        let x = vec![unit(&[1.0, 2.0])];
        assert_eq!(
            features("a b", &Asked::new("a b"), &x, &x, 0.9).len(),
            FEATURES.len()
        );
    }
}
