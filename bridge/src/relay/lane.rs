//! One lane's consumer, from joining its group to draining on shutdown, and
//! the bookkeeping around each event it reads: per-key order, in-flight
//! slots, the offsets it may commit, the watchdog that rejoins a stalled
//! group.

use anyhow::{Context, Result};
use futures::future::{FutureExt, Shared};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use super::event::Owner;
use super::request::producer_traceparent;
use super::{jitter_permille, AbortOnDrop, Relay};
use crate::in_flight::Limit;
use crate::metrics::{Metrics, PartitionLabel};
use crate::offsets::OffsetTracker;
use crate::watchdog::{self, LagReport, Watchdog, WATCH_EVERY};
use crate::{kafka, BridgeConfig};

/// How long shutdown waits for events in flight before leaving them to be
/// redelivered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing a consumer waits for its final offset commit.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a new consumer waits before a stall is called.
const MAX_STALL_AFTER: Duration = Duration::from_secs(300);

type Done = Shared<oneshot::Receiver<()>>;

/// Where one lane reads from.
pub(super) struct Lane {
    name: &'static str,
    topic: String,
    group: String,
}

impl Lane {
    /// The API lane and the batch lane.
    pub(super) fn both(config: &BridgeConfig) -> [Lane; 2] {
        [
            Lane {
                name: "api",
                topic: config.api_topic.clone(),
                group: config.api_group(),
            },
            Lane {
                name: "batch",
                topic: config.raw_topic.clone(),
                group: config.group.clone(),
            },
        ]
    }
}

/// One consumer of a lane, replaced when the watchdog finds it stalled.
struct LaneConsumer {
    consumer: StreamConsumer,
    owner: Owner,
    tracker: Mutex<OffsetTracker>,
    /// The last event of each key still running: the next one waits for it.
    chains: Mutex<HashMap<Vec<u8>, Done>>,
}

impl LaneConsumer {
    /// A new consumer in the lane's group, subscribed to its topic.
    /// `name`: this member's id, the lane and the how-many-th consumer of
    /// the lane this is, written on every result it publishes.
    fn join(config: &BridgeConfig, lane: &Lane, name: String) -> Result<Self> {
        let consumer = kafka::lane_consumer(config, &lane.group)?;
        consumer
            .subscribe(&[&lane.topic])
            .with_context(|| format!("subscribing to {}", lane.topic))?;
        Ok(Self {
            consumer,
            owner: Owner {
                name,
                fenced: AtomicBool::new(false),
            },
            tracker: Mutex::default(),
            chains: Mutex::default(),
        })
    }
}

enum Exit {
    Shutdown,
    Stalled,
    /// The broker was unreachable past the session timeout: a zombie.
    Fenced,
}

/// A consumer is presumed to have lost its partitions when the broker has
/// been silent for `after` since a moment it was already in the group
/// (`since_ms >= joined_ms`); one that joined during the silence is not.
fn presumed_lost(silent: Duration, since_ms: u64, joined_ms: u64, after: Duration) -> bool {
    silent > after && since_ms >= joined_ms
}

/// Fences `current` once the broker has been silent for `after` since a
/// moment it was already in the group (a consumer made during the silence
/// is not fenced again): from then on its events write nothing, and
/// `fenced` tells the lane to rejoin.
async fn fence_when_lost(
    status: Arc<crate::member::Status>,
    current: Arc<LaneConsumer>,
    after: Duration,
    lane: &'static str,
    fenced: watch::Sender<bool>,
) {
    let joined_ms = aies_contract::members::now_ms();
    let mut check = tokio::time::interval(WATCH_EVERY);
    loop {
        check.tick().await;
        let (silent, since) = status.broker_silence();
        if presumed_lost(silent, since, joined_ms, after) {
            current.owner.fenced.store(true, Ordering::SeqCst);
            tracing::warn!(
                lane,
                "the broker has not answered for {silent:?}, past the session timeout: \
                 this consumer's partitions are presumed given to others; its events \
                 in flight write nothing, and the lane rejoins"
            );
            let _ = fenced.send(true);
            return;
        }
    }
}

