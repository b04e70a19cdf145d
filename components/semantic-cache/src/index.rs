//! Each embedding model's HNSW cosine index, made on first use, and the
//! plain error when an old index has another dimension.

use crate::query::info_dimension;
use crate::settings::Settings;
use aies_guest::{arg, execute};
use anyhow::{bail, Result};
use spin_sdk::redis::{Connection, RedisParameter};

pub(crate) fn create_index(conn: &Connection, s: &Settings) -> Result<()> {
    match execute(conn, "FT.CREATE", &create_args(s)) {
        Ok(_) => Ok(()),
        // Another request created it first.
        Err(e) if e.to_string().to_lowercase().contains("already exists") => Ok(()),
        Err(e) => Err(e),
    }
}

/// `FT.CREATE`: the model's entries (hashes under its prefix), with tenant
/// and scope as tags and the vector under HNSW with the cosine metric.
fn create_args(s: &Settings) -> [RedisParameter; 21] {
    [
        arg(&s.index),
        arg("ON"),
        arg("HASH"),
        arg("PREFIX"),
        arg("1"),
        arg(&s.prefix),
        arg("SCHEMA"),
        arg("tenant"),
        arg("TAG"),
        arg("scope"),
        arg("TAG"),
        arg("vector"),
        arg("VECTOR"),
        arg("HNSW"),
        arg("6"),
        arg("TYPE"),
        arg("FLOAT32"),
        arg("DIM"),
        RedisParameter::Int64(s.dimension as i64),
        arg("DISTANCE_METRIC"),
        arg("COSINE"),
    ]
}

/// Fails with a plain explanation when the index was built for another
/// `VECTOR_DIMENSION` (left by an earlier deployment).
pub(crate) fn check_dimension(conn: &Connection, s: &Settings) -> Result<()> {
    match index_dimension(conn, &s.index) {
        Some(dim) if dim != s.dimension as i64 => bail!(
            "cache index `{}` was created with dimension {dim}, but VECTOR_DIMENSION is {}: \
             drop the index (FT.DROPINDEX {}) or set VECTOR_DIMENSION={dim}",
            s.index,
            s.dimension,
            s.index
        ),
        _ => Ok(()),
    }
}

/// The `dim` of the index's vector field, read from the flattened `FT.INFO`.
pub(crate) fn index_dimension(conn: &Connection, index: &str) -> Option<i64> {
    let info = execute(conn, "FT.INFO", &[arg(index)]).ok()?;
    info_dimension(&info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_covers_its_models_prefix_at_its_dimension() {
        let s = Settings::example(
            "aies_cache_local_m",
            &aies_contract::keys::cache_model_prefix("local:m"),
            384,
        );
        let shown: Vec<String> = create_args(&s)
            .iter()
            .map(|p| match p {
                RedisParameter::Int64(n) => n.to_string(),
                RedisParameter::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            })
            .collect();
        assert_eq!(
            shown.join(" "),
            "aies_cache_local_m ON HASH PREFIX 1 aies:cache:local_m: SCHEMA tenant TAG \
             scope TAG vector VECTOR HNSW 6 TYPE FLOAT32 DIM 384 DISTANCE_METRIC COSINE"
        );
    }
}
