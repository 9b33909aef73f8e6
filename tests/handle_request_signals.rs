//! `Server::handle_request` does not look at signals: a stop signal the handlers
//! installed by `build` caught before it is raised again, to the program's own
//! disposition. The default disposition of SIGTERM ends the program; a program that
//! ignores SIGTERM goes on.
//!
//! Each case runs in a child process (this test binary again, told by an environment
//! variable which case to play), since the default disposition kills the process that
//! receives the signal. No fork from the test: the child is started by `sh`.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use mixserve::handler::from_fn;
use mixserve::{Conn, Iterative, Server};

/// Which case a child plays; unset in the parent.
const CASE: &str = "MIXSERVE_HANDLE_REQUEST_SIGNAL_CASE";

/// The child's part: build a server (handlers installed), take a SIGTERM while no loop
/// runs, then call `handle_request`, saying on stdout how far it got.
fn play() {
    let mut server = Server::builder(Iterative::new())
        .bind("127.0.0.1:0")
        .timeout(Duration::from_millis(50))
        .build(|| from_fn(|_conn: &mut Conn| Ok(())))
        .expect("build");
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("raise");
    println!("held");
    server.handle_request().expect("handle_request");
    println!("went on");
}

/// Runs this test binary as a child playing `case` (through `sh`, which sets SIGTERM
/// to be ignored first when `ignore_sigterm`: an ignored disposition survives `exec`);
/// returns its status and stdout.
fn child(case: &str, test: &str, ignore_sigterm: bool) -> (std::process::ExitStatus, String) {
    let trap = if ignore_sigterm { "trap '' TERM; " } else { "" };
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{trap}exec \"$0\" \"$@\""))
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .output()
        .expect("run the child");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_sigterm_caught_before_handle_request_ends_the_program_by_default() {
    const TEST: &str = "a_sigterm_caught_before_handle_request_ends_the_program_by_default";
    if std::env::var(CASE).as_deref() == Ok("default") {
        return play();
    }
    let (status, stdout) = child("default", TEST, false);
    assert!(
        stdout.contains("held"),
        "the child never got to raise: {stdout}"
    );
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "handle_request should hand the held SIGTERM to its default disposition: \
         {status:?}, stdout: {stdout}"
    );
    assert!(!stdout.contains("went on"), "{stdout}");
}

#[test]
fn a_program_that_ignores_sigterm_goes_on_through_handle_request() {
    const TEST: &str = "a_program_that_ignores_sigterm_goes_on_through_handle_request";
    if std::env::var(CASE).as_deref() == Ok("ignored") {
        return play();
    }
    let (status, stdout) = child("ignored", TEST, true);
    assert!(
        status.success() && stdout.contains("went on"),
        "a program ignoring SIGTERM should time out in handle_request and go on: \
         {status:?}, stdout: {stdout}"
    );
}
