//! `Preforked`: one notify across workers, replacing killed and hung workers, SIGHUP
//! and SIGTERM under load, the `--stats` distribution, and nothing leaked (waiters:
//! `preforked_waiters.rs`; draining and retiring: `preforked_drain.rs`). Every server
//! runs as its own process (the test harness is multithreaded; the master forks).

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use util::{
    ServerProcess, children_of, count_fds, get, live_children, read_reply, start_waiters,
    wait_for_waiters, wait_until,
};

const LONG: Duration = Duration::from_secs(30);

/// The master's fd count at rest, with `workers` workers: the lowest of 25 reads over
/// half a second, each taken while the same workers live. A single read right after a
/// reply is racy: under `passed` the master closes its copy of a connection only after
/// handing it over, so the worker may already have answered; after a fork it still
/// holds the worker's end of the new control socket for a moment. Both only add fds.
fn resting_fds(pid: u32, workers: usize) -> usize {
    let deadline = std::time::Instant::now() + LONG;
    let mut reads = Vec::new();
    while reads.len() < 25 {
        assert!(
            std::time::Instant::now() < deadline,
            "no steady {workers} workers to count the master's fds with"
        );
        let live = live_children(pid);
        let fds = count_fds(pid);
        if live.len() == workers && live_children(pid) == live {
            reads.push(fds);
        }
        thread::sleep(Duration::from_millis(20));
    }
    reads.into_iter().min().unwrap_or_default()
}

/// The `| worker | pid | connections | … |` rows printed with `--stats`, as
/// (worker, connections, wasted wake-ups).
fn stats_rows(stdout: &str) -> Vec<(String, u64, u64)> {
    stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| worker"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            Some((
                cells.first()?.to_string(),
                cells.get(2)?.parse().ok()?,
                cells.get(4)?.parse().ok()?,
            ))
        })
        .collect()
}

/// 200 waiters held by 4 workers (threads inside each); one notify, served by
/// whichever worker takes it, releases the waiters of all four.
#[test]
fn one_notify_releases_waiters_held_by_every_worker() {
    for accept in ["shared", "passed-round-robin"] {
        let args = [
            "--mixin",
            "preforked",
            "--accept",
            accept,
            "--workers",
            "4",
            "--max-workers",
            "4",
            "--inner",
            "threading",
            "--stats",
        ];
        let mut server = ServerProcess::start("comet", &args);
        util::comet_contract(server.addr, 200);
        assert!(server.stop().is_some_and(|s| s.success()), "{accept}");
        let rows = stats_rows(&server.rest_of_stdout());
        let serving = rows
            .iter()
            .filter(|(w, c, _)| w != "total" && *c > 0)
            .count();
        assert!(
            serving >= 2,
            "{accept}: waiters not spread over workers: {rows:?}"
        );
    }
}

