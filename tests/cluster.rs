//! The stack as containers (issue 24): `compose.yaml` with
//! `compose.local.yaml` (local stand-ins for Redis and the broker) and an
//! override of the test's own, started by `docker-compose` under a project
//! name of its own, on a network of its own whose broker and Redis have
//! fixed addresses that this process reaches directly. The images come from
//! `make images`; nothing here builds them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::fake_llm::FakeLlm;

/// The repository root: compose.yaml's folder.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct Cluster {
    pub project: String,
    /// The third octet of the network 10.213.<net>.0/24.
    net: u8,
    dir: tempfile::TempDir,
    started: Instant,
}

impl Cluster {
    /// `bridges` bridges and `apps` app instances on one broker whose topics
    /// have `partitions` partitions; the LLM is `fake` (reached through the
    /// network's gateway).
    pub fn up(name: &str, bridges: usize, apps: usize, partitions: u32, fake: &FakeLlm) -> Self {
        // The test's own subnet (one cluster at a time per process).
        let net = (20 + (std::process::id() + name.len() as u32 * 37) % 200) as u8;
        let project = format!("aies{name}{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let port = fake.base_url().rsplit(':').next().unwrap().to_string();
        let gateway = format!("10.213.{net}.1");
        std::fs::write(
            dir.path().join("test.yaml"),
            format!(
                r#"# The cluster test's own addresses and LLM.
networks:
  default:
    ipam:
      config:
        - subnet: 10.213.{net}.0/24
services:
  kafka:
    environment:
      TANSU_ADVERTISED_URL: tcp://10.213.{net}.10:9092
    networks:
      default:
        ipv4_address: 10.213.{net}.10
  redis:
    networks:
      default:
        ipv4_address: 10.213.{net}.11
  app:
    environment:
      SPIN_VARIABLE_LLM_PROVIDER: openai
      SPIN_VARIABLE_OPENAI_BASE_URL: http://{gateway}:{port}
      SPIN_VARIABLE_OPENAI_API_KEY: {key}
      SPIN_VARIABLE_LLM_BACKOFF_MS: "10"
  bridge:
    environment:
      AIES_TOPIC_PARTITIONS: "{partitions}"
      AIES_MAX_IN_FLIGHT: "{in_flight}"
"#,
                in_flight = crate::stack::IN_FLIGHT,
                key = crate::fake_llm::OPENAI_KEY,
            ),
        )
        .unwrap();
        let cluster = Self {
            project,
            net,
            dir,
            started: Instant::now(),
        };
        // Leftovers of an earlier run under the same name go first.
        cluster.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
        let bridges = format!("bridge={bridges}");
        let apps = format!("app={apps}");
        let out = cluster.compose(&[
            "up",
            "-d",
            "--no-build",
            "--scale",
            &bridges,
            "--scale",
            &apps,
        ]);
        assert!(
            out.status.success(),
            "docker-compose up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// Runs docker-compose on this cluster's files and project.
    pub fn compose(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .current_dir(root())
            .env("AIES_APP_PUBLISH", "127.0.0.1:")
            .args([
                "-p",
                &self.project,
                "-f",
                "compose.yaml",
                "-f",
                "compose.local.yaml",
            ])
            .arg("-f")
            .arg(self.dir.path().join("test.yaml"))
            .args(args)
            .output()
            .expect("docker-compose runs")
    }

    pub fn bootstrap(&self) -> String {
        format!("10.213.{}.10:9092", self.net)
    }

    pub fn redis(&self) -> String {
        format!("10.213.{}.11:6379", self.net)
    }

    /// The containers of `service`, in compose's order (instance 1 first).
    pub fn containers(&self, service: &str) -> Vec<String> {
        let out = self.compose(&["ps", "-q", service]);
        let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        ids.sort_by_key(|id| docker(&["inspect", "-f", "{{.Name}}", id]));
        ids
    }

    /// The name of the network the containers share.
    pub fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    /// The services' last log lines, for a failed test.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.compose(&["logs", "--no-color", "--tail", "40"]).stdout)
            .into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]);
        eprintln!("cluster {} up {:?}", self.project, self.started.elapsed());
    }
}

/// Runs `docker` and returns its output, failing the test if it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// How long the fault waited for a container to be healthy again.
pub async fn healthy(container: &str, within: Duration) -> Duration {
    let since = Instant::now();
    loop {
        let status = docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Health.Status}}",
            container,
        ]);
        if status == "running healthy" {
            return since.elapsed();
        }
        assert!(
            !status.starts_with("exited"),
            "{container} exited: {}",
            docker(&["logs", "--tail", "20", container])
        );
        assert!(
            since.elapsed() < within,
            "{container} not healthy: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Per partition of the batch lane: the group's committed offset (-1 for
/// none) and the high watermark.
pub fn batch_lane_offsets(bootstrap: &str, partitions: i32) -> Vec<(i64, i64)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let topic = aies_contract::RAW_TOPIC;
    // Only asks for the group's offsets: it never joins the group.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", aies_contract::CONSUMER_GROUP)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(|p| {
            let offset = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            };
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            (offset, high)
        })
        .collect()
}

/// The group's recovery after a fault at `at_fault` (offsets read then):
/// how long after `since` every partition that still had work then has
/// committed further (offsets are committed every second).
pub async fn recovered(
    bootstrap: &str,
    at_fault: &[(i64, i64)],
    since: Instant,
    within: Duration,
) -> Duration {
    loop {
        let now = batch_lane_offsets(bootstrap, at_fault.len() as i32);
        let moved = at_fault
            .iter()
            .zip(&now)
            // No commit yet (-1) on an empty partition is no work left.
            .all(|((then, high), (offset, _))| (*then).max(0) >= *high || offset > then);
        if moved {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "partitions stuck {within:?} after the fault: {at_fault:?} then, {now:?} now"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Cluster {
    /// `http://127.0.0.1:<port>` of app instance `index` (1-based), as
    /// published on this machine.
    pub fn app_url(&self, index: usize) -> String {
        let out = self.compose(&["port", &format!("--index={index}"), "app", "3000"]);
        let addr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!addr.is_empty(), "app {index} publishes no port");
        format!("http://{addr}")
    }
}

/// Every result on `datos_procesados` (duplicates included): the consumer
/// that published it (`aies_contract::CONSUMER_HEADER`) and when (the
/// record's create time, ms since the epoch, set when the bridge produced
/// it).
pub async fn result_writers(bootstrap: &str, partitions: i32) -> Vec<(String, i64)> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::ClientConfig;
    let total = crate::harness::topic_size_at(bootstrap, aies_contract::RESULT_TOPIC, partitions);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("writers-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[aies_contract::RESULT_TOPIC]).unwrap();
    let mut out = Vec::new();
    while (out.len() as i64) < total {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("read {} of {total} results", out.len()))
            .unwrap();
        let writer = m
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|h| h.key == aies_contract::CONSUMER_HEADER)
                    .and_then(|h| h.value)
            })
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("every result names its consumer");
        let at = m.timestamp().to_millis().expect("every result has a time");
        out.push((writer, at));
    }
    out
}
