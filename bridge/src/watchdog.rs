//! Notices a lane whose group stopped handing it events, and says why.
//!
//! Tansu 0.6's group coordinator can leave partitions owned by nobody alive
//! without telling any client (NOTES.md has the analysis):
//! - after a member dies, the survivors may keep their old shares, and the
//!   dead member's partitions are never handed out again;
//! - a member that joins while a dead one is still in the group may be
//!   given an empty assignment, for good.
//!
//! No client setting avoids either; leaving the group and joining again
//! (a new consumer) does. So every [`WATCH_EVERY`] the lane measures, per
//! partition of its topic, the high watermark, the group's committed offset
//! and (for its own partitions) its position, and [`Watchdog::stalled`]
//! decides from how long each committed offset has stood still:
//! - one of **our** partitions has events waiting, none of them in flight
//!   here, its committed offset stood still for `stall_after`, and the lane
//!   received nothing at all for as long (a partition may well wait behind
//!   the others in the consumer's queue);
//! - **we own nothing** while the group has events waiting and its committed
//!   offsets all stood still for `stall_after`;
//! - **another member's** (or nobody's) partition has events waiting and its
//!   committed offset stood still for four times `stall_after` (longer,
//!   since a slow event of a live owner holds it back too).

use anyhow::Result;
use rdkafka::consumer::{Consumer, StreamConsumer};

use crate::topics::group_positions;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How often the watchdog measures each lane.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);
/// How long one broker query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// One partition as measured.
#[derive(Clone, Debug)]
pub struct PartitionLag {
    pub partition: i32,
    pub high: i64,
    /// The group's committed offset (the low watermark when none).
    pub committed: i64,
    /// Whether the partition is assigned to this consumer.
    pub mine: bool,
}

impl PartitionLag {
    pub fn lag(&self) -> i64 {
        (self.high - self.committed).max(0)
    }
}

/// A lane's partitions, measured at one moment.
#[derive(Clone, Debug)]
pub struct LagReport {
    pub partitions: Vec<PartitionLag>,
}

/// Queries the broker (blocking: run it off the async threads).
pub fn measure(consumer: &StreamConsumer, topic: &str) -> Result<LagReport> {
    let assignment = consumer.assignment()?;
    let partitions = group_positions(consumer, topic, QUERY_TIMEOUT)?
        .into_iter()
        .map(|p| PartitionLag {
            partition: p.partition,
            high: p.high,
            committed: p.committed,
            mine: assignment.find_partition(topic, p.partition).is_some(),
        })
        .collect();
    Ok(LagReport { partitions })
}

/// Remembers since when each committed offset has stood still with events
/// waiting behind it.
#[derive(Default)]
pub struct Watchdog {
    since: HashMap<i32, (i64, Instant)>,
    group: Option<(i64, Instant)>,
}

impl Watchdog {
    /// Takes in a measurement; an offset that moved, or has nothing waiting
    /// behind it, restarts its clock.
    pub fn observe(&mut self, report: &LagReport, now: Instant) {
        for p in &report.partitions {
            let entry = self.since.entry(p.partition).or_insert((p.committed, now));
            if entry.0 != p.committed || p.lag() == 0 {
                *entry = (p.committed, now);
            }
        }
        let total: i64 = report.partitions.iter().map(|p| p.committed).sum();
        let waiting = report.partitions.iter().any(|p| p.lag() > 0);
        if !waiting || self.group.is_none_or(|(t, _)| t != total) {
            self.group = Some((total, now));
        }
    }

    fn still_for(&self, partition: i32, now: Instant) -> Duration {
        self.since
            .get(&partition)
            .map_or(Duration::ZERO, |(_, s)| now - *s)
    }

