//! The app reaching Redis over TLS (issue 24 ask 5). The Redis that `make
//! setup` installs is built without TLS, so stunnel (Debian's) terminates
//! TLS in front of it, with a certificate for 127.0.0.1 from a CA made
//! here: `aies-host` runs as a process with `redis_scheme=rediss` and the CA
//! in `SSL_CERT_FILE` (as a user gives a private CA, to Spin too), and a
//! whole round goes through: the task through Kafka, its cache fill through
//! the Redis trigger, the exact hit, the member report. The port takes TLS
//! only: a plain client gets no answer from it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::fake_llm::FakeLlm;
use aies_tests::stack::{listening, Proc, Setup};

/// A CA and a certificate it signed for 127.0.0.1, by `openssl`.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=aies test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

/// stunnel on `accept`, passing TLS connections on to Redis at `redis`.
async fn stunnel(dir: &Path, accept: u16, redis: u16) -> Proc {
    let conf = dir.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[redis]\naccept = 127.0.0.1:{accept}\n\
             connect = 127.0.0.1:{redis}\ncert = {cert}\nkey = {key}\n",
            cert = dir.join("server.pem").display(),
            key = dir.join("server.key").display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("stunnel.log")).unwrap();
    let proc = Proc::spawn(
        "stunnel",
        Command::new("stunnel")
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    assert!(
        listening(accept, Duration::from_secs(10)).await,
        "stunnel did not listen: {}",
        std::fs::read_to_string(dir.join("stunnel.log")).unwrap_or_default()
    );
    proc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_reaches_redis_over_tls() {
    let fake = FakeLlm::start().await;
    let mut setup = Setup::new(&fake);
    let tls = tempfile::tempdir().unwrap();
    certificates(tls.path());
    let _redis = setup.start_redis().await;
    let plain_port = setup.ports.redis;
    // Everything of the app reaches Redis through stunnel's port.
    setup.ports.redis = crate::harness::free_port();
    let _stunnel = stunnel(tls.path(), setup.ports.redis, plain_port).await;
    let ca = tls.path().join("ca.pem").to_str().unwrap().to_string();
    setup.host_env = vec![
        ("SPIN_VARIABLE_REDIS_SCHEME".into(), "rediss".into()),
        ("SSL_CERT_FILE".into(), ca),
    ];
    let _broker = setup.start_broker().await;
    let _host = setup.start_host().await;
    let _bridge = setup.start_bridge().await;

    // The port answers TLS only: a plain PING gets nothing back.
    let plain = redis::Client::open(format!("redis://127.0.0.1:{}", setup.ports.redis)).unwrap();
    let pinged = tokio::time::timeout(Duration::from_secs(5), async {
        let mut conn = plain.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    })
    .await;
    assert!(
        !matches!(pinged, Ok(Ok(_))),
        "a plain client was answered: {pinged:?}"
    );

    let base = format!("http://127.0.0.1:{}", setup.ports.http);
    let client = reqwest::Client::new();
    let prompt = "What is the boiling point of water at sea level?";
    let ask = || async {
        let r = client
            .post(format!("{base}/process"))
            .json(&serde_json::json!({ "prompt": prompt }))
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let (status, accepted) = ask().await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["task_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let task: serde_json::Value = client
            .get(format!("{base}/task/{id}?wait=5"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if task["status"] == "SUCCESS" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not done: {task}\n{}",
            setup.log_text("host")
        );
    }
    // Its answer reached the cache through the Redis trigger (rediss too).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, again) = ask().await;
        if status == 200 {
            assert_eq!(again["cache"]["tier"], "exact", "{again}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cache hit: {again}\n{}",
            setup.log_text("host")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats: serde_json::Value = client
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["members"]["apps"].as_array().unwrap().len(),
        1,
        "{stats}"
    );
    let log = setup.log_text("host");
    assert!(
        log.contains("rediss://"),
        "the host names its TLS trigger address:\n{log}"
    );
}
