//! Shared objects on Redis as a program may really make them: two objects of one name
//! in one process (each call of `Redis::broadcast` makes a new one).

mod redis_util;

use std::thread;
use std::time::{Duration, Instant};

use mixserve::sync::{Broadcast, Channel, Redis};
use redis_util::redis_or_skip;

/// Bounds only a failure: each step here takes milliseconds.
const LONG: Duration = Duration::from_secs(30);

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + LONG;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_broadcasts_of_one_name_in_one_process_are_both_released() {
    let Some(redis) = redis_or_skip("two_broadcasts_of_one_name_in_one_process") else {
        return;
    };
    let backend = Redis::connect(&redis.url()).unwrap();
    let first: Broadcast<String> = backend.broadcast("news");
    let second: Broadcast<String> = backend.broadcast("news");
    let waiter = {
        let first = first.clone();
        thread::spawn(move || first.wait_timeout(LONG))
    };
    wait_until("the waiter on the first", || second.waiting() == 1);
    assert_eq!(second.send("hello".to_string()), Ok(1));
    assert_eq!(waiter.join().unwrap(), Ok("hello".to_string()));
}

#[test]
fn two_channels_of_one_name_in_one_process_both_receive() {
    let Some(redis) = redis_or_skip("two_channels_of_one_name_in_one_process") else {
        return;
    };
    let backend = Redis::connect(&redis.url()).unwrap();
    let first: Channel<String> = backend.channel("jobs");
    let second: Channel<String> = backend.channel("jobs");
    let receiver = {
        let first = first.clone();
        thread::spawn(move || first.recv_timeout(LONG))
    };
    second.send("job".to_string()).unwrap();
    assert_eq!(receiver.join().unwrap(), Ok("job".to_string()));
}
