//! `aies-bridge replay-dlq`: moves dead letters back to `datos_crudos`.
//!
//! Kafka cannot delete one record, so "moved" is recorded in the
//! dead-letter topic itself: after a dead letter is replayed, a marker (no
//! payload, header `aies-replayed` = its offset, sealed with the bridge's
//! key) follows it in the same partition, and later runs skip what is
//! marked. Group
//! `<group>_dlq_replay` keeps a cursor per partition below which everything
//! was replayed, so a run reads only what it has not settled.
//!
//! A replayed event keeps its key, payload and origin (so a prompt-only
//! event keeps its task id) and carries `aies-replay-of`. A crash between
//! the replay and its marker replays that event once more on the next run,
//! which the task record absorbs (a finished task is not run again). The
//! header rules are [`crate::dead_letter`]'s, shared with the relay.

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::dead_letter::{is_marker, marked_offset, marker_headers, reason_of, replay_headers};
pub use crate::dead_letter::{REPLAYED_HEADER, REPLAY_HEADER};
use crate::topics::group_positions;
use crate::{kafka, BridgeConfig};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Clone, Debug, Default)]
pub struct ReplayArgs {
    /// Only dead letters whose reason contains this text (any case).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only dead letters at least this old, e.g. `10m`, `2h`, `3days`.
    #[arg(long)]
    pub older_than: Option<humantime::Duration>,
    /// Count what would be replayed, by reason; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What a run found and did.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    /// Dead letters that matched (and were replayed, unless a dry run).
    pub matched: usize,
    /// Dead letters left in place by the filters.
    pub skipped: usize,
    /// Matching dead letters per reason (the reason's first 120 characters).
    pub by_reason: BTreeMap<String, usize>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (reason, n) in &self.by_reason {
            writeln!(f, "{n:>8}  {reason}")?;
        }
        write!(
            f,
            "{} matching, {} left in place by the filters",
            self.matched, self.skipped
        )
    }
}

/// One dead letter, as read.
struct DeadLetter {
    reason: String,
    age: Option<Duration>,
}

pub async fn replay(config: &BridgeConfig, args: &ReplayArgs) -> Result<Summary> {
    config.check_key()?;
    let consumer = kafka::replay_consumer(config)?;
    let producer = kafka::producer(config)?;
    let topic = config.dead_letter_topic.as_str();
    let run = Run {
        config,
        consumer: &consumer,
        producer: &producer,
        args,
    };
    let mut summary = Summary::default();
    let mut cursors = TopicPartitionList::new();
    for p in group_positions(&consumer, topic, TIMEOUT)
        .with_context(|| format!("reading the partitions of {topic}"))?
    {
        let (partition, start, high) = (p.partition, p.committed, p.high);
        if start >= high {
            continue;
        }
        let cursor = run.partition(partition, start, high, &mut summary).await?;
        cursors.add_partition_offset(topic, partition, Offset::Offset(cursor))?;
    }
    if !args.dry_run && cursors.count() > 0 {
        consumer
            .commit(&cursors, CommitMode::Sync)
            .context("saving the replay cursor")?;
    }
    Ok(summary)
}

/// One replay run's clients and settings.
struct Run<'a> {
    config: &'a BridgeConfig,
    consumer: &'a BaseConsumer,
    producer: &'a FutureProducer,
    args: &'a ReplayArgs,
}

