//! Task records (hashes in DB 2, `aies_contract::task_key`): written by
//! ingest, started by llm-invoke and finished exactly once by store, each
//! step one atomic Lua script. A record's tenant is set once; a FAILURE
//! marked `dead_lettered` (the bridge gave the event up) may start again
//! when the event is replayed.

use crate::{arg, execute, hgetall, now_secs, var_parsed};
use aies_contract::keys::{task_key, RECENT_TASKS, RECENT_TASKS_KEY, TASK_PREFIX};
use aies_contract::{TaskResult, TaskStatus};
use anyhow::{bail, Result};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

/// Sets fields of a task record (a hash in DB 2), stamps `updated_at`, and
/// renews the record's time to live (`result_ttl_seconds`).
pub fn write_task(conn: &Connection, task_id: &str, fields: &[(&str, &str)]) -> Result<()> {
    let key = task_key(task_id);
    let now = now_secs().to_string();
    let mut args = vec![arg(&key), arg("updated_at"), arg(&now)];
    for (field, value) in fields {
        args.push(arg(field));
        args.push(arg(value));
    }
    execute(conn, "HSET", &args)?;
    let ttl: i64 = var_parsed("result_ttl_seconds")?;
    execute(conn, "EXPIRE", &[arg(&key), RedisParameter::Int64(ttl)])?;
    Ok(())
}

/// What [`start_tasks`] did with one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Marked STARTED: run it.
    Run,
    /// Final already: answer the record as it is.
    Final,
    /// The record is another tenant's: refuse the event (a task's tenant is
    /// set once).
    OtherTenant,
}

/// Marks tasks as running, in one round trip, atomically (one Lua script):
/// a task that is already final is left alone ([`Start::Final`]), so a late
/// duplicate of an event never turns a SUCCESS back into STARTED, unless
/// its FAILURE was the bridge's dead letter (a replay runs it again); a
/// record of another tenant is left alone too ([`Start::OtherTenant`]).
pub fn start_tasks(conn: &Connection, tasks: &[(&str, &[(&str, &str)])]) -> Result<Vec<Start>> {
    const STEP: &str = r#"
local tenant
for j = 1, #fields, 2 do
  if fields[j] == 'tenant' then tenant = fields[j + 1] end
end
local owner = redis.call('HGET', key, 'tenant')
if owner and tenant and owner ~= tenant then
  out[i] = 2
elseif redis.call('HEXISTS', key, 'finished_at') == 1
    and redis.call('HEXISTS', key, 'dead_lettered') == 0 then
  out[i] = 0
else
  redis.call('HDEL', key, 'finished_at', 'finished_ms', 'dead_lettered', 'error', 'result', 'model')
  redis.call('HSET', key, 'updated_at', now, unpack(fields))
  redis.call('HSETNX', key, 'created_at', now)
  redis.call('HSETNX', key, 'started_ms', now_ms)
  redis.call('EXPIRE', key, ttl)
  out[i] = 1
end"#;
    let codes = task_script(conn, STEP, tasks)?;
    Ok(codes
        .into_iter()
        .map(|code| match code {
            1 => Start::Run,
            2 => Start::OtherTenant,
            _ => Start::Final,
        })
        .collect())
}

/// Records tasks' outcomes exactly once, in one round trip, atomically (one
/// Lua script): the first writer claims `finished_at` and writes its fields
/// in the same step; any later writer gets `false` and changes nothing. A
/// crash can never leave a claimed record without its status.
pub fn finish_tasks(conn: &Connection, tasks: &[(&str, &[(&str, &str)])]) -> Result<Vec<bool>> {
    const STEP: &str = r#"
if redis.call('HSETNX', key, 'finished_at', now) == 0 then
  out[i] = 0
else
  redis.call('HSET', key, 'updated_at', now, 'finished_ms', now_ms, unpack(fields))
  redis.call('EXPIRE', key, ttl)
  redis.call('LPUSH', RECENT, string.sub(key, TASK_PREFIX_LEN + 1))
  redis.call('LTRIM', RECENT, 0, RECENT_LEN - 1)
  out[i] = 1
end"#;
    let codes = task_script(conn, STEP, tasks)?;
    Ok(codes.into_iter().map(|code| code == 1).collect())
}

/// Runs `step` for each task record in one `EVAL` (see [`eval_args`]);
/// the number it set `out[i]` to, per task.
fn task_script(
    conn: &Connection,
    step: &str,
    tasks: &[(&str, &[(&str, &str)])],
) -> Result<Vec<i64>> {
    let ttl: i64 = var_parsed("result_ttl_seconds")?;
    let args = eval_args(step, tasks, now_secs(), ttl);
    let reply = execute(conn, "EVAL", &args)?;
    codes(&reply, tasks.len())
}

