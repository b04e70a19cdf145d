//! What the tests run against: a real Redis Stack server per test, one real
//! Tansu broker per test process (each test gets its own topics and group),
//! the host and the bridge in-process on free ports, and a fake LLM server.

use aies_bridge::{Bridge, BridgeConfig};
use aies_contract::TaskResult;
use aies_host::{HostConfig, Server};
use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::fake_llm::FakeLlm;

pub fn manifest() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../spin.toml"))
}

/// Writes a variant of the app's manifest into `dir`: component sources made
/// absolute, then each `(from, to)` replacement applied (each must match).
pub fn manifest_variant(dir: &std::path::Path, edits: &[(&str, &str)]) -> PathBuf {
    let root = manifest().parent().unwrap().to_path_buf();
    let mut text = std::fs::read_to_string(manifest()).unwrap().replace(
        "components/target/",
        &format!("{}/components/target/", root.display()),
    );
    for (from, to) in edits {
        assert!(text.contains(from), "manifest has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes into `dir` a manifest serving only the test component that
/// misbehaves on request (`/spin`, `/grow`) and otherwise answers "ok"
/// (`/ok`: the no-op of the benchmark).
pub fn test_component_manifest(dir: &std::path::Path) -> PathBuf {
    let wasm = manifest()
        .parent()
        .unwrap()
        .join("components/target/wasm32-wasip2/release/test_runaway.wasm");
    let toml = format!(
        "spin_manifest_version = 2\n[application]\nname = \"test-component\"\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"test\"\n\
         [component.test]\nsource = \"{}\"\n",
        wasm.display()
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// The model folder of the repository (for manifests written elsewhere).
pub fn model_dir() -> PathBuf {
    manifest().parent().unwrap().join(".spin/ai-models")
}

pub fn tool(var: &str) -> PathBuf {
    let path = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with `make test` (after `make setup`)")
    });
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{var}={} does not exist: run `make setup`",
        path.display()
    );
    path
}

/// A port free now, never handed out before in this process (the kernel
/// may give the same ephemeral port to two binds in a row once the first
/// is closed: two services of one test on one port).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when dropped (also when a test panics).
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Redis 8 server with the RediSearch module, private to one test.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Option<Process>,
}

impl Redis {
    pub fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            process: None,
        };
        redis.restart();
        redis
    }

    /// Kills the server (its data is not saved).
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(tool("REDIS_SERVER_BIN"))
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--loadmodule")
            .arg(tool("REDISEARCH_SO"))
            .stdout(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.process = Some(Process(child));
        wait_for_port(self.port, "redis-server");
    }

    pub async fn connection(&self, db: u8) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{}/{db}", self.port))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

/// The Tansu broker shared by the tests of this process.
pub struct Broker {
    pub bootstrap: String,
    /// Holds the pipe whose closing stops the broker.
    _watchdog: Child,
}

pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        // A static is never dropped, so the broker is tied to this process
        // another way: a shell holds our end of a pipe and, when the test
        // process exits and the pipe closes, kills Tansu and removes its data.
        let watchdog = r#"cd "$1" || exit 1; shift
"$@" >/dev/null 2>&1 &
child=$!
cat >/dev/null
kill -9 "$child"; wait "$child"
cd / && rm -rf "$OLDPWD""#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            .arg("tansu-watchdog")
            .arg(&dir)
            .arg(tool("TANSU_BIN"))
            .args(crate::stack::tansu_args(&url))
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        wait_for_port(port, "tansu");
        aies_tansu::index_store(&dir.join(aies_tansu::STORE)).expect("indexing the broker's store");
        Broker {
            bootstrap: format!("127.0.0.1:{port}"),
            _watchdog: child,
        }
    })
}

/// Topic names and group of one test, so tests never see each other's events.
#[derive(Clone)]
pub struct Topics {
    pub raw: String,
    pub api: String,
    pub results: String,
    pub dead_letter: String,
    pub group: String,
}

