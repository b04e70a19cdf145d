//! The bridge's settings: flags, each with an environment variable.

use aies_contract::members::REPORT_EVERY_MS;
use aies_contract::{
    valid_task_id, valid_tenant, API_TOPIC, CONSUMER_GROUP, DEAD_LETTER_TOPIC, DEFAULT_TENANT,
    RAW_TOPIC, RESULT_TOPIC,
};
use clap::Parser;

use crate::in_flight::InFlight;
use crate::seal::Seal;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser, Clone)]
#[command(
    version,
    about = "Relay Kafka datos_crudos into the AI-EventStream pipeline"
)]
pub struct BridgeConfig {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// The batch lane: events from any producer.
    #[arg(long, env = "AIES_RAW_TOPIC", default_value = RAW_TOPIC)]
    pub raw_topic: String,
    /// The API lane: events from `POST /enqueue`, read apart from the batch
    /// lane so they never wait behind its backlog.
    #[arg(long, env = "AIES_API_TOPIC", default_value = API_TOPIC)]
    pub api_topic: String,
    #[arg(long, env = "AIES_RESULT_TOPIC", default_value = RESULT_TOPIC)]
    pub result_topic: String,
    #[arg(long, env = "AIES_DEAD_LETTER_TOPIC", default_value = DEAD_LETTER_TOPIC)]
    pub dead_letter_topic: String,
    /// The batch lane's consumer group; the API lane's is this plus `_api`.
    #[arg(long, env = "AIES_CONSUMER_GROUP", default_value = CONSUMER_GROUP)]
    pub group: String,
    /// Partitions of each topic the bridge creates when it is missing.
    #[arg(long, env = "AIES_TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,
    /// How long the topics the bridge creates keep an event, in
    /// milliseconds (their `retention.ms`, with `cleanup.policy=delete`;
    /// Tansu applies it every 10 minutes). Default 7 days.
    #[arg(long, env = "AIES_TOPIC_RETENTION_MS", default_value_t = 604_800_000)]
    pub topic_retention_ms: i64,
    /// Bytes each partition of those topics keeps at most (their
    /// `retention.bytes`; Kafka and Redpanda apply it, Tansu 0.6 applies
    /// only the time). Default 1 GiB.
    #[arg(long, env = "AIES_TOPIC_RETENTION_BYTES", default_value_t = 1 << 30)]
    pub topic_retention_bytes: i64,
    /// Where ingest hands events over (`POST /enqueue`).
    #[arg(long, env = "AIES_BRIDGE_LISTEN", default_value = "127.0.0.1:3100")]
    pub listen: SocketAddr,
    /// llm-invoke's route in the Spin app.
    #[arg(
        long,
        env = "AIES_INVOKE_URL",
        default_value = "http://127.0.0.1:3000/invoke"
    )]
    pub invoke_url: String,
    /// Shared secret sent to llm-invoke (its `invoke_token` variable).
    #[arg(
        long,
        env = "AIES_INVOKE_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub invoke_token: Secret,
    /// Shared secret `POST /enqueue` requires (the app's `enqueue_token`).
    #[arg(
        long,
        env = "AIES_ENQUEUE_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub enqueue_token: Secret,
    /// The bridge's own secret: seals what it writes to Kafka (the API
    /// lane's events, dead letters' origins, replay markers) and keys the
    /// task ids it derives. Keep it across restarts: a new key orphans the
    /// ids of events still in the topics (`make up` keeps one in
    /// `.aies/bridge-key`).
    #[arg(
        long,
        env = "AIES_BRIDGE_KEY",
        default_value = "",
        hide_env_values = true
    )]
    pub bridge_key: Secret,
    /// The tenant of the batch lane's events: their producers are not
    /// authenticated, so the event's own `tenant` is not believed unless
    /// `--trust-producer-tenants` is given.
    #[arg(long, env = "AIES_BATCH_TENANT", default_value = DEFAULT_TENANT,
          value_parser = parse_tenant)]
    pub batch_tenant: String,
    /// Believe the `tenant` field of the batch lane's events (only where
    /// every producer allowed to write the topic is trusted).
    #[arg(long, env = "AIES_TRUST_PRODUCER_TENANTS", default_value_t = false)]
    pub trust_producer_tenants: bool,
    /// Events processed at once, per lane: a number, or `auto` (Little's
    /// law: `AIES_TARGET_RATE` × how long an event holds its slot).
    #[arg(long, env = "AIES_MAX_IN_FLIGHT", default_value = "auto")]
    pub max_in_flight: InFlight,
    /// Events per second per lane that `auto` sizes the in-flight limit for.
    #[arg(long, env = "AIES_TARGET_RATE", default_value_t = 2000.0)]
    pub target_rate: f64,
    /// The most events `auto` lets one lane hold at once.
    #[arg(long, env = "AIES_MAX_IN_FLIGHT_CEILING", default_value_t = 2048)]
    pub max_in_flight_ceiling: usize,
    /// Most events sent to llm-invoke in one request (`/invoke/batch`):
    /// events ready at the same moment go together, never two of one key.
    #[arg(long, env = "AIES_INVOKE_BATCH", default_value_t = 32)]
    pub invoke_batch: usize,
    /// Most bytes of events in one `/invoke/batch` request: large events
    /// go in smaller batches (the host refuses bodies over 1 MiB).
    #[arg(long, env = "AIES_INVOKE_BATCH_BYTES", default_value_t = 512 * 1024)]
    pub invoke_batch_bytes: usize,
    /// How long a batch waits for more ready events (milliseconds; 0 sends
    /// what is ready at once).
    #[arg(long, env = "AIES_INVOKE_LINGER_MS", default_value_t = 2)]
    pub invoke_linger_ms: u64,
    /// Attempts per event before it goes to the dead-letter topic.
    #[arg(long, env = "AIES_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles each attempt, with jitter.
    #[arg(long, env = "AIES_RETRY_BACKOFF_MS", default_value_t = 500)]
    pub retry_backoff_ms: u64,
    /// A bridge that dies without leaving its group loses its partitions to
    /// the others after this long (milliseconds).
    #[arg(long, env = "AIES_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// The rebalance timeout (librdkafka's `max.poll.interval.ms`): bounds how
    /// long a group waits for a member that stopped polling (milliseconds).
    #[arg(long, env = "AIES_MAX_POLL_INTERVAL_MS", default_value_t = 60_000)]
    pub max_poll_interval_ms: u64,
    /// How long the broker may hold a lane's fetch when it has nothing new
    /// (librdkafka's `fetch.wait.max.ms`, milliseconds). Tansu holds every
    /// fetch about this long even when it has data, so keep it short there;
    /// a broker that answers as soon as data arrives (Apache Kafka,
    /// Redpanda) can take 500, and an idle bridge then polls it 25 times
    /// less often.
    #[arg(
        long,
        env = "AIES_FETCH_WAIT_MS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(0..=300_000)
    )]
    pub fetch_wait_ms: u64,
    /// A lane with events waiting that receives nothing for this long
    /// (seconds) is stalled: it says so and rejoins its group. Keep it at or
    /// above the group's session timeout.
    #[arg(long, env = "AIES_STALL_TIMEOUT_SECS", default_value_t = 10)]
    pub stall_timeout_secs: u64,
    /// The enqueue endpoint closes a connection that has not sent a whole
    /// request head this long after it opened or after its last answer
    /// (seconds). Keep it above the app's 30 s reuse of idle connections.
    #[arg(long, env = "AIES_BRIDGE_HEADER_READ_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,
    /// Longest wait for one invocation, in seconds.
    #[arg(long, env = "AIES_INVOKE_TIMEOUT_SECS", default_value_t = 150)]
    pub invoke_timeout_secs: u64,
    /// A file of librdkafka connection properties (TLS, SASL), `key=value`
    /// lines; `AIES_KAFKA_<PROPERTY>` variables win over it (see
    /// docs/operations.md, "Real clusters").
    #[arg(long, env = "AIES_KAFKA_CONFIG_FILE")]
    pub kafka_config_file: Option<std::path::PathBuf>,
    /// This bridge's name on `/stats` and the dashboard; default: its host
    /// name and a random suffix (a restarted bridge is a new member).
    #[arg(long, env = "AIES_MEMBER_ID", value_parser = parse_member_id)]
    pub member_id: Option<String>,
    /// Milliseconds between two reports of itself to the app
    /// (`POST /invoke/member`); 0: it does not report.
    #[arg(long, env = "AIES_MEMBER_REPORT_MS", default_value_t = REPORT_EVERY_MS,
          value_parser = parse_report_ms)]
    pub member_report_ms: u64,
}