/// `EVAL script n <task keys..> now ttl (count field value ..)..`, where
/// the script runs `step` once per key with `key`, `fields`, `now`,
/// `now_ms` and `ttl` set, and `step` sets `out[i]` to 1 or 0.
fn eval_args(
    step: &str,
    tasks: &[(&str, &[(&str, &str)])],
    now: u64,
    ttl: i64,
) -> Vec<RedisParameter> {
    let prefix_len = TASK_PREFIX.len();
    let script = format!(
        r#"
local now, ttl, a, out = ARGV[1], ARGV[2], 3, {{}}
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local RECENT, RECENT_LEN, TASK_PREFIX_LEN = '{RECENT_TASKS_KEY}', {RECENT_TASKS}, {prefix_len}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  local fields = {{}}
  for j = 1, n do fields[j] = ARGV[a + j] end
  a = a + n + 1
  {step}
end
return out"#
    );
    let mut args = vec![arg(script), RedisParameter::Int64(tasks.len() as i64)];
    args.extend(tasks.iter().map(|(id, _)| arg(task_key(id))));
    args.push(arg(now.to_string()));
    args.push(arg(ttl.to_string()));
    for (_, fields) in tasks {
        args.push(RedisParameter::Int64(2 * fields.len() as i64));
        for (field, value) in *fields {
            args.push(arg(field));
            args.push(arg(value));
        }
    }
    args
}

/// The script's answer, one number per task.
fn codes(reply: &[RedisResult], tasks: usize) -> Result<Vec<i64>> {
    if reply.len() != tasks {
        bail!(
            "task script answered {} values for {} tasks",
            reply.len(),
            tasks
        );
    }
    reply
        .iter()
        .map(|r| match r {
            RedisResult::Int64(n) => Ok(*n),
            other => bail!("task script answered {other:?}"),
        })
        .collect()
}

/// A task record (a hash in DB 2), as read with `HGETALL`.
pub struct TaskRecord(Vec<(String, String)>);

impl TaskRecord {
    pub fn read(conn: &Connection, task_id: &str) -> Result<Self> {
        Ok(Self(hgetall(conn, &task_key(task_id))?))
    }

    /// A record from its fields (as `HGETALL` gives them).
    pub fn from_fields(fields: Vec<(String, String)>) -> Self {
        Self(fields)
    }

    pub fn get(&self, field: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.clone())
    }

    /// The task as the API shows it; `None` when there is no such task.
    pub fn task(&self, task_id: &str) -> Option<TaskResult> {
        let status = TaskStatus::parse(&self.get("status")?)?;
        Some(TaskResult {
            task_id: task_id.to_string(),
            status,
            result: self.get("result"),
            error: self.get("error"),
            model: self.get("model"),
        })
    }
}

/// The task as recorded; an error when the record has no valid status.
pub fn stored_task(conn: &Connection, task_id: &str) -> Result<TaskResult> {
    match TaskRecord::read(conn, task_id)?.task(task_id) {
        Some(task) => Ok(task),
        None => bail!("task {task_id} has no valid status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(p: &RedisParameter) -> String {
        match p {
            RedisParameter::Int64(n) => format!("#{n}"),
            RedisParameter::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }

    #[test]
    fn eval_args_carry_keys_then_fields_by_count() {
        let first: &[(&str, &str)] = &[("status", "STARTED"), ("tenant", "acme")];
        let second: &[(&str, &str)] = &[];
        let args = eval_args("out[i] = 1", &[("t1", first), ("t2", second)], 1700, 60);
        let shown: Vec<String> = args.iter().map(shown).collect();
        assert_eq!(
            shown[1..],
            [
                "#2",
                "aies:task:t1",
                "aies:task:t2",
                "1700",
                "60",
                "#4",
                "status",
                "STARTED",
                "tenant",
                "acme",
                "#0"
            ]
        );
        let script = &shown[0];
        assert!(script.contains("'aies:recent', 50, 10"), "{script}");
        assert!(script.contains("  out[i] = 1\nend\nreturn out"), "{script}");
    }

    #[test]
    fn script_codes_are_one_number_per_task() {
        let reply = [RedisResult::Int64(1), RedisResult::Int64(2)];
        assert_eq!(codes(&reply, 2).unwrap(), vec![1, 2]);
        let e = codes(&reply, 3).unwrap_err();
        assert_eq!(e.to_string(), "task script answered 2 values for 3 tasks");
        assert!(codes(&[RedisResult::Nil], 1).is_err());
    }

    #[test]
    fn a_record_without_a_valid_status_is_no_task() {
        let field = |k: &str, v: &str| (k.to_string(), v.to_string());
        let record = TaskRecord::from_fields(vec![
            field("status", "SUCCESS"),
            field("result", "42"),
            field("model", "offline-stand-in"),
        ]);
        let task = record.task("t").unwrap();
        assert_eq!(task.status, TaskStatus::Success);
        assert_eq!(
            (task.result.as_deref(), task.error, task.model.as_deref()),
            (Some("42"), None, Some("offline-stand-in"))
        );
        assert!(TaskRecord::from_fields(vec![field("status", "DONE")])
            .task("t")
            .is_none());
        assert!(TaskRecord::from_fields(vec![]).task("t").is_none());
    }
}