impl Topics {
    pub async fn create(test: &str, partitions: i32) -> Self {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let t = Self {
            raw: format!("{test}-{id}-crudos"),
            api: format!("{test}-{id}-api"),
            results: format!("{test}-{id}-procesados"),
            dead_letter: format!("{test}-{id}-dlq"),
            group: format!("{test}-{id}-group"),
        };
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &broker().bootstrap)
            .create()
            .unwrap();
        let topics: Vec<_> = [&t.raw, &t.api, &t.results, &t.dead_letter]
            .into_iter()
            .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
            .collect();
        for r in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .unwrap()
        {
            r.expect("topic created");
        }
        t
    }
}

pub fn producer() -> FutureProducer {
    crate::stack::kafka_producer(&broker().bootstrap)
}

pub async fn produce(producer: &FutureProducer, topic: &str, key: Option<&str>, payload: &str) {
    let mut record = FutureRecord::to(topic).payload(payload);
    if let Some(k) = key {
        record = record.key(k);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produced");
}

pub type Messages = Vec<(Option<String>, String)>;

/// Reads `topic` of the shared broker from the start until `done` says the
/// messages read so far are enough, or fails after `within`.
async fn read_until(
    topic: &str,
    within: Duration,
    done: impl FnMut(&Messages) -> bool,
) -> Result<Messages> {
    read_until_at(&broker().bootstrap, topic, within, done).await
}

/// [`read_until`] on the broker at `bootstrap`.
pub async fn read_until_at(
    bootstrap: &str,
    topic: &str,
    within: Duration,
    mut done: impl FnMut(&Messages) -> bool,
) -> Result<Messages> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while !done(&out) {
        let m = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .with_context(|| {
                format!("{topic}: not there after reading {} messages", out.len())
            })??;
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        out.push((
            key,
            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        ));
    }
    Ok(out)
}

/// The first `count` messages of `topic`.
pub async fn consume(topic: &str, count: usize, within: Duration) -> Result<Messages> {
    read_until(topic, within, |m| m.len() >= count).await
}

/// Messages of `topic` until `count` distinct keys were seen (at-least-once
/// delivery may repeat a message).
pub async fn consume_distinct(topic: &str, count: usize, within: Duration) -> Result<Messages> {
    consume_distinct_at(&broker().bootstrap, topic, count, within).await
}

/// [`consume_distinct`] on the broker at `bootstrap`.
pub async fn consume_distinct_at(
    bootstrap: &str,
    topic: &str,
    count: usize,
    within: Duration,
) -> Result<Messages> {
    // Counted as they come (`done` sees each message once, right after it
    // was read): a set built anew per message made the reader quadratic,
    // taking CPU from the system a benchmark measures.
    let mut keys = std::collections::HashSet::new();
    read_until_at(bootstrap, topic, within, move |m| {
        if let Some((key, _)) = m.last() {
            keys.insert(key.clone());
        }
        keys.len() >= count
    })
    .await
}

/// Messages currently in `topic` (sum of the partitions' high watermarks).
pub fn topic_size(topic: &str, partitions: i32) -> i64 {
    topic_size_at(&broker().bootstrap, topic, partitions)
}

/// [`topic_size`] on the broker at `bootstrap`.
pub fn topic_size_at(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "watermarks")
        .create()
        .unwrap();
    // A broker busy with another test's backlog may miss one metadata
    // deadline; a few attempts tell that from a broker that is gone.
    let watermarks = |p| {
        let mut attempt = 0;
        loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                Ok((low, high)) => return high - low,
                Err(e) if attempt < 5 => {
                    eprintln!("watermarks of {topic}/{p}: {e}; asking again");
                    attempt += 1;
                }
                Err(e) => panic!("watermarks of {topic}/{p}: {e}"),
            }
        }
    };
    (0..partitions).map(watermarks).sum()
}

