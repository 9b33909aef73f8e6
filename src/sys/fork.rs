//! Processes: fork, the child's exit, and reaping.

use std::io;

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

/// Which side of a fork the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    /// The parent; the child's pid.
    Parent(Pid),
    /// The new child process.
    Child,
}

/// Proof that the process was single-threaded when checked: the key to [`fork`].
#[derive(Debug)]
pub(crate) struct SingleThreaded(());

impl SingleThreaded {
    /// Checks `/proc/self/status`; fails if another thread runs.
    pub(crate) fn check(who: &str) -> std::io::Result<SingleThreaded> {
        match thread_count() {
            1 => Ok(SingleThreaded(())),
            n => Err(std::io::Error::other(format!(
                "{who}: refusing to fork from a process with {n} threads (a lock held by \
                 another thread would stay locked in every child); start the server before \
                 any other thread"
            ))),
        }
    }
}

/// Forks the process. The caller holds a [`SingleThreaded`] proof taken before its
/// loop started, and starts no thread while it holds it: with other threads, the child
/// could find a lock (the allocator's, a logger's) held for ever.
pub(crate) fn fork(_proof: &SingleThreaded) -> io::Result<Forked> {
    // SAFETY: the proof says this process has one thread, so the child's memory holds
    // no lock owned by a thread that no longer exists.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// Ends a forked child without running the parent's `atexit` handlers or unwinding into
/// the parent's loop (the socketserver rule: a forked child never returns).
pub(crate) fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Number of threads in this process, from `/proc/self/status`.
pub(crate) fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// Reaps every child that has exited, without blocking; returns `(pid, exit code)`,
/// where a child killed by a signal reports `128 + signal`.
pub(crate) fn reap_exited() -> Vec<(Pid, i32)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => reaped.push((pid, code)),
            Ok(WaitStatus::Signaled(pid, signal, _)) => reaped.push((pid, 128 + signal as i32)),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return reaped,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return reaped,
        }
    }
}

/// Blocks until the child `pid` exits; returns its exit code as `reap_exited` does.
pub(crate) fn wait_child(pid: Pid) -> Option<i32> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Some(128 + signal as i32),
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Sends `signal` to `pid`, ignoring a child that is already gone.
pub(crate) fn kill(pid: Pid, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(pid, signal);
}

/// Fds of a master process (its listener, epoll, hub sockets) that a forked child must
/// close at once: a child holding a copy of another child's hub socket would keep it
/// from ever reading as closed.
static CLOSE_IN_CHILD: std::sync::Mutex<Vec<std::os::fd::RawFd>> =
    std::sync::Mutex::new(Vec::new());

/// Marks `fd` to be closed in every child forked from now on.
pub(crate) fn close_in_child(fd: std::os::fd::RawFd) {
    if let Ok(mut fds) = CLOSE_IN_CHILD.lock() {
        fds.push(fd);
    }
}

/// Forgets `fd` (the master closed it).
pub(crate) fn forget_in_child(fd: std::os::fd::RawFd) {
    if let Ok(mut fds) = CLOSE_IN_CHILD.lock() {
        fds.retain(|&f| f != fd);
    }
}

/// In a freshly forked child: closes the master's fds and resets signal handling.
pub(crate) fn after_fork_in_child() {
    let fds = match CLOSE_IN_CHILD.lock() {
        Ok(mut fds) => std::mem::take(&mut *fds),
        Err(_) => Vec::new(),
    };
    for fd in fds {
        // SAFETY: these fds were registered by their owners in the master; the child
        // never uses them and never returns into the code that owns them (it _exits),
        // so no OwnedFd will close them a second time.
        unsafe { libc::close(fd) };
    }
    super::signal::reset_in_child();
}
