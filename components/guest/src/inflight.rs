//! Coalescing markers (DB 1): while a prompt is being answered, its marker
//! names the task, so the same prompt in the same scope joins it.

use crate::{arg, exact_id, execute, redis};
use aies_contract::keys::{self, DB_COORDINATION};
use anyhow::Result;
use spin_sdk::redis::RedisParameter;

/// The coalescing marker of a prompt (DB 1).
pub fn inflight_key(tenant: &str, scope: &str, prompt: &str) -> String {
    keys::inflight_key(&exact_id(tenant, scope, prompt))
}

/// Clears a prompt's coalescing marker if it still names `task_id`
/// (compare and delete: a newer task's marker is left alone).
pub fn release_inflight(task_id: &str, tenant: &str, scope: &str, prompt: &str) -> Result<()> {
    const SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0"#;
    let key = inflight_key(tenant, scope, prompt);
    let args = [
        arg(SCRIPT),
        RedisParameter::Int64(1),
        arg(&key),
        arg(task_id),
    ];
    execute(&redis(DB_COORDINATION)?, "EVAL", &args)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_keyed_by_the_exact_id() {
        let key = inflight_key("acme", "ab12", "Hello!");
        assert_eq!(
            key,
            format!("aies:inflight:{}", exact_id("acme", "ab12", "hello"))
        );
    }
}
