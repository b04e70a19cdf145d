//! The child processes: started in order, watched, restarted when they stop
//! answering, stopped in reverse order.
//!
//! Watching is by round trip, not by the process alone: a broker whose
//! process lives but whose storage has stopped (Tansu 0.6 after a panic in
//! its storage task) or that is frozen (SIGSTOP) listens on its port and
//! answers nothing. Every [`CHECK`] each service gets its [`Probe`]; after
//! [`FAILS`] failures in a row, or when its process has exited, it is
//! killed and started again, after a backoff that doubles with each restart
//! of the last 10 minutes (1 s to 30 s). More than [`MAX_RESTARTS`] in that
//! time is a crash loop: everything is stopped and `aies-up` exits with an
//! error naming the service.

use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::health::{self, Probe};

/// How often each service is checked.
pub const CHECK: Duration = Duration::from_secs(2);
/// Failed checks in a row before a service is restarted.
pub const FAILS: u32 = 3;
/// Restarts of one service within [`RESTART_WINDOW`] before `aies-up`
/// gives up on it.
pub const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(600);

/// How to start one service (again, when it is restarted).
pub struct Spec {
    pub name: &'static str,
    pub listen: Option<SocketAddr>,
    /// How long it may take to stop after SIGTERM before it gets SIGKILL.
    grace: Duration,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    probe: Probe,
    /// Run each time the service listens (the broker's store index).
    after_start: Option<Box<dyn Fn() -> Result<()>>>,
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
            program,
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            probe: Probe::None,
            after_start: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn probe(mut self, probe: Probe) -> Self {
        self.probe = probe;
        self
    }

    pub fn after_start(mut self, hook: impl Fn() -> Result<()> + 'static) -> Self {
        self.after_start = Some(Box::new(hook));
        self
    }

    fn command(&self, log: &Path) -> Result<Command> {
        let mut command = Command::new(&self.program);
        command.args(&self.args).envs(self.envs.iter().cloned());
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        command
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C is ours to handle.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child
        // between fork and exec.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        Ok(command)
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
    spec: Spec,
    child: Child,
    /// Failed checks in a row.
    fails: u32,
    /// When it was restarted, within the last [`RESTART_WINDOW`].
    restarts: VecDeque<Instant>,
    total_restarts: u64,
}

pub enum Ended {
    Signal(&'static str),
    /// A service restarted too often; why it was restarted the last time.
    CrashLoop(&'static str, String),
}

/// A restart, as the dashboard shows it (`aies:services` in Redis).
pub struct Restarted<'a> {
    pub name: &'static str,
    pub restarts: u64,
    pub reason: &'a str,
}

pub struct Running {
    services: Vec<Service>,
    logs: PathBuf,
}

impl Running {
    pub fn new(logs: &Path) -> Self {
        Self {
            services: Vec::new(),
            logs: logs.to_path_buf(),
        }
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// Starts a service and waits until it listens (it exiting first, or a
    /// signal, ends the wait with an error).
    pub async fn start(&mut self, spec: Spec, signals: &mut Signals) -> Result<()> {
        anyhow::ensure!(
            spec.program.exists(),
            "{} does not exist: run `make build` (or `make setup`)",
            spec.program.display()
        );
        let child = self.spawn(&spec)?;
        self.services.push(Service {
            spec,
            child,
            fails: 0,
            restarts: VecDeque::new(),
            total_restarts: 0,
        });
        let at = self.services.len() - 1;
        self.wait_listening(at, signals).await
    }

    fn spawn(&self, spec: &Spec) -> Result<Child> {
        let child = spec
            .command(&self.log_path(spec.name))?
            .spawn()
            .with_context(|| format!("starting {}", spec.program.display()))?;
        println!(
            "==> {} started (pid {})",
            spec.name,
            child.id().unwrap_or(0)
        );
        Ok(child)
    }

    async fn wait_listening(&mut self, at: usize, signals: &mut Signals) -> Result<()> {
        let log = self.log_path(self.services[at].spec.name);
        let service = &mut self.services[at];
        let Some(addr) = service.spec.listen else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                if let Some(hook) = &service.spec.after_start {
                    hook().with_context(|| format!("preparing {}", service.spec.name))?;
                }
                return Ok(());
            }
            if let Some(status) = service.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening on {addr}; see {}",
                    service.spec.name,
                    log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within 120 s; see {}",
                    service.spec.name,
                    log.display()
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

    /// Watches every service until a signal: one that exits or stops
    /// answering is restarted (`on_restart` tells the world).
    pub async fn watch(
        &mut self,
        signals: &mut Signals,
        mut on_restart: impl AsyncFnMut(Restarted<'_>),
    ) -> Ended {
        let mut tick = tokio::time::interval(CHECK);
        // A round of checks can outlast CHECK (a probe waits up to 3 s):
        // the next one still waits CHECK, not a burst of missed ticks that
        // would count three failures of one slow spell in a few seconds.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                sig = signals.recv() => return Ended::Signal(sig),
                _ = tick.tick() => {}
            }
            let Some((at, reason)) = self.first_failed().await else {
                continue;
            };
            match self.restart(at, &reason, signals).await {
                Ok(()) => {
                    let s = &self.services[at];
                    on_restart(Restarted {
                        name: s.spec.name,
                        restarts: s.total_restarts,
                        reason: &reason,
                    })
                    .await;
                }
                Err(e) if e.is::<Interrupted>() => return Ended::Signal("signal"),
                Err(e) => return Ended::CrashLoop(self.services[at].spec.name, format!("{e:#}")),
            }
        }
    }

