//! The preforked master supervises visibly and degrades instead of dying: a worker
//! that cannot start is retried with a growing back-off while the others serve, and a
//! master whose open-file limit cannot fit the pool it was asked for caps it, says so,
//! and answers every waiter. Every server runs as its own process (the master forks),
//! its stderr (the example's logger) kept in a file the test reads.

mod util;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use util::logged::Logged;
use util::{get, read_reply, wait_until};

const LONG: Duration = Duration::from_secs(120);

/// The `--stats` row of `slot`: (restarts, spawn failures, back-offs).
fn supervision_of(stdout: &str, slot: usize) -> Option<(u64, u64, u64)> {
    let row = stdout
        .lines()
        .find(|l| l.starts_with(&format!("| {slot} |")))?;
    let cells: Vec<u64> = row
        .trim_matches('|')
        .split('|')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let n = cells.len();
    (n >= 3).then(|| (cells[n - 3], cells[n - 2], cells[n - 1]))
}

/// A worker whose coroutine loop cannot start (no stack of the size asked fits in the
/// address space `ulimit -v` allows) exits as a boot failure, and is retried: its
/// connection feeder does not keep it alive, accepting connections nobody serves.
#[test]
fn a_scheduled_worker_whose_loop_cannot_start_exits_as_a_boot_failure() {
    let mut server = Logged::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--workers",
            "1",
            "--max-workers",
            "1",
            "--inner",
            "scheduled",
            // Two stacks (the loop's accept and watch coroutines) do not fit the
            // address space allowed below, whatever the rest of the worker takes.
            "--stack-size",
            "256m",
        ],
        &[],
        Some("-v 500000"),
    );
    wait_until("the worker's boot failure", LONG, || {
        server.log().contains("(slot 0) died while starting")
    });
    assert!(
        server
            .log()
            .contains("could not allocate a coroutine stack"),
        "the worker's reason is logged:\n{}",
        server.log()
    );
    assert!(server.alive(), "the master stays up");
}

#[test]
fn a_worker_that_cannot_start_is_retried_with_growing_backoff_while_the_others_serve() {
    let mut server = Logged::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--workers",
            "2",
            "--max-workers",
            "2",
            "--stats",
        ],
        &[("MIXSERVE_TEST_FAIL_BOOT", "1")],
        None,
    );
    // Twelve seconds of failures in slot 1 while slot 0 serves every request.
    let start = Instant::now();
    let mut served = 0;
    while start.elapsed() < Duration::from_secs(12) {
        assert_eq!(
            get(server.addr, "/").status,
            200,
            "the healthy worker serves"
        );
        served += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.alive(), "the master stays up");
    let log = server.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("(slot 1) died while starting"))
        .collect();
    // The old master re-forked about 5 times a second (60 in 12 s); a back-off of
    // 100 ms doubling makes about 7 attempts, and at most one a second after 10 s.
    assert!(
        (2..=12).contains(&failures.len()),
        "{} boot failures in 12 s:\n{log}",
        failures.len()
    );
    assert!(
        failures.iter().all(|l| l.contains("retrying the slot in")),
        "the log says when it retries:\n{log}"
    );
    assert!(
        log.contains("failing on purpose"),
        "the worker's reason is logged:\n{log}"
    );
    let stdout = server.stop();
    let (_, spawn_failures, backoffs) =
        supervision_of(&stdout, 1).unwrap_or_else(|| panic!("no slot 1 row in:\n{stdout}"));
    assert!(spawn_failures >= failures.len() as u64, "{stdout}");
    assert!(backoffs >= failures.len() as u64, "{stdout}");
    assert!(served > 0);
}

/// `GET /` with a long read timeout (it queues behind every waiter while the pool
/// grows): how many wait, or `None` on any failure.
fn waiting(addr: SocketAddr) -> Option<usize> {
    let mut stream = util::connect(addr);
    stream.set_read_timeout(Some(LONG)).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut stream, &mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.trim().parse().ok())?
}

/// Sends `GET /wait` on a fresh connection (without reading).
fn start_waiter(addr: SocketAddr) -> BufReader<std::net::TcpStream> {
    let mut stream = util::connect(addr);
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream
        .write_all(b"GET /wait HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    BufReader::new(stream)
}

#[test]
fn under_nofile_1024_the_pool_stops_growing_says_why_and_answers_every_waiter() {
    let mut server = Logged::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--accept",
            "passed",
            "--inner",
            "iterative",
            "--max-workers",
            "512",
        ],
        &[],
        Some("-n 1024"),
    );
    let mut waiters: Vec<_> = (0..560).map(|_| start_waiter(server.addr)).collect();
    // `GET /` queues behind every waiter: once it is answered each waiter was taken,
    // and waits or was refused. The count settles when the pool stopped growing.
    let mut last = None;
    wait_until("the waiters to settle", Duration::from_secs(600), || {
        let now = waiting(server.addr);
        let settled = now.is_some() && now == last;
        last = now;
        std::thread::sleep(Duration::from_secs(1));
        settled
    });
    assert!(server.alive(), "the master stays up");
    let notify = get(server.addr, "/notify");
    assert_eq!(notify.status, 200, "{}", notify.text());
    let (mut released, mut refused) = (0, 0);
    for waiter in &mut waiters {
        let reply = read_reply(waiter);
        match reply.status {
            200 => released += 1,
            503 => refused += 1,
            other => panic!("waiter answered {other}: {}", reply.text()),
        }
    }
    assert_eq!(released + refused, 560, "every waiter answered");
    assert!(
        released >= 100 && refused > 0,
        "{released} released, {refused} refused"
    );
    let log = server.log();
    assert!(
        log.contains("capped to") && log.contains("RLIMIT_NOFILE 1024"),
        "the log says why it stopped growing:\n{log}"
    );
    server.stop();
}

