//! How many events a lane runs at once.
//!
//! Fixed (`AIES_MAX_IN_FLIGHT=<n>`), or `auto` (the default), sized by
//! Little's law: to sustain `AIES_TARGET_RATE` events/s when each takes `W`
//! seconds, `rate × W` events must be in flight. `W` is a moving average
//! of how long the lane's events hold a slot once their key's previous
//! event is done (the invocation and the result's delivery to Kafka;
//! events that were retried or waited out an outage are left out), so a
//! 300 ms LLM gets ~15× the slots of a 20 ms one. The limit stays between
//! [`AUTO_MIN`] and `AIES_MAX_IN_FLIGHT_CEILING`; a slow provider is thus
//! not flooded past the ceiling, and one that answers at once keeps a
//! small window.
//!
//! A slot is taken only when an event can run: one waiting for its key's
//! previous event holds a place in the lane's read-ahead instead
//! ([`Limit::held`], [`HELD_PER_SLOT`] places per slot of the largest
//! limit). Kafka hands a partition's records over in runs, so with a few
//! events per key the first thousand read may hold a third as many keys;
//! were they to take slots, the waiting would crowd out the events that
//! could run.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The smallest automatic limit (and the starting one).
pub const AUTO_MIN: usize = 32;
/// Headroom over the exact Little's-law figure (latencies vary).
const HEADROOM: f64 = 1.25;
/// Weight of the newest slot-holding time in the moving average.
const SMOOTHING: f64 = 0.05;
/// Events a lane holds (running, or read and waiting for their key) per
/// slot of its largest limit.
pub const HELD_PER_SLOT: usize = 4;

/// `AIES_MAX_IN_FLIGHT`: a number, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InFlight {
    Fixed(usize),
    Auto,
}

impl FromStr for InFlight {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Self::Fixed(n)),
            _ => Err(format!("{s:?}: give a number above 0 or `auto`")),
        }
    }
}

