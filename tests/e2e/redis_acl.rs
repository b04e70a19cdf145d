//! The app reaching Redis as an ACL user (issue 24 ask 5): every component
//! connection, the Redis trigger and the host's member report authenticate
//! as `redis_username` with `redis_password` (secret variables), with the
//! rights docs/operations.md recommends; a password that stops working
//! makes the app answer 503 without showing it.

use crate::fake_llm::FakeLlm;
use crate::harness::{Options, System};
use std::time::{Duration, Instant};

const USER: &str = "aies-app";
const PASSWORD: &str = "7f1c0e9a4b2d8e6f0a1b2c3d4e5f6a7b";
/// docs/operations.md's rules: every key and channel, no admin command.
const RULES: &str = "on >7f1c0e9a4b2d8e6f0a1b2c3d4e5f6a7b ~* &* +@all -@admin";

/// `CLIENT LIST`'s users, one per connection but the asking one's.
async fn users(system: &System) -> Vec<String> {
    let mut conn = system.redis.connection(0).await;
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    list.lines()
        .filter(|l| !l.starts_with(&format!("id={me} ")))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("user=")))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_reaches_redis_as_an_acl_user_only() {
    let fake = FakeLlm::start().await;
    let mut options = Options::new("redis-acl").llm(&fake, "openai");
    options.redis_user = Some((USER, RULES, PASSWORD));
    let system = System::start(options).await;

    // A whole round: the answer stored, its cache fill through the Redis
    // trigger, a hit for its paraphrase, the dashboard's figures.
    let done = system.complete("What is the capital of France?").await;
    assert_eq!(done.status.as_str(), "SUCCESS");
    system.wait_filled(&done.task_id).await;
    let (status, hit) = system
        .process("What's the capital city of France?", None)
        .await;
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["cache"]["tier"], "semantic", "{hit}");
    let (status, stats) = system.get_json("/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert!(stats["redis"]["used_memory"].as_u64().is_some(), "{stats}");
    assert_eq!(
        stats["members"]["apps"].as_array().unwrap().len(),
        1,
        "{stats}"
    );

    // Every connection the app holds is the ACL user's (the harness's own
    // connections, made before, may linger a moment).
    let started = Instant::now();
    loop {
        let users = users(&system).await;
        let app = users.iter().filter(|u| *u == USER).count();
        if app >= 2 && users.iter().all(|u| u == USER) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "connections by user: {users:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The password changes under the app: its connections are cut, it
    // cannot come back, and says so without showing the password.
    let mut conn = system.redis.connection(0).await;
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(USER)
        .arg("resetpass")
        .arg(">another-password")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(USER)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (status, body) = system.process("A question nobody asked yet", None).await;
    assert_eq!(status, 503, "{body}");
    let (health, why) = system.get_json("/health").await;
    assert_eq!(health, 503, "{why}");
    for text in [body.to_string(), why.to_string()] {
        assert!(!text.contains(PASSWORD), "the password shown: {text}");
    }
}
