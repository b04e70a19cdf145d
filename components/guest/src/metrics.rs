//! The application's counters: fields of the metrics hash
//! (`aies_contract::keys::METRICS_KEY`, DB 0), read by `GET /metrics`.
//! Metrics must never fail a request, so errors are only logged.

use crate::{arg, execute, redis};
use aies_contract::keys::{DB_CACHE, METRICS_KEY};
use spin_sdk::redis::RedisParameter;
use std::cell::RefCell;

thread_local! {
    /// Counts kept for one write (see [`defer_counts`]), when deferring.
    static DEFERRED: RefCell<Option<Vec<(String, i64)>>> = const { RefCell::new(None) };
}

/// Adds one to a counter of the metrics hash.
pub fn count(field: &str) {
    count_by(field, 1)
}

/// Adds `n` to a counter of the metrics hash (errors only logged), or keeps
/// it for [`flush_counts`] while counts are deferred.
pub fn count_by(field: &str, n: i64) {
    if n == 0 {
        return;
    }
    let kept = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(counts) => {
            keep(counts, field, n);
            true
        }
        None => false,
    });
    if !kept {
        add_counts(&[(field.to_string(), n)]);
    }
}

/// Adds `n` to `field`'s kept count.
fn keep(counts: &mut Vec<(String, i64)>, field: &str, n: i64) {
    match counts.iter_mut().find(|(f, _)| f == field) {
        Some((_, total)) => *total += n,
        None => counts.push((field.to_string(), n)),
    }
}

/// From now on, this instance's counts wait for [`flush_counts`]: a request
/// then writes its counters in one round trip instead of one each.
pub fn defer_counts() {
    DEFERRED.with(|d| *d.borrow_mut() = Some(Vec::new()));
}

/// Writes the deferred counts, and counts at once again after it. Call it
/// before the response leaves, so a reader of the counters sees them.
pub fn flush_counts() {
    if let Some(counts) = DEFERRED.with(|d| d.borrow_mut().take()) {
        add_counts(&counts);
    }
}

fn add_counts(counts: &[(String, i64)]) {
    let result = redis(DB_CACHE).and_then(|c| match command(counts) {
        Some((command, args)) => execute(&c, command, &args),
        None => Ok(Vec::new()),
    });
    if let Err(e) = result {
        crate::log!("metrics: {e:#}");
    }
}

/// The command that adds `counts`: one `HINCRBY`, or a script for several.
fn command(counts: &[(String, i64)]) -> Option<(&'static str, Vec<RedisParameter>)> {
    const SCRIPT: &str =
        "for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end";
    match counts {
        [] => None,
        [(field, n)] => Some((
            "HINCRBY",
            vec![arg(METRICS_KEY), arg(field), RedisParameter::Int64(*n)],
        )),
        _ => {
            let mut args = vec![arg(SCRIPT), RedisParameter::Int64(1), arg(METRICS_KEY)];
            for (field, n) in counts {
                args.push(arg(field));
                args.push(RedisParameter::Int64(*n));
            }
            Some(("EVAL", args))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(args: &[RedisParameter]) -> Vec<String> {
        args.iter()
            .map(|p| match p {
                RedisParameter::Int64(n) => format!("#{n}"),
                RedisParameter::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            })
            .collect()
    }

    #[test]
    fn kept_counts_add_up_per_field() {
        let mut counts = Vec::new();
        keep(&mut counts, "requests", 1);
        keep(&mut counts, "cache_hits", 1);
        keep(&mut counts, "requests", 2);
        assert_eq!(
            counts,
            vec![("requests".to_string(), 3), ("cache_hits".to_string(), 1)]
        );
    }

    #[test]
    fn one_count_is_one_hincrby_and_more_are_one_script() {
        assert!(command(&[]).is_none());
        let (cmd, args) = command(&[("requests".into(), 2)]).unwrap();
        assert_eq!(cmd, "HINCRBY");
        assert_eq!(shown(&args), ["aies:metrics", "requests", "#2"]);
        let (cmd, args) = command(&[("a".into(), 1), ("b".into(), -1)]).unwrap();
        assert_eq!(cmd, "EVAL");
        assert_eq!(
            shown(&args)[1..],
            ["#1", "aies:metrics", "a", "#1", "b", "#-1"]
        );
    }
}
