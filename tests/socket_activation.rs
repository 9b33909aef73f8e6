//! Socket activation: the `echo` example started as systemd would start it — a bound
//! listener on fd 3, `LISTEN_FDS=1`, `LISTEN_PID` = its pid — serves with
//! `--addr systemd`; wrong or missing variables and fds fail with a clear message.
//!
//! `LISTEN_PID` must name the server's own pid, which only exists after `fork`; setting
//! it there is not async-signal-safe, so a shell sets it (`LISTEN_PID=$$ exec …`).

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use util::{IO_TIMEOUT, connect, example_path};

/// The `echo` example, launched through `sh` so that `LISTEN_PID` is its pid (unless
/// `pid` overrides it), with `fd` (if any) as its fd 3 and `LISTEN_FDS=fds`.
fn echo_command(fd: Option<RawFd>, fds: Option<&str>, pid: Option<&str>) -> Command {
    echo_command_with(fd, fds, pid, &[])
}

/// [`echo_command`] with more options for `echo` (`--mixin preforked`, say).
fn echo_command_with(
    fd: Option<RawFd>,
    fds: Option<&str>,
    pid: Option<&str>,
    options: &[&str],
) -> Command {
    let script = match pid {
        Some(pid) => format!("LISTEN_PID={pid} exec \"$0\" --addr systemd \"$@\""),
        None => String::from("LISTEN_PID=$$ exec \"$0\" --addr systemd \"$@\""),
    };
    let echo = example_path("echo");
    assert!(
        echo.exists(),
        "{} is missing: run `cargo test` (which builds the examples) or `cargo build --examples`",
        echo.display()
    );
    let mut command = Command::new("sh");
    command
        .args(["-c", &script])
        .arg(echo)
        .args(options)
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(fds) = fds {
        command.env("LISTEN_FDS", fds);
    }
    // SAFETY: the closure calls only dup2, fcntl and close, all async-signal-safe, and
    // touches no memory but its captured integer.
    unsafe {
        command.pre_exec(move || {
            // Nothing else may sit on fds 3 and 4 (cargo's jobserver, say).
            match fd {
                Some(3) => {
                    // dup2 onto itself would keep close-on-exec: clear it instead.
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Some(fd) => {
                    if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                None => {
                    libc::close(3);
                }
            }
            libc::close(4);
            Ok(())
        })
    };
    command
}

/// Starts the server and reads its first line, `listening on tcp://ADDR`.
fn start(command: &mut Command) -> (Child, String) {
    let (child, line, _) = start_keeping_stdout(command);
    (child, line)
}

/// [`start`], with the rest of the server's stdout kept open (a new master started by
/// an upgrade prints to it; closed, that print would fail).
fn start_keeping_stdout(
    command: &mut Command,
) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = command.spawn().expect("start echo");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    (child, line.trim().to_owned(), stdout)
}

/// Stops the server with SIGTERM and waits for it.
fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "echo exited with {status:?}");
}

/// Whether `pid` has exited (gone, or a zombie nobody reaped yet).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, state)| state.starts_with('Z'))
    })
}

/// The service manager's copy of the socket (the test's) still takes a new client.
fn assert_still_listening(listener: &TcpListener) {
    let _next = connect(listener.local_addr().unwrap());
    listener.set_nonblocking(false).unwrap();
    let (_taken, _) = listener.accept().expect("the manager's copy takes it");
}

/// Runs a launch that must fail; returns its stderr.
fn failure(mut command: Command) -> String {
    let Output { status, stderr, .. } = command.output().expect("run echo");
    assert_eq!(status.code(), Some(2), "expected a start-up error");
    String::from_utf8_lossy(&stderr).into_owned()
}

#[test]
fn serves_a_passed_tcp_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (child, line) = start(&mut echo_command(
        Some(listener.as_raw_fd()),
        Some("1"),
        None,
    ));
    drop(listener);
    assert_eq!(line, format!("listening on tcp://{addr}"));
    let mut stream = connect(addr);
    stream.write_all(b"hello, activated\n").unwrap();
    let mut echoed = [0u8; 17];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"hello, activated\n");
    drop(stream);
    stop(child);
}

/// A graceful stop leaves the socket listening for the service manager, which keeps
/// its own copy (here the test plays it): a new client connects and waits for the
/// next start. The stop shut the shared socket down, and systemd failed the socket
/// unit on its hang-up.
#[test]
fn a_stop_leaves_the_service_managers_socket_listening() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (child, line) = start(&mut echo_command(
        Some(listener.as_raw_fd()),
        Some("1"),
        None,
    ));
    assert_eq!(line, format!("listening on tcp://{addr}"));
    stop(child);
    assert_still_listening(&listener);
}

