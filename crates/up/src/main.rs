//! `aies-up`: starts the whole local stack and owns it (what `make up` runs).
//!
//! 1. Takes `<data>/up.lock`: a second `aies-up` on the same data refuses to
//!    start and names the one running.
//! 2. Checks every port it is about to listen on; a taken port is named with
//!    the process holding it, and nothing is started.
//! 3. Starts Redis Stack, the Tansu broker, the app (`aies-host`) and the
//!    bridge, each waiting for the one before to listen. Every child gets
//!    `PR_SET_PDEATHSIG`, so it dies with `aies-up` even if `aies-up` is
//!    killed with SIGKILL, and its own process group, so a terminal's Ctrl-C
//!    reaches only `aies-up`, which then stops them in order.
//! 4. SIGINT, SIGTERM or SIGHUP (with or without a terminal, from a script or
//!    a service manager) stops bridge, app, broker and Redis, in that order,
//!    each given a grace period before SIGKILL.
//! 5. Watches each service by a round trip every 2 s (Redis `PING`, a
//!    Kafka metadata request, `GET /health` of the app and the bridge) and
//!    restarts one that exits or stops answering, with a backoff; each
//!    restart is logged and counted in Redis (`aies:services`, DB 0), which
//!    `/stats` and the dashboard show. A service restarted 5 times in 10
//!    minutes stops everything, and `aies-up` exits with an error naming it.

mod health;
mod ports;
mod services;

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use health::Probe;
use services::{Restarted, Running, Signals, Spec};

/// Where `aies-up` reports its services for `/stats` and the dashboard
/// (DB 0): `<service>.restarts`, `.last_restart_ms`, `.last_reason`.
const SERVICES_KEY: &str = "aies:services";