/// Clients hammering the server from `threads` threads until `stop`; counts failures.
fn load(
    addr: std::net::SocketAddr,
    threads: usize,
    stop: &Arc<AtomicBool>,
) -> (
    Vec<thread::JoinHandle<()>>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
) {
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handles = (0..threads)
        .map(|_| {
            let (stop, ok, failed) = (Arc::clone(stop), Arc::clone(&ok), Arc::clone(&failed));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let result = std::panic::catch_unwind(|| get(addr, "/"));
                    match result {
                        Ok(reply) if reply.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    (handles, ok, failed)
}

/// kill -9 of one worker under load: it is replaced, and at most the one connection
/// it held is lost.
#[test]
fn a_killed_worker_is_replaced_and_no_other_request_is_lost() {
    for accept in ["shared", "locked", "locked-mutex", "passed"] {
        let server = ServerProcess::start(
            "hello",
            &[
                "--mixin",
                "preforked",
                "--accept",
                accept,
                "--workers",
                "4",
                "--max-workers",
                "4",
            ],
        );
        let pid = server.child.id();
        wait_until("4 workers", LONG, || live_children(pid).len() == 4);
        let stop = Arc::new(AtomicBool::new(false));
        let (handles, ok, failed) = load(server.addr, 3, &stop);
        wait_until("some load", LONG, || ok.load(Ordering::SeqCst) > 50);
        let before = live_children(pid);
        let victim = *before.iter().next().unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status();
        wait_until("a replacement", LONG, || {
            let now = live_children(pid);
            now.len() == 4 && !now.contains(&victim)
        });
        let seen = ok.load(Ordering::SeqCst);
        wait_until("load after the kill", LONG, || {
            ok.load(Ordering::SeqCst) > seen + 50
        });
        stop.store(true, Ordering::SeqCst);
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert!(
            failed.load(Ordering::SeqCst) <= 1,
            "{accept}: {failed:?} requests lost"
        );
        assert!(
            children_of(pid).iter().all(|&(_, s)| s != 'Z'),
            "{accept}: zombie"
        );
    }
}

/// SIGHUP under load replaces every worker without one refused or reset connection.
#[test]
fn sighup_replaces_every_worker_without_losing_a_request() {
    for accept in ["shared", "locked", "passed"] {
        let server = ServerProcess::start(
            "hello",
            &[
                "--mixin",
                "preforked",
                "--accept",
                accept,
                "--workers",
                "3",
                "--max-workers",
                "3",
            ],
        );
        let pid = server.child.id();
        wait_until("3 workers", LONG, || live_children(pid).len() == 3);
        let stop = Arc::new(AtomicBool::new(false));
        let (handles, ok, failed) = load(server.addr, 3, &stop);
        wait_until("some load", LONG, || ok.load(Ordering::SeqCst) > 50);
        let old = live_children(pid);
        server.signal(1);
        wait_until("all workers replaced", LONG, || {
            let now = live_children(pid);
            now.len() == 3 && now.is_disjoint(&old)
        });
        let seen = ok.load(Ordering::SeqCst);
        wait_until("load after SIGHUP", LONG, || {
            ok.load(Ordering::SeqCst) > seen + 50
        });
        stop.store(true, Ordering::SeqCst);
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(failed.load(Ordering::SeqCst), 0, "{accept}: requests lost");
    }
}

/// SIGTERM with waiters pending: each gets a final answer, then a clean exit with
/// every worker reaped.
#[test]
fn sigterm_answers_pending_waiters_and_reaps_every_worker() {
    for accept in ["shared", "locked", "passed", "reuseport"] {
        let mut server = ServerProcess::start(
            "comet",
            &[
                "--mixin",
                "preforked",
                "--accept",
                accept,
                "--inner",
                "threading",
            ],
        );
        let mut waiters = start_waiters(server.addr, 20);
        wait_for_waiters(server.addr, 20);
        server.signal(15);
        for waiter in &mut waiters {
            assert_eq!(read_reply(waiter).status, 503, "{accept}");
        }
        let status = server.drained().expect("exits after SIGTERM");
        assert!(status.success(), "{accept}: {status:?}");
    }
}

/// After churn (killed workers, SIGHUP), the master has no zombie and no more fds
/// than when it started.
#[test]
fn no_zombies_and_no_leaked_fds_after_churn() {
    for accept in ["shared", "passed"] {
        let server = ServerProcess::start(
            "hello",
            &[
                "--mixin",
                "preforked",
                "--accept",
                accept,
                "--workers",
                "3",
                "--max-workers",
                "3",
            ],
        );
        let pid = server.child.id();
        wait_until("3 workers", LONG, || live_children(pid).len() == 3);
        assert_eq!(get(server.addr, "/").text(), util::HELLO);
        let fds_before = resting_fds(pid, 3);
        for _ in 0..3 {
            let victim = *live_children(pid).iter().next().unwrap();
            let _ = std::process::Command::new("kill")
                .args(["-9", &victim.to_string()])
                .status();
            wait_until("a replacement", LONG, || {
                let now = live_children(pid);
                now.len() == 3 && !now.contains(&victim)
            });
        }
        server.signal(1);
        for _ in 0..50 {
            assert_eq!(get(server.addr, "/").text(), util::HELLO);
        }
        let settled = || {
            let children = children_of(pid);
            children.len() == 3
                && children.iter().all(|&(_, s)| s != 'Z')
                && count_fds(pid) == fds_before
        };
        let deadline = std::time::Instant::now() + LONG;
        while !settled() {
            assert!(
                std::time::Instant::now() < deadline,
                "{accept}: children {:?}, fds {} (before {fds_before}): {:?}",
                children_of(pid),
                count_fds(pid),
                std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .map(|d| d
                        .flatten()
                        .filter_map(|e| std::fs::read_link(e.path()).ok())
                        .collect::<Vec<_>>())
                    .unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A frozen worker (SIGSTOP) is killed and replaced; a worker waiting in a long
/// `/wait` keeps its heartbeat and is left alone.
#[test]
fn heartbeat_kills_a_frozen_worker_but_not_a_waiting_one() {
    let server = ServerProcess::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--workers",
            "3",
            "--max-workers",
            "3",
            "--heartbeat-timeout",
            "2",
        ],
    );
    let pid = server.child.id();
    wait_until("3 workers", LONG, || live_children(pid).len() == 3);
    let mut waiter = start_waiters(server.addr, 1);
    wait_for_waiters(server.addr, 1);
    let before = live_children(pid);
    // Freeze a worker that is not the waiter's: the waiter's holds the most fds (its
    // client's socket and a hub connection).
    let frozen = *before.iter().min_by_key(|&&p| count_fds(p)).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-STOP", &frozen.to_string()])
        .status();
    wait_until("the frozen worker replaced", LONG, || {
        !live_children(pid).contains(&frozen)
    });
    thread::sleep(Duration::from_secs(3));
    let notify = get(server.addr, "/notify");
    assert_eq!(
        notify.text(),
        "1",
        "the waiter outlived the heartbeat timeout"
    );
    assert_eq!(read_reply(&mut waiter[0]).text(), "1");
}

/// `--stats` prints the UNP Fig. 30.2 distribution for shared, locked and passed.
#[test]
fn stats_print_the_per_worker_distribution() {
    for accept in ["shared", "locked", "locked-mutex", "passed"] {
        let mut server = ServerProcess::start(
            "hello",
            &[
                "--mixin",
                "preforked",
                "--accept",
                accept,
                "--workers",
                "3",
                "--stats",
            ],
        );
        for _ in 0..30 {
            assert_eq!(get(server.addr, "/").text(), util::HELLO);
        }
        assert!(server.stop().is_some_and(|s| s.success()), "{accept}");
        let out = server.rest_of_stdout();
        assert!(
            out.contains("| worker | pid | connections | requests | wasted wakeups |"),
            "{accept}: {out}"
        );
        let rows = stats_rows(&out);
        let total = rows
            .iter()
            .find(|(w, _, _)| w == "total")
            .expect("a total row");
        assert_eq!(total.1, 30, "{accept}: {out}");
        assert!(rows.len() >= 4, "{accept}: a row per worker: {out}");
    }
}
