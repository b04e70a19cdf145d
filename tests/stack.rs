//! The whole system as separate processes, for fault tests that kill them:
//! Redis Stack (with its append-only file), a Tansu broker of its own,
//! `aies-host` and `aies-bridge`, each restartable on the same ports and
//! data. Every child dies with the test (`PR_SET_PDEATHSIG`), even when the
//! test process itself is killed.

use aies_contract::{TaskResult, TaskStatus, RAW_TOPIC, RESULT_TOPIC};
use anyhow::{bail, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::fake_llm::FakeLlm;
use crate::harness::{
    consume_distinct_at, free_port, manifest, tool, Messages, BRIDGE_KEY, ENQUEUE_TOKEN,
    INVOKE_TOKEN,
};

/// Events the relay may hold at once in these tests (fixed, so that it
/// bounds the LLM calls repeated after a crash).
pub const IN_FLIGHT: usize = 32;

/// A binary of this workspace, built beside the test binary by `make test`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join(name);
    assert!(bin.exists(), "{} missing: run `make test`", bin.display());
    bin
}

/// Makes `command`'s process die with the thread that started it.
pub fn tie_to_test(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        })
    }
}

/// A child process: killed with SIGKILL when dropped.
pub struct Proc {
    pub name: &'static str,
    child: Option<Child>,
}

