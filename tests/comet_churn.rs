//! Waiters whose client leaves: a `/wait` whose connection is closed or reset ends at
//! once under every model that can wait — it stops counting, and its thread, coroutine
//! or process is freed — while pipelined bytes behind a `/wait` are no hang-up.
//! Servers run as separate processes; resources are read from `/proc`.

mod util;

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use util::{ServerProcess, children_of, connect, count_fds, get, read_reply, wait_until};

/// The models whose `/wait` blocks (iterative ones answer 503 at once). Preforked
/// pools are capped at their start size, so the check is not about the pool's own
/// shrinking pace; a prethreaded pool keeps the threads it grew (idle).
const WAITING_MODELS: &[&[&str]] = &[
    &["--mixin", "threading"],
    &["--mixin", "scheduled"],
    &["--mixin", "forking"],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "passed",
        "--inner",
        "threading",
        "--workers",
        "4",
        "--max-workers",
        "4",
    ],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "shared",
        "--inner",
        "scheduled",
        "--workers",
        "4",
        "--max-workers",
        "4",
    ],
    &["--mixin", "prethreaded", "--accept", "handoff"],
];

/// Processes, threads and fds of a server and its worker processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resources {
    processes: usize,
    threads: usize,
    fds: usize,
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

fn resources(pid: u32) -> Resources {
    let children: Vec<u32> = children_of(pid)
        .into_iter()
        .filter(|&(_, state)| state != 'Z')
        .map(|(child, _)| child)
        .collect();
    let all = std::iter::once(pid).chain(children.iter().copied());
    Resources {
        processes: 1 + children.len(),
        threads: all.clone().map(threads_of).sum(),
        fds: all.map(count_fds).sum(),
    }
}

/// At rest again: no more processes or threads than at the baseline (a prethreaded
/// pool may keep the threads it grew, idle), and no more fds than the baseline plus one
/// pooled hub connection per worker process (a worker dials the hub on its first
/// shared-object call and keeps that connection). Every client socket is closed.
fn back_to(baseline: Resources, now: Resources, args: &[&str]) -> bool {
    let keeps_threads = args.contains(&"prethreaded");
    now.processes <= baseline.processes
        && (keeps_threads || now.threads <= baseline.threads)
        && now.fds <= baseline.fds + 2 * (now.processes - 1)
}

