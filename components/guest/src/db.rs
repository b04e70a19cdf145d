//! Redis connections and replies. The key layout is
//! [`aies_contract::keys`].

use crate::var;
use anyhow::{anyhow, Result};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

/// Opens logical database `db` on the Redis server named by the
/// `redis_host` / `redis_port` variables.
pub fn redis(db: u8) -> Result<Connection> {
    let address = address(&var("redis_host")?, &var("redis_port")?, db);
    Connection::open(&address).map_err(|e| anyhow!("opening Redis db {db}: {e}"))
}

fn address(host: &str, port: &str, db: u8) -> String {
    format!("redis://{host}:{port}/{db}")
}

pub fn arg(s: impl AsRef<[u8]>) -> RedisParameter {
    RedisParameter::Binary(s.as_ref().to_vec())
}

/// Runs a Redis command, turning its error into one that names the command.
pub fn execute(
    conn: &Connection,
    command: &str,
    args: &[RedisParameter],
) -> Result<Vec<RedisResult>> {
    conn.execute(command, args)
        .map_err(|e| anyhow!("redis {command}: {e}"))
}

/// The text of a flat Redis reply value, if it is one.
pub fn text(value: &RedisResult) -> Option<String> {
    match value {
        RedisResult::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        RedisResult::Status(s) => Some(s.clone()),
        RedisResult::Int64(i) => Some(i.to_string()),
        RedisResult::Nil => None,
    }
}

/// `HGETALL` of a hash as field/value pairs (the reply arrives flat).
pub fn hgetall(conn: &Connection, key: &str) -> Result<Vec<(String, String)>> {
    let flat = execute(conn, "HGETALL", &[arg(key)])?;
    pairs(&flat).ok_or_else(|| anyhow!("HGETALL {key}: odd number of values"))
}

/// A flat `[field, value, ...]` reply as pairs; `None` when it is odd.
fn pairs(flat: &[RedisResult]) -> Option<Vec<(String, String)>> {
    if !flat.len().is_multiple_of(2) {
        return None;
    }
    Some(
        flat.chunks(2)
            .map(|p| {
                (
                    text(&p[0]).unwrap_or_default(),
                    text(&p[1]).unwrap_or_default(),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_as_text_and_pairs() {
        let bin = |s: &str| RedisResult::Binary(s.as_bytes().to_vec());
        assert_eq!(text(&RedisResult::Int64(7)).as_deref(), Some("7"));
        assert_eq!(
            text(&RedisResult::Status("OK".into())).as_deref(),
            Some("OK")
        );
        assert_eq!(text(&RedisResult::Nil), None);
        let flat = [
            bin("status"),
            bin("SUCCESS"),
            bin("n"),
            RedisResult::Int64(2),
        ];
        assert_eq!(
            pairs(&flat).unwrap(),
            vec![
                ("status".to_string(), "SUCCESS".to_string()),
                ("n".to_string(), "2".to_string())
            ]
        );
        assert_eq!(pairs(&flat[..3]), None);
        assert_eq!(address("redis", "6379", 2), "redis://redis:6379/2");
    }
}