/// How long the next consumer gets before a stall is called: a group that
/// stalls again soon (within 8 times its time) gets longer to settle.
fn next_stall_after(stall_after: Duration, base: Duration, lasted: Duration) -> Duration {
    if lasted < stall_after * 8 {
        (stall_after * 2).min(MAX_STALL_AFTER)
    } else {
        base
    }
}

impl Relay {
    /// Runs one lane until shutdown, replacing its consumer when it stalls.
    pub(super) async fn run_lane(self: Arc<Self>, lane: Lane) -> Result<()> {
        let limit = Arc::new(Limit::new(
            self.config.max_in_flight,
            self.config.target_rate,
            self.config.max_in_flight_ceiling,
        ));
        let _resizer = AbortOnDrop(tokio::spawn(resize_every_second(
            limit.clone(),
            self.metrics.clone(),
            lane.name,
        )));
        let base = Duration::from_secs(self.config.stall_timeout_secs.max(1));
        let mut stall_after = base;
        let mut number = 0u64;
        loop {
            number += 1;
            let name = format!("{}/{}/{number}", self.status.id(), lane.name);
            let current = Arc::new(LaneConsumer::join(&self.config, &lane, name)?);
            self.status.joined(lane.name, &lane.topic, &lane.group);
            tracing::info!(
                lane = lane.name, topic = %lane.topic, group = %lane.group,
                invoke = %self.config.invoke_url, "relay started"
            );
            let started = Instant::now();
            let exit = self.consume(&lane, &current, &limit, stall_after).await;
            if matches!(exit, Exit::Shutdown) {
                tracing::info!(
                    lane = lane.name,
                    "relay stopping: draining events in flight"
                );
            }
            let drained = tokio::time::timeout(
                DRAIN_TIMEOUT,
                limit.held().acquire_many(limit.held_capacity()),
            )
            .await;
            if drained.is_err() {
                tracing::warn!(
                    lane = lane.name,
                    "some events were still running; they will be redelivered"
                );
            }
            close(current).await;
            match exit {
                Exit::Shutdown => return Ok(()),
                Exit::Stalled => {
                    stall_after = next_stall_after(stall_after, base, started.elapsed())
                }
                Exit::Fenced => {}
            }
        }
    }

