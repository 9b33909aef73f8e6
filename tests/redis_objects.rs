//! Shared objects on Redis as a program may really make them: two objects of one name
//! in one process (each call of `Redis::broadcast` makes a new one), a value too large
//! to carry, sent here or pushed onto the list by someone else, and settings out of
//! range.

mod redis_util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use mixserve::sync::hub::MAX_VALUE_BYTES;
use mixserve::sync::{Broadcast, Channel, Redis, RedisBuilder, RedisError, SendError};
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

/// One command on a connection of our own; the reply's first line.
fn command(port: u16, args: &[&[u8]]) -> String {
    let mut packed = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for arg in &args[1..] {
        packed.arg(*arg);
    }
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream.write_all(&packed.get_packed_command()).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0];
    while !reply.ends_with(b"\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "redis hung up");
        reply.push(byte[0]);
    }
    String::from_utf8_lossy(&reply).trim_end().to_string()
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

#[test]
fn a_value_larger_than_a_reply_may_be_is_refused_before_it_is_sent() {
    let Some(redis) = redis_or_skip("a_value_larger_than_a_reply_may_be_is_refused") else {
        return;
    };
    let backend = Redis::connect(&redis.url()).unwrap();
    let big = vec![0u8; MAX_VALUE_BYTES + 1];
    let jobs: Channel<Vec<u8>> = backend.channel("big");
    assert!(matches!(
        jobs.send(big.clone()),
        Err(SendError::TooLarge { .. })
    ));
    let news: Broadcast<Vec<u8>> = backend.broadcast("big");
    assert!(matches!(news.send(big), Err(SendError::TooLarge { .. })));
    assert_eq!(command(redis.port, &[b"LLEN", b"mixserve:ch:big"]), ":0");
}

/// Taking a value too large for a reply costs the receiving process its connection; put
/// back on the queue, it would be taken again, for ever, and nothing behind it would
/// ever be delivered. It goes to a dead-letter list instead.
#[test]
fn an_oversized_value_pushed_by_someone_else_does_not_block_the_channel() {
    let Some(redis) = redis_or_skip("an_oversized_value_pushed_by_someone_else") else {
        return;
    };
    let giant = vec![b'x'; MAX_VALUE_BYTES + 128 * 1024];
    let pushed = command(redis.port, &[b"LPUSH", b"mixserve:ch:jobs", &giant]);
    assert_eq!(pushed, ":1");
    let backend = Redis::connect(&redis.url()).unwrap();
    let jobs: Channel<String> = backend.channel("jobs");
    jobs.send("after".to_string()).unwrap();
    assert_eq!(jobs.recv_timeout(LONG), Ok("after".to_string()));
    assert_eq!(
        command(redis.port, &[b"LLEN", b"mixserve:ch:jobs:dead"]),
        ":1"
    );
}

/// A duration setting out of range is refused before anything connects (a timeout of
/// `Duration::MAX` used to panic at the first reconnect).
#[test]
fn settings_out_of_range_fail_at_connect() {
    // Nothing listens here: the refusal comes first.
    let url = "redis://127.0.0.1:1";
    let cases = [
        ("timeout", Redis::builder(url).timeout(Duration::MAX)),
        ("lease", Redis::builder(url).lease(Duration::ZERO)),
        (
            "count_deadline",
            Redis::builder(url).count_deadline(RedisBuilder::MAX_DURATION * 2),
        ),
    ];
    for (setting, builder) in cases {
        match builder.connect() {
            Err(RedisError::BadConfig { name, .. }) => assert_eq!(name, setting),
            other => panic!("{setting}: {other:?}"),
        }
    }
}