#[derive(Parser)]
#[command(
    version,
    about = "Start the local AI-EventStream stack; Ctrl-C stops it all"
)]
struct Args {
    /// Where Redis, the broker and the logs keep their files.
    #[arg(long, env = "AIES_DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
    /// The Spin application manifest.
    #[arg(long, env = "AIES_MANIFEST", default_value = "spin.toml")]
    manifest: PathBuf,
    /// The API (the app's HTTP trigger).
    #[arg(long, env = "AIES_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// The bridge's enqueue endpoint and metrics.
    #[arg(long, env = "AIES_BRIDGE_LISTEN", default_value = "127.0.0.1:3100")]
    bridge_listen: SocketAddr,
    /// The host's own metrics (per-route latency histograms).
    #[arg(long, env = "AIES_METRICS_LISTEN", default_value = "127.0.0.1:3001")]
    metrics_listen: SocketAddr,
    #[arg(long, env = "REDIS_HOST", default_value = "127.0.0.1")]
    redis_host: String,
    #[arg(long, env = "REDIS_PORT", default_value_t = 6379)]
    redis_port: u16,
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    kafka: String,
    /// The local Redis's memory limit (its `maxmemory`, e.g. `2gb`). Redis
    /// evicts nothing (`noeviction`): at the limit writes fail (the API
    /// answers 503) rather than task records or API keys disappearing; the
    /// cache keeps itself under `cache_max_entries`.
    #[arg(long, env = "AIES_REDIS_MAXMEMORY", default_value = "2gb")]
    redis_maxmemory: String,
    /// Start a local Redis Stack (default: when REDIS_HOST is this machine).
    #[arg(long, env = "AIES_START_REDIS")]
    start_redis: Option<bool>,
    /// Start a local Tansu broker (default: when KAFKA_BOOTSTRAP_SERVERS is
    /// one address on this machine).
    #[arg(long, env = "AIES_START_KAFKA")]
    start_kafka: Option<bool>,
    /// redis-server with RediSearch support (set by scripts/env.sh).
    #[arg(long, env = "REDIS_SERVER_BIN")]
    redis_server: Option<PathBuf>,
    #[arg(long, env = "REDISEARCH_SO")]
    redisearch: Option<PathBuf>,
    #[arg(long, env = "TANSU_BIN")]
    tansu: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aies-up: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode> {
    // Whoever started us (make, a script) dying counts as being told to stop.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
    let data = &args.data_dir;
    for dir in ["logs", "redis", "kafka"] {
        std::fs::create_dir_all(data.join(dir))
            .with_context(|| format!("creating {}", data.join(dir).display()))?;
    }
    let _lock = lock(data)?;
    let specs = plan(&args)?;
    let metrics = Some(("host metrics", args.metrics_listen));
    ports::check(
        specs
            .iter()
            .filter_map(|s| s.listen.map(|a| (s.name, a)))
            .chain(metrics),
    )?;

    let mut signals = Signals::new()?;
    let mut running = Running::new(&data.join("logs"));
    let names: Vec<&'static str> = specs.iter().map(|s| s.name).collect();
    for spec in specs {
        let name = spec.name;
        if let Err(e) = running.start(spec, &mut signals).await {
            running.stop_all().await;
            return match e.downcast::<services::Interrupted>() {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(e) => Err(e.context(format!("starting {name}"))),
            };
        }
    }
    banner(&args, std::process::id());
    let redis = format!("{}:{}", args.redis_host, args.redis_port);
    let started: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("{n}.started_ms"), now_ms().to_string()))
        .collect();
    report(&redis, &started).await;
    let outcome = running
        .watch(&mut signals, async |r: Restarted<'_>| {
            let fields = [
                (format!("{}.restarts", r.name), r.restarts.to_string()),
                (format!("{}.last_restart_ms", r.name), now_ms().to_string()),
                (format!("{}.last_reason", r.name), r.reason.to_string()),
            ];
            report(&redis, &fields).await;
        })
        .await;
    running.stop_all().await;
    match outcome {
        services::Ended::Signal(sig) => {
            println!("stopped ({sig})");
            Ok(ExitCode::SUCCESS)
        }
        services::Ended::CrashLoop(name, why) => bail!(
            "{why}; everything else was stopped. See {}",
            data.join("logs").join(format!("{name}.log")).display()
        ),
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// Best effort: the dashboard's view of the services is not worth failing for.
async fn report(redis: &str, fields: &[(String, String)]) {
    if let Err(e) = health::redis_hset(redis, 0, SERVICES_KEY, fields).await {
        println!("==> could not record the services in Redis ({redis}): {e:#}");
    }
}

/// Holds `<data>/up.lock` for the life of the process (the kernel lets go
/// of it when the process dies, however it dies).
fn lock(data: &Path) -> Result<std::fs::File> {
    let path = data.join("up.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if let Err(e) = file.try_lock() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        match e {
            std::fs::TryLockError::WouldBlock => bail!(
                "AI-EventStream is already running on {} (aies-up pid {}); stop it first \
                 (Ctrl-C where it runs, or `kill {}`)",
                data.display(),
                if holder.is_empty() { "?" } else { holder },
                if holder.is_empty() { "<pid>" } else { holder },
            ),
            std::fs::TryLockError::Error(e) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
    file.set_len(0)?;
    std::io::Write::write_all(&mut file, format!("{}\n", std::process::id()).as_bytes())?;
    Ok(file)
}

fn is_local(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

/// What to start, in order.
fn plan(args: &Args) -> Result<Vec<Spec>> {
    let data = &args.data_dir;
    let required = |path: &Option<PathBuf>, var: &str| -> Result<PathBuf> {
        match path {
            Some(p) if p.exists() => Ok(p.clone()),
            Some(p) => bail!(
                "{var}={} does not exist: run `make setup` first",
                p.display()
            ),
            None => bail!("{var} is not set: run `make setup`, then `make up`"),
        }
    };
    let mut specs = Vec::new();
    if args
        .start_redis
        .unwrap_or_else(|| is_local(&args.redis_host))
    {
        let dir = std::fs::canonicalize(data.join("redis"))?;
        specs.push(
            Spec::new(
                "redis",
                required(&args.redis_server, "REDIS_SERVER_BIN")?,
                Some(SocketAddr::from(([127, 0, 0, 1], args.redis_port))),
                Duration::from_secs(15),
            )
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &args.redis_port.to_string(),
            ])
            .args(["--maxmemory", &args.redis_maxmemory])
            .args(["--maxmemory-policy", "noeviction"])
            .args(["--appendonly", "yes", "--save", "60 1", "--dir"])
            .arg(dir)
            .arg("--loadmodule")
            .arg(required(&args.redisearch, "REDISEARCH_SO")?)
            .probe(Probe::Redis(SocketAddr::from((
                [127, 0, 0, 1],
                args.redis_port,
            )))),
        );
    }
    let kafka: Option<SocketAddr> = args
        .kafka
        .parse()
        .ok()
        .filter(|a: &SocketAddr| a.ip().is_loopback());
    if args.start_kafka.unwrap_or(kafka.is_some()) {
        let Some(addr) = kafka else {
            bail!(
                "a local broker needs KAFKA_BOOTSTRAP_SERVERS to be one address on this machine, \
                 not {:?}",
                args.kafka
            );
        };
        let url = format!("tcp://{addr}");
        let store = std::fs::canonicalize(data.join("kafka"))?.join(aies_tansu::STORE);
        specs.push(
            Spec::new(
                "tansu",
                required(&args.tansu, "TANSU_BIN")?,
                Some(addr),
                Duration::from_secs(15),
            )
            .args(aies_tansu::args(&url))
            .cwd(data.join("kafka"))
            .probe(Probe::kafka(&args.kafka)?)
            .after_start(move || {
                if !aies_tansu::index_store(&store)? {
                    println!("==> tansu: no header table in {} to index", store.display());
                }
                Ok(())
            }),
        );
    }
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("aies-up has no folder")?
        .to_path_buf();
    // The app and the bridge prove themselves to each other with these,
    // new each run: /invoke and /enqueue refuse every call without them.
    let token = random_hex(24)?;
    let enqueue_token = random_hex(24)?;
    let admin = kept_secret(data, "admin-token", "AIES_ADMIN_TOKEN")?;
    let bridge_key = kept_secret(data, "bridge-key", "AIES_BRIDGE_KEY")?;
    let mut host = Spec::new(
        "host",
        bin_dir.join("aies-host"),
        Some(args.listen),
        Duration::from_secs(15),
    )
    .args(["--listen", &args.listen.to_string()])
    .args([
        "--metrics-listen",
        &args.metrics_listen.to_string(),
        "--manifest",
    ])
    .arg(&args.manifest)
    .env("SPIN_VARIABLE_REDIS_HOST", &args.redis_host)
    .env("SPIN_VARIABLE_REDIS_PORT", args.redis_port.to_string())
    .env(
        "SPIN_VARIABLE_BRIDGE_URL",
        format!("http://{}", args.bridge_listen),
    )
    .env("SPIN_VARIABLE_INVOKE_TOKEN", &token)
    .env("SPIN_VARIABLE_ENQUEUE_TOKEN", &enqueue_token)
    .env("SPIN_VARIABLE_ADMIN_TOKEN", &admin)
    .probe(Probe::Http(args.listen, "/health"));
    // The seed's names for the providers, passed on as Spin variables.
    for (var, spin) in [
        ("VECTOR_DIMENSION", "VECTOR_DIMENSION"),
        ("GOOGLE_API_KEY", "GOOGLE_API_KEY"),
        ("GEMINI_MODEL", "GEMINI_MODEL"),
        ("OPENAI_BASE_URL", "OPENAI_BASE_URL"),
        ("OPENAI_API_KEY", "OPENAI_API_KEY"),
        ("OPENAI_MODEL", "OPENAI_MODEL"),
    ] {
        if let Ok(value) = std::env::var(var).map(|v| v.trim_end_matches('/').to_string()) {
            if !value.is_empty() {
                host = host.env(format!("SPIN_VARIABLE_{spin}"), value);
            }
        }
    }
    specs.push(host);
    specs.push(
        Spec::new(
            "bridge",
            bin_dir.join("aies-bridge"),
            Some(args.bridge_listen),
            // Draining events in flight (30 s) and the final commit (10 s).
            Duration::from_secs(45),
        )
        .env("KAFKA_BOOTSTRAP_SERVERS", &args.kafka)
        .env("AIES_BRIDGE_LISTEN", args.bridge_listen.to_string())
        .env("AIES_INVOKE_URL", format!("http://{}/invoke", args.listen))
        .env("AIES_INVOKE_TOKEN", &token)
        .env("AIES_ENQUEUE_TOKEN", &enqueue_token)
        .env("AIES_BRIDGE_KEY", &bridge_key)
        .probe(Probe::Http(args.bridge_listen, "/health")),
    );
    Ok(specs)
}

/// A secret that must outlive a run: `$<env>`, or one made once and kept in
/// `<data>/<file>` (readable by its owner only), so that it is never
/// printed. The admin token (`admin-token`, `AIES_ADMIN_TOKEN`) and the
/// bridge's key (`bridge-key`, `AIES_BRIDGE_KEY`: derived task ids of events
/// still in Kafka must not change) are such secrets.
fn kept_secret(data: &Path, file: &str, env: &str) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(secret) = std::env::var(env) {
        return Ok(secret);
    }
    let path = data.join(file);
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(secret.trim().to_string());
    }
    let secret = random_hex(24)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes())?;
    Ok(secret)
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn banner(args: &Args, pid: u32) {
    let llm = if std::env::var("GOOGLE_API_KEY").is_ok_and(|k| !k.is_empty()) {
        format!(
            "Gemini ({})",
            std::env::var("GEMINI_MODEL").unwrap_or("gemini-2.0-flash".into())
        )
    } else if let Ok(base) = std::env::var("OPENAI_BASE_URL") {
        format!("OpenAI-compatible at {base}")
    } else if std::env::var("OPENAI_API_KEY").is_ok_and(|k| !k.is_empty()) {
        "OpenAI-compatible at https://api.openai.com".into()
    } else {
        "OFFLINE STAND-IN (not a real LLM: set GOOGLE_API_KEY or OPENAI_BASE_URL)".into()
    };
    let keys = if std::env::var("SPIN_VARIABLE_API_KEYS").is_ok_and(|v| v == "required") {
        "required: Authorization: Bearer <key>; make keys at POST /admin/keys"
    } else {
        "OFF (local default: x-tenant-id names the tenant; SPIN_VARIABLE_API_KEYS=required to require keys)"
    };
    let (listen, bridge, metrics) = (args.listen, args.bridge_listen, args.metrics_listen);
    println!(
        "
  AI-EventStream is up
  API        http://{listen}   (POST /process, GET /task/{{id}}, GET /metrics, GET /health)
  API keys   {keys}
  LLM        {llm}
  Embeddings local multilingual-e5-small (offline; English and Spanish)
  Admin      http://{listen}/admin/cache/stats, /admin/keys   (Authorization: Bearer $(cat {}/admin-token))
  Redis      {}:{} (data in {}/redis)
  Kafka      {} (lanes datos_api and datos_crudos; results datos_procesados; dead letters datos_crudos_dlq)
  Bridge     http://{bridge}   (GET /metrics)
  Dashboard  http://{listen}/dashboard   API docs http://{listen}/docs
  Host       http://{metrics}/metrics   (latency per route)
  Logs       {}/logs/

  Try: curl -s -XPOST http://{listen}/process -H 'content-type: application/json' \\
         -d '{{\"prompt\":\"What is the capital of France?\"}}'
  Ctrl-C (or SIGTERM to pid {pid}) stops everything, in order.
",
        args.data_dir.display(),
        args.redis_host,
        args.redis_port,
        args.data_dir.display(),
        args.kafka,
        args.data_dir.display(),
    );
}
