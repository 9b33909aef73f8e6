//! A binary upgrade as each process sees it: the new master's readiness pipe (named by
//! [`READY_FD_VAR`] in its environment), and the flag that says the listening socket is
//! shared with another master right now.
//!
//! While two masters hold one listening socket, neither may `shutdown` it (that stops
//! it for both: a graceful stop's "refuse new connects", a worker's reaction to its
//! master's death) nor remove its Unix socket file. The flag lives in memory shared
//! with the workers forked afterwards, so an orphaned worker reads it too.

use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::fork;
use super::shared_memory::SharedWords;

/// The variable that marks a process started by an upgrade; its value is the fd of
/// the readiness pipe's write end.
pub(crate) const READY_FD_VAR: &str = "MIXSERVE_UPGRADE_READY_FD";
/// The variable an old master sets (to `1`) when the socket it passes is a service
/// manager's (socket activation): the new master must leave it listening too.
pub(crate) const ACTIVATED_VAR: &str = "MIXSERVE_UPGRADE_ACTIVATED";
/// The variable an old master sets to its pid: the master a new one reports ready to.
pub(crate) const OLD_MASTER_VAR: &str = "MIXSERVE_UPGRADE_OLD_MASTER";
/// The byte a new master writes when it serves.
pub(crate) const REPORT_READY: u8 = b'r';

/// The readiness pipe of a process started by an upgrade, until it reports (-1: none).
static READY: AtomicI32 = AtomicI32::new(-1);
/// Set by the first [`take_from_environment`]: a process looks at its variables once.
/// With other threads running they stay set, and once the pipe is closed its number
/// goes to whatever the process opens next.
static TAKEN: AtomicBool = AtomicBool::new(false);
/// The pid of the master that started this one by an upgrade (0: none).
static OLD_MASTER: AtomicI32 = AtomicI32::new(0);
/// Two shared words: non-zero while the listener is shared with another master; and
/// the pid of the old master a new one reported ready to, while it may still serve.
static SHARED: OnceLock<Option<SharedWords>> = OnceLock::new();

fn flag() -> Option<&'static SharedWords> {
    SHARED.get_or_init(|| SharedWords::new(2).ok()).as_ref()
}

/// Maps the shared flag now (before any worker is forked), so every worker sees it.
pub(crate) fn prepare() {
    let _ = flag();
}

/// Marks the listening socket as shared with another master (or no longer).
pub(crate) fn set_listener_shared(shared: bool) {
    if let Some(words) = flag() {
        words.words()[0].store(u64::from(shared), Ordering::SeqCst);
    }
}

/// True while the listening socket is shared with another master: do not shut it down
/// nor remove its socket file. A new master shares it with the old one it reported
/// ready to for as long as that one lives: the old master may have timed the upgrade
/// out and asked this one to stop just as it became ready, and serves on then.
pub(crate) fn listener_shared() -> bool {
    let Some(words) = SHARED.get().and_then(Option::as_ref) else {
        return false;
    };
    let words = words.words();
    if words[0].load(Ordering::SeqCst) != 0 {
        return true;
    }
    let alive = is_alive(words[1].load(Ordering::SeqCst));
    if !alive {
        words[1].store(0, Ordering::SeqCst);
    }
    alive
}

