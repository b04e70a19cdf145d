//! One embedding model's part of the cache: its index, its key prefix, its
//! dimension and its thresholds, from the variables and the model's
//! measured defaults (`model_thresholds`, else the table built into
//! `aies-cache-guard`).

use aies_cache_guard::{Policy, ThresholdTable, Thresholds};
use aies_contract::keys::{cache_index, cache_model_prefix};
use aies_contract::valid_tenant;
use aies_guest::{var, var_parsed};
use anyhow::{anyhow, bail, Result};

/// One embedding model's part of the cache: its own index over its own
/// key prefix, so vectors of two models never meet, and its thresholds.
pub(crate) struct Settings {
    pub index: String,
    pub prefix: String,
    pub dimension: usize,
    pub threshold: f32,
    pub policy: Policy,
}

/// `requested`: this request's `cache_threshold`, raised to the model's
/// floor if it is below it.
pub(crate) fn settings(model: &str, requested: Option<f32>) -> Result<Settings> {
    let defaults = ThresholdTable::parse(&var("model_thresholds")?)
        .map_err(|e| anyhow!("model_thresholds: {e}"))?
        .for_model(model);
    // A number, or "auto" for the model's default.
    let unit = |name: &str, default: f32| -> Result<f32> {
        if var(name)?.trim() == "auto" {
            return Ok(default);
        }
        let value: f32 = var_parsed(name)?;
        if !(0.0..=1.0).contains(&value) {
            bail!("{name} must be between 0 and 1 (or auto), got {value}");
        }
        Ok(value)
    };
    let (threshold, reworded) = thresholds(
        &defaults,
        unit("similarity_threshold", defaults.similarity)?,
        unit("reworded_similarity", defaults.reworded)?,
        requested,
    );
    Ok(Settings {
        index: cache_index(&var("cache_index")?, model),
        prefix: cache_model_prefix(model),
        dimension: var_parsed("vector_dimension")?,
        threshold,
        policy: Policy {
            reworded_similarity: reworded,
            ..Policy::default()
        },
    })
}

/// The similarity a candidate needs, and the one a reworded candidate
/// needs: the configured ones, unless the request asks for its own
/// (never below the model's floor, and rewording never easier than that).
fn thresholds(
    defaults: &Thresholds,
    configured: f32,
    reworded: f32,
    requested: Option<f32>,
) -> (f32, f32) {
    match requested {
        Some(asked) => {
            let threshold = asked.clamp(defaults.floor, 1.0);
            (threshold, reworded.max(threshold))
        }
        None => (configured, reworded),
    }
}

/// A lookup's or insert's tenant and vector fit this model's index.
pub(crate) fn check(tenant: &str, vector: &[f32], s: &Settings) -> Result<()> {
    if !valid_tenant(tenant) {
        bail!("invalid tenant {tenant:?}");
    }
    if vector.len() != s.dimension {
        bail!(
            "vector has dimension {}, but VECTOR_DIMENSION (variable vector_dimension) is {}",
            vector.len(),
            s.dimension
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Thresholds = Thresholds {
        similarity: 0.8,
        reworded: 0.85,
        floor: 0.7,
    };

    fn settings(dimension: usize) -> Settings {
        Settings {
            index: "i".into(),
            prefix: "p".into(),
            dimension,
            threshold: 0.8,
            policy: Policy::default(),
        }
    }

    #[test]
    fn a_request_may_ask_for_its_own_threshold_down_to_the_floor() {
        assert_eq!(thresholds(&DEFAULTS, 0.82, 0.86, None), (0.82, 0.86));
        assert_eq!(thresholds(&DEFAULTS, 0.82, 0.86, Some(0.95)), (0.95, 0.95));
        assert_eq!(thresholds(&DEFAULTS, 0.82, 0.86, Some(0.75)), (0.75, 0.86));
        assert_eq!(thresholds(&DEFAULTS, 0.82, 0.86, Some(0.1)), (0.7, 0.86));
    }

    #[test]
    fn vectors_must_fit_the_index() {
        assert!(check("acme", &[0.0; 3], &settings(3)).is_ok());
        let e = check("acme", &[0.0; 2], &settings(3)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vector has dimension 2, but VECTOR_DIMENSION (variable vector_dimension) is 3"
        );
        let e = check("a b", &[0.0; 3], &settings(3)).unwrap_err();
        assert_eq!(e.to_string(), "invalid tenant \"a b\"");
    }
}
