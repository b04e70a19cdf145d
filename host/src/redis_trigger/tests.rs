//! The Redis trigger alone: subscriptions run against a fake Redis, each
//! message handed to a fake handler that records it (and fails on demand).

use super::*;
use crate::test_support::FakeRedis;
use std::sync::Mutex;

/// Records `(component, payload)`; fails the payload `fail`, and never
/// finishes the payload `hang`.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(usize, Vec<u8>)>>,
    changed: tokio::sync::Notify,
}

impl MessageHandler for Recorder {
    fn on_message(
        self: Arc<Self>,
        component: usize,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            let fail = payload == b"fail";
            let payload_hangs = payload == b"hang";
            self.seen.lock().unwrap().push((component, payload));
            self.changed.notify_waiters();
            if fail {
                anyhow::bail!("asked to fail");
            }
            if payload_hangs {
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }

    fn component_name(&self, component: usize) -> &str {
        ["a", "b", "c"][component]
    }
}

impl Recorder {
    /// What was handled once `n` messages were, sorted (they run concurrently).
    async fn wait_for(&self, n: usize) -> Vec<(usize, Vec<u8>)> {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let changed = self.changed.notified();
                if self.seen.lock().unwrap().len() >= n {
                    return;
                }
                changed.await;
            }
        })
        .await;
        let mut seen = self.seen.lock().unwrap().clone();
        assert!(waited.is_ok(), "{n} messages awaited, {} seen", seen.len());
        seen.sort();
        seen
    }
}

fn subscription(address: &str, channel: &str, component: usize) -> RedisSubscription {
    RedisSubscription {
        address: address.into(),
        channel: channel.into(),
        component,
    }
}

#[test]
fn one_connection_per_server_for_all_its_channels() {
    let servers = by_server(&[
        subscription("redis://a", "x", 0),
        subscription("redis://b", "x", 1),
        subscription("redis://a", "y", 2),
        subscription("redis://a", "x", 3),
    ]);
    assert_eq!(servers.len(), 2);
    assert_eq!(servers["redis://a"]["x"], [0, 3]);
    assert_eq!(servers["redis://a"]["y"], [2]);
    assert_eq!(servers["redis://b"]["x"], [1]);
}

#[test]
fn logs_never_show_a_password() {
    assert_eq!(
        shown("redis://:s3cret@cache:6379"),
        "redis://***@cache:6379"
    );
    assert_eq!(shown("redis://cache:6379"), "redis://cache:6379");
    assert_eq!(
        shown("rediss://aies:p%40ss@cache:6380"),
        "rediss://***@cache:6380"
    );
}

#[tokio::test]
async fn each_message_goes_to_every_component_on_its_channel() {
    let redis = FakeRedis::start().await;
    let handler = Arc::new(Recorder::default());
    let subscriptions = vec![
        subscription(&redis.url(), "events", 0),
        subscription(&redis.url(), "other", 1),
        subscription(&redis.url(), "events", 2),
    ];
    let trigger = tokio::spawn(run(handler.clone(), subscriptions));
    redis.subscribed("events", 1).await;
    redis.subscribed("other", 1).await;
    assert_eq!(redis.connections(), 1, "one subscriber per server");
    redis.publish("events", b"e1");
    redis.publish("other", b"o1");
    redis.publish("nobody", b"n1");
    let seen = handler.wait_for(3).await;
    let expected = [(0, b"e1"), (1, b"o1"), (2, b"e1")];
    let expected: Vec<(usize, Vec<u8>)> = expected.iter().map(|(c, p)| (*c, p.to_vec())).collect();
    assert_eq!(seen, expected);
    trigger.abort();
}

#[tokio::test]
async fn a_failed_message_or_a_lost_connection_does_not_stop_the_trigger() {
    let redis = FakeRedis::start().await;
    let handler = Arc::new(Recorder::default());
    let subscriptions = vec![subscription(&redis.url(), "events", 0)];
    let trigger = tokio::spawn(run(handler.clone(), subscriptions));
    redis.subscribed("events", 1).await;
    // More failures than there are workers: none of them may end one.
    let failures = MAX_CONCURRENT_MESSAGES + 1;
    for _ in 0..failures {
        redis.publish("events", b"fail");
    }
    handler.wait_for(failures).await;
    redis.publish("events", b"after a failure");
    handler.wait_for(failures + 1).await;
    // Redis restarts: the trigger subscribes again, on a new connection
    // (the old one's subscription is gone before the trigger sees it close).
    redis.hang_up();
    redis.connected(2).await;
    redis.subscribed("events", 1).await;
    redis.publish("events", b"after a reconnect");
    let seen = handler.wait_for(failures + 2).await;
    assert!(
        seen.contains(&(0, b"after a reconnect".to_vec())),
        "{seen:?}"
    );
    trigger.abort();
}

#[tokio::test]
async fn a_backlog_on_one_channel_does_not_delay_another() {
    let redis = FakeRedis::start().await;
    let handler = Arc::new(Recorder::default());
    let subscriptions = vec![
        subscription(&redis.url(), "batch-fills", 0),
        subscription(&redis.url(), "api-fills", 1),
    ];
    let trigger = tokio::spawn(run(handler.clone(), subscriptions));
    redis.subscribed("batch-fills", 1).await;
    redis.subscribed("api-fills", 1).await;
    // Every worker of the first channel busy, and more waiting behind them.
    let stuck = MAX_CONCURRENT_MESSAGES + 10;
    for _ in 0..stuck {
        redis.publish("batch-fills", b"hang");
    }
    handler.wait_for(MAX_CONCURRENT_MESSAGES).await;
    redis.publish("api-fills", b"first");
    let seen = handler.wait_for(MAX_CONCURRENT_MESSAGES + 1).await;
    assert!(seen.contains(&(1, b"first".to_vec())), "{seen:?}");
    assert_eq!(seen.len(), MAX_CONCURRENT_MESSAGES + 1, "the backlog waits");
    trigger.abort();
}
