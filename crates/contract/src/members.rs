//! The cluster's members (issue 24): every bridge and every app instance
//! reports itself every few seconds into [`MEMBERS_KEY`], and `GET /stats`
//! and the dashboard list them all, as Kafka UI and Flower listed the
//! original design's consumers and workers.
//!
//! - A bridge `POST`s its [`MemberReport`] to llm-invoke's `/invoke/member`
//!   (with the invoke token), which stamps it with its own clock
//!   (`seen_ms`) and stores it: the bridge needs no Redis of its own.
//! - `aies-host` writes its own report straight to the Redis of its app's
//!   Redis trigger. A plain Spin host reports nothing.
//! - A member that stops cleanly says so (`state: stopped`); one that stops
//!   reporting (killed, cut off) is shown as [`MemberReport::stale`], never
//!   dropped, until it has been silent for [`FORGET_AFTER_MS`]: every
//!   report's writer then removes it ([`MemberReport::forgotten`]).

use crate::ids::valid_task_id;
pub use crate::keys::MEMBERS_KEY;
use serde::{Deserialize, Serialize};

/// Reports a member may miss before it is shown as stale.
pub const STALE_AFTER_REPORTS: u64 = 3;
/// A member silent this long is removed: a day.
pub const FORGET_AFTER_MS: u64 = 24 * 3600 * 1000;
/// Members kept at most; past it the longest silent go first.
pub const MAX_MEMBERS: usize = 256;
/// Largest report accepted, in bytes of JSON (room for every lane with
/// every partition a report may name).
pub const MAX_REPORT_BYTES: usize = 128 * 1024;
/// Default time between two reports.
pub const REPORT_EVERY_MS: u64 = 5_000;
/// Shortest time between two reports a member may claim (a shorter
/// `every_ms` would make it stale at once).
const MIN_EVERY_MS: u64 = 100;
const MAX_LANES: usize = 8;
const MAX_PARTITIONS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    Bridge,
    App,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::Bridge => "bridge",
            MemberKind::App => "app",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    #[default]
    Running,
    /// Draining before it exits.
    Stopping,
    /// Exited cleanly: its last report.
    Stopped,
}

/// What one member says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    pub kind: MemberKind,
    /// Unique per process: `AIES_MEMBER_ID`, or its host name and a random
    /// suffix (a restarted member is a new one).
    pub id: String,
    /// The machine or container it runs on.
    pub host: String,
    pub version: String,
    pub started_ms: u64,
    /// Its time between two reports.
    pub every_ms: u64,
    #[serde(default)]
    pub state: MemberState,
    /// A bridge's lanes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lanes: Vec<LaneReport>,
    /// An app instance's requests being served now, and served in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_in_flight: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_total: Option<u64>,
    /// When the report was stored, by the storer's clock (0 until then).
    #[serde(default)]
    pub seen_ms: u64,
}

/// One lane of a bridge (its consumer in one group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneReport {
    /// `api` or `batch`.
    pub lane: String,
    pub topic: String,
    pub group: String,
    /// The partitions its consumer owns now.
    pub partitions: Vec<i32>,
    /// Events waiting in those partitions (not yet committed by the group).
    pub lag: i64,
    pub in_flight: u64,
    /// Events it read since it started.
    pub consumed: u64,
    /// When it last finished an event; `None`: not yet.
    pub last_progress_ms: Option<u64>,
}

impl MemberReport {
    /// Its field in [`MEMBERS_KEY`].
    pub fn field(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.id)
    }

    /// Whether a report may be stored: ids plain and bounded, sizes bounded.
    pub fn check(&self) -> Result<(), String> {
        let plain = |s: &str| valid_task_id(s) && s.len() <= 128;
        if !plain(&self.id) {
            return Err("id: 1-128 letters, digits, '-', '_', '.', ':'".into());
        }
        let text = |s: &str, max: usize| {
            (1..=max).contains(&s.chars().count()) && !s.chars().any(char::is_control)
        };
        if !text(&self.host, 255) {
            return Err("host: 1-255 characters, none a control character".into());
        }
        if !text(&self.version, 64) {
            return Err("version: 1-64 characters, none a control character".into());
        }
        if !(MIN_EVERY_MS..=FORGET_AFTER_MS).contains(&self.every_ms) {
            return Err(format!(
                "every_ms: between {MIN_EVERY_MS} and {FORGET_AFTER_MS}"
            ));
        }
        if self.lanes.len() > MAX_LANES {
            return Err(format!("at most {MAX_LANES} lanes"));
        }
        for lane in &self.lanes {
            let short = |s: &str| !s.is_empty() && s.len() <= 255 && plain_name(s);
            if !(short(&lane.lane) && short(&lane.topic) && short(&lane.group)) {
                return Err("lane, topic, group: 1-255 characters of a Kafka name".into());
            }
            if lane.partitions.len() > MAX_PARTITIONS || lane.partitions.iter().any(|p| *p < 0) {
                return Err(format!(
                    "at most {MAX_PARTITIONS} partitions, none negative"
                ));
            }
        }
        Ok(())
    }

    /// Shown as stale: still running by its last word, but it missed
    /// [`STALE_AFTER_REPORTS`] reports by `now_ms`.
    pub fn stale(&self, now_ms: u64) -> bool {
        self.state != MemberState::Stopped
            && now_ms.saturating_sub(self.seen_ms) > STALE_AFTER_REPORTS * self.every_ms
    }

    /// Silent for [`FORGET_AFTER_MS`] by `now_ms`: to be removed.
    pub fn forgotten(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.seen_ms) > FORGET_AFTER_MS
    }
}

