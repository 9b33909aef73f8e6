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

/// Forks the process.
///
/// # Safety
///
/// The calling process must have no other threads, or the child may only call
/// async-signal-safe functions before `exec`/`_exit` (a lock held by another thread at
/// the fork stays locked forever in the child). The crate's process-based mix-ins fork
/// only from their single-threaded master.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller upholds the single-threaded requirement documented above.
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