impl BridgeConfig {
    /// Defaults, as from an empty command line with no environment.
    pub fn defaults() -> Self {
        Self::parse_from(["aies-bridge"])
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    pub fn invoke_timeout(&self) -> Duration {
        Duration::from_secs(self.invoke_timeout_secs)
    }

    /// Both shared secrets and the bridge's key are set: an empty token
    /// would leave a public route open (the app's /invoke, the bridge's
    /// /enqueue), an empty key would let any producer forge a seal, so the
    /// bridge does not start without them.
    pub fn check_tokens(&self) -> anyhow::Result<()> {
        for (name, value, variable) in [
            ("AIES_INVOKE_TOKEN", &self.invoke_token, "invoke_token"),
            ("AIES_ENQUEUE_TOKEN", &self.enqueue_token, "enqueue_token"),
        ] {
            if value.expose().is_empty() {
                anyhow::bail!(
                    "{name} is empty: set it to the app's `{variable}` variable \
                     (`make up` generates both; see docs/operations.md)"
                );
            }
        }
        self.check_key()
    }

    /// The bridge's key is set (the relay and `replay-dlq` need it).
    pub fn check_key(&self) -> anyhow::Result<()> {
        if self.bridge_key.expose().len() < 16 {
            anyhow::bail!(
                "AIES_BRIDGE_KEY must hold at least 16 characters, e.g. \
                 `openssl rand -hex 32` (`make up` keeps one; see docs/operations.md)"
            );
        }
        Ok(())
    }

    pub fn seal(&self) -> Seal {
        Seal::new(self.bridge_key.clone())
    }

    pub fn api_group(&self) -> String {
        format!("{}_api", self.group)
    }

    /// The app's health route, beside llm-invoke's: tells an outage of the
    /// pipeline (app or Redis down) from a failure of one event.
    pub fn health_url(&self) -> anyhow::Result<reqwest::Url> {
        self.app_url("/health")
    }

    /// Where the bridge reports itself: beside llm-invoke's `/invoke`.
    pub fn member_url(&self) -> anyhow::Result<reqwest::Url> {
        let mut url = self.app_url("")?;
        let path = format!("{}/member", url.path().trim_end_matches('/'));
        url.set_path(&path);
        Ok(url)
    }

    fn app_url(&self, path: &str) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&self.invoke_url)
            .map_err(|e| anyhow::anyhow!("AIES_INVOKE_URL {:?}: {e}", self.invoke_url))?;
        if !path.is_empty() {
            url.set_path(path);
        }
        url.set_query(None);
        Ok(url)
    }
}