fn hang_up(stream: TcpStream, reset: bool) {
    if reset {
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    drop(stream);
}

fn send_wait(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
}

fn waiting(server: &ServerProcess) -> String {
    get(server.addr, "/").text()
}

fn churn_under(args: &[&str]) {
    let mut server = ServerProcess::start("comet", args);
    let pid = server.child.id();
    // Warm up (pools dial the hub, start their workers), then take the baseline at rest.
    util::comet_contract(server.addr, 2);
    std::thread::sleep(Duration::from_millis(300));
    let baseline = resources(pid);

    // Waiters that are blocked, then leave: half close, half reset.
    let mut held: Vec<TcpStream> = (0..100).map(|_| connect(server.addr)).collect();
    for stream in &mut held {
        send_wait(stream);
    }
    util::wait_for_waiters(server.addr, 100);
    let left = Instant::now();
    for (i, stream) in held.into_iter().enumerate() {
        hang_up(stream, i % 2 == 1);
    }
    wait_until("blocked waiters to leave", Duration::from_secs(30), || {
        waiting(&server) == "0"
    });
    eprintln!(
        "{args:?}: 100 blocked waiters gone after {:?}",
        left.elapsed()
    );

    // 300 connections that send `/wait` and hang up at once.
    let started = Instant::now();
    for i in 0..300 {
        let mut stream = connect(server.addr);
        send_wait(&mut stream);
        hang_up(stream, i % 2 == 1);
    }
    wait_until(
        "hang-ups to leave no waiter",
        Duration::from_secs(30),
        || waiting(&server) == "0",
    );
    let mut now = resources(pid);
    let limit = Instant::now() + Duration::from_secs(30);
    while !back_to(baseline, now, args) {
        assert!(
            Instant::now() < limit,
            "{args:?}: resources stuck at {now:?}, baseline {baseline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
        now = resources(pid);
    }
    eprintln!(
        "{args:?}: 300 hang-ups cleared after {:?}: {now:?} (baseline {baseline:?})",
        started.elapsed()
    );

    // The comet contract still holds.
    util::comet_contract(server.addr, 3);
    server.stop().expect("server stops");
}

#[test]
fn waiters_that_hang_up_leave_nothing_behind_under_every_model() {
    for args in WAITING_MODELS {
        churn_under(args);
    }
}

#[test]
fn pipelined_bytes_behind_a_wait_are_no_hang_up() {
    for args in WAITING_MODELS {
        let mut server = ServerProcess::start("comet", args);
        let mut stream = connect(server.addr);
        stream
            .write_all(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        util::wait_for_waiters(server.addr, 1);
        // More bytes while it waits: still a waiter.
        stream
            .write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let still = (0..10).all(|_| {
            std::thread::sleep(Duration::from_millis(30));
            waiting(&server) == "1"
        });
        assert!(still, "{args:?}: a pipelining waiter was dropped");
        let notify = get(server.addr, "/notify");
        assert_eq!((notify.status, notify.text()), (200, "1".to_owned()));
        let mut reader = BufReader::new(stream);
        let answers: Vec<(u16, String)> = (0..3)
            .map(|_| read_reply(&mut reader))
            .map(|reply| (reply.status, reply.text()))
            .collect();
        assert_eq!(answers[0], (200, "1".to_owned()), "{args:?}");
        assert_eq!(answers[1].0, 200, "{args:?}");
        assert_eq!(answers[2].0, 200, "{args:?}");
        server.stop().expect("server stops");
    }
}

#[test]
fn a_half_closed_waiter_counts_as_gone() {
    for args in [&["--mixin", "threading"][..], &["--mixin", "scheduled"][..]] {
        let mut server = ServerProcess::start("comet", args);
        let mut stream = connect(server.addr);
        send_wait(&mut stream);
        util::wait_for_waiters(server.addr, 1);
        stream.shutdown(Shutdown::Write).unwrap();
        wait_until(
            "the half-closed waiter to leave",
            Duration::from_secs(20),
            || waiting(&server) == "0",
        );
        server.stop().expect("server stops");
    }
}

/// The end of the client's stream comes with its `/wait`, before the handler waits:
/// a coroutine's wait learns it from the loop's epoll (the socket is registered only
/// by that wait), a thread's from `poll(2)`. The server closes the connection without
/// an answer; a wait that missed the end would hold it until the test's read timeout.
#[test]
fn a_waiter_that_half_closes_with_its_request_is_let_go() {
    for args in [&["--mixin", "threading"][..], &["--mixin", "scheduled"][..]] {
        let mut server = ServerProcess::start("comet", args);
        let mut stream = connect(server.addr);
        send_wait(&mut stream);
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let read = std::io::Read::read_to_end(&mut stream, &mut rest);
        assert!(
            read.is_ok(),
            "{args:?}: the server kept the connection: {read:?}"
        );
        assert!(rest.is_empty(), "{args:?}: answered {rest:?}");
        assert_eq!(waiting(&server), "0", "{args:?}");
        server.stop().expect("server stops");
    }
}

#[test]
fn a_wait_past_the_long_poll_limit_is_answered_204() {
    for args in [&["--mixin", "threading"][..], &["--mixin", "forking"][..]] {
        let mut args = args.to_vec();
        args.extend(["--wait-limit", "0.2"]);
        let mut server = ServerProcess::start("comet", &args);
        let mut stream = connect(server.addr);
        // `close`: the test's reader takes a body without a length as "until the end".
        stream
            .write_all(b"GET /wait HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let reply = read_reply(&mut BufReader::new(stream));
        assert_eq!(reply.status, 204, "{args:?}");
        assert_eq!(waiting(&server), "0");
        server.stop().expect("server stops");
    }
}

#[test]
fn a_notify_from_a_client_that_half_closes_still_notifies() {
    // The watch ends waits, never sends: a `/notify` whose client shuts down its
    // sending side after the request is served and answered under process models too.
    for args in [&["--mixin", "forking"][..], WAITING_MODELS[3]] {
        let mut server = ServerProcess::start("comet", args);
        let mut waiter = connect(server.addr);
        send_wait(&mut waiter);
        util::wait_for_waiters(server.addr, 1);
        let mut notifier = connect(server.addr);
        notifier
            .write_all(b"GET /notify HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        notifier.shutdown(Shutdown::Write).unwrap();
        for client in [waiter, notifier] {
            // The waiter gets the count; so does the notifier, not a hub error.
            let reply = read_reply(&mut BufReader::new(client));
            assert_eq!(
                (reply.status, reply.text()),
                (200, "1".to_owned()),
                "{args:?}"
            );
        }
        server.stop().expect("server stops");
    }
}