    /// Why the lane is stalled, if it is (see the module docs). `busy`:
    /// partitions with events in flight here; `quiet`: how long the lane has
    /// received nothing.
    pub fn stalled(
        &self,
        report: &LagReport,
        busy: &HashSet<i32>,
        quiet: Duration,
        stall_after: Duration,
        now: Instant,
    ) -> Option<String> {
        let mine = report.partitions.iter().filter(|p| p.mine && p.lag() > 0);
        for p in mine.filter(|_| quiet >= stall_after) {
            if !busy.contains(&p.partition) && self.still_for(p.partition, now) >= stall_after {
                return Some(format!(
                    "partition {} is assigned here with {} events waiting, yet none arrived for {:?}",
                    p.partition,
                    p.lag(),
                    self.still_for(p.partition, now)
                ));
            }
        }
        let waiting: i64 = report.partitions.iter().map(PartitionLag::lag).sum();
        let group_still = self.group.map_or(Duration::ZERO, |(_, s)| now - s);
        if waiting > 0 && !report.partitions.iter().any(|p| p.mine) && group_still >= stall_after {
            return Some(format!(
                "no partition is assigned here while the group has {waiting} events waiting \
                 and committed nothing for {group_still:?}"
            ));
        }
        for p in report.partitions.iter().filter(|p| !p.mine && p.lag() > 0) {
            let still = self.still_for(p.partition, now);
            if still >= stall_after * 4 {
                return Some(format!(
                    "partition {} has {} events waiting and its committed offset has not moved \
                     for {still:?}: no member seems to own it",
                    p.partition,
                    p.lag()
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(partition: i32, high: i64, committed: i64, mine: bool) -> PartitionLag {
        PartitionLag {
            partition,
            high,
            committed,
            mine,
        }
    }

    const T: Duration = Duration::from_secs(10);

    /// The watchdog's view after the offsets stood still, and the lane
    /// received nothing, for `still`.
    fn verdict(partitions: Vec<PartitionLag>, busy: &[i32], still: Duration) -> Option<String> {
        let report = LagReport { partitions };
        let start = Instant::now();
        let mut w = Watchdog::default();
        w.observe(&report, start);
        let busy = busy.iter().copied().collect();
        w.stalled(&report, &busy, still, T, start + still)
    }

    #[test]
    fn a_caught_up_or_busy_lane_is_not_stalled() {
        assert_eq!(verdict(vec![p(0, 10, 10, true)], &[], T * 10), None);
        // Events of partition 0 are in flight here (a slow LLM, an outage).
        assert_eq!(verdict(vec![p(0, 10, 4, true)], &[0], T * 10), None);
        // Not long enough yet.
        assert_eq!(verdict(vec![p(0, 10, 4, true)], &[], T / 2), None);
    }

    #[test]
    fn an_event_that_just_arrived_in_an_idle_partition_is_not_a_stall() {
        let start = Instant::now();
        let mut w = Watchdog::default();
        let idle = LagReport {
            partitions: vec![p(0, 0, 0, true)],
        };
        // A minute of nothing, measured every few seconds...
        for step in 0..30 {
            w.observe(&idle, start + WATCH_EVERY * step);
        }
        // ... then one event, not yet committed.
        let later = start + WATCH_EVERY * 30;
        let one = LagReport {
            partitions: vec![p(0, 1, 0, true)],
        };
        w.observe(&one, later);
        assert_eq!(w.stalled(&one, &HashSet::new(), T * 6, T, later), None);
    }

    #[test]
    fn an_own_partition_waiting_behind_the_others_is_not_a_stall() {
        let report = LagReport {
            partitions: vec![p(0, 900, 10, true), p(2, 900, 400, true)],
        };
        let start = Instant::now();
        let mut w = Watchdog::default();
        w.observe(&report, start);
        // Partition 2 stood still, but events of partition 0 keep arriving.
        let busy = [0].into_iter().collect();
        let now = start + T * 2;
        assert_eq!(w.stalled(&report, &busy, Duration::ZERO, T, now), None);
    }

    #[test]
    fn an_own_partition_that_delivers_nothing_is_a_stall() {
        let why = verdict(vec![p(0, 10, 4, true)], &[], T).unwrap();
        assert!(
            why.contains("partition 0 is assigned here with 6 events"),
            "{why}"
        );
    }

    #[test]
    fn owning_nothing_while_the_group_stands_still_is_a_stall() {
        // Tansu's empty assignment: every member holds nothing.
        let why = verdict(vec![p(0, 10, 4, false), p(1, 3, 3, false)], &[], T).unwrap();
        assert!(why.contains("no partition is assigned here"), "{why}");
    }

    #[test]
    fn a_partition_nobody_consumes_is_a_stall_even_while_ours_move() {
        // Tansu kept a dead member's partition 1 from the survivor.
        let report = |ours| LagReport {
            partitions: vec![p(0, 100, ours, true), p(1, 50, 20, false)],
        };
        let start = Instant::now();
        let mut w = Watchdog::default();
        let none = HashSet::new();
        for step in 0..4u32 {
            let now = start + T * step;
            w.observe(&report(20 + i64::from(step)), now);
            assert_eq!(
                w.stalled(&report(20 + i64::from(step)), &none, Duration::ZERO, T, now),
                None
            );
        }
        let now = start + T * 4;
        w.observe(&report(30), now);
        let why = w
            .stalled(&report(30), &none, Duration::ZERO, T, now)
            .unwrap();
        assert!(why.contains("partition 1 has 30 events waiting"), "{why}");
    }
}