impl Run<'_> {
    /// Replays the matching, unmarked dead letters of one partition in
    /// `[start, high)`; returns the new cursor (the first one left in place).
    async fn partition(
        &self,
        partition: i32,
        start: i64,
        high: i64,
        summary: &mut Summary,
    ) -> Result<i64> {
        let Run {
            config,
            consumer,
            producer,
            args,
        } = *self;
        let topic = config.dead_letter_topic.as_str();
        let seal = config.seal();
        // First pass: which dead letters are already settled by a marker.
        let mut marked = HashSet::new();
        read(consumer, topic, partition, start, high, |m| {
            if let Some(o) = marked_offset(m, &seal) {
                marked.insert(o);
            }
            Ok(())
        })?;
        // Second pass: replay the rest that match.
        let mut letters = Vec::new();
        let mut cursor = None;
        read(consumer, topic, partition, start, high, |m| {
            if is_marker(m, &seal) || marked.contains(&m.offset()) {
                return Ok(());
            }
            let letter = DeadLetter {
                reason: reason_of(m).to_string(),
                age: m.timestamp().to_millis().and_then(|ms| {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
                    now.checked_sub(Duration::from_millis(ms.try_into().ok()?))
                }),
            };
            if !matches(args, &letter) {
                summary.skipped += 1;
                cursor.get_or_insert(m.offset());
                return Ok(());
            }
            summary.matched += 1;
            let reason: String = letter.reason.chars().take(120).collect();
            *summary.by_reason.entry(reason).or_default() += 1;
            if !args.dry_run {
                letters.push(m.detach());
            }
            Ok(())
        })?;
        for letter in letters {
            send_back(config, producer, &letter).await?;
            let marker = FutureRecord::<(), ()>::to(topic)
                .partition(partition)
                .headers(marker_headers(topic, partition, letter.offset(), &seal));
            producer
                .send(marker, TIMEOUT)
                .await
                .map_err(|(e, _)| anyhow::anyhow!("writing the replay marker: {e}"))?;
        }
        Ok(cursor.unwrap_or(high))
    }
}

fn matches(args: &ReplayArgs, letter: &DeadLetter) -> bool {
    let reason_ok = args
        .reason
        .as_ref()
        .is_none_or(|r| letter.reason.to_lowercase().contains(&r.to_lowercase()));
    let age_ok = args
        .older_than
        .is_none_or(|min| letter.age.is_some_and(|age| age >= *min));
    reason_ok && age_ok
}

/// Produces a dead letter back to the batch lane, without the dead-letter
/// headers, marked as a replay.
async fn send_back(
    config: &BridgeConfig,
    producer: &FutureProducer,
    letter: &rdkafka::message::OwnedMessage,
) -> Result<()> {
    let mut record = FutureRecord::to(&config.raw_topic)
        .payload(letter.payload().unwrap_or_default())
        .headers(replay_headers(letter));
    if let Some(key) = letter.key() {
        record = record.key(key);
    }
    producer
        .send(record, TIMEOUT)
        .await
        .map_err(|(e, _)| anyhow::anyhow!("producing to {}: {e}", config.raw_topic))?;
    Ok(())
}

/// Reads `[start, high)` of one partition, calling `each` per record.
fn read(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    start: i64,
    high: i64,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage) -> Result<()>,
) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer.assign(&tpl)?;
    let mut next = start;
    while next < high {
        match consumer.poll(TIMEOUT) {
            Some(Ok(m)) => {
                next = m.offset() + 1;
                each(&m)?;
            }
            Some(Err(e)) => return Err(e).context("reading the dead-letter topic"),
            None => {
                anyhow::bail!("{topic}/{partition}: nothing read at offset {next} in {TIMEOUT:?}")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(reason: &str, age_secs: Option<u64>) -> DeadLetter {
        DeadLetter {
            reason: reason.into(),
            age: age_secs.map(Duration::from_secs),
        }
    }

    #[test]
    fn filters_match_the_reason_in_any_case_and_a_minimum_age() {
        let all = ReplayArgs::default();
        assert!(matches(&all, &letter("boom", None)));
        let by_reason = ReplayArgs {
            reason: Some("GAVE UP".into()),
            ..ReplayArgs::default()
        };
        assert!(matches(
            &by_reason,
            &letter("gave up after 5 attempts: 503", None)
        ));
        assert!(!matches(
            &by_reason,
            &letter("llm-invoke answered 422", None)
        ));
        let by_age = ReplayArgs {
            older_than: Some(Duration::from_secs(600).into()),
            ..ReplayArgs::default()
        };
        assert!(matches(&by_age, &letter("boom", Some(600))));
        assert!(!matches(&by_age, &letter("boom", Some(599))));
        // A dead letter of unknown age is not known to be old enough.
        assert!(!matches(&by_age, &letter("boom", None)));
    }
}
