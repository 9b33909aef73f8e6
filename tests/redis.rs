//! Comet across servers: two comet servers (any two models) on one Redis share one
//! `Broadcast`; a notify on either releases the waiters of both. Also the start-up and
//! outage faults, and the forking master that must stay single-threaded.

mod redis_util;
mod util;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use redis_util::{RedisServer, redis_or_skip};
use util::{
    ServerProcess, get, holds_socket, read_reply, sockets_to, start_waiters, wait_for_waiters,
    wait_until,
};

/// The Redis channel of the comet example's broadcast.
const COMET: &str = "mixserve:bc:comet";

/// Pairs of models, every family on one side or the other; with how many waiters each
/// side holds (a pool of four workers keeps one free for the notify).
const PAIRS: &[(&[&str], &[&str], usize, usize)] = &[
    (
        &["--mixin", "threading"],
        &["--mixin", "preforked", "--inner", "scheduled"],
        3,
        4,
    ),
    (&["--mixin", "scheduled"], &["--mixin", "forking"], 4, 3),
    (
        &["--mixin", "prethreaded"],
        &["--mixin", "preforked", "--inner", "threading"],
        3,
        3,
    ),
    (&["--mixin", "preforked"], &["--mixin", "threading"], 2, 3),
];

fn comet(redis: &RedisServer, model: &[&str]) -> ServerProcess {
    let url = redis.url();
    let mut args = model.to_vec();
    args.extend(["--redis", url.as_str()]);
    ServerProcess::start("comet", &args)
}

/// K waiters on `a`, M on `b`, one notify on `b`: everyone gets K+M. With `restart`,
/// Redis is killed and restarted while they wait.
fn two_servers(
    redis: &mut RedisServer,
    a: &ServerProcess,
    b: &ServerProcess,
    k: usize,
    m: usize,
    restart: bool,
) {
    let mut waiters = start_waiters(a.addr, k);
    waiters.extend(start_waiters(b.addr, m));
    wait_for_waiters(a.addr, k + m);
    wait_for_waiters(b.addr, k + m);
    if restart {
        redis.restart();
        redis.wait_for_subscribers(COMET, 2);
    }
    let notify = get(b.addr, "/notify");
    assert_eq!((notify.status, notify.text()), (200, (k + m).to_string()));
    for waiter in &mut waiters {
        let reply = read_reply(waiter);
        assert_eq!((reply.status, reply.text()), (200, (k + m).to_string()));
    }
    assert_eq!(get(a.addr, "/").text(), "0");
}

#[test]
fn one_notify_releases_waiters_on_every_server() {
    let Some(mut redis) = redis_or_skip("one_notify_releases_waiters_on_every_server") else {
        return;
    };
    for &(model_a, model_b, k, m) in PAIRS {
        let a = comet(&redis, model_a);
        let b = comet(&redis, model_b);
        two_servers(&mut redis, &a, &b, k, m, false);
        // And the other way round, on the same servers.
        two_servers(&mut redis, &b, &a, m, k, false);
    }
}

#[test]
fn redis_restarted_while_waiting() {
    let Some(mut redis) = redis_or_skip("redis_restarted_while_waiting") else {
        return;
    };
    for &(model_a, model_b, k, m) in PAIRS {
        let a = comet(&redis, model_a);
        let b = comet(&redis, model_b);
        two_servers(&mut redis, &a, &b, k, m, true);
    }
}

#[test]
fn five_hundred_waiters_survive_a_redis_restart() {
    let Some(mut redis) = redis_or_skip("five_hundred_waiters_survive_a_redis_restart") else {
        return;
    };
    let a = comet(&redis, &["--mixin", "threading"]);
    let b = comet(&redis, &["--mixin", "preforked", "--inner", "scheduled"]);
    two_servers(&mut redis, &a, &b, 250, 250, true);
}