/// Whether `pid` is gone (or a zombie nobody reaped yet: it runs no more).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn when_the_master_is_killed_workers_stop_listening_and_exit_promptly() {
    let mut server = Logged::start(
        "comet",
        &["--mixin", "preforked", "--workers", "2"],
        &[],
        None,
    );
    let master = server.child.id();
    let workers: Vec<u32> = {
        let mut found = Vec::new();
        wait_until("two workers", LONG, || {
            found = util::children_of(master)
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            found.len() == 2
        });
        found
    };
    // An idle keep-alive client, served once by a worker.
    let mut idle = util::connect(server.addr);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut idle = BufReader::new(idle);
    assert_eq!(read_reply(&mut idle).status, 200);
    let _ = Command::new("kill")
        .args(["-9", &master.to_string()])
        .status();
    let _ = server.child.wait();
    // Generous bounds (a loaded box); the workers act on the parent-death signal at once.
    let refused = |addr| {
        matches!(std::net::TcpStream::connect(addr),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    };
    wait_until("new connections refused", Duration::from_secs(10), || {
        refused(server.addr)
    });
    wait_until("the workers to exit", Duration::from_secs(10), || {
        workers.iter().all(|&pid| gone(pid))
    });
    // The idle client was closed, not left hanging.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut idle, &mut rest);
    let log = server.log();
    assert!(log.contains("the master died"), "{log}");
}

#[test]
fn a_handler_stuck_in_a_loop_is_found_by_the_heartbeat_and_its_worker_replaced() {
    let mut server = Logged::start(
        "hub_probe",
        &[
            "--mixin",
            "preforked",
            "--workers",
            "2",
            "--max-workers",
            "2",
            "--heartbeat-timeout",
            "2",
        ],
        &[],
        None,
    );
    let master = server.child.id();
    let live = || {
        util::children_of(master)
            .into_iter()
            .filter(|&(_, state)| state != 'Z')
            .count()
    };
    wait_until("two workers", LONG, || live() == 2);
    let mut stuck = util::connect(server.addr);
    stuck.set_read_timeout(Some(LONG)).unwrap();
    stuck
        .write_all(b"GET /spin HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    // The spinning worker is killed (its client sees the connection end) and replaced.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stuck, &mut rest);
    assert!(rest.is_empty(), "a stuck handler answered: {rest:?}");
    wait_until("the stuck worker's replacement", LONG, || {
        server.log().contains("killed by SIGKILL") && live() == 2
    });
    assert_eq!(get(server.addr, "/len").status, 200, "the pool serves on");
    let log = server.log();
    assert!(log.contains("its serving loop is stuck"), "{log}");
    assert!(server.alive());
}

#[test]
fn workers_that_cannot_fit_the_masters_open_file_limit_are_a_clear_start_up_error() {
    let mut server = Logged::start(
        "comet",
        &["--mixin", "preforked", "--workers", "64"],
        &[],
        Some("-n 128"),
    );
    wait_until("the server to give up", LONG, || !server.alive());
    let status = server.child.wait().expect("status");
    assert!(!status.success(), "{status:?}");
    let log = server.log();
    assert!(
        log.contains("64 workers do not fit") && log.contains("RLIMIT_NOFILE 128"),
        "{log}"
    );
    assert!(util::children_of(server.child.id()).is_empty());
}

/// A stop that reaches workers while they start (between their fork and their own
/// signal handling, where they still had the master's handlers) is not lost: the
/// graceful stop ends, though no shutdown timeout forces it.
#[test]
fn a_stop_while_workers_start_is_not_lost() {
    for round in 0..3 {
        let mut server = Logged::start(
            "echo",
            &[
                "--mixin",
                "preforked",
                "--workers",
                "2",
                "--shutdown-timeout",
                "600",
            ],
            &[("MIXSERVE_TEST_SLOW_START_MS", "1000")],
            None,
        );
        // The master forked both (its stop handling is set up by then); each sleeps
        // a second before its own set-up, so the stop reaches them there.
        let pid = server.child.id().to_string();
        let children = format!("/proc/{pid}/task/{pid}/children");
        wait_until("both workers forked", LONG, || {
            let listed = std::fs::read_to_string(&children).unwrap_or_default();
            listed.split_whitespace().count() >= 2
        });
        let _ = Command::new("kill").args(["-15", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !server.alive(),
            "round {round}: the master still drains 30 s after SIGTERM; log:\n{}",
            server.log()
        );
    }
}
