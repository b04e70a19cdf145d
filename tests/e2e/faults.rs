//! Fault tests: 3,000 events through the real broker, Redis Stack and the
//! wasm components while one process (or all of them) dies. Each ends with
//! every event having exactly one SUCCESS record and at least one result on
//! `datos_procesados`, and the LLM called again only for what was in flight.
//! Each prints its events, duplicates and recovery time.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::fake_llm::FakeLlm;
use aies_tests::stack::{self, Proc, Setup, Stack, IN_FLIGHT};

const N: usize = 3_000;
/// How long the whole batch may take after a fault.
const WITHIN: Duration = Duration::from_secs(300);

/// A fake LLM taking a little time, so a fault lands with events in flight.
async fn llm() -> FakeLlm {
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_millis(20));
    fake
}

/// Waits until the result topic grows past `count`; returns how long it took.
async fn progress_after(setup: &Setup, count: usize, since: Instant) -> Duration {
    while setup.result_count() <= count {
        assert!(
            since.elapsed() < WITHIN,
            "no progress {WITHIN:?} after the fault"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    since.elapsed()
}

/// How often the relay's watchdog found its group stalled, from its log.
fn stalls(log: &str) -> String {
    format!(
        "the relay rejoined a stalled group {} times",
        log.matches("relay stalled").count()
    )
}

/// Produces the batch and waits until a quarter of it is done.
async fn batch_under_way(setup: &Setup, label: &str) -> usize {
    setup.produce(label, 0..N).await;
    setup.results(N / 4, WITHIN).await.unwrap();
    let done = setup.result_count();
    assert!(done < N, "the fault came after the batch: {done}");
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_with_sigkill_mid_batch_loses_nothing() {
    let fake = llm().await;
    let mut stack = Stack::start(Setup::new(&fake)).await;
    let done = batch_under_way(&stack.setup, "bridge-kill").await;
    stack.bridge.kill();
    let killed = Instant::now();
    // At once: the dead member is still in the group until its session ends.
    stack.bridge = stack.setup.start_bridge().await;
    let recovery = progress_after(&stack.setup, done, killed).await;
    let outcome = stack.assert_exactly_once(N, &fake, IN_FLIGHT).await;
    println!(
        "bridge SIGKILL: {outcome}; progress again {recovery:?} after the kill; {}",
        stalls(&stack.setup.log_text("bridge"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_batch_and_restarted_on_its_storage_loses_nothing() {
    let fake = llm().await;
    let mut stack = Stack::start(Setup::new(&fake)).await;
    let done = batch_under_way(&stack.setup, "broker-kill").await;
    stack.broker.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.broker = stack.setup.start_broker().await;
    let recovery = progress_after(&stack.setup, done, killed).await;
    let outcome = stack.assert_exactly_once(N, &fake, IN_FLIGHT).await;
    println!(
        "broker SIGKILL: {outcome}; progress again {recovery:?} after the kill; {}",
        stalls(&stack.setup.log_text("bridge"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_batch_and_restarted_from_its_append_only_file_loses_nothing() {
    let fake = llm().await;
    let mut stack = Stack::start(Setup::new(&fake)).await;
    let done = batch_under_way(&stack.setup, "redis-kill").await;
    stack.redis.kill();
    let killed = Instant::now();
    // Longer than the host's own reconnect attempts ride out.
    tokio::time::sleep(Duration::from_secs(8)).await;
    stack.redis = stack.setup.start_redis().await;
    let recovery = progress_after(&stack.setup, done, killed).await;
    let outcome = stack.assert_exactly_once(N, &fake, IN_FLIGHT).await;
    println!("Redis SIGKILL: {outcome}; progress again {recovery:?} after the kill");
    let log = stack.setup.log_text("bridge");
    assert!(
        log.contains("the pipeline is unavailable"),
        "the bridge should say it held events while Redis was down"
    );
    let log = stack.setup.log_text("host");
    assert!(
        log.contains("Redis trigger lost its connection")
            && log.contains("Redis trigger reconnected"),
        "the host's Redis trigger should say it lost Redis and came back:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_killed_mid_invoke_and_restarted_loses_nothing() {
    let fake = llm().await;
    let mut stack = Stack::start(Setup::new(&fake)).await;
    let done = batch_under_way(&stack.setup, "host-kill").await;
    stack.host.kill();
    let killed = Instant::now();
    stack.host = stack.setup.start_host().await;
    let recovery = progress_after(&stack.setup, done, killed).await;
    let outcome = stack.assert_exactly_once(N, &fake, IN_FLIGHT).await;
    println!("host SIGKILL: {outcome}; progress again {recovery:?} after the kill");
}

/// Waits until half a slot's worth of LLM calls has started.
async fn invoking(fake: &FakeLlm) {
    let since = Instant::now();
    while fake.calls() < IN_FLIGHT / 2 {
        assert!(since.elapsed() < WITHIN, "no invocation started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_sent_sigterm_mid_invoke_finishes_them_first() {
    // Slow answers: a whole slot's worth of invocations is in flight when
    // the signal comes.
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_secs(2));
    let mut stack = Stack::start(Setup::new(&fake)).await;
    let n = IN_FLIGHT * 3;
    stack.setup.produce("host-term", 0..n).await;
    invoking(&fake).await;
    let asked = Instant::now();
    // Its drain timeout is 25 s; these finish within 2 s.
    let status = stack.host.terminate(Duration::from_secs(30)).unwrap();
    let took = asked.elapsed();
    assert!(status.success(), "the host exited with {status}");
    stack.host = stack.setup.start_host().await;
    // Not one LLM call made again: what the host was serving finished, and
    // what came after the signal was refused before reaching a component.
    let outcome = stack.assert_exactly_once(n, &fake, 0).await;
    println!("host SIGTERM: exited 0 in {took:?}; {outcome}");
}

/// The drain's limit: answers that would take 60 s are cut when
/// `AIES_DRAIN_TIMEOUT_SECS` (here 2) runs out, the host still exits 0
/// soon after, and the bridge's redelivery to the next host loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_runs_out_cuts_what_is_left_and_loses_nothing() {
    let fake = FakeLlm::start().await;
    fake.set_delay(Duration::from_secs(60));
    let mut setup = Setup::new(&fake);
    setup
        .host_env
        .push(("AIES_DRAIN_TIMEOUT_SECS".into(), "2".into()));
    let mut stack = Stack::start(setup).await;
    let n = IN_FLIGHT;
    stack.setup.produce("host-drain-out", 0..n).await;
    invoking(&fake).await;
    let asked = Instant::now();
    let status = stack.host.terminate(Duration::from_secs(20)).unwrap();
    let took = asked.elapsed();
    assert!(status.success(), "the host exited with {status}");
    assert!(
        stack
            .setup
            .log_text("host")
            .contains("after the drain timeout are cut"),
        "the host says it cut requests:\n{}",
        stack.setup.log_text("host")
    );
    fake.set_delay(Duration::ZERO);
    stack.host = stack.setup.start_host().await;
    // Every cut call is made again, nothing more.
    let outcome = stack.assert_exactly_once(n, &fake, n).await;
    println!("host SIGTERM, drain ran out: exited 0 in {took:?}; {outcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_sent_sigterm_mid_run_exits_0_within_its_grace_period() {
    let fake = llm().await;
    let mut stack = Stack::start(Setup::new(&fake)).await;
    let done = batch_under_way(&stack.setup, "bridge-term").await;
    let asked = Instant::now();
    // Its grace: 30 s to drain events in flight, 10 s for the final commit.
    let status = stack.bridge.terminate(Duration::from_secs(45)).unwrap();
    let took = asked.elapsed();
    assert!(status.success(), "the bridge exited with {status}");
    stack.bridge = stack.setup.start_bridge().await;
    let recovery = progress_after(&stack.setup, done, asked).await;
    let outcome = stack.assert_exactly_once(N, &fake, IN_FLIGHT).await;
    println!("bridge SIGTERM: exited 0 in {took:?}; {outcome}; progress again {recovery:?}");
}

/// `aies-up` with its own data and ports, the LLM pointed at `fake`.
pub fn aies_up(setup: &Setup, fake: &FakeLlm, data: &std::path::Path) -> Proc {
    aies_up_with(setup, fake, data, &[])
}

/// [`aies_up`] with more (or other) environment variables.
pub fn aies_up_with(
    setup: &Setup,
    fake: &FakeLlm,
    data: &std::path::Path,
    env: &[(&str, &str)],
) -> Proc {
    let p = setup.ports;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(setup.dir.path().join("logs/aies-up.log"))
        .unwrap();
    Proc::spawn(
        "aies-up",
        Command::new(stack::binary("aies-up"))
            .env("AIES_DATA_DIR", data)
            .env("AIES_MANIFEST", crate::harness::manifest())
            .env("AIES_LISTEN", format!("127.0.0.1:{}", p.http))
            .env("AIES_BRIDGE_LISTEN", format!("127.0.0.1:{}", p.bridge))
            // Not the default 3001: two tests run aies-up at once.
            .env(
                "AIES_METRICS_LISTEN",
                format!("127.0.0.1:{}", crate::harness::free_port()),
            )
            .env("REDIS_HOST", "127.0.0.1")
            .env("REDIS_PORT", p.redis.to_string())
            .env("KAFKA_BOOTSTRAP_SERVERS", setup.bootstrap())
            .env("OPENAI_BASE_URL", fake.base_url())
            .env("OPENAI_API_KEY", crate::fake_llm::OPENAI_KEY)
            .env("AIES_MAX_IN_FLIGHT", IN_FLIGHT.to_string())
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    )
}

/// Waits until the bridge started by `aies-up` answers.
pub async fn up_and_running(setup: &Setup) {
    let health = format!("http://127.0.0.1:{}/health", setup.ports.bridge);
    let deadline = Instant::now() + Duration::from_secs(180);
    while reqwest::get(&health).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "aies-up did not come up:\n{}",
            setup.log_text("aies-up")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The processes whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid ...: comm may hold spaces.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Whether `pid` still exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
        state != Some('Z')
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_killed_at_once_then_make_up_again_loses_nothing() {
    let fake = llm().await;
    let setup = Setup::new(&fake);
    let data = setup.dir.path().join("up");
    let mut up = aies_up(&setup, &fake, &data);
    up_and_running(&setup).await;
    let done = batch_under_way(&setup, "power-cut").await;
    // The OOM killer, a power cut: everything at once, nobody says goodbye.
    let mut victims = children(up.pid());
    assert_eq!(
        victims.len(),
        4,
        "aies-up starts Redis, Tansu, host, bridge"
    );
    victims.push(up.pid());
    for pid in &victims {
        stack::signal(*pid, rustix::process::Signal::KILL);
    }
    up.kill();
    let killed = Instant::now();
    // Gone for good, their ports closed, as after a power cut (a process
    // whose main thread is a zombie may still hold its sockets).
    let p = setup.ports;
    while victims.iter().any(|pid| alive(*pid))
        || [p.redis, p.kafka, p.http, p.bridge]
            .iter()
            .any(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_err())
    {
        assert!(killed.elapsed() < Duration::from_secs(20), "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut up = aies_up(&setup, &fake, &data);
    up_and_running(&setup).await;
    let recovery = progress_after(&setup, done, killed).await;
    let results = setup.results(N, WITHIN).await.unwrap();
    let outcome =
        stack::assert_exactly_once(setup.ports.redis, &results, N, fake.calls(), IN_FLIGHT).await;
    let log = std::fs::read_to_string(data.join("logs/bridge.log")).unwrap_or_default();
    println!(
        "all SIGKILL, aies-up again: {outcome}; progress again {recovery:?} after the kill; {}",
        stalls(&log)
    );
    let status = up.terminate(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "aies-up exited with {status}");
}

/// The child of `parent` running `program` (its `comm`).
fn child_named(parent: u32, program: &str) -> Option<u32> {
    children(parent).into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == program)
    })
}

/// A broker whose process lives but answers nothing (as Tansu 0.6 after a
/// panic in its storage task, which kept its port): `aies-up`'s round trip
/// sees it, kills it and starts it again, and the batch completes with
/// nothing lost; the restart is counted where the dashboard reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_answering_is_restarted_by_aies_up() {
    let fake = llm().await;
    let setup = Setup::new(&fake);
    let data = setup.dir.path().join("up");
    let mut up = aies_up(&setup, &fake, &data);
    up_and_running(&setup).await;
    let done = batch_under_way(&setup, "broker-frozen").await;
    let frozen = child_named(up.pid(), "tansu").expect("aies-up runs tansu");
    stack::signal(frozen, rustix::process::Signal::STOP);
    let stopped = Instant::now();
    let restarted = loop {
        match child_named(up.pid(), "tansu") {
            Some(pid) if pid != frozen => break pid,
            _ => {}
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(60),
            "the frozen broker was not restarted:\n{}",
            setup.log_text("aies-up")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let detected = stopped.elapsed();
    assert!(!alive(frozen), "the frozen broker was killed");
    let recovery = progress_after(&setup, done, stopped).await;
    let results = setup.results(N, WITHIN).await.unwrap();
    let outcome =
        stack::assert_exactly_once(setup.ports.redis, &results, N, fake.calls(), IN_FLIGHT).await;

    let log = setup.log_text("aies-up");
    assert!(log.contains("tansu stopped answering"), "{log}");
    let stats: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{}/stats", setup.ports.http))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        stats["services"]["tansu"]["restarts"],
        1,
        "{stats}\n{}",
        setup.log_text("aies-up")
    );
    assert!(
        stats["services"]["tansu"]["last_reason"]
            .as_str()
            .is_some_and(|r| r.contains("metadata")),
        "{stats}"
    );
    assert_eq!(
        stats["services"]["redis"]["restarts"],
        serde_json::Value::Null
    );
    assert_eq!(stats["kafka"]["broker_up"], true, "{stats}");
    // The new broker's checks: a failure or two under load is no restart.
    let after = &log[log.find("tansu stopped answering").unwrap()..];
    let failed = after.matches("==> tansu: check").count();
    println!(
        "broker frozen (SIGSTOP): restarted as pid {restarted} {detected:?} later; {outcome}; \
         progress again {recovery:?} after the freeze; {failed} failed checks of the new broker"
    );
    let status = up.terminate(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "aies-up exited with {status}");
}

/// The relay's own start, repeated: the bridge stopped and started 20 times
/// against one broker with events waiting, half the time with SIGKILL (the
/// dead member still in the group when the next one joins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_starts_consuming_within_30_s_twenty_times_running() {
    const ROUNDS: usize = 20;
    let fake = llm().await;
    let mut stack = Stack::start(Setup::new(&fake)).await;
    stack
        .bridge
        .terminate(Duration::from_secs(45))
        .expect("stopped");
    let per_round = N / ROUNDS;
    let mut slowest = Duration::ZERO;
    for round in 0..ROUNDS {
        let before = stack.setup.result_count();
        stack
            .setup
            .produce(
                &format!("restart-{round}"),
                round * per_round..(round + 1) * per_round,
            )
            .await;
        let started = Instant::now();
        let mut bridge = stack.setup.start_bridge().await;
        while stack.setup.result_count() <= before {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {round}: not consuming 30 s after the start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest = slowest.max(started.elapsed());
        if round % 2 == 0 {
            bridge.terminate(Duration::from_secs(45)).unwrap();
        } else {
            bridge.kill();
        }
    }
    stack.bridge = stack.setup.start_bridge().await;
    let outcome = stack
        .assert_exactly_once(N, &fake, IN_FLIGHT * ROUNDS / 2)
        .await;
    println!(
        "{ROUNDS} bridge restarts: first result at most {slowest:?} after a start; {outcome}; {}",
        stalls(&stack.setup.log_text("bridge"))
    );
}

/// The whole stack (`aies-up`) started on fresh data 20 times, events
/// waiting each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_stack_on_fresh_data_consumes_within_30_s_twenty_times_running() {
    const ROUNDS: usize = 20;
    let per_round = N / ROUNDS;
    let fake = llm().await;
    let mut slowest = Duration::ZERO;
    for round in 0..ROUNDS {
        let setup = Setup::new(&fake);
        let calls = fake.calls();
        let started = Instant::now();
        let mut up = aies_up(&setup, &fake, &setup.dir.path().join("up"));
        up_and_running(&setup).await;
        setup.produce(&format!("fresh-{round}"), 0..per_round).await;
        while setup.result_count() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {round}: nothing consumed 30 s after aies-up started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest = slowest.max(started.elapsed());
        let results = setup.results(per_round, WITHIN).await.unwrap();
        stack::assert_exactly_once(
            setup.ports.redis,
            &results,
            per_round,
            fake.calls() - calls,
            0,
        )
        .await;
        let status = up.terminate(Duration::from_secs(60)).unwrap();
        assert!(
            status.success(),
            "round {round}: aies-up exited with {status}"
        );
    }
    println!(
        "{ROUNDS} fresh stacks, {N} events: first result at most {slowest:?} after aies-up started"
    );
}
