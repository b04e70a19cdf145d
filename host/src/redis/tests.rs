//! The Redis capability alone: a [`RedisState`] over a pool of its own,
//! asked through its host traits, against a fake Redis that counts the
//! connections it gets (and a real `redis-server` when one is installed).

use super::host::flatten;
use super::*;
use crate::bindings::redis::{HostConnection, RedisParameter, RedisResult};
use crate::test_support::{FakeRedis, RealRedis};
use redis::Value;

/// A run of a component allowed `hosts`, on a pool of its own.
fn state(hosts: &[String]) -> RedisState {
    let allowed = AllowedHosts::parse(hosts).unwrap();
    RedisState::new("test".into(), Arc::new(allowed), Arc::default())
}

/// A handle the guest would hold, by its rep.
fn handle(r: &Resource<Connection>) -> Resource<Connection> {
    Resource::new_own(r.rep())
}

#[tokio::test]
async fn an_address_not_allowed_is_refused_before_any_connection() {
    let redis = FakeRedis::start().await;
    let mut state = state(&[redis.url()]);
    // The same server, under a name or on a port the component was not given.
    for address in [
        format!("redis://localhost:{}", redis.port()),
        format!("redis://127.0.0.1:{}", redis.port() + 1),
        format!("rediss://127.0.0.1:{}", redis.port()),
        "not a url".to_string(),
    ] {
        let opened = state.open(address.clone()).await.unwrap();
        assert!(
            matches!(opened, Err(Error::InvalidAddress)),
            "{address}: {opened:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(redis.connections(), 0, "a refused address was connected to");
    // The allowed one does connect: the count above could have moved.
    state
        .open(format!("{}/0", redis.url()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(redis.connections(), 1);
}

#[tokio::test]
async fn a_run_holds_at_most_32_handles_on_one_shared_connection() {
    let redis = FakeRedis::start().await;
    let mut state = state(&[redis.url()]);
    let mut held = Vec::new();
    for _ in 0..MAX_HANDLES_PER_REQUEST {
        held.push(state.open(redis.url()).await.unwrap().unwrap());
    }
    let over = state.open(redis.url()).await.unwrap();
    assert!(matches!(over, Err(Error::TooManyConnections)), "{over:?}");
    assert_eq!(
        redis.connections(),
        1,
        "handles share the pooled connection"
    );

    // Dropping a handle frees its place; using it after is a trap.
    let dropped = held.pop().unwrap();
    let rep = dropped.rep();
    HostConnection::drop(&mut state, dropped).await.unwrap();
    let stale = Resource::<Connection>::new_own(rep);
    assert!(state.get(stale, "k".into()).await.is_err());
    let again = state.open(redis.url()).await.unwrap().unwrap();
    let reps: Vec<u32> = held.iter().map(Resource::rep).collect();
    assert!(!reps.contains(&again.rep()), "two live handles share a rep");
}

#[tokio::test]
async fn the_pool_keeps_at_most_16_addresses() {
    let redis = FakeRedis::start().await;
    let mut state = state(&[redis.url()]);
    // Distinct addresses (databases) of one server.
    let address = |db: usize| format!("{}/{db}", redis.url());
    for db in 0..MAX_ADDRESSES {
        let r = state.open(address(db)).await.unwrap().unwrap();
        HostConnection::drop(&mut state, r).await.unwrap();
    }
    let over = state.open(address(MAX_ADDRESSES)).await.unwrap();
    assert!(matches!(over, Err(Error::TooManyConnections)), "{over:?}");
    // A known address still opens, on its pooled connection.
    state.open(address(3)).await.unwrap().unwrap();
    assert_eq!(redis.connections(), MAX_ADDRESSES);
}

#[tokio::test]
async fn commands_and_their_errors_as_the_guest_sees_them() {
    let redis = FakeRedis::start().await;
    let mut state = state(&[redis.url()]);
    let r = state.open(redis.url()).await.unwrap().unwrap();
    basic_commands(&mut state, &r).await;
}

/// GET, SET, INCR (and its type error), DEL on key `k` of a fresh server.
async fn basic_commands(state: &mut RedisState, r: &Resource<Connection>) {
    assert_eq!(
        state.get(handle(r), "k".into()).await.unwrap().unwrap(),
        None
    );
    state
        .set(handle(r), "k".into(), b"41".to_vec())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        state.incr(handle(r), "k".into()).await.unwrap().unwrap(),
        42
    );
    let got = state.get(handle(r), "k".into()).await.unwrap().unwrap();
    assert_eq!(got.as_deref(), Some(&b"42"[..]));
    state
        .set(handle(r), "k".into(), b"text".to_vec())
        .await
        .unwrap()
        .unwrap();
    let incr = state.incr(handle(r), "k".into()).await.unwrap();
    assert!(matches!(incr, Err(Error::TypeError)), "{incr:?}");
    let deleted = state.del(handle(r), vec!["k".into(), "none".into()]).await;
    assert_eq!(deleted.unwrap().unwrap(), 1);
}

#[tokio::test]
async fn against_a_real_redis_when_one_is_installed() {
    let Some(redis) = RealRedis::start("against_a_real_redis_when_one_is_installed").await else {
        return;
    };
    let mut state = state(&[redis.url()]);
    let r = state.open(redis.url()).await.unwrap().unwrap();
    basic_commands(&mut state, &r).await;
    let members = vec!["a".to_string(), "b".to_string()];
    let added = state.sadd(handle(&r), "s".into(), members).await;
    assert_eq!(added.unwrap().unwrap(), 2);
    let removed = state.srem(handle(&r), "s".into(), vec!["a".into()]).await;
    assert_eq!(removed.unwrap().unwrap(), 1);
    let left = state.smembers(handle(&r), "s".into()).await.unwrap();
    assert_eq!(left.unwrap(), vec!["b".to_string()]);
    // `execute` answers flat, nested arrays in order.
    let args = |words: &[&str]| {
        let words = words
            .iter()
            .map(|w| RedisParameter::Binary(w.as_bytes().to_vec()));
        words.collect::<Vec<_>>()
    };
    let hset = args(&["h", "f", "v"]);
    let set = state
        .execute(handle(&r), "HSET".into(), hset)
        .await
        .unwrap();
    assert!(matches!(set.unwrap()[..], [RedisResult::Int64(1)]));
    let cmd = vec![RedisParameter::Int64(0)];
    let out = state.execute(handle(&r), "SCAN".into(), cmd).await.unwrap();
    let out = out.unwrap();
    assert!(
        matches!(&out[0], RedisResult::Binary(cursor) if cursor == b"0"),
        "{out:?}"
    );
    assert_eq!(out.len(), 3, "{out:?}");
    let unknown = state.execute(handle(&r), "NOSUCH".into(), vec![]).await;
    assert!(matches!(unknown.unwrap(), Err(Error::Other(_))));
    state
        .publish(handle(&r), "c".into(), b"hi".to_vec())
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn nested_replies_arrive_flat() {
    let reply = Value::Array(vec![
        Value::Int(1),
        Value::BulkString(b"k".to_vec()),
        Value::Array(vec![
            Value::BulkString(b"f".to_vec()),
            Value::BulkString(b"v".to_vec()),
        ]),
        Value::Nil,
    ]);
    let mut out = Vec::new();
    flatten(reply, &mut out).unwrap();
    assert_eq!(out.len(), 5);
    assert!(matches!(out[0], RedisResult::Int64(1)));
    assert!(matches!(&out[3], RedisResult::Binary(b) if b == b"v"));
    assert!(matches!(out[4], RedisResult::Nil));
    let mut out = Vec::new();
    assert!(flatten(Value::Map(vec![]), &mut out).is_err());
}

#[test]
fn only_a_command_that_never_left_is_sent_again() {
    let io = |kind| redis::RedisError::from(std::io::Error::new(kind, "gone"));
    let broken = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
    assert!(never_sent(&broken), "{broken}");
    // A reset may come after the command was written: it may have run.
    assert!(!never_sent(&io(std::io::ErrorKind::ConnectionReset)));
    assert!(!never_sent(&io(std::io::ErrorKind::TimedOut)));
}