    /// Checks every service once; the first that must be restarted, and why.
    async fn first_failed(&mut self) -> Option<(usize, String)> {
        let probes = self.services.iter().map(|s| health::check(&s.spec.probe));
        let answers = futures::future::join_all(probes).await;
        for (at, (service, answer)) in self.services.iter_mut().zip(answers).enumerate() {
            if let Ok(Some(status)) = service.child.try_wait() {
                return Some((at, format!("exited ({status})")));
            }
            match answer {
                Ok(()) => service.fails = 0,
                Err(e) => {
                    service.fails += 1;
                    println!(
                        "==> {}: check {} of {FAILS} failed: {e:#}",
                        service.spec.name, service.fails
                    );
                    if service.fails >= FAILS {
                        return Some((
                            at,
                            format!(
                                "stopped answering ({} checks in a row: {e:#})",
                                service.fails
                            ),
                        ));
                    }
                }
            }
        }
        None
    }

    async fn restart(&mut self, at: usize, reason: &str, signals: &mut Signals) -> Result<()> {
        let now = Instant::now();
        let service = &mut self.services[at];
        while service
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            service.restarts.pop_front();
        }
        if service.restarts.len() >= MAX_RESTARTS {
            bail!(
                "{} was restarted {MAX_RESTARTS} times in {} minutes and {reason}; giving up",
                service.spec.name,
                RESTART_WINDOW.as_secs() / 60
            );
        }
        let backoff =
            Duration::from_secs(1 << service.restarts.len().min(5)).min(Duration::from_secs(30));
        service.restarts.push_back(now);
        service.total_restarts += 1;
        service.fails = 0;
        println!(
            "==> {} {reason}: restarting it in {backoff:?} (restart {})",
            service.spec.name, service.total_restarts
        );
        // SIGKILL also ends a stopped (SIGSTOP) process.
        let _ = service.child.kill().await;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            sig = signals.recv() => {
                println!("{sig}: stopping");
                return Err(Interrupted.into());
            }
        }
        let child = self.spawn(&self.services[at].spec)?;
        self.services[at].child = child;
        self.wait_listening(at, signals).await
    }

    /// Stops every service, the last started first.
    pub async fn stop_all(&mut self) {
        while let Some(mut s) = self.services.pop() {
            if s.child.try_wait().ok().flatten().is_some() {
                continue;
            }
            print!("==> stopping {}...", s.spec.name);
            if let Some(pid) = s
                .child
                .id()
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            match tokio::time::timeout(s.spec.grace, s.child.wait()).await {
                Ok(_) => println!(" stopped"),
                Err(_) => {
                    println!(" still running after {:?}; killing it", s.spec.grace);
                    let _ = s.child.kill().await;
                }
            }
        }
    }
}
