//! `aies-up` (what `make up` runs) owns its processes: a signal stops them
//! all in order, a second one refuses to start and says why.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aies_tests::stack::{self, Setup};

use crate::fake_llm::FakeLlm;

fn up_command(setup: &Setup, data: &std::path::Path) -> Command {
    let p = setup.ports;
    let mut cmd = Command::new(stack::binary("aies-up"));
    cmd.env("AIES_DATA_DIR", data)
        .env("AIES_MANIFEST", crate::harness::manifest())
        .env("AIES_LISTEN", format!("127.0.0.1:{}", p.http))
        .env("AIES_BRIDGE_LISTEN", format!("127.0.0.1:{}", p.bridge))
        .env(
            "AIES_METRICS_LISTEN",
            format!("127.0.0.1:{}", crate::harness::free_port()),
        )
        .env("REDIS_PORT", p.redis.to_string())
        .env("KAFKA_BOOTSTRAP_SERVERS", setup.bootstrap());
    stack::tie_to_test(&mut cmd);
    cmd
}

/// Runs a second `aies-up` to its end (it must refuse at once).
fn refused(mut cmd: Command) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    assert!(!status.success(), "a second aies-up must not start");
    String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aies_up_refuses_a_second_start_and_stops_everything_on_a_signal() {
    let fake = FakeLlm::start().await;
    let setup = Setup::new(&fake);
    let data = setup.dir.path().join("up");
    // As under `setsid`: a process group of its own, no terminal.
    let mut first = up_command(&setup, &data);
    first
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = stack::Proc::spawn("aies-up", &mut first);
    let health = format!("http://127.0.0.1:{}/health", setup.ports.bridge);
    let deadline = Instant::now() + Duration::from_secs(180);
    while reqwest::get(&health).await.is_err() {
        assert!(Instant::now() < deadline, "aies-up did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let children = crate::faults::children(first.pid());
    assert_eq!(children.len(), 4, "Redis, Tansu, host, bridge");
    // Its Redis has a memory limit and evicts nothing (task records, keys).
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", setup.ports.redis)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (_, policy): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (_, limit): (String, u64) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((policy.as_str(), limit), ("noeviction", 2 << 30));
    // The bridge's key is kept for the next run, readable by its owner only.
    let key = data.join("bridge-key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&key).unwrap().trim().len() >= 16);

    // The same data: refused, naming the one running.
    let text = refused(up_command(&setup, &data));
    assert!(
        text.contains("already running") && text.contains(&first.pid().to_string()),
        "{text}"
    );
    // Other data, same ports: refused, naming each port and its holder.
    let text = refused(up_command(&setup, &setup.dir.path().join("other")));
    assert!(text.contains("nothing was started"), "{text}");
    let redis = format!(
        "port {} for redis is taken by redis-server",
        setup.ports.redis
    );
    assert!(text.contains(&redis), "{text}");
    let host = format!("port {} for host is taken by aies-host", setup.ports.http);
    assert!(text.contains(&host), "{text}");

    // SIGINT to the whole process group, as a terminal's Ctrl-C sends.
    let group = rustix::process::Pid::from_raw(first.pid() as i32).unwrap();
    rustix::process::kill_process_group(group, rustix::process::Signal::INT).unwrap();
    let status = first.terminate(Duration::from_secs(60));
    // terminate() sends SIGTERM too: a second signal must not cut the stop short.
    assert!(status.unwrap().success());
    for pid in children {
        assert!(!crate::faults::alive(pid), "child {pid} outlived aies-up");
    }
}
