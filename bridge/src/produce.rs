//! `aies-bridge produce`: the batch flow's producer. Sends N events to the
//! batch lane (`datos_crudos`), generated or read from a file, with a
//! progress bar and a summary (sent, failed, events/s).
//!
//! A file holds one event per line: a JSON object in the event format
//! (`{"prompt": ..., "tenant"?: ..., "use_cache"?: ..., "metadata"?: ...}`)
//! or plain text, which becomes the prompt. Blank lines are skipped; a line
//! that is neither a valid event nor text within the prompt limit is
//! counted as failed and named on the error output, not sent.
//!
//! Messages never time out inside the producer (see
//! [`crate::kafka::idempotent_producer`]): the command waits up to `--timeout`
//! for the broker to take them all, then reports those it did not confirm.

use aies_contract::{RawEvent, MAX_PROMPT_CHARS};
use anyhow::{bail, Context, Result};
use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::FutureRecord;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::{kafka, BridgeConfig};

/// Sends in flight at once (the producer batches them; `linger.ms` 5).
const WINDOW: usize = 1000;

#[derive(clap::Args, Clone, Debug)]
pub struct ProduceArgs {
    /// Events to send: generated ones, or at most this many lines of --file.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub count: usize,
    /// One event per line (JSON event or plain-text prompt); `-` for stdin.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Key generated events with `key-<i % keys>` (per-key order); unkeyed
    /// when 0.
    #[arg(long, default_value_t = 0)]
    pub keys: usize,
    /// No progress bar (for logs and scripts).
    #[arg(long)]
    pub quiet: bool,
    /// Seconds to wait for the broker to take every event; those not
    /// confirmed by then are reported (they may still be written).
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// What a run did.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub sent: usize,
    pub failed: usize,
    /// Handed to the producer, not confirmed by the broker within `--timeout`.
    pub unconfirmed: usize,
    pub seconds: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        };
        write!(f, "sent {}, failed {}", self.sent, self.failed)?;
        if self.unconfirmed > 0 {
            write!(
                f,
                ", unconfirmed {} (not acknowledged in time: they may still be written)",
                self.unconfirmed
            )?;
        }
        write!(f, ", {:.1} s, {rate:.0} events/s", self.seconds)
    }
}

/// One line of input: an event to send, or why it cannot be.
fn event_of(line: &str) -> Result<String> {
    let line = line.trim();
    if line.starts_with('{') {
        let event: RawEvent = serde_json::from_str(line).context("not a valid event")?;
        if event.prompt.trim().is_empty() || event.prompt.chars().count() > MAX_PROMPT_CHARS {
            bail!("prompt empty or over {MAX_PROMPT_CHARS} characters");
        }
        return Ok(line.to_string());
    }
    if line.chars().count() > MAX_PROMPT_CHARS {
        bail!("prompt over {MAX_PROMPT_CHARS} characters");
    }
    Ok(serde_json::json!({ "prompt": line }).to_string())
}

/// An event's key (if any) and payload.
type Keyed = (Option<String>, String);

/// The events to send, with the number of lines that could not be used.
fn events(args: &ProduceArgs) -> Result<(Vec<Keyed>, usize)> {
    let Some(path) = &args.file else {
        let generated = (0..args.count)
            .map(|i| {
                let key = (args.keys > 0).then(|| format!("key-{}", i % args.keys));
                let prompt = format!("Batch question {i}: what is special about the number {i}?");
                (key, serde_json::json!({ "prompt": prompt }).to_string())
            })
            .collect();
        return Ok((generated, 0));
    };
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let (mut out, mut bad) = (Vec::new(), 0);
    for (n, line) in text.lines().enumerate() {
        if out.len() == args.count {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        match event_of(line) {
            Ok(event) => out.push((None, event)),
            Err(e) => {
                bad += 1;
                eprintln!("line {}: {e:#}", n + 1);
            }
        }
    }
    Ok((out, bad))
}

pub async fn produce(config: &BridgeConfig, args: &ProduceArgs) -> Result<Summary> {
    let (events, bad) = events(args)?;
    let producer = kafka::idempotent_producer(config)?;
    let topic = config.raw_topic.as_str();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(events.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
            .expect("the template is valid"),
    );
    let started = Instant::now();
    let mut summary = Summary {
        failed: bad,
        ..Summary::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut queued = events.iter();
    let mut pending = FuturesUnordered::new();
    loop {
        while pending.len() < WINDOW {
            let Some((key, payload)) = queued.next() else {
                break;
            };
            let mut record = FutureRecord::to(topic).payload(payload.as_str());
            if let Some(k) = key {
                record = record.key(k.as_str());
            }
            pending.push(producer.send(record, Duration::from_secs(30)));
        }
        let next = match tokio::time::timeout_at(deadline, pending.next()).await {
            Ok(Some(result)) => result,
            Ok(None) => break,
            Err(_) => {
                summary.unconfirmed = pending.len() + queued.len();
                break;
            }
        };
        match next {
            Ok(_) => summary.sent += 1,
            Err((e, _)) => {
                summary.failed += 1;
                bar.suspend(|| eprintln!("not sent: {e}"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_events_or_are_refused() {
        let text = event_of("  What is Kafka?  ").unwrap();
        assert_eq!(text, r#"{"prompt":"What is Kafka?"}"#);
        let json = r#"{"prompt": "hi", "tenant": "acme"}"#;
        assert_eq!(event_of(json).unwrap(), json);
        assert!(event_of(r#"{"tenant": "acme"}"#).is_err(), "no prompt");
        assert!(event_of(r#"{"prompt": "  "}"#).is_err());
        assert!(event_of(&"x".repeat(MAX_PROMPT_CHARS + 1)).is_err());
    }

    #[test]
    fn generated_events_are_keyed_when_asked() {
        let args = ProduceArgs {
            count: 5,
            file: None,
            keys: 2,
            quiet: true,
            timeout: 1,
        };
        let (events, bad) = events(&args).unwrap();
        assert_eq!(bad, 0);
        let keys: Vec<_> = events.iter().map(|(k, _)| k.clone().unwrap()).collect();
        assert_eq!(keys, ["key-0", "key-1", "key-0", "key-1", "key-0"]);
    }
}
