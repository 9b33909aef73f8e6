//! Process and thread models at their caps, shutdown with pending waiters, and
//! nothing leaked: each server runs as its own process.

mod util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use util::{
    ServerProcess, children_of, comet_contract, count_fds, get, read_reply, start_waiters,
    wait_for_waiters,
};

/// With 4 workers, 3 may wait; the 4th `/wait` gets 503 at once and a notify is served.
#[test]
fn at_the_cap_a_wait_that_would_take_the_last_worker_gets_503() {
    for model in ["threading", "forking", "scheduled"] {
        let server = ServerProcess::start("comet", &["--mixin", model, "--max-workers", "4"]);
        let mut waiters = start_waiters(server.addr, 3);
        wait_for_waiters(server.addr, 3);
        let refused = get(server.addr, "/wait");
        assert_eq!(refused.status, 503, "{model}: {}", refused.text());
        let notify = get(server.addr, "/notify");
        assert_eq!(notify.text(), "3", "{model}");
        for waiter in &mut waiters {
            assert_eq!(read_reply(waiter).text(), "3", "{model}");
        }
    }
}

#[test]
fn a_thousand_waiters_under_threading_and_forking() {
    for model in ["threading", "forking"] {
        let server = ServerProcess::start("comet", &["--mixin", model]);
        comet_contract(server.addr, 1000);
    }
}

/// SIGTERM: pending waiters get a final answer, then the process exits 0.
#[test]
fn sigterm_answers_pending_waiters_then_exits_cleanly() {
    for model in ["threading", "forking", "scheduled"] {
        let mut server = ServerProcess::start("comet", &["--mixin", model]);
        let mut waiters = start_waiters(server.addr, 5);
        wait_for_waiters(server.addr, 5);
        let started = Instant::now();
        server.signal(15);
        for waiter in &mut waiters {
            let reply = read_reply(waiter);
            assert_eq!(reply.status, 503, "{model}: {}", reply.text());
        }
        let status = server.drained().expect("server exits after SIGTERM");
        assert!(status.success(), "{model}: {status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{model}: drain too slow"
        );
    }
}

/// Ctrl-C (SIGINT to the whole process group, as a terminal sends it) is graceful under
/// every model: pending waiters are answered 503, an in-flight connection is still
/// served, and the server exits cleanly — at once after a second Ctrl-C, although an
/// idle client would otherwise hold the drain for the whole (long) shutdown timeout.
#[test]
fn ctrl_c_is_graceful_under_every_model_and_a_second_one_is_fast() {
    let variants: &[&[&str]] = &[
        &["--mixin", "threading"],
        &["--mixin", "forking"],
        &["--mixin", "scheduled"],
        &["--mixin", "prethreaded"],
        &[
            "--mixin",
            "preforked",
            "--workers",
            "2",
            "--inner",
            "threading",
        ],
        &[
            "--mixin",
            "preforked",
            "--workers",
            "2",
            "--accept",
            "passed",
        ],
    ];
    for &args in variants {
        let mut server = ServerProcess::start("comet", args);
        let mut waiters = start_waiters(server.addr, 3);
        wait_for_waiters(server.addr, 3);
        server.interrupt();
        for waiter in &mut waiters {
            assert_eq!(read_reply(waiter).status, 503, "{args:?}");
        }
        let status = server.exited_within(Duration::from_secs(20));
        assert!(status.is_some_and(|s| s.success()), "{args:?}: {status:?}");
    }
    for model in [
        "threading",
        "forking",
        "scheduled",
        "prethreaded",
        "preforked",
    ] {
        let args = ["--mixin", model, "--shutdown-timeout", "600"];
        let mut server = ServerProcess::start("echo", &args);
        let mut idle = util::connect(server.addr);
        // Served before the stop, so the connection is surely taken by a worker.
        idle.write_all(b"ping\n").unwrap();
        let mut echoed = [0u8; 5];
        idle.read_exact(&mut echoed).unwrap();
        server.interrupt();
        // Graceful: the connection in hand is still served.
        idle.write_all(b"pong\n").unwrap();
        idle.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"pong\n", "{model}");
        // Two signals sent before the process ran in between are one to the kernel:
        // the second goes once the first was seen (the listener closed).
        util::wait_until(
            "the graceful stop to begin",
            Duration::from_secs(20),
            || std::net::TcpStream::connect(server.addr).is_err(),
        );
        server.interrupt();
        let status = server.exited_within(Duration::from_secs(120));
        assert!(
            status.is_some(),
            "{model}: a second Ctrl-C did not stop it at once"
        );
    }
}

/// A graceful stop closes the listener at once: while an in-flight connection keeps
/// the server draining, a new connect is refused (not parked in a backlog nobody
/// accepts from), and the connection in hand is still served.
#[test]
fn a_graceful_stop_refuses_new_connections_while_it_drains() {
    let variants: &[&[&str]] = &[
        &["--mixin", "threading"],
        &["--mixin", "forking"],
        &["--mixin", "scheduled"],
        &["--mixin", "prethreaded"],
        &["--mixin", "prethreaded", "--accept", "handoff"],
        &["--mixin", "preforked", "--workers", "2"],
        &[
            "--mixin",
            "preforked",
            "--workers",
            "2",
            "--accept",
            "passed",
        ],
    ];
    for &args in variants {
        let args = [args, &["--shutdown-timeout", "600"]].concat();
        let mut server = ServerProcess::start("echo", &args);
        let mut in_flight = util::connect(server.addr);
        let mut echoed = [0u8; 5];
        in_flight.write_all(b"ping\n").unwrap();
        in_flight.read_exact(&mut echoed).unwrap();
        server.signal(15);
        util::wait_until("new connects refused", Duration::from_secs(20), || {
            std::net::TcpStream::connect(server.addr).is_err()
        });
        assert!(server.exited_within(Duration::ZERO).is_none(), "{args:?}");
        in_flight.write_all(b"pong\n").unwrap();
        in_flight.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"pong\n", "{args:?}");
        drop(in_flight);
        let status = server.exited_within(Duration::from_secs(60));
        assert!(status.is_some_and(|s| s.success()), "{args:?}: {status:?}");
    }
}