impl Proc {
    pub fn spawn(name: &'static str, command: &mut Command) -> Self {
        let child = tie_to_test(command)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            name,
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no drain, no final commit, no goodbye to the group.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `grace` for the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().expect("running");
        signal(child.id(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} still running {grace:?} after SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Waits until something listens on `port`; false if nothing did in time.
pub async fn listening(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Ports of one stack; kept across restarts.
#[derive(Clone, Copy)]
pub struct Ports {
    pub redis: u16,
    pub kafka: u16,
    pub http: u16,
    pub bridge: u16,
}

impl Ports {
    pub fn free() -> Self {
        Self {
            redis: free_port(),
            kafka: free_port(),
            http: free_port(),
            bridge: free_port(),
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka)
    }
}

/// How to (re)start each process of one stack.
pub struct Setup {
    pub ports: Ports,
    pub dir: tempfile::TempDir,
    llm_url: String,
    /// Bridge settings for this test (environment variables).
    pub bridge_env: Vec<(String, String)>,
    /// The host's environment variables for this test.
    pub host_env: Vec<(String, String)>,
}

impl Setup {
    pub fn new(fake: &FakeLlm) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["redis", "kafka", "logs"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Self {
            ports: Ports::free(),
            dir,
            llm_url: fake.base_url(),
            // The bridge's own session timeout (10 s): Tansu evicts live
            // members with 6 s or less (NOTES.md).
            bridge_env: vec![("AIES_RETRY_BACKOFF_MS".into(), "100".into())],
            host_env: Vec::new(),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.ports.bootstrap()
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("logs").join(format!("{name}.log")))
            .unwrap()
    }

    pub fn log_text(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    pub async fn start_redis(&self) -> Proc {
        let mut cmd = Command::new(tool("REDIS_SERVER_BIN"));
        cmd.args([
            "--port",
            &self.ports.redis.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--appendonly", "yes", "--save", ""])
        .arg("--dir")
        .arg(self.dir.path().join("redis"))
        .arg("--loadmodule")
        .arg(tool("REDISEARCH_SO"))
        .stdout(self.log("redis"));
        let redis = Proc::spawn("redis", &mut cmd);
        if !listening(self.ports.redis, Duration::from_secs(30)).await {
            panic!("redis-server did not listen:\n{}", self.log_text("redis"));
        }
        redis
    }

    pub async fn start_broker(&self) -> Proc {
        let url = format!("tcp://127.0.0.1:{}", self.ports.kafka);
        let mut cmd = Command::new(tool("TANSU_BIN"));
        cmd.current_dir(self.dir.path().join("kafka"))
            .args(tansu_args(&url))
            .stdout(self.log("tansu"))
            .stderr(self.log("tansu"));
        let broker = Proc::spawn("tansu", &mut cmd);
        if !listening(self.ports.kafka, Duration::from_secs(30)).await {
            panic!("tansu did not listen:\n{}", self.log_text("tansu"));
        }
        aies_tansu::index_store(&self.dir.path().join("kafka").join(aies_tansu::STORE))
            .expect("indexing the broker's store");
        broker
    }

    pub async fn start_host(&self) -> Proc {
        let mut cmd = Command::new(binary("aies-host"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.ports.http))
            .arg("--manifest")
            .arg(manifest());
        for (k, v) in [
            ("redis_port", self.ports.redis.to_string()),
            (
                "bridge_url",
                format!("http://127.0.0.1:{}", self.ports.bridge),
            ),
            ("invoke_token", INVOKE_TOKEN.into()),
            ("enqueue_token", ENQUEUE_TOKEN.into()),
            ("llm_provider", "openai".into()),
            ("openai_base_url", self.llm_url.clone()),
            ("openai_api_key", crate::fake_llm::OPENAI_KEY.into()),
            ("llm_backoff_ms", "20".into()),
        ] {
            cmd.arg("--variable").arg(format!("{k}={v}"));
        }
        cmd.envs(self.host_env.iter().map(|(k, v)| (k, v)))
            .stdout(self.log("host"))
            .stderr(self.log("host"));
        let host = Proc::spawn("host", &mut cmd);
        if !listening(self.ports.http, Duration::from_secs(120)).await {
            panic!("aies-host did not listen:\n{}", self.log_text("host"));
        }
        host
    }

    /// A bridge process; returns once its HTTP side answers.
    pub async fn start_bridge(&self) -> Proc {
        let mut cmd = Command::new(binary("aies-bridge"));
        cmd.env("KAFKA_BOOTSTRAP_SERVERS", self.bootstrap())
            .env(
                "AIES_BRIDGE_LISTEN",
                format!("127.0.0.1:{}", self.ports.bridge),
            )
            .env(
                "AIES_INVOKE_URL",
                format!("http://127.0.0.1:{}/invoke", self.ports.http),
            )
            .env("AIES_INVOKE_TOKEN", INVOKE_TOKEN)
            .env("AIES_ENQUEUE_TOKEN", ENQUEUE_TOKEN)
            .env("AIES_BRIDGE_KEY", BRIDGE_KEY)
            .env("AIES_MAX_IN_FLIGHT", IN_FLIGHT.to_string())
            .env(
                "RUST_LOG",
                std::env::var("AIES_TEST_BRIDGE_LOG").unwrap_or("info".into()),
            )
            .envs(self.bridge_env.iter().map(|(k, v)| (k, v)))
            .stdout(self.log("bridge"))
            .stderr(self.log("bridge"));
        let bridge = Proc::spawn("bridge", &mut cmd);
        let health = format!("http://127.0.0.1:{}/health", self.ports.bridge);
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(&health).await.is_err() {
            assert!(Instant::now() < deadline, "aies-bridge did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bridge
    }

    /// Produces events `range` to `datos_crudos` (see [`produce_events`]).
    pub async fn produce(&self, label: &str, range: std::ops::Range<usize>) {
        produce_events(&self.bootstrap(), label, range).await
    }

    /// Waits for results of `n` distinct tasks on `datos_procesados`.
    pub async fn results(&self, n: usize, within: Duration) -> Result<Messages> {
        results(&self.bootstrap(), n, within).await
    }

    /// Result messages on `datos_procesados`, duplicates included.
    pub fn result_count(&self) -> usize {
        crate::harness::topic_size_at(&self.bootstrap(), RESULT_TOPIC, 3) as usize
    }
}

impl Drop for Setup {
    /// A failed test keeps its data and logs, and says where.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!(
                "kept the failed test's data and logs in {}",
                dir.keep().display()
            );
        }
    }
}

/// The whole system, each part a process of its own.
pub struct Stack {
    pub setup: Setup,
    pub redis: Proc,
    pub broker: Proc,
    pub host: Proc,
    pub bridge: Proc,
}

impl Stack {
    pub async fn start(setup: Setup) -> Self {
        let redis = setup.start_redis().await;
        let broker = setup.start_broker().await;
        let host = setup.start_host().await;
        let bridge = setup.start_bridge().await;
        Self {
            setup,
            redis,
            broker,
            host,
            bridge,
        }
    }

    /// Checks the end of a fault test (see [`assert_exactly_once`]).
    pub async fn assert_exactly_once(
        &self,
        events: usize,
        llm: &FakeLlm,
        repeat_bound: usize,
    ) -> Outcome {
        let results = self
            .setup
            .results(events, Duration::from_secs(300))
            .await
            .unwrap();
        let outcome = assert_exactly_once(
            self.setup.ports.redis,
            &results,
            events,
            llm.calls(),
            repeat_bound,
        )
        .await;
        Outcome {
            results: self.setup.result_count(),
            ..outcome
        }
    }
}

/// `tansu broker` listening on `url` (`tcp://host:port`), SQLite storage in
/// the working directory.
pub fn tansu_args(url: &str) -> [&str; 7] {
    aies_tansu::args(url)
}

pub fn kafka_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap()
}

/// Produces prompt-only events to `datos_crudos`, as a third-party producer
/// would: every tenth keyed (kept in order per key) and with the cache on;
/// the rest unkeyed with the cache off.
pub async fn produce_events(bootstrap: &str, label: &str, range: std::ops::Range<usize>) {
    produce_events_to(bootstrap, RAW_TOPIC, label, range).await
}

/// [`produce_events`] to another topic.
pub async fn produce_events_to(
    bootstrap: &str,
    topic: &str,
    label: &str,
    range: std::ops::Range<usize>,
) {
    let producer = kafka_producer(bootstrap);
    let sends: Vec<_> = range
        .map(|i| {
            let keyed = i % 10 == 0;
            let payload = serde_json::json!({
                "prompt": format!("{label} question {i}: what is {i} plus one?"),
                "use_cache": keyed,
            })
            .to_string();
            let key = keyed.then(|| format!("customer-{}", i % 50));
            let producer = producer.clone();
            async move {
                let mut record = FutureRecord::to(topic).payload(&payload);
                if let Some(k) = &key {
                    record = record.key(k);
                }
                producer
                    .send(record, Duration::from_secs(60))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("produced");
            }
        })
        .collect();
    futures::future::join_all(sends).await;
}

/// Results of `n` distinct tasks on `datos_procesados`.
pub async fn results(bootstrap: &str, n: usize, within: Duration) -> Result<Messages> {
    consume_distinct_at(bootstrap, RESULT_TOPIC, n, within).await
}

/// What a fault test reports and checks at its end.
pub struct Outcome {
    pub events: usize,
    pub results: usize,
    pub llm_calls: usize,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events: {} result messages ({} duplicates), {} LLM calls ({} repeated)",
            self.events,
            self.results,
            self.results.saturating_sub(self.events),
            self.llm_calls,
            self.llm_calls.saturating_sub(self.events)
        )
    }
}

/// Every event has exactly one SUCCESS record and at least one result on
/// `datos_procesados`; LLM calls beyond one per event are at most
/// `repeat_bound` (what was in flight when things died). Call it once the
/// results are in, so `llm_calls` counts them all.
pub async fn assert_exactly_once(
    redis_port: u16,
    results: &Messages,
    events: usize,
    llm_calls: usize,
    repeat_bound: usize,
) -> Outcome {
    let redis = format!("127.0.0.1:{redis_port}");
    assert_exactly_once_at(&redis, results, events, llm_calls, repeat_bound).await
}

/// [`assert_exactly_once`] with Redis at `redis` (`host:port`).
pub async fn assert_exactly_once_at(
    redis: &str,
    results: &Messages,
    events: usize,
    llm_calls: usize,
    repeat_bound: usize,
) -> Outcome {
    use redis::AsyncCommands;
    let ids: HashSet<_> = results.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(ids.len(), events, "one task per event on the result topic");
    for (_, payload) in results {
        let r: TaskResult = serde_json::from_str(payload).unwrap();
        assert_eq!(r.status, TaskStatus::Success, "{r:?}");
    }

    let mut tasks = redis::Client::open(format!("redis://{redis}/2"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = tasks.keys("aies:task:*").await.unwrap();
    assert_eq!(keys.len(), events, "one task record per event");
    for key in keys {
        let status: Option<String> = tasks.hget(&key, "status").await.unwrap();
        assert_eq!(status.as_deref(), Some("SUCCESS"), "{key}");
    }
    let outcome = Outcome {
        events,
        results: results.len(),
        llm_calls,
    };
    assert!(
        llm_calls >= events && llm_calls <= events + repeat_bound,
        "{outcome}: at most {repeat_bound} repeats allowed"
    );
    outcome
}