impl std::fmt::Display for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(n) => write!(f, "{n}"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// A lane's slots, resized by [`Limit::resize`].
pub struct Limit {
    mode: InFlight,
    target_rate: f64,
    ceiling: usize,
    slots: Arc<Semaphore>,
    /// Permits that exist (taken or free).
    issued: Mutex<usize>,
    /// One permit per event read and not finished.
    held: Arc<Semaphore>,
    held_capacity: usize,
    /// Moving average of slot-holding times, in microseconds (f64 bits).
    latency_us: AtomicU64,
}

impl Limit {
    pub fn new(mode: InFlight, target_rate: f64, ceiling: usize) -> Self {
        let start = match mode {
            InFlight::Fixed(n) => n,
            InFlight::Auto => AUTO_MIN.min(ceiling.max(1)),
        };
        let largest = match mode {
            InFlight::Fixed(n) => n,
            InFlight::Auto => ceiling.max(1),
        };
        let held_capacity = largest.saturating_mul(HELD_PER_SLOT);
        Self {
            mode,
            target_rate,
            ceiling: ceiling.max(1),
            slots: Arc::new(Semaphore::new(start)),
            issued: Mutex::new(start),
            held: Arc::new(Semaphore::new(held_capacity)),
            held_capacity,
            latency_us: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Taken by an event while it runs.
    pub fn slots(&self) -> &Arc<Semaphore> {
        &self.slots
    }

    /// Taken by an event from the moment it is read until it finishes.
    pub fn held(&self) -> &Arc<Semaphore> {
        &self.held
    }

    /// Permits of [`Self::held`]: what a drain must get back.
    pub fn held_capacity(&self) -> u32 {
        u32::try_from(self.held_capacity).unwrap_or(u32::MAX)
    }

    /// Permits that exist now.
    pub fn issued(&self) -> usize {
        *self.issued.lock().unwrap()
    }

    /// Records how long one event held its slot. A limit that is too small
    /// grows at once (a slow provider's first answers would otherwise run
    /// on the starting window until the next [`Self::resize`]); shrinking
    /// waits for it.
    pub fn observe(&self, took: Duration) {
        let sample = took.as_secs_f64() * 1e6;
        let old = f64::from_bits(self.latency_us.load(Ordering::Relaxed));
        let new = if old == 0.0 {
            sample
        } else {
            old + SMOOTHING * (sample - old)
        };
        self.latency_us.store(new.to_bits(), Ordering::Relaxed);
        if self.desired() > self.issued() {
            self.resize();
        }
    }

    /// The limit the measured latency calls for.
    pub fn desired(&self) -> usize {
        match self.mode {
            InFlight::Fixed(n) => n,
            InFlight::Auto => {
                let latency = f64::from_bits(self.latency_us.load(Ordering::Relaxed)) / 1e6;
                let n = (self.target_rate * latency * HEADROOM).ceil() as usize;
                n.clamp(AUTO_MIN.min(self.ceiling), self.ceiling)
            }
        }
    }

    /// Moves the number of permits towards [`Self::desired`]: adds them at
    /// once, withdraws only free ones (the rest as events finish, on a
    /// later call). Answers the limit now in force.
    pub fn resize(&self) -> usize {
        let want = self.desired();
        let mut issued = self.issued.lock().unwrap();
        if want > *issued {
            self.slots.add_permits(want - *issued);
            *issued = want;
        } else if want < *issued {
            *issued -= self.slots.forget_permits(*issued - want);
        }
        *issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_auto() {
        assert_eq!("auto".parse::<InFlight>(), Ok(InFlight::Auto));
        assert_eq!("64".parse::<InFlight>(), Ok(InFlight::Fixed(64)));
        assert!("0".parse::<InFlight>().is_err());
        assert!("lots".parse::<InFlight>().is_err());
    }

    #[test]
    fn auto_follows_littles_law_within_its_bounds() {
        let limit = Limit::new(InFlight::Auto, 2000.0, 2048);
        assert_eq!(limit.resize(), AUTO_MIN, "starts small");
        // 300 ms per event at 2,000 events/s: 600 in flight, plus headroom.
        for _ in 0..200 {
            limit.observe(Duration::from_millis(300));
        }
        assert_eq!(limit.resize(), 750);
        assert_eq!(limit.slots().available_permits(), 750);
        // A provider taking 5 s would want 12,500: the ceiling holds.
        for _ in 0..500 {
            limit.observe(Duration::from_secs(5));
        }
        assert_eq!(limit.resize(), 2048);
        // Fast answers shrink it back, never below the floor.
        for _ in 0..1000 {
            limit.observe(Duration::from_millis(1));
        }
        assert_eq!(limit.resize(), AUTO_MIN);
        assert_eq!(limit.slots().available_permits(), AUTO_MIN);
    }

    #[test]
    fn a_slow_answer_grows_the_limit_before_the_next_resize() {
        let limit = Limit::new(InFlight::Auto, 2000.0, 2048);
        limit.observe(Duration::from_millis(300));
        assert_eq!(limit.issued(), 750);
        assert_eq!(limit.slots().available_permits(), 750);
        // Faster answers do not take slots away until resize.
        limit.observe(Duration::from_millis(1));
        assert_eq!(limit.issued(), 750);
    }

    #[test]
    fn shrinking_waits_for_taken_permits() {
        let limit = Limit::new(InFlight::Auto, 1000.0, 1000);
        for _ in 0..200 {
            limit.observe(Duration::from_millis(100));
        }
        assert_eq!(limit.resize(), 125);
        let held = limit.slots().clone().try_acquire_many_owned(100).unwrap();
        for _ in 0..1000 {
            limit.observe(Duration::from_millis(1));
        }
        // Only the 25 free permits can go now.
        assert_eq!(limit.resize(), 100);
        drop(held);
        assert_eq!(limit.resize(), AUTO_MIN);
        assert_eq!(limit.slots().available_permits(), AUTO_MIN);
    }

    #[test]
    fn the_read_ahead_is_a_multiple_of_the_largest_limit() {
        let auto = Limit::new(InFlight::Auto, 2000.0, 2048);
        assert_eq!(auto.held_capacity(), 2048 * HELD_PER_SLOT as u32);
        assert_eq!(auto.held().available_permits(), 2048 * HELD_PER_SLOT);
        let fixed = Limit::new(InFlight::Fixed(32), 2000.0, 2048);
        assert_eq!(fixed.held_capacity(), 32 * HELD_PER_SLOT as u32);
        // Resizing the slots leaves it as it is.
        auto.observe(Duration::from_millis(300));
        assert_eq!(auto.held().available_permits(), 2048 * HELD_PER_SLOT);
    }

    #[test]
    fn a_fixed_limit_never_moves() {
        let limit = Limit::new(InFlight::Fixed(8), 2000.0, 2048);
        limit.observe(Duration::from_secs(1));
        assert_eq!(limit.resize(), 8);
    }
}
