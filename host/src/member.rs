//! The host's report of itself (`aies_contract::members`), for `/stats` and
//! the dashboard: one app instance, its requests in flight and served.
//! Written every few seconds into `aies:members` (DB 0) of the Redis its
//! app's Redis trigger uses; `stopped` as its last word. A plain Spin host
//! has no such report: its instances are shown by its own tools.

use aies_contract::members::{
    host_name, member_id, now_ms, to_forget, MemberKind, MemberReport, MemberState, MEMBERS_KEY,
};
use anyhow::{Context, Result};
use redis::IntoConnectionInfo;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

/// How long one report may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Reporter {
    client: redis::Client,
    id: String,
    host: String,
    started_ms: u64,
    every: Duration,
    metrics: Arc<Metrics>,
}

impl Reporter {
    /// Reports to `address`'s database 0 every `every`; `id`: the member
    /// id, else the host name and a random suffix.
    pub fn new(
        address: &str,
        id: Option<String>,
        every: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let info = address
            .into_connection_info()
            .context("the Redis address")?;
        let db0 = info.redis_settings().clone().set_db(0);
        let client = redis::Client::open(info.set_redis_settings(db0))?;
        let host = host_name();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        Ok(Self {
            client,
            id: id.unwrap_or_else(|| member_id(&host, suffix)),
            host,
            started_ms: now_ms(),
            every,
            metrics,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reports until the task is aborted; a failed write is logged once
    /// until one succeeds again.
    pub async fn run(&self) {
        let mut failing = false;
        loop {
            match self.write(MemberState::Running).await {
                Err(e) if !failing => {
                    tracing::warn!(member = %self.id, "reporting to Redis failed ({e:#}); retrying");
                    failing = true;
                }
                Ok(()) if failing => {
                    tracing::info!(member = %self.id, "reporting to Redis again");
                    failing = false;
                }
                _ => {}
            }
            tokio::time::sleep(self.every).await;
        }
    }

    /// The last word: this instance has stopped serving.
    pub async fn stopped(&self) {
        if let Err(e) = self.write(MemberState::Stopped).await {
            tracing::debug!("last report not written: {e:#}");
        }
    }

    fn report(&self, state: MemberState) -> MemberReport {
        MemberReport {
            kind: MemberKind::App,
            id: self.id.clone(),
            host: self.host.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: self.started_ms,
            every_ms: self.every.as_millis() as u64,
            state,
            lanes: Vec::new(),
            requests_in_flight: Some(self.metrics.in_flight().max(0) as u64),
            requests_total: Some(self.metrics.served()),
            seen_ms: now_ms(),
        }
    }

    async fn write(&self, state: MemberState) -> Result<()> {
        let report = self.report(state);
        let json = serde_json::to_string(&report)?;
        let write = async {
            let mut conn = self.client.get_multiplexed_async_connection().await?;
            let () = redis::cmd("HSET")
                .arg(MEMBERS_KEY)
                .arg(report.field())
                .arg(json)
                .query_async(&mut conn)
                .await?;
            let stored: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(MEMBERS_KEY)
                .query_async(&mut conn)
                .await?;
            let gone = to_forget(&stored, report.seen_ms);
            if !gone.is_empty() {
                let () = redis::cmd("HDEL")
                    .arg(MEMBERS_KEY)
                    .arg(gone)
                    .query_async(&mut conn)
                    .await?;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .context("Redis did not answer in time")?
    }
}