/// Whether process `pid` exists (0: none recorded). A recycled pid only keeps the
/// socket open at a stop (clients then wait in the backlog rather than being refused):
/// the safe way to be wrong.
fn is_alive(pid: u64) -> bool {
    let Ok(pid @ 1..) = i32::try_from(pid) else {
        return false;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    !matches!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Records `old_master` as sharing the listener until it is gone (see
/// [`listener_shared`]).
fn share_until_gone(old_master: nix::unistd::Pid) {
    if let Some(words) = flag() {
        let pid = u64::try_from(old_master.as_raw()).unwrap_or(0);
        words.words()[1].store(pid, Ordering::SeqCst);
    }
}

/// In a process started by an upgrade: takes the readiness pipe its environment
/// names (and removes the variable), marks the listener shared until
/// [`report_ready`]. `Ok(false)` when the process was not started so (no variable, or
/// `LISTEN_PID` names another process), and on every call after the first: fd 4 may
/// by then be another file of this process.
pub(crate) fn take_from_environment() -> io::Result<bool> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(false);
    }
    let Some(value) = take_variable(READY_FD_VAR) else {
        return Ok(false);
    };
    let old_master = take_variable(OLD_MASTER_VAR);
    // Left in the environment of a process the upgrade did not start (a program run
    // by a master whose environment could not be cleaned): not this process's pipe.
    let this = std::process::id().to_string();
    let listen_pid = std::env::var("LISTEN_PID").unwrap_or_default();
    if listen_pid.trim() != this {
        log::warn!(
            "{READY_FD_VAR} ignored: LISTEN_PID={listen_pid:?} is not this process ({this}); \
             a script started by a binary upgrade must `exec` the server"
        );
        return Ok(false);
    }
    // Only the fd the old master's exec put there (the listener is at 3): any other
    // number may be one this process uses otherwise, which the readiness report would
    // write to and close.
    let fd: RawFd = value
        .to_str()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&fd| fd == super::exec::READY_FD)
        .ok_or_else(|| {
            io::Error::other(format!(
                "{READY_FD_VAR}={value:?} is not the upgrade's readiness pipe (fd {})",
                super::exec::READY_FD
            ))
        })?;
    let is_pipe = nix::sys::stat::fstat(super::borrow_fd(fd))
        .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFIFO);
    if !is_pipe {
        return Err(io::Error::other(format!(
            "{READY_FD_VAR}={fd}: not a pipe (the upgrade's readiness pipe is one)"
        )));
    }
    // SAFETY: F_GETFD/F_SETFD only read and set the fd's close-on-exec flag; an fd
    // that is not open gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::other(format!("{READY_FD_VAR}={fd}: {error}")));
    }
    READY.store(fd, Ordering::SeqCst);
    OLD_MASTER.store(old_master_pid(old_master), Ordering::SeqCst);
    fork::close_in_child(fd);
    set_listener_shared(true);
    Ok(true)
}

/// In a process started by an upgrade: whether the old master said the passed socket
/// is a service manager's ([`ACTIVATED_VAR`]); the variable is removed.
pub(crate) fn take_activated_mark() -> bool {
    take_variable(ACTIVATED_VAR).is_some_and(|value| value == "1")
}

/// Reads variable `name`, and removes it from the environment unless other threads
/// run (changing it is unsound then).
fn take_variable(name: &str) -> Option<OsString> {
    let value = std::env::var_os(name);
    if fork::thread_count() == Some(1) {
        // SAFETY: only this thread runs (checked just above), so nothing reads the
        // environment while it changes.
        unsafe { std::env::remove_var(name) };
    }
    value
}

/// The old master's pid: the one its variable names or, from a release that did not
/// set it, this process's parent now.
fn old_master_pid(value: Option<OsString>) -> i32 {
    value
        .and_then(|value| value.to_str()?.trim().parse().ok())
        .filter(|&pid| pid > 0)
        .unwrap_or_else(|| nix::unistd::getppid().as_raw())
}

/// The old master, while it lives: this process's parent until it is gone. Then the
/// parent is init or a subreaper, which lives on and never serves on the socket.
fn living_old_master() -> Option<nix::unistd::Pid> {
    let parent = nix::unistd::getppid();
    (parent.as_raw() == OLD_MASTER.load(Ordering::SeqCst)).then_some(parent)
}

/// True in a process started by an upgrade that has not reported ready yet.
pub(crate) fn awaiting_ready() -> bool {
    READY.load(Ordering::SeqCst) >= 0
}