/// Now, in milliseconds since the epoch: the members' clock (0 for a
/// clock before the epoch).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This machine's (or container's) name, for [`MemberReport::host`].
pub fn host_name() -> String {
    let name = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    let name: String = name.trim().chars().take(100).collect();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

/// A member id of `host` that no other process shares: the host name (its
/// characters that an id may not hold made `-`) and `suffix`.
pub fn member_id(host: &str, suffix: &str) -> String {
    let plain: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{plain}-{suffix}")
}

/// Kafka's characters for topic and group names (letters, digits, `.`,
/// `_`, `-`).
fn plain_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Of the stored members (`field`, JSON), the fields to remove at `now_ms`:
/// those forgotten or unreadable, then, past [`MAX_MEMBERS`], the longest
/// silent.
pub fn to_forget(stored: &[(String, String)], now_ms: u64) -> Vec<String> {
    let mut kept = Vec::new();
    let mut gone = Vec::new();
    for (field, json) in stored {
        match serde_json::from_str::<MemberReport>(json) {
            Ok(r) if !r.forgotten(now_ms) => kept.push((r.seen_ms, field)),
            _ => gone.push(field.clone()),
        }
    }
    if kept.len() > MAX_MEMBERS {
        kept.sort();
        let extra = kept.len() - MAX_MEMBERS;
        gone.extend(kept[..extra].iter().map(|(_, f)| (*f).clone()));
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(id: &str, seen_ms: u64) -> MemberReport {
        MemberReport {
            kind: MemberKind::Bridge,
            id: id.into(),
            host: "b1".into(),
            version: "0.1.0".into(),
            started_ms: 1,
            every_ms: 1_000,
            state: MemberState::Running,
            lanes: vec![LaneReport {
                lane: "batch".into(),
                topic: "datos_crudos".into(),
                group: "ai_eventstream_consumers".into(),
                partitions: vec![0, 2],
                lag: 7,
                in_flight: 1,
                consumed: 10,
                last_progress_ms: Some(5),
            }],
            requests_in_flight: None,
            requests_total: None,
            seen_ms,
        }
    }

    #[test]
    fn a_plain_report_passes_and_reads_back() {
        let r = bridge("b1-1a2b3c", 0);
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.field(), "bridge:b1-1a2b3c");
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("requests_total"), "{json}");
        assert_eq!(serde_json::from_str::<MemberReport>(&json).unwrap(), r);
    }

    #[test]
    fn ids_names_and_sizes_are_bounded() {
        let mut r = bridge("a b", 0);
        assert!(r.check().is_err());
        r.id = "x".repeat(129);
        assert!(r.check().is_err());
        r.id = "ok".into();
        r.host = "h\n".into();
        assert!(r.check().is_err());
        r.host = "h".into();
        r.every_ms = 10;
        assert!(r.check().is_err(), "a report every 10 ms is stale at once");
        r.every_ms = 1_000;
        r.lanes[0].group = "g}".into();
        assert!(r.check().is_err());
        r.lanes[0].group = "g".into();
        r.lanes[0].partitions = vec![-1];
        assert!(r.check().is_err());
        r.lanes[0].partitions = (0..1025).collect();
        assert!(r.check().is_err());
        r.lanes[0].partitions = vec![0];
        r.lanes = vec![r.lanes[0].clone(); 9];
        assert!(r.check().is_err());
    }

    #[test]
    fn member_ids_are_plain_whatever_the_host_name() {
        let id = member_id("büro host", "1a2b3c");
        assert_eq!(id, "b-ro-host-1a2b3c");
        assert!(valid_task_id(&id));
    }

    #[test]
    fn a_member_is_stale_after_three_missed_reports_unless_it_stopped() {
        let mut r = bridge("b", 10_000);
        assert!(!r.stale(13_000));
        assert!(r.stale(13_001));
        r.state = MemberState::Stopped;
        assert!(!r.stale(1_000_000));
        assert!(!r.stale(5_000), "a clock behind the storer's is not stale");
    }

    #[test]
    fn the_long_silent_and_the_unreadable_are_forgotten_and_the_hash_is_bounded() {
        let now = FORGET_AFTER_MS + 100_000;
        let json = |r: &MemberReport| serde_json::to_string(r).unwrap();
        let mut stored = vec![
            ("bridge:old".to_string(), json(&bridge("old", 1))),
            ("bridge:new".to_string(), json(&bridge("new", now))),
            ("bridge:junk".to_string(), "{".to_string()),
        ];
        let mut gone = to_forget(&stored, now);
        gone.sort();
        assert_eq!(gone, ["bridge:junk", "bridge:old"]);

        stored = (0..MAX_MEMBERS as u64 + 2)
            .map(|i| {
                (
                    format!("bridge:{i}"),
                    json(&bridge(&i.to_string(), now - i)),
                )
            })
            .collect();
        let mut gone = to_forget(&stored, now);
        gone.sort();
        let longest_silent = [MAX_MEMBERS, MAX_MEMBERS + 1].map(|i| format!("bridge:{i}"));
        assert_eq!(gone, longest_silent);
    }
}