/// Preforked workers whose master died stop taking connections, but leave the
/// service manager's socket listening for the next start, as a stop does.
#[test]
fn workers_outliving_their_master_leave_the_service_managers_socket_listening() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ["--mixin", "preforked", "--workers", "2"];
    let (mut master, line) = start(&mut echo_command_with(
        Some(listener.as_raw_fd()),
        Some("1"),
        None,
        &options,
    ));
    assert_eq!(line, format!("listening on tcp://{addr}"));
    util::wait_until("two workers", Duration::from_secs(30), || {
        util::live_children(master.id()).len() == 2
    });
    let workers = util::live_children(master.id());
    master.kill().unwrap();
    master.wait().unwrap();
    util::wait_until(
        "the orphaned workers to exit",
        Duration::from_secs(30),
        || workers.iter().all(|&pid| exited(pid)),
    );
    assert_still_listening(&listener);
}

/// A binary upgrade (SIGUSR2) of a preforked server on the service manager's socket:
/// the new master, given the socket by the old one, leaves it listening at its own
/// stop as the old one would have.
#[test]
fn a_master_started_by_an_upgrade_leaves_the_service_managers_socket_listening() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ["--mixin", "preforked", "--workers", "1"];
    let mut command = echo_command_with(Some(listener.as_raw_fd()), Some("1"), None, &options);
    // Kept open: the new master prints its address to the same stdout.
    let (mut old, line, stdout) = start_keeping_stdout(&mut command);
    assert_eq!(line, format!("listening on tcp://{addr}"));
    let limit = Duration::from_secs(60);
    util::wait_until("a worker", limit, || {
        util::live_children(old.id()).len() == 1
    });
    let workers = util::live_children(old.id());
    let _ = Command::new("kill")
        .args(["-USR2", &old.id().to_string()])
        .status();
    let mut new_master = None;
    util::wait_until("the new master", limit, || {
        new_master = util::live_children(old.id())
            .into_iter()
            .find(|pid| !workers.contains(pid));
        new_master.is_some()
    });
    let new_master = new_master.unwrap();
    util::wait_until("the old master to hand over and exit", limit, || {
        old.try_wait().unwrap().is_some()
    });
    let _ = Command::new("kill").arg(new_master.to_string()).status();
    util::wait_until("the new master to stop", limit, || exited(new_master));
    assert_still_listening(&listener);
    drop(stdout);
}

#[test]
fn serves_a_passed_unix_listener_and_leaves_its_file() {
    let scratch = util::scratch::Scratch::new("activation");
    let path = scratch.join("app.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (child, line) = start(&mut echo_command(
        Some(listener.as_raw_fd()),
        Some("1"),
        None,
    ));
    drop(listener);
    assert_eq!(line, format!("listening on tcp://unix:{}", path.display()));
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(b"over unix\n").unwrap();
    let mut echoed = [0u8; 10];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"over unix\n");
    drop(stream);
    stop(child);
    assert!(
        path.exists(),
        "the service manager's socket file was removed"
    );
}

#[test]
fn says_when_nothing_was_passed() {
    let message = failure(echo_command(None, None, None));
    assert!(
        message.contains("not socket-activated: LISTEN_FDS is not set"),
        "{message}"
    );
}

#[test]
fn refuses_sockets_passed_to_another_process() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let command = echo_command(Some(listener.as_raw_fd()), Some("1"), Some("1"));
    let message = failure(command);
    assert!(
        message.contains("LISTEN_PID=1 is not this process"),
        "{message}"
    );
}

#[test]
fn refuses_bad_counts_and_closed_fds() {
    let message = failure(echo_command(None, Some("zero"), None));
    assert!(
        message.contains("LISTEN_FDS=zero is not a positive count"),
        "{message}"
    );
    let message = failure(echo_command(None, Some("1"), None));
    assert!(message.contains("fd 3 is not open"), "{message}");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let message = failure(echo_command(Some(listener.as_raw_fd()), Some("2"), None));
    assert!(message.contains("fd 4 is not open"), "{message}");
}

#[test]
fn refuses_what_is_not_a_listening_stream_socket() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let message = failure(echo_command(Some(udp.as_raw_fd()), Some("1"), None));
    assert!(
        message.contains("passed fd 3: not a stream socket"),
        "{message}"
    );

    let (connected, _other) = UnixStream::pair().unwrap();
    let message = failure(echo_command(Some(connected.as_raw_fd()), Some("1"), None));
    assert!(message.contains("not listening"), "{message}");

    let file = std::fs::File::open("/dev/null").unwrap();
    let message = failure(echo_command(Some(file.as_raw_fd()), Some("1"), None));
    assert!(message.contains("passed fd 3: not a socket"), "{message}");
}

/// The upgrade's readiness variable must name the pipe the old master's exec put at
/// fd 4: pointed at the listener (fd 3), it would be written to and closed under it.
#[test]
fn refuses_an_upgrade_readiness_fd_that_is_not_its_pipe() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = echo_command(Some(listener.as_raw_fd()), Some("1"), None);
    command.env("MIXSERVE_UPGRADE_READY_FD", "3");
    let stderr = failure(command);
    assert!(
        stderr.contains("MIXSERVE_UPGRADE_READY_FD"),
        "the error names the variable: {stderr}"
    );
}
