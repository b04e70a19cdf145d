//! The similarities a cache candidate needs, per embedding model: the table
//! in `thresholds.txt` beside this crate (built in), or the same table
//! given at run time (the `model_thresholds` Spin variable).

/// One model's thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// To be a candidate at all.
    pub similarity: f32,
    /// For a candidate worded differently from the prompt.
    pub reworded: f32,
    /// The lowest `similarity` a request may ask for (`cache_threshold`).
    pub floor: f32,
    /// The similarity every candidate needs where the judge cannot be
    /// asked (a plain Spin host): the guard alone, made stricter.
    pub fallback: f32,
}

/// Thresholds by model name; `*` matches any model.
#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdTable(Vec<(String, Thresholds)>);

const BUILT_IN: &str = include_str!("../thresholds.txt");

/// Read once: every lookup of a request consults it.
static BUILT_IN_TABLE: std::sync::LazyLock<ThresholdTable> =
    std::sync::LazyLock::new(ThresholdTable::read_built_in);

impl ThresholdTable {
    /// The table built into the crate.
    pub fn built_in() -> Self {
        BUILT_IN_TABLE.clone()
    }

    fn read_built_in() -> Self {
        let rows = BUILT_IN
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                row(f[0], &f[1..]).expect("thresholds.txt is well formed (a unit test reads it)")
            })
            .collect();
        Self(rows)
    }

    /// A table given as configuration: `model=similarity:reworded:floor`
    /// entries, optionally with `:fallback`, separated by `;` (white space
    /// allowed around them). Empty: the built-in table.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::built_in());
        }
        let rows = text
            .split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let (model, values) = entry
                    .split_once('=')
                    .ok_or_else(|| format!("{entry:?} is not model=similarity:reworded:floor"))?;
                let values: Vec<&str> = values.split(':').map(str::trim).collect();
                row(model.trim(), &values)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self(rows))
    }

    /// The thresholds of a model (`local:multilingual-e5-small`: the part
    /// after the last colon is the name), else those of `*`, else the
    /// built-in table's.
    pub fn for_model(&self, model: &str) -> Thresholds {
        let name = model.rsplit(':').next().unwrap_or(model);
        let find = |rows: &[(String, Thresholds)], name: &str| {
            rows.iter().find(|(m, _)| m == name).map(|(_, t)| *t)
        };
        find(&self.0, name)
            .or_else(|| find(&self.0, "*"))
            .unwrap_or_else(|| BUILT_IN_TABLE.for_model(model))
    }
}

impl Thresholds {
    /// A model's thresholds from the built-in table.
    pub fn for_model(model: &str) -> Self {
        BUILT_IN_TABLE.for_model(model)
    }
}

fn row(model: &str, values: &[&str]) -> Result<(String, Thresholds), String> {
    let unit = |v: &str| -> Result<f32, String> {
        match v.parse::<f32>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
            _ => Err(format!("{model}: {v:?} is not a number between 0 and 1")),
        }
    };
    let (similarity, reworded, floor, fallback) = match values {
        [s, r, f] => (s, r, f, r),
        [s, r, f, b] => (s, r, f, b),
        _ => {
            return Err(format!(
                "{model}: want similarity:reworded:floor[:fallback], got {values:?}"
            ))
        }
    };
    if model.is_empty() {
        return Err("a threshold entry names no model".into());
    }
    let t = Thresholds {
        similarity: unit(similarity)?,
        reworded: unit(reworded)?,
        floor: unit(floor)?,
        fallback: unit(fallback)?,
    };
    if t.floor > t.similarity || t.reworded < t.similarity || t.fallback < t.reworded {
        return Err(format!(
            "{model}: want floor <= similarity <= reworded <= fallback, got \
             {similarity}:{reworded}:{floor}:{fallback}"
        ));
    }
    Ok((model.to_string(), t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_table() {
        let e5 = Thresholds::for_model("local:multilingual-e5-small");
        assert_eq!((e5.similarity, e5.reworded, e5.floor), (0.85, 0.88, 0.82));
        let other = Thresholds::for_model("openai:text-embedding-3-small");
        assert_eq!(
            (other.similarity, other.reworded, other.floor),
            (0.80, 0.85, 0.75)
        );
    }

    #[test]
    fn configured_table_wins_and_falls_back() {
        let t = ThresholdTable::parse(" all-minilm-l6-v2 = 0.7:0.9:0.6 ; *=0.9:0.95:0.9").unwrap();
        assert_eq!(t.for_model("local:all-minilm-l6-v2").similarity, 0.7);
        assert_eq!(t.for_model("local:multilingual-e5-small").similarity, 0.9);
        assert_eq!(
            t.for_model("x").fallback,
            0.95,
            "the fallback defaults to reworded"
        );
        let strict = ThresholdTable::parse("e5=0.8:0.85:0.7:0.9").unwrap();
        assert_eq!(strict.for_model("e5").fallback, 0.9);
        let only = ThresholdTable::parse("x=0.5:0.6:0.4").unwrap();
        assert_eq!(only.for_model("multilingual-e5-small").similarity, 0.85);
        assert_eq!(
            ThresholdTable::parse("").unwrap(),
            ThresholdTable::built_in()
        );
    }

    #[test]
    fn refuses_bad_entries() {
        for bad in [
            "e5",
            "e5=0.8:0.9",
            "e5=0.8:0.9:x",
            "e5=1.2:1.3:0.5",
            "e5=0.8:0.7:0.5",
            "e5=0.8:0.9:0.85",
            "e5=0.8:0.9:0.7:0.85",
            "e5=0.8:0.9:0.7:0.95:1",
            "=0.8:0.9:0.7",
        ] {
            assert!(ThresholdTable::parse(bad).is_err(), "{bad}");
        }
    }
}