#[test]
fn notify_while_redis_is_down_is_refused_and_never_replayed() {
    let Some(mut redis) = redis_or_skip("notify_while_redis_is_down") else {
        return;
    };
    for model in [&["--mixin", "threading"][..], &["--mixin", "forking"][..]] {
        let a = comet(&redis, model);
        let mut waiters = start_waiters(a.addr, 2);
        wait_for_waiters(a.addr, 2);
        redis.kill();
        let refused = get(a.addr, "/notify");
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert!(refused.text().contains("unavailable"), "{}", refused.text());
        redis.start();
        redis.wait_for_subscribers(COMET, 1);
        // Not replayed: both still wait, and the next notify releases them.
        wait_for_waiters(a.addr, 2);
        let notify = get(a.addr, "/notify");
        assert_eq!((notify.status, notify.text()), (200, "2".to_string()));
        for waiter in &mut waiters {
            assert_eq!(read_reply(waiter).text(), "2");
        }
    }
}

#[test]
fn unreachable_redis_or_bad_url_fails_at_start() {
    // Bound but not listening: connects are refused, and no other test's redis can
    // take the port while this one runs (a released port could be).
    let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    held.bind(&any.into()).unwrap();
    let port = held.local_addr().unwrap().as_socket().unwrap().port();
    let nobody = format!("redis://127.0.0.1:{port}");
    for (url, says) in [
        (nobody.as_str(), "unreachable"),
        ("http://127.0.0.1:6379", "bad redis URL"),
        ("redis://", "bad redis URL"),
    ] {
        for model in ["threading", "forking"] {
            let out = Command::new(util::example_path("comet"))
                .args(["--mixin", model, "--addr", "127.0.0.1:0", "--redis", url])
                .output()
                .expect("run comet");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
            assert!(stderr.contains(says), "{url}: {stderr}");
        }
    }
}

/// Threads of a process, from `/proc/PID/task`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

#[test]
fn process_masters_never_start_a_thread() {
    let Some(redis) = redis_or_skip("process_masters_never_start_a_thread") else {
        return;
    };
    for model in [
        &["--mixin", "forking"][..],
        &["--mixin", "preforked", "--inner", "scheduled"][..],
    ] {
        let a = comet(&redis, model);
        redis.wait_for_subscribers(COMET, 1);
        assert_eq!(threads(a.child.id()), 1);
        let mut waiters = start_waiters(a.addr, 3);
        wait_for_waiters(a.addr, 3);
        // The master's Redis sockets are closed in every child it forked.
        let redis_sockets = sockets_to(a.child.id(), redis.port);
        assert!(
            holds_socket(a.child.id(), &redis_sockets),
            "{redis_sockets:?}"
        );
        let children = util::children_of(a.child.id());
        assert!(!children.is_empty());
        for (child, _) in children {
            assert!(
                !holds_socket(child, &redis_sockets),
                "child {child} holds a Redis socket"
            );
        }
        assert_eq!(get(a.addr, "/notify").text(), "3");
        for waiter in &mut waiters {
            assert_eq!(read_reply(waiter).text(), "3");
        }
        assert_eq!(threads(a.child.id()), 1);
        // The children hold no Redis connection: only the master is a client.
        wait_until(
            "one redis client per server",
            Duration::from_secs(20),
            || redis.int(&["PUBSUB", "NUMPAT"]) == 0 && redis.subscribers(COMET) == 1,
        );
    }
}

#[test]
fn a_frozen_redis_answers_503_in_bounded_time_and_recovers() {
    let Some(redis) = redis_or_skip("a_frozen_redis_answers_503_in_bounded_time") else {
        return;
    };
    for model in [
        &["--mixin", "preforked", "--inner", "scheduled"][..],
        &["--mixin", "scheduled"][..],
    ] {
        let a = comet(&redis, model);
        let mut waiters = start_waiters(a.addr, 2);
        wait_for_waiters(a.addr, 2);
        redis.freeze(true);
        // The reply timeout (2 s) ends the notify; the client's own limit is 20 s.
        let refused = get(a.addr, "/notify");
        redis.freeze(false);
        assert_eq!(refused.status, 503, "{}", refused.text());
        // Refused notifies release nobody; once reconnected, one releases both.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notify = get(a.addr, "/notify");
            if notify.status == 200 {
                assert_eq!(notify.text(), "2");
                break;
            }
            assert_eq!(notify.status, 503, "{}", notify.text());
            assert!(std::time::Instant::now() < deadline, "never reconnected");
            std::thread::sleep(Duration::from_millis(50));
        }
        for waiter in &mut waiters {
            assert_eq!(read_reply(waiter).text(), "2");
        }
    }
}
