//! Turning a prompt into tokens: folding (lower case, accents off),
//! splitting, numbers and units, language.

use unicode_normalization::UnicodeNormalization;

use crate::lexicon::{
    BARE_CONTRACTIONS, ENGLISH_MARKERS, NUMBER_WORDS_EN, NUMBER_WORDS_ES, SPANISH_MARKERS, UNITS,
    UNIT_SIGNS, UNIT_SYMBOLS,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
    Unknown,
}

/// Lower case, accents and other marks removed (NFKD without combining
/// marks): "¿Cómo estás?" -> "¿como estas?".
pub fn fold(text: &str) -> String {
    text.nfkd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// One word of a prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// Folded text.
    pub text: String,
    /// Written all in capitals in the prompt (an acronym: "US", "IVA").
    pub acronym: bool,
    /// Capitalised inside a sentence (a name: "Madrid", "Google").
    pub name: bool,
}

/// Splits a prompt into word tokens and unit signs. Degree signs become
/// `degc` / `degf` units, `n't` becomes `not`, possessive `'s` goes away,
/// and digits are split from the letters glued to them ("5km" -> "5", "km").
pub fn tokenize(prompt: &str) -> Vec<Token> {
    let prompt = dotted_acronyms(&degrees(&prompt.replace(['’', '`', '´'], "'")));
    let mut tokens = Vec::new();
    let mut sentence_start = true;
    for raw in split(&prompt) {
        let folded = fold(&raw);
        if folded == "deg" {
            tokens.push(plain("deg"));
            continue;
        }
        let acronym = raw.chars().filter(|c| c.is_alphabetic()).count() >= 2
            && raw.chars().all(|c| !c.is_lowercase());
        let name = !sentence_start && raw.chars().next().is_some_and(char::is_uppercase);
        sentence_start = matches!(raw.as_str(), "." | "?" | "!" | ":" | "¿" | "¡" | ";");
        if raw.chars().all(|c| !c.is_alphanumeric()) {
            if let Some((_, unit)) = UNIT_SIGNS.iter().find(|(s, _)| raw.starts_with(*s)) {
                tokens.push(plain(unit));
            }
            continue;
        }
        for piece in split_digits(&folded) {
            tokens.push(Token {
                text: piece,
                acronym,
                name,
            });
        }
    }
    expand_contractions(tokens)
}

