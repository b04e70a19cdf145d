//! Word lists, English and Spanish, all lower case without accents (the
//! form [`crate::text::fold`] gives). They live as data in `lexicon/*.txt`
//! beside this crate (what each list is for heads its file), built into the
//! binary with `include_str!` and read on first use: a list changes without
//! touching the code, and the code holds no example prompts.
//!
//! Format: `#` starts a comment line; every other line is fields separated
//! by white space. A word list takes every field of every line; a table
//! takes `key value` lines; a group list takes each line as one group.

use std::sync::LazyLock;

type Words = LazyLock<Vec<&'static str>>;
type Table = LazyLock<Vec<(&'static str, &'static str)>>;

/// The non-comment lines of a data file, split into fields.
fn lines(data: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    data.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
}

fn words(data: &'static str) -> Vec<&'static str> {
    lines(data).flatten().collect()
}

fn table(data: &'static str) -> Vec<(&'static str, &'static str)> {
    lines(data)
        .map(|f| match f[..] {
            [key, value] => (key, value),
            _ => panic!("lexicon table line {f:?} is not `key value`"),
        })
        .collect()
}

/// The list named by the first field of a line of `direction.txt`.
fn named(data: &'static str, name: &str) -> Vec<&'static str> {
    lines(data)
        .filter(|f| f[0] == name)
        .flat_map(|f| f[1..].to_vec())
        .collect()
}

macro_rules! data {
    ($file:literal) => {
        include_str!(concat!("../lexicon/", $file))
    };
}

pub static STOPWORDS: Words = LazyLock::new(|| words(data!("stopwords.txt")));
pub static GENERIC: Words = LazyLock::new(|| words(data!("generic.txt")));
pub static NEGATIONS: Words = LazyLock::new(|| words(data!("negations.txt")));
pub static SOURCE_MARKERS: Words = LazyLock::new(|| named(data!("direction.txt"), "source"));
pub static TARGET_MARKERS: Words = LazyLock::new(|| named(data!("direction.txt"), "target"));
pub static SOURCE_MARKERS_ES: Words = LazyLock::new(|| named(data!("direction.txt"), "source-es"));
pub static TARGET_MARKERS_ES: Words = LazyLock::new(|| named(data!("direction.txt"), "target-es"));
pub static DATES: Words = LazyLock::new(|| words(data!("dates.txt")));
pub static PRONOUNS: Table = LazyLock::new(|| table(data!("pronouns.txt")));
pub static NUMBER_WORDS_EN: Table = LazyLock::new(|| table(data!("numbers-en.txt")));
pub static NUMBER_WORDS_ES: Table = LazyLock::new(|| table(data!("numbers-es.txt")));
pub static UNITS: Table = LazyLock::new(|| table(data!("units.txt")));
pub static UNIT_SYMBOLS: Table = LazyLock::new(|| table(data!("unit-symbols.txt")));
pub static ENGLISH_MARKERS: Words = LazyLock::new(|| words(data!("markers-en.txt")));
pub static SPANISH_MARKERS: Words = LazyLock::new(|| words(data!("markers-es.txt")));

/// Contractions written without their apostrophe: the word, then what it
/// stands for.
pub static BARE_CONTRACTIONS: LazyLock<Vec<(&'static str, Vec<&'static str>)>> =
    LazyLock::new(|| {
        lines(data!("contractions.txt"))
            .map(|f| (f[0], f[1..].to_vec()))
            .collect()
    });

/// Symbols that are units wherever they stand.
pub static UNIT_SIGNS: LazyLock<Vec<(char, &'static str)>> = LazyLock::new(|| {
    table(data!("unit-signs.txt"))
        .into_iter()
        .map(|(sign, unit)| {
            let mut chars = sign.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => (c, unit),
                _ => panic!("unit sign {sign:?} is not one character"),
            }
        })
        .collect()
});

/// Groups of words that mean the same; the first is the canonical form.
pub static SYNONYMS: LazyLock<Vec<Vec<&'static str>>> =
    LazyLock::new(|| lines(data!("synonyms.txt")).collect());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::fold;

    /// Every list loads, and holds only folded words (the guard compares
    /// folded text: an accent or capital in a list is an entry that can
    /// never match).
    #[test]
    fn lists_load_folded() {
        let mut all: Vec<&str> = Vec::new();
        for list in [
            &STOPWORDS,
            &GENERIC,
            &NEGATIONS,
            &SOURCE_MARKERS,
            &TARGET_MARKERS,
            &SOURCE_MARKERS_ES,
            &TARGET_MARKERS_ES,
            &DATES,
            &ENGLISH_MARKERS,
            &SPANISH_MARKERS,
        ] {
            assert!(!list.is_empty());
            all.extend(list.iter());
        }
        for table in [
            &PRONOUNS,
            &NUMBER_WORDS_EN,
            &NUMBER_WORDS_ES,
            &UNITS,
            &UNIT_SYMBOLS,
        ] {
            assert!(!table.is_empty());
            all.extend(table.iter().map(|(k, _)| *k));
        }
        all.extend(SYNONYMS.iter().flatten());
        all.extend(BARE_CONTRACTIONS.iter().map(|(k, _)| *k));
        for word in all {
            assert_eq!(fold(word), word, "{word:?} is not folded");
        }
        assert!(SYNONYMS.iter().all(|g| g.len() >= 2));
        assert!(BARE_CONTRACTIONS.iter().all(|(_, w)| !w.is_empty()));
        assert_eq!(UNIT_SIGNS.len(), 4);
    }

    #[test]
    fn reads_the_formats() {
        assert_eq!(SOURCE_MARKERS_ES[..], ["de"]);
        assert!(TARGET_MARKERS.contains(&"into"));
        assert!(STOPWORDS.contains(&"the") && STOPWORDS.contains(&"por"));
        assert!(NUMBER_WORDS_EN.contains(&("twelve", "12")));
        assert!(BARE_CONTRACTIONS.contains(&("dont", vec!["do", "not"])));
        assert!(UNIT_SIGNS.contains(&('€', "eur")));
        assert_eq!(SYNONYMS[0], ["buy", "purchase"]);
    }
}
