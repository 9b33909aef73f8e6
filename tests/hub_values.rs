//! Exactly-once `Channel` values through the hub: a worker killed (`kill -9`) after the
//! hub released a value to it, before it acknowledged it, loses nothing — the value goes
//! back to the head of the queue and is received once. The server (`forking`, one child
//! per connection) runs as a separate process (`examples/hub_probe.rs`).

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use util::{ServerProcess, connect, get};

/// Live children of `parent`, from `/proc`.
fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, then the parent's pid.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent)
            && fields.first() != Some(&"Z")
        {
            found.push(pid);
        }
    }
    found
}

/// Sends `signal` to `pid` with the `kill` command.
fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Polls `check` until it holds, for at most 20 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_receiver_killed_mid_reply_loses_no_value() {
    let server = ServerProcess::start("hub_probe", &["--mixin", "forking"]);
    let master = server.child.id();
    for attempt in 0..20 {
        let value = format!("job{attempt}");
        // A receiver: its own child process, blocked in Channel::recv through the hub.
        let before = children(master);
        let mut receiver = connect(server.addr);
        write!(receiver, "GET /recv HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut child = None;
        eventually("the receiver's process", || {
            child = children(master).into_iter().find(|p| !before.contains(p));
            child.is_some()
        });
        let child = child.unwrap();
        // Frozen: it can read nothing and acknowledge nothing.
        kill(child, "-STOP");
        assert_eq!(get(server.addr, &format!("/send?{value}")).status, 200);
        if get(server.addr, "/len").text() != "0" {
            // It had not asked yet: let it take the value, and try again.
            kill(child, "-CONT");
            drop(receiver);
            assert_eq!(get(server.addr, "/recv").text(), value);
            continue;
        }
        // The hub released the value to the frozen receiver: kill it mid-reply.
        kill(child, "-KILL");
        drop(receiver);
        eventually("the value back in the queue", || {
            get(server.addr, "/len").text() == "1"
        });
        assert_eq!(get(server.addr, "/recv").text(), value);
        assert_eq!(get(server.addr, "/len").text(), "0", "received twice");
        return;
    }
    panic!("the receiver never blocked in the hub before the send");
}

/// A worker that may not wait (an iterative worker on its own `SO_REUSEPORT` queue
/// keeps itself free of waits) still receives a value already queued, as a server in
/// one process does: taking it is no wait.
#[test]
fn a_worker_that_may_not_wait_still_takes_a_queued_value() {
    let server = ServerProcess::start(
        "hub_probe",
        &[
            "--mixin",
            "preforked",
            "--accept",
            "reuseport",
            "--inner",
            "iterative",
            "--workers",
            "1",
        ],
    );
    assert_eq!(get(server.addr, "/send?job-1").status, 200);
    let taken = get(server.addr, "/recv");
    assert_eq!((taken.status, taken.text()), (200, "job-1".to_string()));
    // Nothing queued now: that would be a wait, refused at once.
    assert_eq!(get(server.addr, "/recv").status, 503);
}