/// "U.S." -> "US", "EE. UU." -> "EEUU": groups of one or two capitals,
/// each closed by a dot, two groups or more.
fn dotted_acronyms(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    // One group at `at`: its letters and where the next group may start.
    let group = |at: usize| -> Option<(usize, usize)> {
        let letters = chars[at..].iter().take_while(|c| c.is_uppercase()).count();
        ((1..=2).contains(&letters) && chars.get(at + letters) == Some(&'.'))
            .then_some((letters, at + letters + 1))
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts = i == 0 || !chars[i - 1].is_alphanumeric();
        let mut letters = String::new();
        let mut end = i;
        let mut groups = 0;
        while let Some((n, next)) = group(end).filter(|_| starts) {
            letters.extend(&chars[end..end + n]);
            groups += 1;
            end = next;
            if chars.get(end) == Some(&' ') && group(end + 1).is_some() {
                end += 1;
            }
        }
        if groups >= 2 {
            out.push_str(&letters);
            out.push(' ');
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// `°` is a degree; `º` is one too before C or F ("180 ºC"), else the
/// ordinal sign ("1º" -> "1o").
fn degrees(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
        let scale = next.is_some_and(|n| matches!(n, 'C' | 'c' | 'F' | 'f'));
        match c {
            '°' => out.push_str(" deg "),
            'º' if scale => out.push_str(" deg "),
            'º' => out.push('o'),
            c => out.push(c),
        }
    }
    out
}

fn plain(text: &str) -> Token {
    Token {
        text: text.to_string(),
        acronym: false,
        name: false,
    }
}

/// Words (letters, digits, and `.`/`,` between digits, `+`/`#` after
/// letters as in C++ and C#) and single punctuation characters.
fn split(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let prev_digit = i > 0 && chars[i - 1].is_ascii_digit();
        let next_digit = chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        let inner_number = matches!(c, '.' | ',') && prev_digit && next_digit;
        let code_suffix = matches!(c, '+' | '#') && !word.is_empty();
        if c.is_alphanumeric() || inner_number || code_suffix || (c == '\'' && !word.is_empty()) {
            word.push(c);
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// "5km" -> ["5", "km"]; "1st" -> ["1o"]; "don't" -> ["don't"] (kept).
fn split_digits(word: &str) -> Vec<String> {
    let first_letter = word.find(|c: char| c.is_alphabetic());
    let starts_digit = word.starts_with(|c: char| c.is_ascii_digit());
    match first_letter {
        Some(at)
            if starts_digit
                && word[..at]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == ',') =>
        {
            let (number, rest) = word.split_at(at);
            if matches!(
                rest,
                "st" | "nd" | "rd" | "th" | "o" | "a" | "er" | "ra" | "do" | "to"
            ) {
                vec![format!("{number}o")]
            } else {
                vec![number.to_string(), rest.to_string()]
            }
        }
        _ => vec![word.to_string()],
    }
}

/// English contractions into words: "don't" and "dont" -> "do not",
/// "france's" -> "france".
fn expand_contractions(tokens: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        let spanish = match t.text.as_str() {
            "al" => Some(["a", "el"]),
            "del" => Some(["de", "el"]),
            _ => None,
        };
        if let Some(words) = spanish {
            out.extend(words.iter().map(|w| plain(w)));
            continue;
        }
        if let Some((_, words)) = BARE_CONTRACTIONS.iter().find(|(w, _)| *w == t.text) {
            out.extend(words.iter().map(|w| plain(w)));
            continue;
        }
        let Some((stem, tail)) = t.text.split_once('\'') else {
            out.push(t);
            continue;
        };
        let (first, second) = match (stem, tail) {
            ("can", "t") => ("can", Some("not")),
            ("won", "t") => ("will", Some("not")),
            (s, "t") if s.ends_with('n') => (&s[..s.len() - 1], Some("not")),
            (s, "ll") => (s, Some("will")),
            (s, "re") => (s, Some("are")),
            (s, "ve") => (s, Some("have")),
            (s, "m") => (s, Some("am")),
            (s, _) => (s, None),
        };
        if !first.is_empty() {
            out.push(Token {
                text: first.to_string(),
                ..t.clone()
            });
        }
        if let Some(second) = second {
            out.push(plain(second));
        }
    }
    out
}

/// English, Spanish, or too little to tell.
pub fn language(prompt: &str, tokens: &[Token]) -> Lang {
    let mut en = 0;
    let mut es = 0;
    for t in tokens {
        en += usize::from(ENGLISH_MARKERS.contains(&t.text.as_str()));
        es += usize::from(SPANISH_MARKERS.contains(&t.text.as_str()));
    }
    es += 2 * prompt
        .chars()
        .filter(|c| matches!(c, 'ñ' | 'Ñ' | '¿' | '¡' | 'á' | 'é' | 'í' | 'ó' | 'ú'))
        .count()
        .min(2);
    match en.cmp(&es) {
        std::cmp::Ordering::Greater => Lang::En,
        std::cmp::Ordering::Less => Lang::Es,
        std::cmp::Ordering::Equal => Lang::Unknown,
    }
}

/// What a token counts as.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Number(String),
    Unit(String),
    Word,
}

/// Numbers (digits and number words) and units (words, symbols right
/// after a number, signs).
pub fn classify(tokens: &[Token], lang: Lang) -> Vec<Kind> {
    let number_words = |w: &str| -> Option<&'static str> {
        let en = NUMBER_WORDS_EN
            .iter()
            .find(|(k, _)| *k == w)
            .map(|(_, v)| *v);
        let es = NUMBER_WORDS_ES
            .iter()
            .find(|(k, _)| *k == w)
            .map(|(_, v)| *v);
        match lang {
            Lang::En => en,
            Lang::Es => es,
            Lang::Unknown => en.or(es),
        }
    };
    let mut kinds: Vec<Kind> = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let w = t.text.as_str();
        let after_number = i > 0 && matches!(kinds[i - 1], Kind::Number(_));
        let kind = if w.starts_with(|c: char| c.is_ascii_digit()) {
            Kind::Number(w.to_string())
        } else if let Some(n) = roman(t) {
            Kind::Number(n.to_string())
        } else if w == "deg" {
            let next = tokens.get(i + 1).map(|n| n.text.as_str());
            match next {
                Some("c" | "celsius" | "centigrados" | "centigrado") => Kind::Unit("degc".into()),
                Some("f" | "fahrenheit") => Kind::Unit("degf".into()),
                _ => Kind::Unit("deg".into()),
            }
        } else if i > 0 && tokens[i - 1].text == "deg" && matches!(w, "c" | "f") {
            Kind::Word // already read with the degree sign
        } else if let Some(value) = number_words(w) {
            Kind::Number(value.to_string())
        } else if let Some((_, unit)) = UNITS.iter().find(|(k, _)| *k == w) {
            Kind::Unit(unit.to_string())
        } else if let Some((_, unit)) = UNIT_SYMBOLS
            .iter()
            .find(|(k, _)| *k == w)
            .filter(|_| after_number)
        {
            Kind::Unit(unit.to_string())
        } else {
            Kind::Word
        };
        kinds.push(kind);
    }
    kinds
}

