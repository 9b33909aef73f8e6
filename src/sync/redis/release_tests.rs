//! A server that closes while its waiters are set aside for a release in progress, with
//! a private `redis-server` (skipped loudly without one; a failure under `CI=true`).

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::sync::{Broadcast, Redis, ServerScope, WaitError, close_waiters_of, scope};

use crate::sync::redis_util;

/// A closing server answers every waiter of its own `Closed`, those in a release in
/// progress too: they used to wait for the release, or for it to be given up on, and
/// held the drain up meanwhile.
#[test]
fn a_closing_server_answers_its_waiters_in_a_release_in_progress() {
    let test = "a_closing_server_answers_its_waiters_in_a_release_in_progress";
    let Some(server) = redis_util::redis_or_skip(test) else {
        return;
    };
    let redis = Redis::builder(&server.url())
        .timeout(Duration::from_secs(10))
        .connect()
        .unwrap();
    let news: Broadcast<u64> = redis.broadcast("closing");
    let serving = ServerScope::new(Arc::new(crate::conn::Drain::new()));
    let waiter = {
        let (news, serving) = (news.clone(), Arc::clone(&serving));
        thread::spawn(move || {
            scope::enter(&serving);
            news.wait_timeout(Duration::from_secs(60))
        })
    };
    let give_up = Instant::now() + Duration::from_secs(30);
    while news.waiting() != 1 {
        assert!(Instant::now() < give_up, "the waiter never waited");
        thread::sleep(Duration::from_millis(20));
    }
    // A prepare whose release is not coming soon (given up on after 11 s).
    let channel = "mixserve:bc:closing";
    assert_eq!(server.int(&["PUBLISH", channel, "P 1 0123456789abcdef"]), 1);
    while news.waiting() != 0 {
        assert!(Instant::now() < give_up, "the waiter was never set aside");
        thread::sleep(Duration::from_millis(20));
    }
    close_waiters_of(&serving);
    // Not a `Hub` error (the release given up on) nor `TimedOut` (put back after the
    // close, it would have waited out its deadline).
    assert_eq!(waiter.join().unwrap(), Err(WaitError::Closed));
}
