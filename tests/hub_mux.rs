//! The hub multiplexes a scheduled worker's calls: thousands of waits cost the master
//! one connection per worker loop, one waiter leaving withdraws only its own wait, and
//! a worker killed with many waits pending leaves the hub consistent. Every server
//! runs as its own process (the master forks).

mod util;

use std::io::Read;
use std::time::Duration;

use util::{
    ServerProcess, count_fds, get, live_children, read_reply, start_waiters, wait_for_waiters,
    wait_until,
};

const LONG: Duration = Duration::from_secs(60);

/// `preforked --workers 2 --inner scheduled`, both workers started.
fn two_scheduled_workers() -> (ServerProcess, u32) {
    let args = [
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--max-workers",
        "2",
        "--inner",
        "scheduled",
    ];
    let server = ServerProcess::start("comet", &args);
    let pid = server.child.id();
    wait_until("2 workers", LONG, || live_children(pid).len() == 2);
    (server, pid)
}

/// 2,000 waiters held by two scheduled workers cost the master a few fds (one hub
/// connection per worker loop), not one per waiter; one notify releases them all.
#[test]
fn thousands_of_waits_share_one_hub_connection_per_worker() {
    let (mut server, pid) = two_scheduled_workers();
    let mut waiters = start_waiters(server.addr, 2000);
    wait_for_waiters(server.addr, 2000);
    let fds = count_fds(pid);
    assert!(
        fds < 50,
        "the master holds {fds} fds for 2000 waiters in 2 workers"
    );
    let notify = get(server.addr, "/notify");
    assert_eq!((notify.status, notify.text()), (200, "2000".to_string()));
    for waiter in &mut waiters {
        let reply = read_reply(waiter);
        assert_eq!((reply.status, reply.text()), (200, "2000".to_string()));
    }
    assert!(server.stop().is_some_and(|s| s.success()));
}

/// Clients that leave withdraw their own waits (a cancel by call id on the shared
/// connection); the others keep waiting on it and are all released by the notify.
#[test]
fn a_client_leaving_cancels_only_its_own_wait() {
    let (mut server, pid) = two_scheduled_workers();
    let mut waiters = start_waiters(server.addr, 300);
    wait_for_waiters(server.addr, 300);
    let fds = count_fds(pid);
    // Every third client leaves.
    let mut staying = Vec::new();
    for (i, waiter) in waiters.drain(..).enumerate() {
        if i % 3 != 0 {
            staying.push(waiter);
        }
    }
    wait_for_waiters(server.addr, 200);
    assert!(
        count_fds(pid) <= fds,
        "the master opened fds when clients left"
    );
    let notify = get(server.addr, "/notify");
    assert_eq!((notify.status, notify.text()), (200, "200".to_string()));
    for waiter in &mut staying {
        let reply = read_reply(waiter);
        assert_eq!((reply.status, reply.text()), (200, "200".to_string()));
    }
    assert_eq!(get(server.addr, "/").text(), "0");
    assert!(server.stop().is_some_and(|s| s.success()));
}

/// A worker killed with hundreds of waits pending on its one hub connection: the hub
/// withdraws every one of them (the count drops to the other worker's), the worker is
/// replaced, and a notify releases exactly the waiters still there.
#[test]
fn a_worker_killed_with_many_waits_pending_leaves_the_hub_consistent() {
    let (mut server, pid) = two_scheduled_workers();
    let mut waiters = start_waiters(server.addr, 400);
    wait_for_waiters(server.addr, 400);
    let victim = *live_children(pid).iter().next().expect("a worker");
    let _ = std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status();
    // The victim's clients see their connection end; the hub's count drops by as
    // many (its waits were withdrawn with its connection).
    for waiter in &waiters {
        waiter.get_ref().set_nonblocking(true).unwrap();
    }
    let mut closed = vec![false; waiters.len()];
    wait_until("the killed worker's waits withdrawn", LONG, || {
        for (waiter, closed) in waiters.iter_mut().zip(closed.iter_mut()) {
            *closed = *closed || gone(waiter.get_mut());
        }
        let lost = closed.iter().filter(|&&c| c).count();
        lost > 0 && get(server.addr, "/").text() == (400 - lost).to_string()
    });
    let mut survivors: Vec<_> = waiters
        .into_iter()
        .zip(closed)
        .filter(|(_, closed)| !closed)
        .map(|(waiter, _)| waiter)
        .collect();
    let expected = survivors.len();
    wait_until("the replacement worker", LONG, || {
        let workers = live_children(pid);
        workers.len() == 2 && !workers.contains(&victim)
    });
    let notify = get(server.addr, "/notify");
    assert_eq!((notify.status, notify.text()), (200, expected.to_string()));
    for waiter in &mut survivors {
        waiter.get_ref().set_nonblocking(false).unwrap();
        let reply = read_reply(waiter);
        assert_eq!((reply.status, reply.text()), (200, expected.to_string()));
    }
    assert_eq!(get(server.addr, "/").text(), "0");
    assert!(server.stop().is_some_and(|s| s.success()));
}

/// True when the server's end of `stream` (non-blocking) is closed or reset; a live
/// waiter has nothing to read yet.
fn gone(stream: &mut std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// `Channel` values through one multiplexed connection per worker: 60 receivers
/// parked in two scheduled workers, 60 sends, each value received exactly once (the
/// acknowledgements travel on the shared connection too), nothing left queued.
#[test]
fn channel_values_reach_concurrent_receivers_exactly_once() {
    let args = [
        "--mixin",
        "preforked",
        "--workers",
        "2",
        "--max-workers",
        "2",
        "--inner",
        "scheduled",
    ];
    let mut server = ServerProcess::start("hub_probe", &args);
    let mut receivers: Vec<_> = (0..60)
        .map(|_| {
            let mut stream = util::connect(server.addr);
            std::io::Write::write_all(&mut stream, b"GET /recv HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            std::io::BufReader::new(stream)
        })
        .collect();
    for i in 0..60 {
        assert_eq!(get(server.addr, &format!("/send?job{i}")).status, 200);
    }
    let mut got: Vec<String> = receivers
        .iter_mut()
        .map(|receiver| read_reply(receiver).text())
        .collect();
    got.sort();
    let mut sent: Vec<String> = (0..60).map(|i| format!("job{i}")).collect();
    sent.sort();
    assert_eq!(got, sent);
    assert_eq!(get(server.addr, "/len").text(), "0");
    assert!(server.stop().is_some_and(|s| s.success()));
}
