//! The hub in front of a `Channel` on Redis, with a private `redis-server` (skipped
//! loudly without one; a failure under `CI=true`).

use std::io::Write;

use super::protocol::{op, status};
use super::tests::{HOSTING, Rig, encoded, request, timed_request};
use std::time::Duration;

use crate::sync::{Broadcast, Channel, Redis, TryRecvError};

use crate::sync::redis_util;

/// The queue of a channel on Redis is the list there: a value a worker took through
/// the hub and never acknowledged goes back to its head, where the next pop finds it
/// (it went to the master's own queue, which nothing on Redis reads, and was lost).
#[test]
fn a_redis_channel_value_never_acknowledged_goes_back_to_redis() {
    let test = "a_redis_channel_value_never_acknowledged_goes_back_to_redis";
    let Some(server) = redis_util::redis_or_skip(test) else {
        return;
    };
    // The rig first: a bridge made before it would be driven by its loop, which this
    // test's own sends would block (a master makes none); made after, a helper
    // thread drives it.
    let mut rig = Rig::trusting_self();
    // Our bridge gets its helper thread (its first request) before another test's rig
    // may host it.
    let hosting = crate::sync::lock(&HOSTING);
    let redis = Redis::connect(&server.url()).unwrap();
    let jobs: Channel<u64> = redis.channel("hub-put-back");
    assert_eq!(jobs.try_recv(), Err(TryRecvError::Empty));
    drop(hosting);
    let mut receiver = rig.connect();
    receiver
        .write_all(&request(op::CHANNEL_RECV, jobs.hub_id(), 1, &[]))
        .unwrap();
    rig.until("the remote receiver", |rig| {
        rig.hub.status().blocked_clients() == 1
    });
    jobs.send(5).unwrap();
    jobs.send(6).unwrap();
    assert_eq!(rig.reply(&mut receiver), Some((status::OK, encoded(5))));
    // The receiver dies before acknowledging: 5 is first in line again, in Redis.
    drop(receiver);
    rig.until("the receiver's close", |rig| rig.hub.peer_count() == 0);
    assert_eq!(jobs.try_recv(), Ok(5));
    assert_eq!(jobs.try_recv(), Ok(6));
    assert_eq!(jobs.try_recv(), Err(TryRecvError::Empty));
}

/// A worker's wait whose deadline passes while its Redis release is overdue: the hub's
/// timer finds it gone (taken for the release) and leaves it. When the release is given
/// up on, it is answered `TimedOut` rather than put back, where it would wait on with
/// no timer left to end it.
#[test]
fn a_workers_wait_that_timed_out_while_its_release_was_overdue_is_answered() {
    let test = "a_workers_wait_that_timed_out_while_its_release_was_overdue";
    let Some(server) = redis_util::redis_or_skip(test) else {
        return;
    };
    let mut rig = Rig::trusting_self();
    let hosting = crate::sync::lock(&HOSTING);
    let redis = Redis::builder(&server.url())
        .timeout(Duration::from_secs(2))
        .count_deadline(Duration::from_millis(200))
        .connect()
        .unwrap();
    let news: Broadcast<u64> = redis.broadcast("hub-overdue");
    assert_eq!(news.waiting(), 0);
    drop(hosting);
    let mut waiter = rig.connect();
    waiter
        .write_all(&timed_request(op::BROADCAST_WAIT, news.hub_id(), 1, 500))
        .unwrap();
    rig.until("the remote wait", |rig| {
        rig.hub.status().blocked_clients() == 1
    });
    // A prepare whose release never comes (its sender died between the two).
    let channel = "mixserve:bc:hub-overdue";
    assert_eq!(server.int(&["PUBLISH", channel, "P 1 0123456789abcdef"]), 1);
    let (code, _) = rig.reply(&mut waiter).expect("a reply");
    assert_eq!(code, status::TIMED_OUT);
    rig.until("the wait no longer counted", |rig| {
        rig.hub.status().blocked_clients() == 0
    });
    assert_eq!(news.waiting(), 0);
}
