//! `Preforked` workers that drain or retire: a reload and a stop under an unlimited
//! drain, a draining `reuseport` worker leaving the port's group, a draining worker's
//! heartbeat, and workers retiring by quota without losing a connection. Every server
//! runs as its own process (the test harness is multithreaded; the master forks).

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use util::{
    ServerProcess, get, holds_socket, listening_on, live_children, read_reply, sockets_to,
    wait_until,
};

const LONG: Duration = Duration::from_secs(30);

/// "No limit" on the drain (`Duration::MAX`, the largest `--shutdown-timeout`): a
/// reload still replaces the workers, and SIGTERM still ends the server cleanly.
#[test]
fn sighup_and_sigterm_under_an_unlimited_shutdown_timeout() {
    let mut server = ServerProcess::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--workers",
            "2",
            "--shutdown-timeout",
            &u64::MAX.to_string(),
        ],
    );
    let pid = server.child.id();
    wait_until("2 workers", LONG, || live_children(pid).len() == 2);
    let old = live_children(pid);
    server.signal(1);
    wait_until("both workers replaced", LONG, || {
        let now = live_children(pid);
        now.len() == 2 && now.is_disjoint(&old)
    });
    assert_eq!(get(server.addr, "/").status, 200);
    let status = server.stop().expect("the server exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// A `reuseport` worker told to stop leaves the port's group before it drains: while
/// it finishes what it holds, the kernel sends new connections to the other workers,
/// instead of queueing them on its listener, where nobody would accept them and its
/// exit would reset them.
#[test]
fn a_draining_reuseport_worker_no_longer_listens() {
    let server = ServerProcess::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--accept",
            "reuseport",
            "--inner",
            "threading",
            "--workers",
            "2",
            "--shutdown-timeout",
            "30",
        ],
    );
    let (pid, port) = (server.child.id(), server.addr.port());
    wait_until("2 workers", LONG, || live_children(pid).len() == 2);
    let old = live_children(pid);
    wait_until("both workers listening", LONG, || {
        old.iter()
            .all(|&worker| holds_socket(worker, &listening_on(worker, port)))
    });
    // Requests in hand (a head not yet complete) keep the old workers draining: each
    // gets some of these 20, but for a chance of one in a million.
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            stream
                .write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            stream
        })
        .collect();
    wait_until("20 requests in hand", LONG, || {
        held.iter().all(|stream| {
            let port = stream.local_addr().unwrap().port();
            old.iter()
                .any(|&worker| holds_socket(worker, &sockets_to(worker, port)))
        })
    });
    server.signal(1);
    wait_until("two new workers", LONG, || {
        live_children(pid).difference(&old).count() == 2
    });
    let draining: Vec<u32> = live_children(pid).intersection(&old).copied().collect();
    assert!(!draining.is_empty(), "no old worker was left draining");
    // The master signals the old workers as it forks the new ones: give each a moment
    // to take its stop. Well under the 10 s its held request keeps it draining.
    wait_until(
        "the draining workers out of the port's group",
        Duration::from_secs(5),
        || {
            draining
                .iter()
                .all(|&worker| !holds_socket(worker, &listening_on(worker, port)))
        },
    );
    let still: Vec<u32> = live_children(pid).intersection(&old).copied().collect();
    assert!(
        !still.is_empty(),
        "the held requests kept no old worker draining"
    );
    for stream in &mut held {
        let _ = stream.write_all(b"\r\n");
    }
}

/// A worker draining a long request keeps its heartbeat: the master leaves the drain to
/// the shutdown timeout instead of killing the worker as stuck once its heartbeat
/// timeout passes (the drain's wait once beat nothing).
#[test]
fn a_draining_worker_is_not_killed_as_stuck() {
    let mut server = ServerProcess::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--inner",
            "threading",
            "--workers",
            "1",
            "--heartbeat-timeout",
            "2",
            "--shutdown-timeout",
            "30",
        ],
    );
    let pid = server.child.id();
    wait_until("1 worker", LONG, || live_children(pid).len() == 1);
    let worker = *live_children(pid).iter().next().unwrap();
    // A request in hand (its head not complete) keeps the worker draining. (Not an fd
    // count: a worker just forked is still closing the master's fds.)
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let port = stream.local_addr().unwrap().port();
    wait_until("the request in hand", LONG, || {
        holds_socket(worker, &sockets_to(worker, port))
    });
    server.signal(15);
    // Two heartbeat timeouts and more; well under the request's 10 s header deadline.
    thread::sleep(Duration::from_secs(5));
    stream.write_all(b"\r\n").unwrap();
    let reply = read_reply(&mut std::io::BufReader::new(stream));
    assert_eq!(reply.status, 200, "the drained request is answered");
    let status = server.drained().expect("the server exits after its drain");
    assert!(status.success(), "{status:?}");
}

/// `reuseport` workers that retire by their request quota: the master, which takes a
/// share of the port's connections and passes each to a worker, is told and passes
/// the retiring worker nothing more. (It passed on; the worker read what was queued
/// once and dropped the rest at its exit: about 4 % of these connections.)
#[test]
fn reuseport_workers_retiring_by_quota_lose_no_connection() {
    let mut server = ServerProcess::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--accept",
            "reuseport",
            "--inner",
            "threading",
            "--workers",
            "2",
            "--max-requests",
            "20",
        ],
    );
    let mut lost = 0;
    for _ in 0..1500 {
        let answered = TcpStream::connect(server.addr).ok().and_then(|mut stream| {
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .ok()?;
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .ok()?;
            let mut answer = Vec::new();
            std::io::Read::read_to_end(&mut stream, &mut answer).ok()?;
            Some(answer.starts_with(b"HTTP/1.1 200"))
        });
        lost += usize::from(answered != Some(true));
    }
    assert_eq!(lost, 0, "connections lost of 1500");
    let status = server.stop().expect("the server exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}
