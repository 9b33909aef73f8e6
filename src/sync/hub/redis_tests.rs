//! The hub in front of a `Channel` on Redis, with a private `redis-server` (skipped
//! loudly without one; a failure under `CI=true`).

use std::io::Write;

use super::protocol::{op, status};
use super::tests::{HOSTING, Rig, encoded, request};
use crate::sync::{Channel, Redis, TryRecvError};

#[path = "../../../tests/redis_util/mod.rs"]
mod redis_util;

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
