//! The hub serves only its master's own workers; strangers (another user, or an
//! unrelated process of the same user) are closed unanswered, and the workers keep
//! working. Servers run as separate processes (`examples/hub_probe.rs`).

mod util;

use std::io::{BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;

use util::{ServerProcess, connect, example_path, get, read_reply};

/// The user `nobody`.
const NOBODY: u32 = 65534;

/// Runs the probe against `server`'s hub, as `uid` if given; its one-word verdict.
fn probe(server: &ServerProcess, uid: Option<u32>) -> String {
    let name = format!("mixserve-hub-{}-0", server.child.id());
    let mut command = Command::new(example_path("hub_probe"));
    command.args(["--probe", &name]);
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let output = command.output().expect("run the probe");
    assert!(output.status.success(), "probe: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// True when the effective uid (`/proc/self/status`, `Uid:` line) is 0.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

#[test]
fn strangers_cannot_complete_a_hub_exchange() {
    for args in [
        &["--mixin", "forking"][..],
        &["--mixin", "preforked", "--workers", "2"][..],
    ] {
        let server = ServerProcess::start("hub_probe", args);
        // The workers reach the hub: a send from one is counted by another.
        assert_eq!(get(server.addr, "/send?first").status, 200, "{args:?}");
        assert_eq!(get(server.addr, "/len").text(), "1", "{args:?}");
        assert_eq!(probe(&server, None), "refused", "same user, {args:?}");
        if running_as_root() {
            assert_eq!(probe(&server, Some(NOBODY)), "refused", "nobody, {args:?}");
        } else {
            eprintln!("SKIP: the other-user probe needs root to switch to nobody");
        }
        // Still serving its workers.
        assert_eq!(get(server.addr, "/recv").text(), "first", "{args:?}");
    }
}

#[test]
fn a_value_too_large_for_the_hub_is_refused_at_the_sender() {
    let server = ServerProcess::start("hub_probe", &["--mixin", "forking"]);
    // A receiver already waits through the hub.
    let mut receiver = connect(server.addr);
    write!(receiver, "GET /recv HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let big = mixserve::sync::hub::MAX_VALUE_BYTES + 1;
    let reply = get(server.addr, &format!("/big?{big}"));
    assert_eq!(reply.status, 413, "{}", reply.text());
    let limit = mixserve::sync::hub::MAX_VALUE_BYTES.to_string();
    assert!(reply.text().contains(&limit), "{}", reply.text());
    // Nothing was queued, and the receiver is still there for the next value.
    assert_eq!(get(server.addr, "/len").text(), "0");
    assert_eq!(get(server.addr, "/send?after").status, 200);
    assert_eq!(read_reply(&mut BufReader::new(receiver)).text(), "after");
}

#[test]
fn a_shared_object_made_in_a_worker_fails_loudly() {
    let server = ServerProcess::start("hub_probe", &["--mixin", "forking"]);
    let reply = get(server.addr, "/late");
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().contains("create it before the server starts"),
        "{}",
        reply.text()
    );
}
