//! `aies-host`: runs spin.toml locally on wasmtime (where `spin up` is not
//! installed). Variables come from `SPIN_VARIABLE_*` and `--variable`.
//! `aies-host check` says whether Spin 4 would start the manifest.

use anyhow::{Context, Result};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "Run a Spin application (spin.toml) on wasmtime",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The application manifest.
    #[arg(long, short = 'f', default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address of the HTTP trigger.
    #[arg(long, default_value = "127.0.0.1:3000", env = "AIES_LISTEN")]
    listen: SocketAddr,
    /// Set a variable, `name=value` (wins over SPIN_VARIABLE_*).
    #[arg(long = "variable", value_parser = parse_kv)]
    variables: Vec<(String, String)>,
    /// Folder holding all-minilm-l6-v2/ (default: .spin/ai-models beside the manifest).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Seconds a component may take for one request before it is stopped.
    #[arg(long, default_value_t = 120)]
    request_timeout_secs: u64,
    /// Serve the host's metrics (per-route latency histograms) at
    /// `http://<this>/metrics`.
    #[arg(long, env = "AIES_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Embeddings kept per model for texts asked again; 0 turns the memo
    /// off (its speed tells any tenant that a text was embedded lately).
    #[arg(long, default_value_t = aies_host::llm::MEMO_TEXTS, env = "AIES_EMBEDDING_MEMO")]
    embedding_memo: usize,
    /// Seconds a client may take to send a request's headers (or to start
    /// its next request on a kept-alive connection) before it is closed.
    #[arg(long, default_value_t = 20, env = "AIES_HEADER_READ_TIMEOUT_SECS")]
    header_read_timeout_secs: u64,
    /// Seconds the requests in flight at shutdown may take to finish
    /// (under the orchestrator's grace period: 30 s in compose.yaml and
    /// Kubernetes' default).
    #[arg(long, default_value_t = 25, env = "AIES_DRAIN_TIMEOUT_SECS")]
    drain_timeout_secs: u64,
    /// This instance's name on `/stats` and the dashboard; default: its
    /// host name and a random suffix.
    #[arg(long, env = "AIES_MEMBER_ID")]
    member_id: Option<String>,
    /// Milliseconds between two reports of this instance into the Redis of
    /// the app's Redis trigger; 0: it does not report.
    #[arg(long, env = "AIES_MEMBER_REPORT_MS",
          default_value_t = aies_contract::members::REPORT_EVERY_MS,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    member_report_ms: u64,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check the manifest as Spin 4 would at `spin up` (its schema, its
    /// rules, each trigger's start), without serving; exit 1 if refused.
    Check {
        #[arg(long, short = 'f', default_value = "spin.toml")]
        manifest: PathBuf,
        /// Set a variable, `name=value` (wins over SPIN_VARIABLE_*).
        #[arg(long = "variable", value_parser = parse_kv)]
        variables: Vec<(String, String)>,
        /// Folder holding the models named in `ai_models`.
        #[arg(long)]
        model_dir: Option<PathBuf>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

fn main() -> Result<()> {
    // wasmtime builds an error each time a request's store is dropped; with
    // RUST_BACKTRACE set it would capture a backtrace for it (~5% of a small
    // request). Panics still print theirs.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // Before the runtime: the OTLP exporter's blocking client (when
    // OTEL_EXPORTER_OTLP_ENDPOINT is set) cannot be made inside one.
    let args = Args::parse();
    if let Some(Command::Check {
        manifest,
        variables,
        model_dir,
    }) = args.command
    {
        let mut config = aies_host::HostConfig::new(&manifest);
        config.variables = variables.into_iter().collect();
        config.model_dir = model_dir;
        match aies_host::check::check(&config) {
            Ok(summary) => {
                print!("{summary}");
                return Ok(());
            }
            Err(e) => {
                eprintln!("{}: Spin would refuse it:\n{e:#}", manifest.display());
                std::process::exit(1);
            }
        }
    }
    let _telemetry = aies_telemetry::init("aies-host", aies_host::telemetry::DEFAULT_FILTER);
    tokio::runtime::Runtime::new()?.block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let mut config = aies_host::HostConfig::new(&args.manifest);
    config.variables = args.variables.into_iter().collect();
    config.model_dir = args.model_dir;
    config.request_timeout = Duration::from_secs(args.request_timeout_secs);
    config.metrics_listen = args.metrics_listen;
    config.embedding_memo = args.embedding_memo;
    config.header_read_timeout = Duration::from_secs(args.header_read_timeout_secs.max(1));
    config.drain_timeout = Duration::from_secs(args.drain_timeout_secs);
    config.member_report =
        (args.member_report_ms > 0).then(|| Duration::from_millis(args.member_report_ms.max(100)));
    if let Some(id) = args.member_id {
        anyhow::ensure!(
            aies_contract::valid_task_id(&id),
            "AIES_MEMBER_ID {id:?}: 1 to 128 letters, digits, '-', '_', '.' or ':'"
        );
        config.member_id = Some(id);
    }
    let server = aies_host::Server::bind(&config, args.listen)
        .await
        .with_context(|| format!("starting {}", args.manifest.display()))?;
    let app = server.app();
    tracing::info!(
        app = %app.name,
        components = %app.component_names().collect::<Vec<_>>().join(", "),
        "serving on http://{}", server.local_addr()
    );
    if let Some(addr) = server.metrics_addr() {
        tracing::info!("host metrics on http://{addr}/metrics");
    }
    server.run(shutdown_signal()).await
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
