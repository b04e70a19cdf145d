//! Spin variables, typed.

use anyhow::{anyhow, Result};
use spin_sdk::variables;

/// A Spin variable, with its name in the error.
pub fn var(name: &str) -> Result<String> {
    variables::get(name).map_err(|e| anyhow!("variable `{name}`: {e}"))
}

/// A Spin variable parsed into a number or flag.
pub fn var_parsed<T: std::str::FromStr>(name: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    parse_var(name, &var(name)?)
}

fn parse_var<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    raw.trim()
        .parse()
        .map_err(|e| anyhow!("variable `{name}` = {raw:?} is not valid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_trimmed_and_errors_name_the_variable() {
        assert_eq!(parse_var::<i64>("cache_ttl_seconds", " 60\n").unwrap(), 60);
        let e = parse_var::<u32>("llm_max_retries", "three").unwrap_err();
        assert_eq!(
            e.to_string(),
            "variable `llm_max_retries` = \"three\" is not valid: invalid digit found in string"
        );
    }
}
