//! `Channel` and `Broadcast` on Redis through the library API: a value crosses
//! processes exactly once, a value held by a killed receiver is delivered again after
//! the reaper, and a frozen Redis costs a bounded wait, never a stuck caller.
//!
//! Receivers run as separate processes: this test binary started again on the ignored
//! test `channel_receiver_process`, which reads its orders from the environment.

mod redis_util;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mixserve::sync::{Broadcast, Channel, Redis, TryRecvError};
use redis_util::{RedisServer, redis_or_skip};

const URL_VAR: &str = "MIXSERVE_TEST_REDIS_URL";
const LEASE_VAR: &str = "MIXSERVE_TEST_LEASE_MS";
const IDLE_VAR: &str = "MIXSERVE_TEST_IDLE_MS";
const NAME: &str = "jobs";

/// A receiver process: prints `ready`, then `got VALUE` for each value, and exits after
/// the idle time without a value (never, with idle 0).
#[test]
#[ignore = "a helper process started by the other tests of this file"]
fn channel_receiver_process() {
    let url = std::env::var(URL_VAR).expect("started by a test");
    let var = |name: &str| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let redis = Redis::builder(&url)
        .lease(Duration::from_millis(var(LEASE_VAR).max(1)))
        .connect()
        .expect("connect");
    let jobs: Channel<String> = redis.channel(NAME);
    println!("ready");
    let idle = var(IDLE_VAR);
    loop {
        let value = if idle == 0 {
            jobs.recv()
        } else {
            jobs.recv_timeout(Duration::from_millis(idle))
        };
        match value {
            Ok(value) => println!("got {value}"),
            Err(_) => return,
        }
    }
}

/// Starts a receiver process and waits for its `ready`.
fn receiver(
    redis: &RedisServer,
    lease_ms: u64,
    idle_ms: u64,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "channel_receiver_process",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(URL_VAR, redis.url())
        .env(LEASE_VAR, lease_ms.to_string())
        .env(IDLE_VAR, idle_ms.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a receiver process");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    // libtest prints "test NAME ... " before it, on the same line.
    while !line.trim_end().ends_with("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("read") > 0,
            "receiver died before ready"
        );
    }
    (child, out)
}

/// Every `got` line until the process exits.
fn received(mut out: BufReader<std::process::ChildStdout>) -> Vec<String> {
    let mut values = Vec::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(value) = line.trim().strip_prefix("got ") {
            values.push(value.to_string());
        }
        line.clear();
    }
    values
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Values held in processing lists.
fn held(redis: &RedisServer) -> i64 {
    let redis::Value::Array(keys) = redis.query(&["KEYS", "mixserve:ch:jobs:proc:*"]) else {
        return 0;
    };
    keys.iter()
        .map(|key| match key {
            redis::Value::BulkString(key) => redis.int(&["LLEN", &String::from_utf8_lossy(key)]),
            _ => 0,
        })
        .sum()
}

#[test]
fn each_value_sent_here_is_received_once_elsewhere() {
    let Some(redis) = redis_or_skip("each_value_sent_here_is_received_once_elsewhere") else {
        return;
    };
    let (mut first, first_out) = receiver(&redis, 5000, 3000);
    let (mut second, second_out) = receiver(&redis, 5000, 3000);
    let jobs: Channel<String> = Redis::connect(&redis.url()).unwrap().channel(NAME);
    for i in 0..20 {
        jobs.send(format!("v{i}")).unwrap();
    }
    let mut counts = BTreeMap::new();
    for value in received(first_out).into_iter().chain(received(second_out)) {
        *counts.entry(value).or_insert(0) += 1;
    }
    first.wait().unwrap();
    second.wait().unwrap();
    let expected: BTreeMap<String, i32> = (0..20).map(|i| (format!("v{i}"), 1)).collect();
    assert_eq!(counts, expected);
    assert_eq!(redis.int(&["LLEN", "mixserve:ch:jobs"]), 0);
    wait_until("every hand-off confirmed", || held(&redis) == 0);
}

#[test]
fn a_value_held_by_a_killed_receiver_goes_to_another() {
    let Some(redis) = redis_or_skip("a_value_held_by_a_killed_receiver_goes_to_another") else {
        return;
    };
    let (mut doomed, _out) = receiver(&redis, 1000, 0);
    wait_until("the receiver's pop to block in Redis", || {
        matches!(redis.query(&["CLIENT", "LIST"]), redis::Value::BulkString(list)
            if String::from_utf8_lossy(&list).contains("cmd=blmove"))
    });
    // Frozen, it cannot hand the value on or confirm it: Redis moved it to its list.
    let _ = Command::new("kill")
        .args(["-STOP", &doomed.id().to_string()])
        .status();
    let jobs: Channel<String> = Redis::connect(&redis.url()).unwrap().channel(NAME);
    jobs.send("precious".to_string()).unwrap();
    wait_until("the frozen receiver to hold the value", || {
        held(&redis) == 1
    });
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    assert_eq!(
        jobs.recv_timeout(Duration::from_secs(60)).unwrap(),
        "precious"
    );
    assert_eq!(jobs.try_recv(), Err(TryRecvError::Empty));
    wait_until("the hand-off confirmed", || held(&redis) == 0);
}