    /// Reads events and starts them until shutdown or a stall.
    async fn consume(
        self: &Arc<Self>,
        lane: &Lane,
        current: &Arc<LaneConsumer>,
        limit: &Arc<Limit>,
        stall_after: Duration,
    ) -> Exit {
        let (slots, held) = (limit.slots(), limit.held());
        let mut stop = self.stop.clone();
        let (lag_tx, mut lag_rx) = watch::channel(None);
        let watcher = tokio::spawn(measure_lag(current.clone(), lane.topic.clone(), lag_tx));
        let _abort = AbortOnDrop(watcher);
        let mut dog = Watchdog::default();
        let mut last_received = Instant::now();
        // Its own task: the loop below may wait long for a place (every
        // event in flight stuck behind the same outage), and the fence
        // must not wait with it.
        let (fenced_tx, mut fenced) = watch::channel(false);
        let _fence = AbortOnDrop(tokio::spawn(fence_when_lost(
            self.status.clone(),
            current.clone(),
            Duration::from_millis(self.config.session_timeout_ms * 3 / 2),
            lane.name,
            fenced_tx,
        )));
        // Several bridges should not all rejoin at the same moment.
        let stall_after = stall_after.mul_f64(1.0 + f64::from(jitter_permille()) / 4000.0);
        loop {
            let message = tokio::select! {
                m = current.consumer.recv() => m,
                _ = stop.wait_for(|s| *s) => return Exit::Shutdown,
                _ = fenced.wait_for(|f| *f) => return Exit::Fenced,
                Ok(()) = lag_rx.changed() => {
                    let Some(lag) = lag_rx.borrow_and_update().clone() else { continue };
                    self.record_lag(lane.name, &lag);
                    self.status.measured(lane.name, &lag);
                    let now = Instant::now();
                    dog.observe(&lag, now);
                    // A lane with every slot or its read-ahead taken, or held
                    // by an outage, is busy, not stalled.
                    let full = slots.available_permits() == 0 || held.available_permits() == 0;
                    if full || self.outage.load(Ordering::SeqCst) {
                        continue;
                    }
                    let busy = current.tracker.lock().unwrap().busy_partitions();
                    let quiet = last_received.elapsed();
                    if let Some(why) = dog.stalled(&lag, &busy, quiet, stall_after, now) {
                        self.metrics.stalls.get_or_create(&Metrics::lane(lane.name)).inc();
                        tracing::warn!(
                            lane = lane.name, group = %lane.group,
                            "relay stalled: {why}; leaving and rejoining the group"
                        );
                        return Exit::Stalled;
                    }
                    continue;
                }
            };
            // A bad read is logged; the loop goes on.
            let message = match message {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(lane = lane.name, "Kafka receive error: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            last_received = Instant::now();
            let permit = tokio::select! {
                p = held.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = stop.wait_for(|s| *s) => return Exit::Shutdown,
                _ = fenced.wait_for(|f| *f) => return Exit::Fenced,
            };
            self.start(lane.name, current.clone(), limit.clone(), message, permit);
        }
    }

    /// Runs one event in its own task, after the previous event of its key
    /// and once it gets a slot. `held` is its place among the lane's events.
    fn start(
        self: &Arc<Self>,
        lane: &'static str,
        current: Arc<LaneConsumer>,
        limit: Arc<Limit>,
        message: OwnedMessage,
        held: tokio::sync::OwnedSemaphorePermit,
    ) {
        let (partition, offset) = (message.partition(), message.offset());
        current.tracker.lock().unwrap().begin(partition, offset);
        let (done_tx, done_rx) = oneshot::channel();
        let previous = message.key().map(|k| {
            let mut chains = current.chains.lock().unwrap();
            if chains.len() > 10_000 {
                chains.retain(|_, d| d.peek().is_none());
            }
            chains.insert(k.to_vec(), done_rx.shared())
        });
        let label = Metrics::lane(lane);
        self.metrics.consumed.get_or_create(&label).inc();
        self.metrics.in_flight.get_or_create(&label).inc();
        let relay = self.clone();
        let span = tracing::info_span!(
            "event",
            otel.name = %format!("process {}", message.topic()),
            otel.kind = "consumer",
            lane,
            partition,
            offset,
            task_id = tracing::field::Empty,
            trace_id = tracing::field::Empty
        );
        aies_telemetry::set_parent(&span, producer_traceparent(&message).as_deref());
        tokio::spawn(
            async move {
                if let Some(Some(previous)) = previous {
                    let _ = previous.await;
                }
                let slot = limit
                    .slots()
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed");
                let started = Instant::now();
                let outcome = relay.process(lane, &message, &current.owner).await;
                match outcome.counter(&relay.metrics) {
                    Some(ended) => {
                        ended.get_or_create(&label).inc();
                        relay.finish(&current, &message);
                        relay.status.progressed(lane);
                        // Little's law counts the event's own time in its
                        // slot: the invocation and the result's delivery to
                        // Kafka. Not a retry's backoff or an outage's wait
                        // (its own or, through the key's chain, its
                        // predecessor's): one such event would push the
                        // limit to its ceiling just as a recovering app is
                        // flooded.
                        if outcome.first_try() {
                            limit.observe(started.elapsed());
                        }
                    }
                    // Not finished: the offset stays uncommitted, and the
                    // event is read again after a restart or rebalance.
                    None => tracing::warn!(?outcome, "event left uncommitted"),
                }
                relay.metrics.in_flight.get_or_create(&label).dec();
                let _ = done_tx.send(());
                drop((slot, held));
            }
            .instrument(span),
        );
    }

    /// Lets the partition's committed position move past a finished event,
    /// as far as the events before it have finished too.
    fn finish(&self, current: &LaneConsumer, message: &OwnedMessage) {
        let (partition, offset) = (message.partition(), message.offset());
        let position = current.tracker.lock().unwrap().finish(partition, offset);
        if let Some(position) = position {
            let mut tpl = TopicPartitionList::new();
            let stored = tpl
                .add_partition_offset(message.topic(), partition, Offset::Offset(position))
                .and_then(|()| current.consumer.store_offsets(&tpl));
            // Fails when the partition was revoked meanwhile; its new owner
            // re-reads from the committed position.
            if let Err(e) = stored {
                tracing::debug!(partition, position, "offset not stored: {e}");
            }
        }
    }

    fn record_lag(&self, lane: &'static str, lag: &LagReport) {
        for p in &lag.partitions {
            let label = PartitionLabel {
                lane,
                partition: p.partition,
            };
            self.metrics.lag.get_or_create(&label).set(p.lag());
        }
    }
}

/// Shrinks a lane's in-flight limit when events hold their slots for less
/// time (growth happens at once, in [`Limit::observe`]), and reports it.
async fn resize_every_second(limit: Arc<Limit>, metrics: Arc<Metrics>, lane: &'static str) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = limit.resize();
        metrics
            .in_flight_limit
            .get_or_create(&Metrics::lane(lane))
            .set(now as i64);
    }
}

/// Closes a consumer (committing what was stored, leaving its group)
/// without letting a broker that is gone hold the caller.
async fn close(current: Arc<LaneConsumer>) {
    let closing = tokio::task::spawn_blocking(move || {
        if let Err(e) = current.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!("final commit: {e}");
        }
        // Leaves the group now, even if a straggler still holds a reference.
        current.consumer.unsubscribe();
        drop(current);
    });
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        tracing::warn!("Kafka did not confirm the final commit in {CLOSE_TIMEOUT:?}; going on");
    }
}

