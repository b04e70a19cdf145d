//! `aies-bridge`: see the crate docs. Configuration by flags or environment
//! (`aies-bridge --help`).

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Relay Kafka into the AI-EventStream pipeline")]
struct Cli {
    #[command(flatten)]
    config: aies_bridge::BridgeConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Relay events and serve /enqueue (what runs without a command).
    Run,
    /// Move dead letters back to the batch lane (all, or by reason or age).
    ReplayDlq(aies_bridge::replay::ReplayArgs),
    /// Send events to the batch lane (the batch flow's producer): N
    /// generated, or one per line of a file.
    Produce(aies_bridge::produce::ProduceArgs),
}

fn main() -> Result<()> {
    // Before the runtime: the OTLP exporter's blocking client (when
    // OTEL_EXPORTER_OTLP_ENDPOINT is set) cannot be made inside one.
    let _telemetry = aies_telemetry::init("aies-bridge", "info");
    tokio::runtime::Runtime::new()?.block_on(run(Cli::parse()))
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(Command::ReplayDlq(args)) = &cli.command {
        let summary = aies_bridge::replay::replay(&cli.config, args).await?;
        let verb = if args.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        println!("{summary}\n{verb} {} dead letters", summary.matched);
        return Ok(());
    }
    if let Some(Command::Produce(args)) = &cli.command {
        let summary = aies_bridge::produce::produce(&cli.config, args).await?;
        println!("{summary}");
        if summary.failed > 0 || summary.unconfirmed > 0 {
            std::process::exit(1);
        }
        return Ok(());
    }
    let config = cli.config;
    let bridge = aies_bridge::Bridge::bind(config).await?;
    bridge.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    // Do not wait on a Kafka client still closing against a dead broker.
    std::process::exit(0)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
