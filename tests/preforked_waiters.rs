//! `Preforked` workers holding comet waiters: one notify releases the waiters of
//! thousands and of every inner model, waiters survive a reload and a shrink, and past the
//! pool's limit (or under `reuseport`'s per-worker rule) a wait gets 503 at once. Every
//! server runs as its own process (the test harness is multithreaded; the master forks).

mod util;

use std::time::Duration;

use util::{
    ServerProcess, get, live_children, read_reply, start_closing_waiters, start_waiters,
    wait_for_waiters, wait_until,
};

const LONG: Duration = Duration::from_secs(30);

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