/// Measures the lane every [`WATCH_EVERY`], off the async threads (the
/// queries block on the broker).
async fn measure_lag(
    current: Arc<LaneConsumer>,
    topic: String,
    out: watch::Sender<Option<LagReport>>,
) {
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (c, t) = (current.clone(), topic.clone());
        match tokio::task::spawn_blocking(move || watchdog::measure(&c.consumer, &t)).await {
            Ok(Ok(report)) => {
                if out.send(Some(report)).is_err() {
                    return;
                }
            }
            Ok(Err(e)) => tracing::debug!(%topic, "measuring lag: {e:#}"),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_is_fenced_only_after_a_silence_it_lived_through() {
        let after = Duration::from_secs(15);
        let s = Duration::from_secs;
        assert!(presumed_lost(s(16), 2_000, 1_000, after));
        assert!(
            !presumed_lost(s(14), 2_000, 1_000, after),
            "not long enough"
        );
        assert!(
            !presumed_lost(s(16), 2_000, 3_000, after),
            "joined during the silence: not fenced again"
        );
    }

    #[test]
    fn a_group_that_stalls_again_soon_gets_longer_to_settle() {
        let s = Duration::from_secs;
        // Stalled within 8 times its time: twice as long, up to the ceiling.
        assert_eq!(next_stall_after(s(30), s(30), s(60)), s(60));
        assert_eq!(next_stall_after(s(120), s(30), s(959)), s(240));
        assert_eq!(next_stall_after(s(200), s(30), s(60)), MAX_STALL_AFTER);
        // Ran long before it stalled: back to the base.
        assert_eq!(next_stall_after(s(120), s(30), s(960)), s(30));
    }
}
