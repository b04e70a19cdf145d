//! Configuration in one module: the settings of the host, from flags (the
//! binary) or from a test.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the host, from flags (the binary) or from a test.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub manifest: PathBuf,
    /// Variable values that win over `SPIN_VARIABLE_*` and defaults.
    pub variables: HashMap<String, String>,
    /// Read `SPIN_VARIABLE_*` from the process environment.
    pub env_variables: bool,
    /// Where `all-minilm-l6-v2/` lives; default `.spin/ai-models` beside the manifest.
    pub model_dir: Option<PathBuf>,
    /// Longest a component may run for one request, waits included.
    pub request_timeout: Duration,
    /// Longest an outbound HTTP request may wait to connect or for data.
    pub outbound_timeout: Duration,
    /// Linear memory one component instance may grow to.
    pub max_memory_bytes: usize,
    /// Where to serve the host's own metrics (`GET /metrics`); none: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Vectors the embedding memo keeps per model; 0 turns it off. A memo
    /// shared by all tenants tells, by its speed, that a text was embedded
    /// lately: a deployment whose tenants must not learn that sets 0.
    pub embedding_memo: usize,
    /// Longest a client may take to send a request's headers, and to start
    /// its next request on a kept-alive connection: a connection that
    /// stalls or idles that long is closed.
    pub header_read_timeout: Duration,
    /// At shutdown, how long requests in flight may take to finish before
    /// they are cut.
    pub drain_timeout: Duration,
    /// Time between two reports of this instance into the Redis of the
    /// app's Redis trigger (`/stats` lists members); `None`: no reports.
    pub member_report: Option<Duration>,
    /// This instance's name on `/stats`; default: its host name and a
    /// random suffix.
    pub member_id: Option<String>,
}

impl HostConfig {
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            variables: HashMap::new(),
            env_variables: true,
            model_dir: None,
            request_timeout: Duration::from_secs(120),
            outbound_timeout: Duration::from_secs(60),
            max_memory_bytes: 128 << 20,
            metrics_listen: None,
            embedding_memo: crate::llm::MEMO_TEXTS,
            header_read_timeout: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(25),
            member_report: Some(Duration::from_millis(
                aies_contract::members::REPORT_EVERY_MS,
            )),
            member_id: None,
        }
    }
}
