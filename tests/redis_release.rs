//! A Redis broadcast's release that does not come in time: the sender died between its
//! prepare and its release, or someone published a prepare. The test plays that sender
//! on a connection of its own: it publishes the prepare, hears this process's answer on
//! its ack channel, and then publishes the release late, or never.

mod redis_util;

use std::thread;
use std::time::{Duration, Instant};

use mixserve::sync::{Broadcast, Redis, WaitError, Wire};
use redis_util::{RedisServer, redis_or_skip};

/// Bounds only a failure.
const LONG: Duration = Duration::from_secs(30);
/// The sender this test plays: a node id as servers make them (16 hex digits).
const SENDER: &str = "0123456789abcdef";

/// A backend whose releases are given up on quickly: 0.2 s for the count, plus the
/// 1 s timeout.
fn backend(redis: &RedisServer) -> Redis {
    Redis::builder(&redis.url())
        .timeout(Duration::from_secs(1))
        .count_deadline(Duration::from_millis(200))
        .connect()
        .unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + LONG;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Publishes the prepare of `generation` on broadcast `name` as `SENDER`, and returns
/// how many waiters this process said it took for it.
fn prepare(redis: &RedisServer, name: &str, generation: u64) -> usize {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let mut acks = connection.as_pubsub();
    acks.set_read_timeout(Some(LONG)).unwrap();
    acks.subscribe(format!("mixserve:ack:{SENDER}")).unwrap();
    let channel = format!("mixserve:bc:{name}");
    let heard = redis.int(&["PUBLISH", &channel, &format!("P {generation} {SENDER}")]);
    assert_eq!(heard, 1, "one server listens on {channel}");
    let ack: String = acks.get_message().unwrap().get_payload().unwrap();
    let count = ack
        .strip_prefix(&format!("P {generation} "))
        .unwrap_or_else(|| {
            panic!("an ack of another prepare: {ack:?}");
        });
    count.parse().unwrap()
}

/// Publishes the release of `generation` with `value`, as `SENDER`.
fn release(redis: &RedisServer, name: &str, generation: u64, value: &str) {
    let mut message = format!("R {generation} {SENDER}\n").into_bytes();
    value.to_string().encode(&mut message);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let heard: i64 = redis::cmd("PUBLISH")
        .arg(format!("mixserve:bc:{name}"))
        .arg(message)
        .query(&mut connection)
        .unwrap();
    assert_eq!(heard, 1);
}

fn waiter(
    news: &Broadcast<String>,
    timeout: Duration,
) -> thread::JoinHandle<Result<String, WaitError>> {
    let news = news.clone();
    thread::spawn(move || news.wait_timeout(timeout))
}

/// The send failed, so nobody got a value: its waiters wait on for the next one (they
/// used to be answered with an error once the release was overdue).
#[test]
fn waiters_whose_release_never_comes_wait_on_for_the_next() {
    let Some(redis) = redis_or_skip("waiters_whose_release_never_comes_wait_on") else {
        return;
    };
    let backend = backend(&redis);
    let news: Broadcast<String> = backend.broadcast("news");
    let first = waiter(&news, LONG);
    wait_until("the waiter", || news.waiting() == 1);
    assert_eq!(
        prepare(&redis, "news", 1),
        1,
        "the waiter was taken for the release"
    );
    wait_until("the waiter put back", || {
        first.is_finished() || news.waiting() == 1
    });
    assert!(
        !first.is_finished(),
        "answered: {:?}",
        first.join().unwrap()
    );
    assert_eq!(news.send("next".to_string()), Ok(1));
    assert_eq!(first.join().unwrap(), Ok("next".to_string()));
}

/// A release that comes after its waiters went back still reaches them, and only them:
/// a waiter that came since waits on.
#[test]
fn a_late_release_reaches_the_waiters_put_back_and_no_others() {
    let Some(redis) = redis_or_skip("a_late_release_reaches_the_waiters_put_back") else {
        return;
    };
    let backend = backend(&redis);
    let news: Broadcast<String> = backend.broadcast("late");
    let early = waiter(&news, LONG);
    wait_until("the early waiter", || news.waiting() == 1);
    assert_eq!(prepare(&redis, "late", 7), 1);
    wait_until("the early waiter put back", || news.waiting() == 1);
    let later = waiter(&news, LONG);
    wait_until("the later waiter", || news.waiting() == 2);
    release(&redis, "late", 7, "late");
    assert_eq!(early.join().unwrap(), Ok("late".to_string()));
    wait_until("the later waiter alone", || news.waiting() == 1);
    assert!(!later.is_finished());
    assert_eq!(news.send("next".to_string()), Ok(1));
    assert_eq!(later.join().unwrap(), Ok("next".to_string()));
}

/// A waiter whose deadline passed while its release was overdue timed out; it is not
/// put back, where it would be counted (and, in a worker, answered) for nobody.
#[test]
fn a_waiter_that_timed_out_meanwhile_is_not_put_back() {
    let Some(redis) = redis_or_skip("a_waiter_that_timed_out_meanwhile") else {
        return;
    };
    // The brief waiter must still wait when the prepare comes, and time out before its
    // release is given up on (4.2 s later): each margin is seconds.
    let backend = Redis::builder(&redis.url())
        .timeout(Duration::from_secs(4))
        .count_deadline(Duration::from_millis(200))
        .connect()
        .unwrap();
    let news: Broadcast<String> = backend.broadcast("brief");
    let brief = waiter(&news, Duration::from_secs(2));
    let patient = waiter(&news, LONG);
    wait_until("both waiters", || news.waiting() == 2);
    assert_eq!(prepare(&redis, "brief", 3), 2);
    assert_eq!(brief.join().unwrap(), Err(WaitError::TimedOut));
    // Taken for the release, none is counted; put back, all at once, the patient one is.
    wait_until("the waiters put back", || news.waiting() != 0);
    assert_eq!(news.waiting(), 1);
    assert_eq!(news.send("next".to_string()), Ok(1));
    assert_eq!(patient.join().unwrap(), Ok("next".to_string()));
}