/// During a graceful stop a keep-alive connection in flight is answered with
/// `Connection: close` and closed, in every model — forked children and preforked
/// workers that take passed fds included.
#[test]
fn in_flight_keep_alive_connections_are_closed_by_the_drain() {
    let variants: &[&[&str]] = &[
        &["--mixin", "threading"],
        &["--mixin", "forking"],
        &["--mixin", "scheduled"],
        &["--mixin", "prethreaded"],
        &["--mixin", "preforked", "--workers", "2"],
        &[
            "--mixin",
            "preforked",
            "--workers",
            "2",
            "--accept",
            "passed",
        ],
    ];
    for &args in variants {
        let args = [args, &["--shutdown-timeout", "600"]].concat();
        let mut server = ServerProcess::start("hello", &args);
        let mut client = std::io::BufReader::new(util::connect(server.addr));
        // Every request after the first is in flight when the drain can begin: its head
        // and half its body go out with the end of the previous one, so the connection
        // is never idle (an idle one the drain closes at once, with nothing to answer).
        let head = b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nab";
        client
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        client.get_mut().write_all(head).unwrap();
        assert_eq!(
            read_reply(&mut client).header("connection"),
            None,
            "{args:?}"
        );
        server.signal(15);
        let mut closed = false;
        for _ in 0..500 {
            std::thread::sleep(Duration::from_millis(20));
            client
                .get_mut()
                .write_all(&[b"cd".as_slice(), head].concat())
                .unwrap();
            let reply = read_reply(&mut client);
            assert_eq!(reply.status, 200, "{args:?}");
            if reply.header("connection") == Some("close") {
                closed = true;
                break;
            }
        }
        assert!(closed, "{args:?}: no Connection: close while draining");
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{args:?}");
        let status = server.exited_within(Duration::from_secs(60));
        assert!(status.is_some_and(|s| s.success()), "{args:?}: {status:?}");
    }
}

/// Children are reaped and the parent's fd table returns to where it was.
#[test]
fn forking_leaves_no_zombies_and_no_fds() {
    let server = ServerProcess::start("hello", &["--mixin", "forking"]);
    let pid = server.child.id();
    let _ = get(server.addr, "/");
    while !children_of(pid).is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let fds_before = count_fds(pid);
    for _ in 0..100 {
        assert_eq!(get(server.addr, "/").text(), util::HELLO);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (children, fds) = (children_of(pid), count_fds(pid));
        if children.is_empty() && fds == fds_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "children left: {children:?}; fds {fds} vs {fds_before} before"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn threading_returns_to_its_fd_count_after_load() {
    let server = ServerProcess::start("hello", &["--mixin", "threading"]);
    let pid = server.child.id();
    let _ = get(server.addr, "/");
    let fds_before = fds_when_only_main_thread(pid);
    for _ in 0..100 {
        assert_eq!(get(server.addr, "/").text(), util::HELLO);
    }
    assert_eq!(fds_when_only_main_thread(pid), fds_before);
}

/// The fd count once every connection thread has ended (bounded wait).
fn fds_when_only_main_thread(pid: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        if threads == 1 {
            return count_fds(pid);
        }
        assert!(Instant::now() < deadline, "{threads} threads still running");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The throughput workload keeps a keep-alive connection open for as long as the client
/// does, as the servers it is compared with do (past the library's 1000 requests);
/// `--max-requests-per-connection` puts a limit back.
#[test]
fn hello_keeps_a_connection_past_a_thousand_requests_unless_told() {
    let keeps = |args: &[&str], requests: usize| {
        let server = ServerProcess::start("hello", args);
        let stream = util::connect(server.addr);
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        (0..requests).all(|_| {
            writer
                .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                .unwrap();
            let reply = read_reply(&mut reader);
            assert_eq!(reply.text(), util::HELLO);
            reply.header("connection") != Some("close")
        })
    };
    assert!(keeps(&["--mixin", "scheduled"], 1001));
    let limited = ["--mixin", "scheduled", "--max-requests-per-connection", "3"];
    assert!(keeps(&limited, 2));
    assert!(!keeps(&limited, 3));
}

/// The throughput workload answers what the peer kit's hello servers answer, in the
/// shape tokio+hyper gives it: `text/plain`, `Date`, `Content-Length`, no `Server`.
/// A longer head costs wrk more per response, so the comparison would measure header
/// sizes, not servers.
#[test]
fn hello_answers_the_peer_kits_hello() {
    let server = ServerProcess::start("hello", &["--mixin", "scheduled"]);
    let mut stream = util::connect(server.addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut std::io::BufReader::new(stream));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Hello, world!");
    let mut names: Vec<String> = reply
        .headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["content-length", "content-type", "date"],
        "{reply:?}"
    );
    assert_eq!(reply.header("content-type"), Some("text/plain"));
}