/// A Roman numeral written in capitals, two letters or more ("World War
/// II", "Louis XIV").
fn roman(t: &Token) -> Option<u32> {
    if !t.acronym || t.text.len() < 2 {
        return None;
    }
    let value = |c| match c {
        'i' => Some(1),
        'v' => Some(5),
        'x' => Some(10),
        'l' => Some(50),
        'c' => Some(100),
        _ => None,
    };
    let digits: Vec<u32> = t.text.chars().map(value).collect::<Option<_>>()?;
    let mut total = 0;
    for (i, d) in digits.iter().enumerate() {
        if digits.get(i + 1).is_some_and(|next| next > d) {
            total -= *d as i32;
        } else {
            total += *d as i32;
        }
    }
    u32::try_from(total).ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        tokenize(s).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn folding_and_splitting() {
        assert_eq!(fold("¿Cómo Estás?"), "¿como estas?");
        assert_eq!(
            words("Don't cancel France's order!"),
            ["do", "not", "cancel", "france", "order"]
        );
        assert_eq!(
            words("5km at 10am, $1,000 or 2.5% in C++ 1st"),
            ["5", "km", "at", "10", "am", "usd", "1,000", "or", "2.5", "pct", "in", "c++", "1o"]
        );
        assert_eq!(
            words("180 °C, 1º y 20 ºF"),
            ["180", "deg", "c", "1o", "y", "20", "deg", "f"]
        );
        assert_eq!(
            words("the U.S. and EE. UU. dont"),
            ["the", "us", "and", "eeuu", "do", "not"]
        );
    }

    #[test]
    fn numbers_and_units() {
        let t = tokenize("Convert five miles to km at 180 °C");
        let kinds = classify(&t, Lang::En);
        let numbers: Vec<_> = kinds
            .iter()
            .filter_map(|k| match k {
                Kind::Number(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        let units: Vec<_> = kinds
            .iter()
            .filter_map(|k| match k {
                Kind::Unit(u) => Some(u.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(numbers, ["5", "180"]);
        assert_eq!(units, ["mi", "km", "degc"]);
    }

    #[test]
    fn english_and_spanish_are_told_apart() {
        let lang = |s: &str| language(s, &tokenize(s));
        assert_eq!(lang("How do I cancel my order?"), Lang::En);
        assert_eq!(lang("¿Cómo cancelo mi pedido?"), Lang::Es);
        assert_eq!(lang("como cancelo mi pedido"), Lang::Es);
        assert_eq!(lang("Python asyncio"), Lang::Unknown);
    }
}
