//! Signals at the edges, each server an example in its own process: a SIGTERM sent as
//! soon as the server printed its address stops it gracefully (the handlers are in
//! place once it can be seen listening), and SIGUSR2 / SIGHUP, which only a preforked
//! master acts on, are logged and ignored by every other model instead of killing it;
//! nor do they kill a `forking` child sent them with its whole process group.

mod util;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use util::{
    ServerProcess, get, live_children, read_reply, start_waiters, wait_for_waiters, wait_until,
};

const LONG: Duration = Duration::from_secs(60);

/// The models a SIGTERM right after "listening" is sent to.
const EARLY_STOP: &[&[&str]] = &[
    &["--mixin", "scheduled"],
    &["--mixin", "threading"],
    &["--mixin", "preforked", "--workers", "2"],
    &[
        "--mixin",
        "preforked",
        "--accept",
        "passed",
        "--workers",
        "2",
    ],
];

#[test]
fn sigterm_right_after_listening_stops_gracefully() {
    for &args in EARLY_STOP {
        // The server stalls at its first write to stderr, just after printing its
        // address and before it serves: the signal lands in that window every time.
        let (mut server, mut log) = ServerProcess::start_logged("hello", args, true);
        server.signal(libc::SIGTERM);
        log.release();
        let status = server
            .exited_within(LONG)
            .unwrap_or_else(|| panic!("{args:?}: still running after SIGTERM"));
        let log = log.finish();
        assert!(
            status.success(),
            "{args:?}: a SIGTERM right after listening ends in {status:?} (signal {:?}), \
             not a graceful exit; its log:\n{log}",
            status.signal()
        );
        let failed = log.lines().any(|line| line.starts_with("error:"));
        assert!(!failed, "{args:?}: serve_forever failed; its log:\n{log}");
    }
}

#[test]
fn sigusr2_and_sighup_are_ignored_by_single_process_models() {
    for model in ["scheduled", "threading"] {
        let (mut server, mut log) =
            ServerProcess::start_logged("hello", &["--mixin", model], false);
        for (signal, name) in [(libc::SIGUSR2, "SIGUSR2"), (libc::SIGHUP, "SIGHUP")] {
            server.signal(signal);
            let line = format!("{name} ignored");
            wait_until(&format!("{model}: {line:?} in the log"), LONG, || {
                log.text().contains(&line)
            });
            let reply = get(server.addr, "/");
            assert_eq!(
                (reply.status, reply.text()),
                (200, util::HELLO.into()),
                "{model}"
            );
        }
        let text = log.text();
        let upgrade = "SIGUSR2 ignored: a binary upgrade needs the preforked model";
        assert!(text.contains(upgrade), "{model}: {text}");
        assert_eq!(text.matches("ignored").count(), 2, "one line each: {text}");
        let status = server.stop().expect("stops on SIGTERM");
        assert!(status.success(), "{model}: {status:?}\n{}", log.finish());
    }
}

/// A `forking` child holding a request lives through the signals a whole process group
/// gets (a hang-up, `kill -HUP -- -PGID`, Ctrl-C): they are the master's to act on. A
/// SIGTERM of its own (systemd sends one to every process of the service) makes it
/// finish its request, then exit.
#[test]
fn a_forking_child_finishes_its_request_through_group_signals() {
    let server = ServerProcess::start("comet", &["--mixin", "forking"]);
    let pid = server.child.id();
    let mut waiter = start_waiters(server.addr, 1).pop().unwrap();
    wait_for_waiters(server.addr, 1);
    wait_until("only the waiter's child left", LONG, || {
        live_children(pid).len() == 1
    });
    let child = *live_children(pid).iter().next().unwrap();
    for signal in ["HUP", "USR2", "TTIN", "TTOU", "INT", "QUIT", "TERM"] {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal} {child}");
    }
    // A signal sent to a process blocked in a wait lands at once; this round trip
    // (another child forked and reaped) leaves it ample time.
    let _ = get(server.addr, "/");
    assert!(
        live_children(pid).contains(&child),
        "the group's signals ended the child mid-request"
    );
    assert_eq!(get(server.addr, "/notify").status, 200);
    let reply = read_reply(&mut waiter);
    assert_eq!((reply.status, reply.text()), (200, "1".to_string()));
    assert_eq!(
        reply.header("connection"),
        Some("close"),
        "SIGTERM: the last request"
    );
    wait_until("the child exits after its request", LONG, || {
        !live_children(pid).contains(&child)
    });
}
