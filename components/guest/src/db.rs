//! Redis connections and replies. The key layout is
//! [`aies_contract::keys`].

use crate::var;
use anyhow::{anyhow, Result};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

/// Opens logical database `db` on the Redis server named by the
/// `redis_scheme` (`redis`, or `rediss` for TLS), `redis_host` and
/// `redis_port` variables, as `redis_username` with `redis_password` when
/// a password is set.
pub fn redis(db: u8) -> Result<Connection> {
    let server = Server {
        scheme: var("redis_scheme")?,
        host: var("redis_host")?,
        port: var("redis_port")?,
        username: var("redis_username")?,
        password: var("redis_password")?,
    };
    let address = server.address(db)?;
    // The error names the database, never the address (it holds the password).
    Connection::open(&address).map_err(|e| anyhow!("opening Redis db {db}: {e}"))
}

struct Server {
    scheme: String,
    host: String,
    port: String,
    username: String,
    password: String,
}

impl Server {
    fn address(&self, db: u8) -> Result<String> {
        let Self {
            scheme,
            host,
            port,
            username,
            password,
        } = self;
        if !matches!(scheme.as_str(), "redis" | "rediss") {
            return Err(anyhow!("redis_scheme {scheme:?}: redis, or rediss for TLS"));
        }
        // Put into the URL as they are (as the Redis trigger's address
        // does): `/`, `@` or `#` would end the part they are in.
        let plain = |s: &str| !s.contains(['/', '@', '#', '?']);
        if !plain(username) || !plain(password) {
            return Err(anyhow!(
                "redis_username and redis_password go into a URL: write '/', '@', '#' and '?' percent-encoded"
            ));
        }
        Ok(if password.is_empty() {
            format!("{scheme}://{host}:{port}/{db}")
        } else {
            format!("{scheme}://{username}:{password}@{host}:{port}/{db}")
        })
    }
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
    }

    #[test]
    fn addresses_carry_the_scheme_and_the_user_when_a_password_is_set() {
        let mut server = Server {
            scheme: "redis".into(),
            host: "redis".into(),
            port: "6379".into(),
            username: String::new(),
            password: String::new(),
        };
        assert_eq!(server.address(2).unwrap(), "redis://redis:6379/2");
        server.scheme = "rediss".into();
        server.username = "aies".into();
        server.password = "p%40ss".into();
        assert_eq!(
            server.address(0).unwrap(),
            "rediss://aies:p%40ss@redis:6379/0"
        );
        server.password = "p@ss".into();
        assert!(server.address(0).is_err());
        server.password = "x".into();
        server.scheme = "http".into();
        assert!(server.address(0).is_err());
    }
}
