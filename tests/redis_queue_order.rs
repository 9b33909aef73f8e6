//! A `Channel` on Redis keeps its order when values go back to the queue, and an idle
//! receiver does not take Redis's slow answer to a timed-out blocking pop for a stuck
//! link.

mod redis_util;

use std::time::{Duration, Instant};

use mixserve::sync::{Channel, Redis};
use redis_util::{RedisServer, redis_or_skip};

/// Connections Redis accepted so far.
fn connections(redis: &RedisServer) -> i64 {
    let text = match redis.query(&["INFO", "stats"]) {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("INFO: {other:?}"),
    };
    text.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_connections_received")
}

/// A dead process took `a`, then `b`: the reaper puts them back first in line, `a`
/// first. Popped from the wrong end of the processing list, they came back reversed.
#[test]
fn values_put_back_by_the_reaper_keep_their_order() {
    let Some(server) = redis_or_skip("values_put_back_by_the_reaper_keep_their_order") else {
        return;
    };
    let redis = Redis::builder(&server.url())
        .lease(Duration::from_millis(300))
        .connect()
        .unwrap();
    let jobs: Channel<String> = redis.channel("ordered");
    jobs.send("a".into()).unwrap();
    jobs.send("b".into()).unwrap();
    // What a process with node id deadbeef does when it takes two values, then dies.
    let held = "mixserve:ch:ordered:proc:deadbeef";
    server.query(&["LMOVE", "mixserve:ch:ordered", held, "RIGHT", "LEFT"]);
    server.query(&["LMOVE", "mixserve:ch:ordered", held, "RIGHT", "LEFT"]);
    server.query(&["SADD", "mixserve:ch:ordered:nodes", "deadbeef"]);
    let first = jobs.recv_timeout(Duration::from_secs(20)).unwrap();
    let second = jobs.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("a", "b"));
}

/// With a 20 ms timeout, a receiver waiting on an empty queue keeps its connections:
/// Redis answers a timed-out `BLMOVE` only at its next timer tick, which used to count
/// as a reply missing its deadline, so the link went down and came back every second.
#[test]
fn an_idle_receiver_with_a_short_timeout_keeps_its_link() {
    let Some(server) = redis_or_skip("an_idle_receiver_with_a_short_timeout_keeps_its_link") else {
        return;
    };
    let redis = Redis::builder(&server.url())
        .timeout(Duration::from_millis(20))
        .connect()
        .unwrap();
    let jobs: Channel<String> = redis.channel("idle");
    // 20 ms also bounds the first connect: on a loaded machine it may take a few tries.
    let mut tries = 0;
    while let Err(error) = jobs.send("warm".into()) {
        tries += 1;
        assert!(tries < 100, "not connected after {tries} tries: {error}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(jobs.recv().unwrap(), "warm");
    let before = connections(&server);
    let started = Instant::now();
    assert!(jobs.recv_timeout(Duration::from_secs(4)).is_err());
    assert!(started.elapsed() >= Duration::from_secs(3));
    // `INFO` itself is one connection.
    let opened = connections(&server) - before;
    assert!(opened <= 2, "{opened} connections opened while idle");
}