#[test]
fn a_frozen_redis_costs_a_bounded_wait() {
    let Some(redis) = redis_or_skip("a_frozen_redis_costs_a_bounded_wait") else {
        return;
    };
    let backend = Redis::builder(&redis.url())
        .timeout(Duration::from_millis(300))
        .count_deadline(Duration::from_millis(200))
        .connect()
        .unwrap();
    let news: Broadcast<usize> = backend.broadcast("slow");
    let jobs: Channel<u64> = backend.channel("slow");
    assert_eq!(news.send_count(), Ok(0));
    let waiter = {
        let news = news.clone();
        std::thread::spawn(move || news.wait())
    };
    wait_until("the waiter", || news.waiting() == 1);
    redis.freeze(true);
    let (tx, rx) = mpsc::channel();
    let caller = {
        let (news, jobs) = (news.clone(), jobs.clone());
        std::thread::spawn(move || {
            tx.send((news.send_count(), jobs.send(1))).unwrap();
        })
    };
    let outcome = rx.recv_timeout(Duration::from_secs(60));
    redis.freeze(false);
    let (sent, queued) = outcome.expect("calls on a frozen Redis must end");
    assert!(sent.is_err() && queued.is_err(), "{sent:?} {queued:?}");
    caller.join().unwrap();
    // Back: the waiter, still waiting, is released by the next send.
    let deadline = Instant::now() + Duration::from_secs(60);
    let released = loop {
        match news.send_count() {
            Ok(n) => break n,
            Err(e) => assert!(Instant::now() < deadline, "never recovered: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(released, 1);
    assert_eq!(waiter.join().unwrap(), Ok(1));
}

#[test]
fn a_value_sent_on_one_bridge_reaches_the_waiters_of_another() {
    let Some(redis) = redis_or_skip("a_value_sent_on_one_bridge_reaches_the_waiters_of_another")
    else {
        return;
    };
    // Different settings make separate bridges: two nodes of the cluster in one process.
    let here = Redis::builder(&redis.url()).connect().unwrap();
    let there = Redis::builder(&redis.url())
        .timeout(Duration::from_secs(3))
        .connect()
        .unwrap();
    let news_here: Broadcast<String> = here.broadcast("news");
    let news_there: Broadcast<String> = there.broadcast("news");
    let waiters: Vec<_> = [&news_here, &news_there, &news_there]
        .into_iter()
        .map(|news| {
            let news = news.clone();
            std::thread::spawn(move || news.wait())
        })
        .collect();
    wait_until("three waiters in the cluster", || news_here.waiting() == 3);
    assert_eq!(news_there.waiting(), 3);
    assert_eq!(news_here.send("hello".to_string()), Ok(3));
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap(), Ok("hello".to_string()));
    }
    assert_eq!(here.partial_counts(), 0);
}

#[test]
fn sends_on_two_broadcasts_at_once_count_their_own_waiters() {
    let Some(redis) = redis_or_skip("sends_on_two_broadcasts_at_once_count_their_own_waiters")
    else {
        return;
    };
    let backend = Redis::connect(&redis.url()).unwrap();
    let (one, two): (Broadcast<usize>, Broadcast<usize>) =
        (backend.broadcast("one"), backend.broadcast("two"));
    for round in 0..5 {
        let waiters: Vec<_> = [&one, &two, &two]
            .into_iter()
            .map(|news| {
                let news = news.clone();
                std::thread::spawn(move || news.wait())
            })
            .collect();
        wait_until("the waiters", || one.waiting() == 1 && two.waiting() == 2);
        let sender = {
            let one = one.clone();
            std::thread::spawn(move || one.send_count())
        };
        assert_eq!(two.send_count(), Ok(2), "round {round}");
        assert_eq!(sender.join().unwrap(), Ok(1), "round {round}");
        let got: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(got, [Ok(1), Ok(2), Ok(2)], "round {round}");
    }
}

#[test]
fn coroutines_park_on_redis_and_their_neighbours_run() {
    let Some(redis) = redis_or_skip("coroutines_park_on_redis_and_their_neighbours_run") else {
        return;
    };
    let url = redis.url();
    let (tx, rx) = mpsc::channel();
    // One loop thread: a receiver parks on Redis, a neighbour ticks, then sends.
    let runner = std::thread::spawn(move || {
        use std::cell::RefCell;
        use std::rc::Rc;
        let jobs: Channel<String> = Redis::connect(&url).unwrap().channel("coroutines");
        let got = Rc::new(RefCell::new(None));
        let ticks_before_send = Rc::new(RefCell::new(0));
        let mut runtime = mixserve::rt::Runtime::new(Default::default()).unwrap();
        {
            let (jobs, got) = (jobs.clone(), Rc::clone(&got));
            runtime
                .spawn(move || *got.borrow_mut() = Some(jobs.recv()))
                .unwrap();
        }
        {
            let ticks = Rc::clone(&ticks_before_send);
            runtime
                .spawn(move || {
                    for _ in 0..5 {
                        mixserve::rt::sleep(Duration::from_millis(10));
                        *ticks.borrow_mut() += 1;
                    }
                    jobs.send("hello".to_string()).unwrap();
                })
                .unwrap();
        }
        runtime.run().unwrap();
        let got = got.borrow_mut().take();
        tx.send((got, *ticks_before_send.borrow())).unwrap();
    });
    let (got, ticks) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a coroutine blocked the loop on Redis");
    runner.join().unwrap();
    assert_eq!(got, Some(Ok("hello".to_string())));
    assert_eq!(ticks, 5);
}

#[test]
fn a_first_try_recv_takes_the_value_once() {
    let Some(redis) = redis_or_skip("a_first_try_recv_takes_the_value_once") else {
        return;
    };
    let sender: Channel<String> = Redis::connect(&redis.url()).unwrap().channel(NAME);
    sender.send("once".to_string()).unwrap();
    // A bridge of its own, not yet up: its first call is queued until the hand-shake,
    // and going up takes back what this process held before, which must not be it.
    let fresh = Redis::builder(&redis.url())
        .timeout(Duration::from_secs(3))
        .connect()
        .unwrap();
    let jobs: Channel<String> = fresh.channel(NAME);
    assert_eq!(jobs.try_recv(), Ok("once".to_string()));
    wait_until("the hand-off confirmed", || held(&redis) == 0);
    assert_eq!(redis.int(&["LLEN", "mixserve:ch:jobs"]), 0);
    assert_eq!(jobs.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn a_try_recv_finishes_when_its_client_has_left() {
    use mixserve::http::{Http, Request, Response};
    use mixserve::{Server, Threading};
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let Some(redis) = redis_or_skip("a_try_recv_finishes_when_its_client_has_left") else {
        return;
    };
    let jobs: Channel<String> = Redis::connect(&redis.url()).unwrap().channel(NAME);
    jobs.send("taken".to_string()).unwrap();
    // The handler takes the value only once the client has half-closed, so the watch
    // on its connection has seen it leave before the call starts.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (got_tx, got_rx) = mpsc::channel();
    let go_rx = Arc::new(Mutex::new(go_rx));
    let handler_jobs = jobs.clone();
    let app = move |_: &mut Request| {
        go_rx.lock().unwrap().recv().unwrap();
        let got = handler_jobs.try_recv();
        got_tx.send(got.clone()).unwrap();
        Response::text(200, format!("{got:?}"))
    };
    let mut server = Server::builder(Threading::new())
        .bind("127.0.0.1:0")
        .handle_signals(false)
        .build(Http::new(app))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = std::thread::spawn(move || server.serve_forever());
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .write_all(b"GET /take HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    go_tx.send(()).unwrap();
    let got = got_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        got,
        Ok("taken".to_string()),
        "the value was taken from Redis"
    );
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("Ok(\"taken\")"), "{answer}");
    handle.shutdown();
    serving.join().unwrap().unwrap();
    wait_until("the hand-off confirmed", || held(&redis) == 0);
}

/// Redis refuses the pop itself (here the key holds a string): the receiver's process
/// asks again after a pause, not once per round trip.
#[test]
fn a_refused_pop_is_asked_again_after_a_pause() {
    let Some(redis) = redis_or_skip("a_refused_pop_is_asked_again_after_a_pause") else {
        return;
    };
    redis.query(&["SET", "mixserve:ch:wrongtype", "not a list"]);
    let jobs: Channel<String> = Redis::connect(&redis.url()).unwrap().channel("wrongtype");
    let waited = jobs.recv_timeout(Duration::from_secs(2));
    assert!(waited.is_err(), "{waited:?}");
    let stats = match redis.query(&["INFO", "commandstats"]) {
        redis::Value::BulkString(text) => String::from_utf8_lossy(&text).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("INFO answered {other:?}"),
    };
    let pops: u64 = stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_blmove:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .expect("blmove was called");
    // About one a second; a pop asked again at once makes thousands.
    assert!(pops <= 20, "{pops} pops in 2 s");
}