/// How the system under test is set up.
pub struct Options {
    pub test: &'static str,
    pub partitions: i32,
    /// Spin variables for the app (the test fills in Redis, bridge, token).
    pub variables: HashMap<String, String>,
    /// Another manifest than the repository's spin.toml.
    pub manifest: Option<PathBuf>,
    pub model_dir: Option<PathBuf>,
    /// The host's limit on waiting for an outbound HTTP answer.
    pub outbound_timeout: Option<Duration>,
    /// The token the first bridge sends (the app always expects
    /// [`INVOKE_TOKEN`]): a wrong one makes every invocation fail.
    pub bridge_token: &'static str,
    /// The bridge's events in flight per lane (its default otherwise).
    pub max_in_flight: Option<usize>,
    /// The bridge's `fetch_wait_ms` (its default otherwise).
    pub fetch_wait_ms: Option<u64>,
    /// The bridge's `invoke_batch_bytes` (its default otherwise).
    pub invoke_batch_bytes: Option<usize>,
    /// The bridge's `invoke_linger_ms` (its default otherwise).
    pub invoke_linger_ms: Option<u64>,
    /// The host's `header_read_timeout` (its default otherwise).
    pub header_read_timeout: Option<Duration>,
    /// The bridge's `invoke_timeout_secs` (its default otherwise).
    pub invoke_timeout_secs: Option<u64>,
    /// The bridge's `header_read_timeout_secs` (its default otherwise).
    pub bridge_header_read_timeout_secs: Option<u64>,
    /// An ACL user made on the test's Redis before the app starts, and the
    /// app's `redis_username` / `redis_password`: (user, its rules, the
    /// password the app is given).
    pub redis_user: Option<(&'static str, &'static str, &'static str)>,
}

impl Options {
    pub fn new(test: &'static str) -> Self {
        Self {
            test,
            partitions: 3,
            variables: HashMap::new(),
            manifest: None,
            model_dir: None,
            outbound_timeout: None,
            bridge_token: INVOKE_TOKEN,
            max_in_flight: None,
            fetch_wait_ms: None,
            invoke_batch_bytes: None,
            invoke_linger_ms: None,
            header_read_timeout: None,
            invoke_timeout_secs: None,
            bridge_header_read_timeout_secs: None,
            redis_user: None,
        }
    }

