//! One embedding model's part of the cache: its index, its key prefix, its
//! dimension and its thresholds, from the variables and the model's
//! measured defaults (`model_thresholds`, else the table built into
//! `aies-cache-guard`).

use aies_cache_guard::{Policy, ThresholdTable, Thresholds};
use aies_contract::keys::{cache_index, cache_model_prefix};
use aies_contract::{valid_tenant, JudgeLevel};
use aies_guest::{var, var_parsed};
use anyhow::{anyhow, bail, Result};

/// One embedding model's part of the cache: its own index over its own
/// key prefix, so vectors of two models never meet, and its thresholds.
pub(crate) struct Settings {
    pub index: String,
    pub prefix: String,
    pub dimension: usize,
    pub threshold: f32,
    /// A similarity asked for (the request's `cache_threshold`, raised to
    /// the floor, else `similarity_threshold` when not `auto`): the judge's
    /// candidates need it instead of the judge's own.
    pub chosen: Option<f32>,
    /// How sure the judge must be.
    pub level: JudgeLevel,
    /// The guard alone, where the judge cannot be asked: the similarity
    /// every candidate needs, and the policy.
    pub fallback_threshold: f32,
    pub fallback_policy: Policy,
}

impl Settings {
    /// Settings for unit tests.
    #[cfg(test)]
    pub(crate) fn example(index: &str, prefix: &str, dimension: usize) -> Self {
        Self {
            index: index.into(),
            prefix: prefix.into(),
            dimension,
            threshold: 0.8,
            chosen: None,
            level: JudgeLevel::Default,
            fallback_threshold: 0.9,
            fallback_policy: Policy::default(),
        }
    }

    /// What accepts a candidate under these settings, as an alias records
    /// it: the judge at this level, or the guard at its fallback thresholds.
    pub fn accepted_by(&self, judge: bool) -> String {
        if judge {
            format!("judge:{}", self.level.as_str())
        } else {
            format!(
                "guard:{}:{}",
                self.fallback_threshold, self.fallback_policy.reworded_similarity
            )
        }
    }
}

/// `requested`: this request's `cache_threshold`, raised to the model's
/// floor if it is below it; `level`: its `cache_judge`.
pub(crate) fn settings(
    model: &str,
    requested: Option<f32>,
    level: Option<JudgeLevel>,
) -> Result<Settings> {
    let defaults = ThresholdTable::parse(&var("model_thresholds")?)
        .map_err(|e| anyhow!("model_thresholds: {e}"))?
        .for_model(model);
    // A number, or "auto" (None) for the model's default.
    let unit = |name: &str| -> Result<Option<f32>> {
        if var(name)?.trim() == "auto" {
            return Ok(None);
        }
        let value: f32 = var_parsed(name)?;
        if !(0.0..=1.0).contains(&value) {
            bail!("{name} must be between 0 and 1 (or auto), got {value}");
        }
        Ok(Some(value))
    };
    let configured = unit("similarity_threshold")?;
    let (threshold, reworded) = thresholds(
        &defaults,
        configured.unwrap_or(defaults.similarity),
        unit("reworded_similarity")?.unwrap_or(defaults.reworded),
        requested,
    );
    let level = match level {
        Some(level) => level,
        None => {
            let configured = var("cache_judge")?;
            JudgeLevel::parse(&configured).ok_or_else(|| {
                anyhow!("cache_judge must be strict, default or lenient, got {configured:?}")
            })?
        }
    };
    let fallback = defaults.fallback.max(threshold);
    Ok(Settings {
        index: cache_index(&var("cache_index")?, model),
        prefix: cache_model_prefix(model),
        dimension: var_parsed("vector_dimension")?,
        threshold,
        chosen: requested
            .map(|t| t.clamp(defaults.floor, 1.0))
            .or(configured),
        level,
        fallback_threshold: fallback,
        fallback_policy: Policy {
            reworded_similarity: reworded.max(fallback),
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
        fallback: 0.9,
    };

    fn settings(dimension: usize) -> Settings {
        Settings::example("i", "p", dimension)
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
