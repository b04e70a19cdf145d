//! The bridge's report of itself (`aies_contract::members`), for `/stats`
//! and the dashboard: who it is and, per lane, the partitions its consumer
//! owns, their lag, its events in flight and when it last finished one.
//! Sent to llm-invoke's `POST /invoke/member` every `AIES_MEMBER_REPORT_MS`
//! (the bridge has no Redis of its own); `stopping` once shutdown begins,
//! `stopped` as its last word.

use aies_contract::members::{
    host_name, member_id, now_ms, LaneReport, MemberKind, MemberReport, MemberState,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

use crate::config::Secret;
use crate::metrics::Metrics;
use crate::watchdog::LagReport;
use crate::BridgeConfig;

/// How long one report may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(3);

/// What the lanes last measured of themselves.
pub struct Status {
    id: String,
    host: String,
    started_ms: u64,
    lanes: Mutex<BTreeMap<&'static str, LaneStatus>>,
    /// When the broker last answered (ms since the epoch).
    broker_ok_ms: AtomicU64,
}

#[derive(Default)]
struct LaneStatus {
    topic: String,
    group: String,
    partitions: Vec<i32>,
    lag: i64,
    last_progress_ms: Option<u64>,
}

impl Status {
    pub fn new(config: &BridgeConfig) -> Self {
        let host = host_name();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        Self {
            id: config
                .member_id
                .clone()
                .unwrap_or_else(|| member_id(&host, suffix)),
            host,
            started_ms: now_ms(),
            lanes: Mutex::default(),
            broker_ok_ms: AtomicU64::new(now_ms()),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The broker answered a request just now.
    pub fn broker_answered(&self) {
        self.broker_ok_ms.store(now_ms(), Ordering::SeqCst);
    }

    /// How long the broker has not answered, and since when (ms).
    pub fn broker_silence(&self) -> (Duration, u64) {
        let since = self.broker_ok_ms.load(Ordering::SeqCst);
        (Duration::from_millis(now_ms().saturating_sub(since)), since)
    }

    /// A lane's consumer joined its group: it owns nothing until measured.
    pub fn joined(&self, lane: &'static str, topic: &str, group: &str) {
        let mut lanes = self.lanes.lock().unwrap();
        let status = lanes.entry(lane).or_default();
        status.topic = topic.to_string();
        status.group = group.to_string();
        status.partitions.clear();
        status.lag = 0;
    }

    /// The lane's partitions as last measured: which are its own, and
    /// how many events wait in those.
    pub fn measured(&self, lane: &'static str, report: &LagReport) {
        let mut lanes = self.lanes.lock().unwrap();
        let status = lanes.entry(lane).or_default();
        let mine = report.partitions.iter().filter(|p| p.mine);
        status.partitions = mine.clone().map(|p| p.partition).collect();
        status.lag = mine.map(|p| p.lag()).sum();
    }

    /// The lane finished an event (a result or a dead letter).
    pub fn progressed(&self, lane: &'static str) {
        self.lanes
            .lock()
            .unwrap()
            .entry(lane)
            .or_default()
            .last_progress_ms = Some(now_ms());
    }

    fn report(&self, every: Duration, state: MemberState, metrics: &Metrics) -> MemberReport {
        let lanes = self.lanes.lock().unwrap();
        MemberReport {
            kind: MemberKind::Bridge,
            id: self.id.clone(),
            host: self.host.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: self.started_ms,
            every_ms: every.as_millis() as u64,
            state,
            lanes: lanes
                .iter()
                .map(|(&lane, s)| {
                    let label = Metrics::lane(lane);
                    // A stopped bridge has left its groups: it owns nothing.
                    let owns = state != MemberState::Stopped;
                    LaneReport {
                        lane: lane.into(),
                        topic: s.topic.clone(),
                        group: s.group.clone(),
                        partitions: if owns {
                            s.partitions.clone()
                        } else {
                            Vec::new()
                        },
                        lag: if owns { s.lag } else { 0 },
                        in_flight: metrics.in_flight.get_or_create(&label).get().max(0) as u64,
                        consumed: metrics.consumed.get_or_create(&label).get(),
                        last_progress_ms: s.last_progress_ms,
                    }
                })
                .collect(),
            requests_in_flight: None,
            requests_total: None,
            seen_ms: 0,
        }
    }
}

/// Sends the bridge's reports.
pub struct Reporter {
    status: Arc<Status>,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    url: Option<reqwest::Url>,
    token: Secret,
    every: Duration,
}

impl Reporter {
    /// `None` where reports are off (`AIES_MEMBER_REPORT_MS=0`).
    pub fn new(config: &BridgeConfig, status: Arc<Status>, metrics: Arc<Metrics>) -> Option<Self> {
        if config.member_report_ms == 0 {
            return None;
        }
        let url = match config.member_url() {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::warn!("the bridge will not report itself: {e:#}");
                None
            }
        };
        Some(Self {
            status,
            metrics,
            http: reqwest::Client::new(),
            url,
            token: config.invoke_token.clone(),
            every: Duration::from_millis(config.member_report_ms),
        })
    }

    /// Reports every `every` until `stop`, then once as `stopping`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Self {
        let mut failing = false;
        loop {
            let sent = self.send(MemberState::Running).await;
            match (&sent, failing) {
                (Err(e), false) => tracing::warn!(
                    member = self.status.id(),
                    "reporting to the app failed ({e:#}); /stats shows this bridge as stale until it works"
                ),
                (Ok(()), true) => tracing::info!(member = self.status.id(), "reporting to the app again"),
                _ => {}
            }
            failing = sent.is_err();
            tokio::select! {
                () = tokio::time::sleep(self.every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let _ = self.send(MemberState::Stopping).await;
        self
    }

    /// The last word: the bridge has stopped.
    pub async fn stopped(&self) {
        if let Err(e) = self.send(MemberState::Stopped).await {
            tracing::debug!("last report not sent: {e:#}");
        }
    }

    async fn send(&self, state: MemberState) -> anyhow::Result<()> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        let report = self.status.report(self.every, state, &self.metrics);
        let response = self
            .http
            .post(url.clone())
            .bearer_auth(self.token.expose())
            .json(&report)
            .timeout(SEND_TIMEOUT)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("{url} answered {status}: {}", body.trim());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::PartitionLag;

    #[test]
    fn a_lane_reports_only_its_own_partitions_and_their_lag() {
        let config = BridgeConfig::defaults();
        let status = Status::new(&config);
        assert!(aies_contract::valid_task_id(status.id()), "{}", status.id());
        status.joined("batch", "datos_crudos", "g");
        let p = |partition, high, mine| PartitionLag {
            partition,
            high,
            committed: 2,
            mine,
        };
        status.measured(
            "batch",
            &LagReport {
                partitions: vec![p(0, 5, true), p(1, 9, false), p(2, 3, true)],
            },
        );
        status.progressed("batch");
        let metrics = Metrics::default();
        let report = status.report(Duration::from_secs(5), MemberState::Running, &metrics);
        assert_eq!(report.check(), Ok(()));
        let lane = &report.lanes[0];
        assert_eq!(lane.partitions, [0, 2]);
        assert_eq!(lane.lag, 3 + 1);
        assert!(lane.last_progress_ms.is_some());
        assert_eq!(report.every_ms, 5_000);

        status.joined("batch", "datos_crudos", "g");
        let report = status.report(Duration::from_secs(5), MemberState::Running, &metrics);
        assert!(
            report.lanes[0].partitions.is_empty(),
            "a new consumer owns nothing yet"
        );
    }
}
