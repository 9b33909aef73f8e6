//! `Preforked`: fan-out across workers, growth to the limit, replacing killed and
//! hung workers, SIGHUP and SIGTERM under load, and nothing leaked. Every server runs
//! as its own process (the test harness is multithreaded; the master forks).

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use util::{
    ServerProcess, children_of, count_fds, get, holds_socket, listening_on, live_children,
    read_reply, sockets_to, start_closing_waiters, start_waiters, wait_for_waiters, wait_until,
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

/// Coroutines inside each worker: two workers hold 2,000 waiters between them, one
/// notify on either releases all, and SIGTERM still ends cleanly.
#[test]
fn scheduled_workers_hold_thousands_of_waiters() {
    for accept in ["shared", "passed"] {
        let args = [
            "--mixin",
            "preforked",
            "--accept",
            accept,
            "--workers",
            "2",
            "--max-workers",
            "2",
            "--inner",
            "scheduled",
        ];
        let mut server = ServerProcess::start("comet", &args);
        util::comet_contract(server.addr, 2000);
        let mut waiters = start_waiters(server.addr, 10);
        wait_for_waiters(server.addr, 10);
        server.signal(15);
        for waiter in &mut waiters {
            assert_eq!(read_reply(waiter).status, 503, "{accept}");
        }
        assert!(server.drained().is_some_and(|s| s.success()), "{accept}");
    }
}

/// Every inner model — the crate's and a user-written one — serves the comet contract
/// inside the workers, and a SIGTERM answers the waiters it holds and ends cleanly.
#[test]
fn every_inner_model_serves_comet_and_drains_on_sigterm() {
    // On its own `SO_REUSEPORT` queue a worker must take every connection that lands
    // there, so only the models without a per-worker connection cap run on it.
    let own_queue = |inner: &str| matches!(inner, "threading" | "scheduled");
    for &inner in util::INNER_MODELS {
        for accept in ["shared", "passed", "reuseport"] {
            if accept == "reuseport" && !own_queue(inner) {
                continue;
            }
            let args = [
                "--mixin",
                "preforked",
                "--accept",
                accept,
                "--workers",
                "2",
                "--inner",
                inner,
            ];
            let mut server = ServerProcess::start("comet", &args);
            util::comet_contract(server.addr, 30);
            let mut waiters = start_waiters(server.addr, 5);
            wait_for_waiters(server.addr, 5);
            server.signal(15);
            for waiter in &mut waiters {
                assert_eq!(read_reply(waiter).status, 503, "{inner} {accept}");
            }
            let status = server.drained();
            assert!(
                status.is_some_and(|s| s.success()),
                "{inner} {accept}: {status:?}"
            );
        }
    }
}

/// Pools never evict a waiter: SIGHUP (replace every worker) and SIGTTOU (one worker
/// fewer) let the old workers drain, and the waits they hold stay until the next
/// notify, served by a worker still active, releases every one of them (200, with the
/// full count); then the old workers go and the pool serves the comet contract. (A
/// wait still held just before the shutdown timeout would be answered 503; the
/// timeout here is long.)
#[test]
fn waiters_survive_sighup_and_shrink_and_the_next_notify_releases_them() {
    const WAITERS: usize = 500;
    let cases = [("shared", "threading", 1, 2), ("passed", "scheduled", 1, 2)];
    let cases = cases.into_iter().chain([("shared", "threading", 22, 1)]);
    for (accept, inner, signal, workers_after) in cases {
        let args = [
            "--mixin",
            "preforked",
            "--accept",
            accept,
            "--workers",
            "2",
            "--inner",
            inner,
            "--shutdown-timeout",
            "600",
        ];
        let server = ServerProcess::start("comet", &args);
        let pid = server.child.id();
        wait_until("2 workers", LONG, || live_children(pid).len() == 2);
        let mut waiters = start_waiters(server.addr, WAITERS);
        wait_for_waiters(server.addr, WAITERS);
        // Every worker now, grown ones included (a burst of passed fds grows the pool).
        let old = live_children(pid);
        server.signal(signal);
        if signal == 1 {
            wait_until("new workers beside the old", LONG, || {
                live_children(pid).difference(&old).count() >= 2
            });
        }
        let notify = get(server.addr, "/notify");
        assert_eq!(
            notify.text(),
            WAITERS.to_string(),
            "{accept} {inner} signal {signal}"
        );
        for waiter in &mut waiters {
            let reply = read_reply(waiter);
            assert_eq!(
                (reply.status, reply.text()),
                (200, WAITERS.to_string()),
                "{accept} {inner}"
            );
        }
        wait_until("the retired workers gone", LONG, || {
            live_children(pid).len() == workers_after
        });
        util::comet_contract(server.addr, 20);
    }
}

/// Under `SO_REUSEPORT` each worker has its own queue, so the reserve rule applies per
/// worker: with iterative workers every `/wait` answers 503 at once (a notify hashed
/// to a worker blocked in a wait could never be served), and nothing hangs.
#[test]
fn reuseport_applies_the_reserve_rule_per_worker() {
    let args = [
        "--mixin",
        "preforked",
        "--accept",
        "reuseport",
        "--workers",
        "2",
    ];
    let server = ServerProcess::start("comet", &args);
    for _ in 0..20 {
        assert_eq!(get(server.addr, "/wait").status, 503);
    }
    assert_eq!(get(server.addr, "/notify").text(), "0");
    assert_eq!(get(server.addr, "/").text(), "0");
}

/// 1000 waiters on 4 iterative workers: the pool grows to its limit, every waiter past
/// it gets 503 at once, and a notify is still served.
#[test]
fn a_thousand_waiters_grow_the_pool_to_its_limit_then_get_503() {
    let limit = 64;
    let server = ServerProcess::start(
        "comet",
        &[
            "--mixin",
            "preforked",
            "--workers",
            "4",
            "--max-workers",
            &limit.to_string(),
        ],
    );
    let mut waiters = start_closing_waiters(server.addr, 1000);
    // Past the limit, waiters are answered 503 at once, while `limit - 1` stay blocked.
    let refused = answered(&mut waiters, 1000 - (limit - 1));
    assert!(refused.iter().all(|&status| status == 503), "{refused:?}");
    wait_for_waiters(server.addr, limit - 1);
    let pid = server.child.id();
    assert_eq!(
        live_children(pid).len(),
        limit,
        "the pool grew to its limit"
    );
    let notify = get(server.addr, "/notify");
    assert_eq!(notify.text(), (limit - 1).to_string());
    let released = answered(&mut waiters, limit - 1);
    assert!(released.iter().all(|&status| status == 200), "{released:?}");
    assert_eq!(
        live_children(pid).len(),
        limit,
        "the pool stays within its limit"
    );
}

/// Reads the answers of waiters that have one, closing each at once, until `n` came
/// (bounded); returns their statuses and leaves the others.
fn answered(waiters: &mut Vec<std::io::BufReader<std::net::TcpStream>>, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    wait_until("answers", Duration::from_secs(60), || {
        let mut i = 0;
        while i < waiters.len() {
            let stream = waiters[i].get_mut();
            stream.set_nonblocking(true).unwrap();
            let ready = stream.peek(&mut [0u8; 1]).is_ok();
            stream.set_nonblocking(false).unwrap();
            if ready {
                statuses.push(read_reply(&mut waiters.swap_remove(i)).status);
            } else {
                i += 1;
            }
        }
        statuses.len() >= n
    });
    statuses
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
