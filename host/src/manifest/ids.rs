//! Spin's identifier grammar (spin-serde `id.rs`): words separated by one
//! delimiter, each starting with an ASCII letter, alphanumeric, all lower
//! or all UPPER case. Component ids are kebab-case (`cache-fill`);
//! variable names lower snake_case (`redis_host`). The messages are Spin's.

/// `[component.<id>]` and the triggers' `component = "<id>"`.
pub fn kebab(id: &str) -> Result<(), String> {
    check(id, '-', false)
}

/// `[variables]` names and a component's `variables` keys.
pub fn lower_snake(id: &str) -> Result<(), String> {
    check(id, '_', true)
}

/// `key_value_stores` and `sqlite_databases` labels: either form.
pub fn kebab_or_snake(id: &str) -> Result<(), String> {
    if kebab(id).is_ok() || check(id, '_', false).is_ok() {
        Ok(())
    } else {
        Err("expected kebab-case or snake_case".into())
    }
}

fn check(id: &str, delim: char, lower: bool) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty".into());
    }
    let wrong = if delim == '-' { '_' } else { '-' };
    if id.contains(wrong) {
        return Err(format!(
            "words must be separated with {delim:?}, not {wrong:?}"
        ));
    }
    for word in id.split(delim) {
        let mut chars = word.chars();
        let Some(first) = chars.next() else {
            return Err(format!("{delim:?}-separated words must not be empty"));
        };
        if !first.is_ascii_alphabetic() {
            return Err(format!(
                "{delim:?}-separated words must start with an ASCII letter; got {first:?}"
            ));
        }
        let upper = first.is_ascii_uppercase();
        for c in chars {
            if c.is_ascii_digit() {
                continue;
            }
            if !c.is_ascii_alphanumeric() {
                return Err(format!(
                    "{delim:?}-separated words may only contain alphanumeric ASCII; got {c:?}"
                ));
            }
            if c.is_ascii_uppercase() != upper {
                return Err(format!(
                    "{delim:?}-separated words must be all lowercase or all UPPERCASE; got {word:?}"
                ));
            }
        }
        if lower && upper {
            return Err(format!(
                "Lower-case identifiers must be all lowercase; got {id:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_ids_as_spin_reads_them() {
        for ok in ["ingest", "cache-fill", "llm-invoke2", "FOO-bar"] {
            assert_eq!(kebab(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("cache_fill", "separated with '-', not '_'"),
            ("a--b", "must not be empty"),
            ("2fast", "start with an ASCII letter"),
            ("a.b", "alphanumeric ASCII"),
            ("Foo", "all lowercase or all UPPERCASE"),
        ] {
            let err = kebab(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn variable_names_are_lower_snake_case() {
        assert_eq!(lower_snake("redis_host"), Ok(()));
        assert!(lower_snake("redis-host")
            .unwrap_err()
            .contains("'_', not '-'"));
        assert!(lower_snake("REDIS_HOST")
            .unwrap_err()
            .contains("must be all lowercase"));
        assert_eq!(kebab_or_snake("my_store"), Ok(()));
        assert_eq!(kebab_or_snake("my-store"), Ok(()));
        assert!(kebab_or_snake("my.store").is_err());
    }
}