fn parse_member_id(text: &str) -> Result<String, String> {
    if valid_task_id(text) {
        Ok(text.to_string())
    } else {
        Err("a member id is 1 to 128 letters, digits, '-', '_', '.' or ':'".into())
    }
}

fn parse_report_ms(text: &str) -> Result<u64, String> {
    let ms: u64 = text.parse().map_err(|e| format!("{e}"))?;
    if ms == 0 || (100..=60_000).contains(&ms) {
        Ok(ms)
    } else {
        Err("0 (off) or 100 to 60000 milliseconds".into())
    }
}

fn parse_tenant(text: &str) -> Result<String, String> {
    if valid_tenant(text) {
        Ok(text.to_string())
    } else {
        Err("a tenant is 1 to 64 letters, digits, '-' or '_'".into())
    }
}

/// A value that never prints.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, in a time that does not depend on
    /// where they first differ.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_needs_both_tokens_and_its_key() {
        let mut config = BridgeConfig::defaults();
        let refused = config.check_tokens().unwrap_err().to_string();
        assert!(
            refused.starts_with("AIES_INVOKE_TOKEN is empty"),
            "{refused}"
        );
        config.invoke_token = "i".into();
        let refused = config.check_tokens().unwrap_err().to_string();
        assert!(
            refused.starts_with("AIES_ENQUEUE_TOKEN is empty"),
            "{refused}"
        );
        config.enqueue_token = "e".into();
        let refused = config.check_tokens().unwrap_err().to_string();
        assert!(
            refused.starts_with("AIES_BRIDGE_KEY must hold"),
            "{refused}"
        );
        config.bridge_key = "0123456789abcdef".into();
        assert!(config.check_tokens().is_ok());
        assert!(config.enqueue_token.matches("e"));
        assert!(!config.enqueue_token.matches("E") && !config.enqueue_token.matches("ee"));
        assert!(!config.enqueue_token.matches(""));
    }

    #[test]
    fn the_batch_lane_has_one_tenant_unless_producers_are_trusted() {
        let config = BridgeConfig::defaults();
        assert_eq!(config.batch_tenant, DEFAULT_TENANT);
        assert!(!config.trust_producer_tenants);
        let parse = |v: &str| BridgeConfig::try_parse_from(["aies-bridge", "--batch-tenant", v]);
        assert_eq!(parse("acme").unwrap().batch_tenant, "acme");
        assert!(parse("no/slash").is_err() && parse("").is_err());
    }

    #[test]
    fn a_fetch_wait_librdkafka_would_refuse_is_refused_at_start() {
        let parse = |v: &str| BridgeConfig::try_parse_from(["aies-bridge", "--fetch-wait-ms", v]);
        assert_eq!(parse("500").unwrap().fetch_wait_ms, 500);
        assert_eq!(BridgeConfig::defaults().fetch_wait_ms, 20);
        let Err(refused) = parse("300001") else {
            panic!("300001 ms was accepted");
        };
        let refused = refused.to_string();
        assert!(refused.contains("--fetch-wait-ms"), "{refused}");
        assert!(parse("-1").is_err());
    }
}