/// Tells the old master that this one serves (once): the listener is this process's
/// alone once the old master is gone (see [`listener_shared`]), at once if it is gone
/// already. A gone old master is not an error.
pub(crate) fn report_ready() {
    let fd = READY.swap(-1, Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    if let Some(old_master) = living_old_master() {
        share_until_gone(old_master);
    }
    set_listener_shared(false);
    let byte = [REPORT_READY];
    // SAFETY: `fd` is the pipe this process took from its environment and owns alone;
    // it is written once and closed here, never used again.
    unsafe {
        libc::write(fd, byte.as_ptr().cast(), 1);
        libc::close(fd);
    }
    fork::forget_in_child(fd);
}

/// In a process started by an upgrade that cannot take over (its model never reports
/// ready): closes the readiness pipe unwritten, so the old master fails the upgrade at
/// once and serves on. The listener stays marked shared: the old master serves on it.
pub(crate) fn decline() {
    let fd = READY.swap(-1, Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    // SAFETY: `fd` is the pipe this process took from its environment and owns alone;
    // closed here, never used again.
    unsafe { libc::close(fd) };
    fork::forget_in_child(fd);
}

/// Reaps `pid` (a child this process started itself) if it exited: its exit code, or
/// `128 + signal`.
pub(crate) fn reap(pid: nix::unistd::Pid) -> Option<i32> {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    loop {
        return match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => fork::exit_code(status),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => Some(-1),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new master shares the listener with the old one it reported ready to until
    /// that one is gone.
    #[test]
    fn an_old_master_shares_the_listener_while_it_lives() {
        let mut old = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(is_alive(u64::from(old.id())));
        old.kill().unwrap();
        old.wait().unwrap();
        assert!(!is_alive(u64::from(old.id())));
        assert!(!is_alive(0));
        assert!(!is_alive(u64::MAX));
    }
    use std::io::Read;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Set in a test run again as a new master (see [`as_new_master`]).
    const CHILD: &str = "MIXSERVE_UPGRADE_TEST_CHILD";

    /// The test binary run again by `sh -c script` (`$0` is the binary, `$1` the test
    /// `name`) as an upgrade starts a new master: `socket` (if any) on fd 3, `pipe` on
    /// fd 4, and the upgrade's variables set. `LISTEN_PID` is the script's to set.
    fn as_new_master(script: &str, name: &str, socket: Option<RawFd>, pipe: RawFd) -> Command {
        let mut command = Command::new("sh");
        command
            .args(["-c", script])
            .arg(std::env::current_exe().unwrap())
            .arg(name)
            .env(CHILD, "1")
            .env("LISTEN_FDS", "1")
            .env(READY_FD_VAR, crate::sys::exec::READY_FD.to_string())
            .env(OLD_MASTER_VAR, std::process::id().to_string())
            .env_remove("LISTEN_PID");
        // SAFETY: between fork and exec the closure calls only fcntl and dup2, which
        // are async-signal-safe, on integers it captured.
        unsafe {
            command.pre_exec(move || {
                // Moved out of the way first, should either sit on 3 or 4.
                let socket = socket.map(|fd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 20));
                let pipe = libc::fcntl(pipe, libc::F_DUPFD_CLOEXEC, 20);
                let socket_placed = socket.is_none_or(|fd| fd >= 0 && libc::dup2(fd, 3) >= 0);
                if !socket_placed || pipe < 0 || libc::dup2(pipe, crate::sys::exec::READY_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }

    /// A readiness pipe: its read end, and its write end for the new master.
    fn readiness_pipe() -> (std::fs::File, OwnedFd) {
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        (read_end.into(), write_end)
    }

    /// Runs test `name` again as a new master, `exec`ed by the shell so `LISTEN_PID` is
    /// its own, with `socket` on fd 3; returns what it reported on the readiness pipe.
    fn report_of_new_master(name: &str, socket: Option<RawFd>) -> Vec<u8> {
        let (mut read_end, write_end) = readiness_pipe();
        let script = "LISTEN_PID=$$ exec \"$0\" --exact \"$1\"";
        let mut child = as_new_master(script, name, socket, write_end.as_raw_fd())
            .spawn()
            .unwrap();
        drop(write_end);
        let mut report = Vec::new();
        read_end.read_to_end(&mut report).unwrap();
        assert!(child.wait().unwrap().success(), "the child failed");
        report
    }

    const FROM_SYSTEMD: &str =
        "sys::upgrade::tests::a_program_taking_the_socket_from_systemd_still_reports_ready";

    /// A program that calls `Listener::from_systemd` itself whenever `LISTEN_FDS` is
    /// set, started again by an upgrade: it takes the socket and the readiness pipe,
    /// and reports ready through it.
    #[test]
    fn a_program_taking_the_socket_from_systemd_still_reports_ready() {
        if std::env::var_os(CHILD).is_some() {
            let listener = crate::server::Listener::from_systemd().expect("the passed socket");
            assert!(listener.local_addr().is_ok());
            assert!(awaiting_ready(), "the readiness pipe was taken");
            // SAFETY: F_GETFD only reads the fd's flags.
            let flags = unsafe { libc::fcntl(crate::sys::exec::READY_FD, libc::F_GETFD) };
            assert!(flags & libc::FD_CLOEXEC != 0, "the pipe is not passed on");
            report_ready();
            assert!(listener_shared(), "the old master (the test) serves on");
            return;
        }
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let report = report_of_new_master(FROM_SYSTEMD, Some(socket.as_raw_fd()));
        assert_eq!(report, [REPORT_READY]);
    }

    const SECOND_TAKE: &str =
        "sys::upgrade::tests::a_second_take_after_the_report_does_not_adopt_a_reused_fd_4";

    /// With other threads running, the variables stay in the environment; once the
    /// report closed fd 4, the number goes to the next file opened (here the crate's
    /// own self-pipe), and a second take (every `build` takes) must not adopt it: the
    /// next report would write into that pipe and close it.
    #[test]
    fn a_second_take_after_the_report_does_not_adopt_a_reused_fd_4() {
        if std::env::var_os(CHILD).is_some() {
            assert!(
                fork::thread_count() > Some(1),
                "the harness runs tests on a thread"
            );
            assert!(take_from_environment().unwrap());
            report_ready();
            let bell = crate::sys::pipe::SelfPipe::new().unwrap();
            assert_eq!(bell.write_fd(), crate::sys::exec::READY_FD, "fd 4 reused");
            assert!(!take_from_environment().unwrap(), "fd 4 adopted again");
            assert!(!awaiting_ready());
            return;
        }
        assert_eq!(report_of_new_master(SECOND_TAKE, None), [REPORT_READY]);
    }

    const SYSTEMD_THEN_BUILD: &str =
        "sys::upgrade::tests::a_program_with_threads_builds_on_the_socket_it_took_from_systemd";

    /// A program with threads that takes the passed socket itself, then builds its
    /// server on it: the build finds the variables still set, and takes nothing again.
    #[test]
    fn a_program_with_threads_builds_on_the_socket_it_took_from_systemd() {
        if std::env::var_os(CHILD).is_some() {
            assert!(
                fork::thread_count() > Some(1),
                "the harness runs tests on a thread"
            );
            let listener = crate::server::Listener::from_systemd().expect("the passed socket");
            let server = crate::Server::builder(crate::Iterative::new())
                .listener(listener)
                .handle_signals(false)
                .build(|| crate::handler::from_fn(|_: &mut crate::Conn| Ok(())));
            assert!(server.is_ok(), "build: {:?}", server.err());
            assert!(
                awaiting_ready(),
                "the readiness pipe is still this program's"
            );
            report_ready();
            return;
        }
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let report = report_of_new_master(SYSTEMD_THEN_BUILD, Some(socket.as_raw_fd()));
        assert_eq!(report, [REPORT_READY]);
    }

    const ORPHAN: &str =
        "sys::upgrade::tests::a_new_master_whose_old_master_died_does_not_share_for_ever";
    /// The file the orphaned new master writes its verdict to.
    const VERDICT_VAR: &str = "MIXSERVE_UPGRADE_TEST_VERDICT";

    /// The old master dies before the new one reports ready (`kill -9`, a crash): the
    /// new one then has another parent (init or a subreaper), which lives on and never
    /// serves on the socket. Sharing with it would keep the socket (and its file) up
    /// for ever: a stop would never shut it nor remove the file.
    #[test]
    fn a_new_master_whose_old_master_died_does_not_share_for_ever() {
        if let Some(verdict) = std::env::var_os(VERDICT_VAR) {
            let old: u64 = std::env::var(OLD_MASTER_VAR).unwrap().parse().unwrap();
            let until = Instant::now() + Duration::from_secs(10);
            while is_alive(old) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(!is_alive(old), "the old master is gone");
            assert!(take_from_environment().unwrap());
            report_ready();
            let parent = nix::unistd::getppid();
            let shared = listener_shared();
            std::fs::write(verdict, format!("parent {parent}, shared {shared}")).unwrap();
            return;
        }
        let verdict = std::env::temp_dir().join(format!("mixserve-orphan-{}", std::process::id()));
        let _ = std::fs::remove_file(&verdict);
        let (mut read_end, write_end) = readiness_pipe();
        // The old master (the outer shell) starts the new one in the background and
        // exits; the inner shell execs the test binary, as an upgrade's script would.
        let script = "export MIXSERVE_UPGRADE_OLD_MASTER=$$; \
                      sh -c 'LISTEN_PID=$$ exec \"$0\" --exact \"$1\"' \"$0\" \"$1\" &";
        let mut old_master = as_new_master(script, ORPHAN, None, write_end.as_raw_fd())
            .env(VERDICT_VAR, &verdict)
            .spawn()
            .unwrap();
        assert!(old_master.wait().unwrap().success());
        drop(write_end);
        let mut report = Vec::new();
        read_end.read_to_end(&mut report).unwrap();
        assert_eq!(report, [REPORT_READY]);
        let text = read_verdict(&verdict);
        assert!(
            text.ends_with("shared false"),
            "the dead master still shares: {text}"
        );
    }

    /// What the orphaned new master wrote to `file` (waited for, bounded).
    fn read_verdict(file: &std::path::Path) -> String {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text.is_empty() {
                let _ = std::fs::remove_file(file);
                return text;
            }
            assert!(Instant::now() < until, "no verdict from the new master");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