    /// Points the app's LLM at the fake server, speaking `provider`'s format.
    pub fn llm(mut self, fake: &FakeLlm, provider: &str) -> Self {
        let base = fake.base_url();
        let vars = [
            ("llm_provider", provider),
            ("openai_base_url", base.as_str()),
            ("gemini_base_url", base.as_str()),
            ("google_api_key", crate::fake_llm::GEMINI_KEY),
            ("openai_api_key", crate::fake_llm::OPENAI_KEY),
            ("llm_backoff_ms", "10"),
        ];
        for (k, v) in vars {
            self.variables.insert(k.into(), v.into());
        }
        self
    }
}

pub const INVOKE_TOKEN: &str = "test-invoke-token";
/// How often the system's bridges and host report themselves (`/stats`).
pub const MEMBER_REPORT_MS: u64 = 500;
/// What ingest sends to the bridge's `/enqueue`.
pub const ENQUEUE_TOKEN: &str = "test-enqueue-token";
/// The bridge's key (seals, keyed task ids).
pub const BRIDGE_KEY: &str = "test-bridge-key-of-32-characters";

/// Redis, the host and the bridge of one test, stopped when dropped.
pub struct System {
    pub redis: Redis,
    pub topics: Topics,
    pub http: SocketAddr,
    /// The first bridge's HTTP side (`/enqueue`, `/metrics`).
    pub bridge_http: SocketAddr,
    /// The host's own metrics listener.
    pub host_metrics: SocketAddr,
    pub client: reqwest::Client,
    /// The first bridge's settings, for starting more members of its group.
    pub bridge_config: BridgeConfig,
    /// Stops each bridge, in start order; `None` once stopped.
    bridges: Vec<Option<oneshot::Sender<()>>>,
    _host_stop: oneshot::Sender<()>,
}

impl System {
    pub async fn start(options: Options) -> Self {
        let redis = Redis::start();
        let topics = Topics::create(options.test, options.partitions).await;
        let mut options = options;
        if let Some((user, rules, password)) = options.redis_user {
            let mut conn = redis.connection(0).await;
            let mut acl = redis::cmd("ACL");
            acl.arg("SETUSER").arg(user).arg("reset");
            for rule in rules.split_whitespace() {
                acl.arg(rule);
            }
            let () = acl.query_async(&mut conn).await.expect("ACL SETUSER");
            options
                .variables
                .insert("redis_username".into(), user.into());
            options
                .variables
                .insert("redis_password".into(), password.into());
        }

        let mut bridge_config = BridgeConfig::defaults();
        bridge_config.brokers = broker().bootstrap.clone();
        bridge_config.raw_topic = topics.raw.clone();
        bridge_config.api_topic = topics.api.clone();
        bridge_config.result_topic = topics.results.clone();
        bridge_config.dead_letter_topic = topics.dead_letter.clone();
        bridge_config.group = topics.group.clone();
        bridge_config.listen = "127.0.0.1:0".parse().unwrap();
        bridge_config.invoke_token = options.bridge_token.into();
        bridge_config.enqueue_token = ENQUEUE_TOKEN.into();
        bridge_config.bridge_key = BRIDGE_KEY.into();
        bridge_config.retry_backoff_ms = 50;
        bridge_config.max_attempts = 3;
        // Members report twice a second: a silent one is stale in 1.5 s.
        bridge_config.member_report_ms = MEMBER_REPORT_MS;
        if let Some(n) = options.max_in_flight {
            bridge_config.max_in_flight = aies_bridge::in_flight::InFlight::Fixed(n);
        }
        if let Some(ms) = options.fetch_wait_ms {
            bridge_config.fetch_wait_ms = ms;
        }
        if let Some(bytes) = options.invoke_batch_bytes {
            bridge_config.invoke_batch_bytes = bytes;
        }
        if let Some(ms) = options.invoke_linger_ms {
            bridge_config.invoke_linger_ms = ms;
        }
        if let Some(secs) = options.invoke_timeout_secs {
            bridge_config.invoke_timeout_secs = secs;
        }
        if let Some(secs) = options.bridge_header_read_timeout_secs {
            bridge_config.header_read_timeout_secs = secs;
        }
        let mut bridge = Bridge::bind(bridge_config.clone())
            .await
            .expect("bridge binds");

        let bridge_http = bridge.local_addr();
        let mut host_config = HostConfig::new(options.manifest.unwrap_or_else(manifest));
        host_config.env_variables = false;
        host_config.model_dir = options.model_dir;
        if let Some(t) = options.outbound_timeout {
            host_config.outbound_timeout = t;
        }
        host_config.variables = options.variables;
        host_config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        host_config.member_report = Some(Duration::from_millis(MEMBER_REPORT_MS));
        if let Some(t) = options.header_read_timeout {
            host_config.header_read_timeout = t;
        }
        for (k, v) in [
            ("redis_port", redis.port.to_string()),
            ("bridge_url", format!("http://{bridge_http}")),
            ("invoke_token", INVOKE_TOKEN.to_string()),
            ("enqueue_token", ENQUEUE_TOKEN.to_string()),
        ] {
            host_config.variables.entry(k.into()).or_insert(v);
        }
        let server = Server::bind(&host_config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("host starts");
        let http = server.local_addr();
        let host_metrics = server.metrics_addr().expect("host metrics listen");
        let invoke_url = format!("http://{http}/invoke");
        bridge.set_invoke_url(invoke_url.clone());
        bridge_config.invoke_url = invoke_url;

        let (host_stop, host_rx) = oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = host_rx.await;
        }));
        let mut system = Self {
            redis,
            topics,
            http,
            bridge_http,
            host_metrics,
            // Idle connections are dropped well before the host closes
            // them (its header-read timeout), so no request races a close.
            client: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_millis(500))
                .build()
                .unwrap(),
            bridge_config,
            bridges: Vec::new(),
            _host_stop: host_stop,
        };
        system.run_bridge(bridge);
        let manifest_text = std::fs::read_to_string(&host_config.manifest).unwrap();
        if manifest_text.contains("[[trigger.redis]]") {
            // The host's Redis, which a test may have pointed elsewhere.
            let port = host_config.variables["redis_port"].parse().unwrap();
            wait_subscribed(port).await;
        }
        system
    }

    /// Waits until the host's Redis trigger listens on the cache-fill
    /// channel of this system's Redis.
    pub async fn wait_subscribed(&self) {
        wait_subscribed(self.redis.port).await;
    }

    fn run_bridge(&mut self, bridge: Bridge) {
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(bridge.run(async {
            let _ = stopped.await;
        }));
        self.bridges.push(Some(stop));
    }

    /// Starts one more bridge in the same consumer group; returns its index.
    pub async fn add_bridge(&mut self) -> usize {
        let mut config = self.bridge_config.clone();
        config.invoke_token = INVOKE_TOKEN.into();
        let bridge = Bridge::bind(config).await.unwrap();
        self.run_bridge(bridge);
        self.bridges.len() - 1
    }

    /// Stops bridge `index` gracefully (as SIGTERM would).
    pub fn stop_bridge(&mut self, index: usize) {
        if let Some(stop) = self.bridges[index].take() {
            let _ = stop.send(());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `POST /process` with a raw body; returns status and JSON answer.
    pub async fn process_raw(&self, body: &str, tenant: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .post(self.url("/process"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = tenant {
            req = req.header("x-tenant-id", t);
        }
        let resp = req.send().await.expect("POST /process");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text}"));
        (status, json)
    }

    pub async fn process_json(
        &self,
        body: serde_json::Value,
        tenant: Option<&str>,
    ) -> (u16, serde_json::Value) {
        self.process_raw(&body.to_string(), tenant).await
    }

    pub async fn process(&self, prompt: &str, tenant: Option<&str>) -> (u16, serde_json::Value) {
        self.process_raw(&serde_json::json!({ "prompt": prompt }).to_string(), tenant)
            .await
    }

    /// `GET path`: status and JSON answer.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    pub async fn task(&self, id: &str, tenant: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = self.client.get(self.url(&format!("/task/{id}")));
        if let Some(t) = tenant {
            req = req.header("x-tenant-id", t);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// Polls `GET /task/{id}` until the task is final.
    pub async fn wait_final(&self, id: &str, tenant: Option<&str>) -> Result<TaskResult> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.task(id, tenant).await;
            if status == 200 {
                let task: TaskResult = serde_json::from_value(body)?;
                if task.status.is_final() {
                    return Ok(task);
                }
            }
            if Instant::now() > deadline {
                bail!("task {id} not final after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a prompt that must miss, and waits until its whole pipeline is
    /// done: the task is final, its result is on `datos_procesados`, and
    /// cache-fill has put it into the cache.
    pub async fn complete(&self, prompt: &str) -> TaskResult {
        self.complete_json(serde_json::json!({ "prompt": prompt }), None)
            .await
    }

    /// [`Self::complete`] for any `POST /process` body and tenant.
    pub async fn complete_json(&self, body: serde_json::Value, tenant: Option<&str>) -> TaskResult {
        let (status, answer) = self.process_json(body.clone(), tenant).await;
        assert_eq!(status, 202, "{body} should miss: {answer}");
        self.finished(answer["task_id"].as_str().unwrap(), tenant)
            .await
    }

    /// Waits until a task is final, its result is on `datos_procesados`
    /// and its cache fill (if any) is over.
    pub async fn finished(&self, id: &str, tenant: Option<&str>) -> TaskResult {
        let task = self.wait_final(id, tenant).await.unwrap();
        read_until(&self.topics.results, Duration::from_secs(30), |m| {
            m.iter().any(|(k, _)| k.as_deref() == Some(id))
        })
        .await
        .unwrap();
        self.wait_filled(id).await;
        task
    }

    /// Adds `n` entries to the cache of the tenant and scope of `entry` (a
    /// cache entry's key): a large index without answering anything. Their
    /// vectors are the entry's plus as much noise (cosine about 0.7 to it,
    /// below any threshold), so they lie in the model's region of the space
    /// as real prompts would. Returns the scope.
    pub async fn add_filler_entries(&self, entry: &str, n: u32) -> String {
        let mut redis = self.redis.connection(0).await;
        let (tenant, scope, base): (String, String, Vec<u8>) = redis::cmd("HMGET")
            .arg(entry)
            .arg("tenant")
            .arg("scope")
            .arg("vector")
            .query_async(&mut redis)
            .await
            .unwrap();
        let prefix = entry.rsplit_once(':').unwrap().0;
        let base: Vec<f32> = base
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        // In pipelines of 500: one of thousands outlasts the client's timeout.
        for start in (0..n).step_by(500) {
            let mut fill = redis::pipe();
            for i in start..n.min(start + 500) {
                let noise: Vec<f32> = (0..base.len() as u32)
                    .map(|j| ((i * 7919 + j * 104_729) as f32).sin())
                    .collect();
                let scale = norm(&base) / norm(&noise);
                let vector: Vec<u8> = base
                    .iter()
                    .zip(&noise)
                    .flat_map(|(b, n)| (b + n * scale).to_le_bytes())
                    .collect();
                fill.hset_multiple(
                    format!("{prefix}:filler{i:026}"),
                    &[
                        ("tenant", tenant.clone().into_bytes()),
                        ("scope", scope.clone().into_bytes()),
                        ("prompt", format!("filler {i}").into_bytes()),
                        ("result", b"filler".to_vec()),
                        ("task_id", b"filler".to_vec()),
                        ("vector", vector),
                    ],
                )
                .ignore();
            }
            let () = fill.query_async(&mut redis).await.unwrap();
        }
        scope
    }

    /// Waits until no in-flight marker names the task: cache-fill clears
    /// it once the answer is in the cache (or the fill failed).
    pub async fn wait_filled(&self, id: &str) {
        use redis::AsyncCommands;
        let mut coordination = self.redis.connection(1).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let keys: Vec<String> = coordination.keys("aies:inflight:*").await.unwrap();
            let mut named = false;
            for key in keys {
                let task: Option<String> = coordination.get(&key).await.unwrap();
                named |= task.as_deref() == Some(id);
            }
            if !named {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "task {id}: cache fill not done after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Checks the end of a batch: every result message says SUCCESS, and
    /// the result backend holds exactly `count` tasks, all SUCCESS.
    pub async fn assert_all_succeeded(&self, results: &Messages, count: usize) {
        use redis::AsyncCommands;
        for (_, payload) in results {
            let r: TaskResult = serde_json::from_str(payload).unwrap();
            assert_eq!(r.status, aies_contract::TaskStatus::Success, "{r:?}");
        }
        let mut tasks = self.redis.connection(2).await;
        let keys: Vec<String> = tasks.keys("aies:task:*").await.unwrap();
        assert_eq!(keys.len(), count);
        for key in keys {
            let status: Option<String> = tasks.hget(&key, "status").await.unwrap();
            assert_eq!(status.as_deref(), Some("SUCCESS"), "{key}");
        }
    }

    /// Calls llm-invoke as the bridge does on its last attempt for an event
    /// (so a failure is recorded instead of retried), and returns the task.
    pub async fn invoke_last_attempt(&self, task_id: &str, prompt: &str) -> TaskResult {
        let request = serde_json::json!({
            "task_id": task_id, "prompt": prompt, "tenant": "default",
            "use_cache": false, "final_attempt": true
        });
        let resp = self
            .client
            .post(self.url("/invoke"))
            .bearer_auth(INVOKE_TOKEN)
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// The status of `GET path`, sent without credentials.
    pub async fn get_status(&self, path: &str) -> u16 {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        resp.status().as_u16()
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of one Prometheus sample line, e.g. `aies_cache_hits_total`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

/// Waits until a Redis trigger listens on both cache-fill channels of the
/// Redis at `port` (a notice published before that would not be seen).
pub async fn wait_subscribed(port: u16) {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(aies_contract::CACHE_FILL_CHANNEL)
            .arg(aies_contract::API_CACHE_FILL_CHANNEL)
            .query_async(&mut conn)
            .await
            .unwrap();
        if counts.iter().all(|(_, n)| *n > 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the host's Redis trigger did not subscribe within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The headers of the first message of `topic` whose key is `key`.
pub async fn headers_of(topic: &str, key: &str, within: Duration) -> Result<Vec<(String, String)>> {
    use rdkafka::message::Headers;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker().bootstrap)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .with_context(|| format!("{topic}: no message with key {key}"))??;
        if m.key() != Some(key.as_bytes()) {
            continue;
        }
        return Ok(m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (h.key.to_string(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default());
    }
}
