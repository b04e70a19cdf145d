//! The variables capability alone: a state over a component's values, asked
//! through its host trait.

use super::*;
use crate::bindings::variables::{Error, Host};

fn state(values: &[(&str, &str)]) -> VariablesState {
    let values = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    VariablesState::new(Arc::new(values))
}

#[tokio::test]
async fn a_defined_variable_is_read() {
    let mut vars = state(&[("api_url", "https://x.example"), ("k2", "")]);
    let got = vars.get("api_url".into()).await.unwrap();
    assert_eq!(got.unwrap(), "https://x.example");
    assert_eq!(vars.get("k2".into()).await.unwrap().unwrap(), "");
}

#[tokio::test]
async fn an_undefined_variable_is_undefined() {
    let mut vars = state(&[("api_url", "x")]);
    match vars.get("api_key".into()).await.unwrap() {
        Err(Error::Undefined(name)) => assert_eq!(name, "api_key"),
        other => panic!("expected undefined, got {other:?}"),
    }
}

#[tokio::test]
async fn names_spin_refuses_are_invalid_even_when_a_value_has_that_key() {
    // The values are keyed by the invalid names too: only the name check
    // can refuse them.
    let names = ["API_URL", "api-url", "", "api url", "ápi"];
    let values: Vec<(&str, &str)> = names.iter().map(|n| (*n, "v")).collect();
    let mut vars = state(&values);
    for name in names {
        match vars.get(name.into()).await.unwrap() {
            Err(Error::InvalidName(n)) => assert_eq!(n, name),
            other => panic!("{name:?}: expected invalid-name, got {other:?}"),
        }
    }
    for name in ["a", "a_1", "9lives", "_"] {
        assert!(valid_name(name), "{name}");
    }
}
