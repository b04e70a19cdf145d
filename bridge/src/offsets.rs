//! Which offset of each partition may be committed.
//!
//! Events of one partition finish out of order (different keys run
//! concurrently), but a partition's committed position may only move past
//! events that have all finished: it is the lowest offset still in flight,
//! or one past the highest finished offset when nothing is in flight.

use std::collections::{BTreeSet, HashMap, HashSet};

#[derive(Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    next_after_finished: Option<i64>,
}

#[derive(Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, Partition>,
}

impl OffsetTracker {
    /// An event was received and is about to be processed. An offset at or
    /// below one already seen means the partition was re-read from its
    /// committed position (after a rebalance): the old bookkeeping is dropped.
    pub fn begin(&mut self, partition: i32, offset: i64) {
        let p = self.partitions.entry(partition).or_default();
        let seen = p
            .in_flight
            .last()
            .copied()
            .max(p.next_after_finished.map(|n| n - 1));
        if seen.is_some_and(|s| offset <= s) {
            *p = Partition::default();
        }
        p.in_flight.insert(offset);
    }

    /// Partitions with events in flight.
    pub fn busy_partitions(&self) -> HashSet<i32> {
        self.partitions
            .iter()
            .filter(|(_, p)| !p.in_flight.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The event finished (done, or dead-lettered). Returns the partition's
    /// committable position: the next offset a restarted consumer must read.
    pub fn finish(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        if !p.in_flight.remove(&offset) {
            return None; // from before a rewind: no longer ours to report
        }
        let after = offset + 1;
        if p.next_after_finished.is_none_or(|n| n < after) {
            p.next_after_finished = Some(after);
        }
        p.in_flight.first().copied().or(p.next_after_finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_waits_for_the_lowest_in_flight_event() {
        let mut t = OffsetTracker::default();
        for o in 10..14 {
            t.begin(0, o);
        }
        // 11 and 12 finish first: 10 is still running, commit stays at 10.
        assert_eq!(t.finish(0, 11), Some(10));
        assert_eq!(t.finish(0, 12), Some(10));
        // 10 finishes: everything up to 12 is done, 13 is next.
        assert_eq!(t.finish(0, 10), Some(13));
        assert_eq!(t.finish(0, 13), Some(14));
    }

    #[test]
    fn partitions_are_independent_and_rewinds_reset() {
        let mut t = OffsetTracker::default();
        t.begin(0, 5);
        t.begin(1, 100);
        assert_eq!(t.finish(1, 100), Some(101));
        // Partition 0 re-read from offset 3 after a rebalance.
        t.begin(0, 3);
        assert_eq!(t.finish(0, 5), None);
        assert_eq!(t.finish(0, 3), Some(4));
    }
}
