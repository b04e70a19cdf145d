//! The child processes: started in order, watched, stopped in reverse order.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How to start one service.
pub struct Spec {
    pub name: &'static str,
    pub listen: Option<SocketAddr>,
    /// How long it may take to stop after SIGTERM before it gets SIGKILL.
    grace: Duration,
    command: Command,
    program: PathBuf,
}

impl Spec {
    pub fn new(
        name: &'static str,
        program: PathBuf,
        listen: Option<SocketAddr>,
        grace: Duration,
    ) -> Self {
        Self {
            name,
            listen,
            grace,
            command: Command::new(&program),
            program,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }
}

/// Startup was cut short by a signal.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// SIGINT, SIGTERM and SIGHUP.
pub struct Signals(Signal, Signal, Signal);

impl Signals {
    pub fn new() -> Result<Self> {
        Ok(Self(
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ))
    }

    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.0.recv() => "SIGINT",
            _ = self.1.recv() => "SIGTERM",
            _ = self.2.recv() => "SIGHUP",
        }
    }
}

struct Service {
    name: &'static str,
    grace: Duration,
    child: Child,
}

pub enum Ended {
    Signal(&'static str),
    Exited(&'static str, ExitStatus),
}

#[derive(Default)]
pub struct Running(Vec<Service>);

impl Running {
    /// Starts a service and waits until it listens (it exiting first, or a
    /// signal, ends the wait with an error).
    pub async fn start(
        &mut self,
        mut spec: Spec,
        logs: &Path,
        signals: &mut Signals,
    ) -> Result<()> {
        anyhow::ensure!(
            spec.program.exists(),
            "{} does not exist: run `make build` (or `make setup`)",
            spec.program.display()
        );
        let log_path = logs.join(format!("{}.log", spec.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        spec.command
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C is ours to handle.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child
        // between fork and exec.
        unsafe {
            spec.command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let child = spec
            .command
            .spawn()
            .with_context(|| format!("starting {}", spec.program.display()))?;
        println!(
            "==> {} started (pid {})",
            spec.name,
            child.id().unwrap_or(0)
        );
        self.0.push(Service {
            name: spec.name,
            grace: spec.grace,
            child,
        });
        let Some(addr) = spec.listen else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            let service = self.0.last_mut().expect("just pushed");
            if let Some(status) = service.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening on {addr}; see {}",
                    spec.name,
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within 120 s; see {}",
                    spec.name,
                    log_path.display()
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                sig = signals.recv() => {
                    println!("{sig}: stopping");
                    return Err(Interrupted.into());
                }
            }
        }
    }

    /// Waits for a signal, or for a service to exit on its own.
    pub async fn watch(&mut self, signals: &mut Signals) -> Ended {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                sig = signals.recv() => return Ended::Signal(sig),
                _ = tick.tick() => {
                    for s in &mut self.0 {
                        if let Ok(Some(status)) = s.child.try_wait() {
                            return Ended::Exited(s.name, status);
                        }
                    }
                }
            }
        }
    }

    /// Stops every service, the last started first.
    pub async fn stop_all(&mut self) {
        while let Some(mut s) = self.0.pop() {
            if s.child.try_wait().ok().flatten().is_some() {
                continue;
            }
            print!("==> stopping {}...", s.name);
            if let Some(pid) = s
                .child
                .id()
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            match tokio::time::timeout(s.grace, s.child.wait()).await {
                Ok(_) => println!(" stopped"),
                Err(_) => {
                    println!(" still running after {:?}; killing it", s.grace);
                    let _ = s.child.kill().await;
                }
            }
        }
    }
}
