//! RediSearch, as text: the KNN query of a lookup, TAG escaping, vectors as
//! blobs, and reading `FT.SEARCH` and `FT.INFO` replies.

use aies_contract::{CacheHit, CacheTier};
use aies_guest::text;
use anyhow::{bail, Result};
use spin_sdk::redis::RedisResult;

/// Nearest entries examined per lookup: the best one above the threshold
/// that passes the guard answers.
pub(crate) const CANDIDATES: usize = 5;

/// The fields each search result returns, in this order.
pub(crate) const RETURNED: [&str; 5] = ["prompt", "result", "task_id", "scope", "distance"];

/// The lookup's query: the [`CANDIDATES`] nearest entries of this tenant
/// and scope. Tenant and scope filter the KNN itself: other entries are
/// never candidates.
pub(crate) fn knn_query(tenant: &str, scope: &str) -> String {
    format!(
        "(@tenant:{{{}}} @scope:{{{}}})=>[KNN {CANDIDATES} @vector $q AS distance]",
        escape_tag(tenant),
        escape_tag(scope)
    )
}

/// Escapes a TAG value for a query: RediSearch reads `-` and other
/// punctuation as syntax unless backslashed.
pub fn escape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        if !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A vector as the index stores it: little-endian FLOAT32s.
pub(crate) fn blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// Reads the documents of a flattened `FT.SEARCH` reply:
/// `[total, key, field, value, ..., key, field, value, ...]`, every
/// document carrying all the `RETURNED` fields.
pub(crate) fn parse_hits(reply: &[RedisResult]) -> Result<Vec<CacheHit>> {
    match reply.first() {
        Some(RedisResult::Int64(_)) => {}
        other => bail!("unexpected FT.SEARCH reply start: {other:?}"),
    }
    let width = 1 + 2 * RETURNED.len();
    let mut hits = Vec::new();
    for doc in reply[1..].chunks(width) {
        // Fields come back by name, in no promised order.
        let mut values: [Option<String>; 5] = Default::default();
        for pair in doc[1..].chunks(2) {
            let (Some(field), Some(value)) = (text(&pair[0]), pair.get(1).and_then(text)) else {
                bail!("FT.SEARCH returned an incomplete document");
            };
            if let Some(i) = RETURNED.iter().position(|f| *f == field) {
                values[i] = Some(value);
            }
        }
        let [Some(prompt), Some(result), Some(task_id), Some(scope), Some(distance)] = values
        else {
            bail!("FT.SEARCH returned a document without all of {RETURNED:?}");
        };
        let Some(entry) = text(&doc[0]) else {
            bail!("FT.SEARCH returned a document without its key");
        };
        hits.push(CacheHit {
            tier: CacheTier::Semantic,
            prompt,
            result,
            task_id,
            entry,
            scope,
            // RediSearch's COSINE metric reports 1 - cosine similarity.
            similarity: 1.0 - distance.parse::<f32>()?,
            judge_score: None,
        });
    }
    Ok(hits)
}

/// The `dim` of an index's vector field, in a flattened `FT.INFO` reply.
pub(crate) fn info_dimension(info: &[RedisResult]) -> Option<i64> {
    let at = info
        .iter()
        .position(|v| text(v).as_deref() == Some("dim"))?;
    text(info.get(at + 1)?)?.parse().ok()
}

/// Whether a RediSearch error says the index does not exist (yet).
pub(crate) fn is_missing_index(e: &anyhow::Error) -> bool {
    let msg = e.to_string().to_lowercase();
    msg.contains("no such index") || msg.contains("unknown index")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(s: &str) -> RedisResult {
        RedisResult::Binary(s.as_bytes().to_vec())
    }

    #[test]
    fn tags_are_escaped_in_the_knn_query() {
        assert_eq!(escape_tag("acme-1_x"), "acme\\-1\\_x");
        assert_eq!(escape_tag("abc123"), "abc123");
        assert_eq!(
            knn_query("acme-1", "ab12"),
            "(@tenant:{acme\\-1} @scope:{ab12})=>[KNN 5 @vector $q AS distance]"
        );
    }

    #[test]
    fn vectors_are_little_endian_f32() {
        assert_eq!(blob(&[1.0, -2.0]), [0, 0, 128, 63, 0, 0, 0, 192]);
    }

    #[test]
    fn search_replies_become_semantic_hits() {
        let reply = [
            RedisResult::Int64(1),
            bin("aies:cache:m:acme:ab:cd"),
            bin("distance"),
            bin("0.25"),
            bin("prompt"),
            bin("What is Rust?"),
            bin("task_id"),
            bin("t1"),
            bin("scope"),
            bin("ab"),
            bin("result"),
            bin("A language."),
        ];
        let hits = parse_hits(&reply).unwrap();
        assert_eq!(
            hits,
            vec![CacheHit {
                tier: CacheTier::Semantic,
                prompt: "What is Rust?".into(),
                result: "A language.".into(),
                similarity: 0.75,
                task_id: "t1".into(),
                entry: "aies:cache:m:acme:ab:cd".into(),
                scope: "ab".into(),
                judge_score: None,
            }]
        );
        assert!(parse_hits(&[RedisResult::Int64(0)]).unwrap().is_empty());
        assert!(parse_hits(&[bin("OK")]).is_err());
        let short = &reply[..8];
        let e = parse_hits(short).unwrap_err().to_string();
        assert!(
            e.starts_with("FT.SEARCH returned a document without all of"),
            "{e}"
        );
    }

    #[test]
    fn index_info_gives_the_dimension() {
        let info = [
            bin("index_name"),
            bin("i"),
            bin("dim"),
            RedisResult::Int64(384),
        ];
        assert_eq!(info_dimension(&info), Some(384));
        assert_eq!(info_dimension(&info[..2]), None);
        assert!(is_missing_index(&anyhow::anyhow!(
            "redis FT.SEARCH: Unknown Index name"
        )));
        assert!(!is_missing_index(&anyhow::anyhow!(
            "redis FT.SEARCH: timeout"
        )));
    }
}
