//! Processes: fork, the child's exit, and reaping; which processes are this process's
//! own forked children (the hub serves only those).

use std::collections::HashSet;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
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
    /// Checks `/proc/self/status`; fails if another thread runs, and fails closed
    /// when the count cannot be read.
    pub(crate) fn check(who: &str) -> std::io::Result<SingleThreaded> {
        match thread_count() {
            Some(1) => Ok(SingleThreaded(())),
            Some(n) => Err(std::io::Error::other(format!(
                "{who}: refusing to fork from a process with {n} threads (a lock held by \
                 another thread would stay locked in every child); start the server before \
                 any other thread"
            ))),
            None => Err(std::io::Error::other(format!(
                "{who}: refusing to fork: cannot read the thread count from \
                 /proc/self/status (is /proc mounted?)"
            ))),
        }
    }
}

/// The pids this process forked with [`fork`] and has not reaped yet.
static CHILDREN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);
/// Set in a child forked by [`fork`] once [`after_fork_in_child`] ran.
static IN_FORKED_CHILD: AtomicBool = AtomicBool::new(false);

fn children() -> std::sync::MutexGuard<'static, Option<HashSet<u32>>> {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// True if `pid` is a live (unreaped) child this process forked: the hub's test of
/// trust. A reaped pid is forgotten in the same call that reaps it, so a recycled pid
/// is never taken for a worker.
pub(crate) fn is_own_child(pid: u32) -> bool {
    children().as_ref().is_some_and(|set| set.contains(&pid))
}

/// This process's effective uid (what `SO_PEERCRED` reports for its children).
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// True in a worker process forked by the crate's models (after its set-up ran).
pub(crate) fn in_forked_child() -> bool {
    IN_FORKED_CHILD.load(Ordering::SeqCst)
}

fn forget_child(pid: Pid) {
    if let Some(set) = children().as_mut() {
        set.remove(&(pid.as_raw() as u32));
    }
}

/// Forks the process. The caller holds a [`SingleThreaded`] proof taken before its
/// loop started, and starts no thread while it holds it: with other threads, the child
/// could find a lock (the allocator's, a logger's) held for ever. The thread count is
/// checked again immediately before the fork (a user hook may have started a thread
/// since the proof was taken); the fork is refused if it is not 1.
///
/// Every signal is blocked across the fork, and stays blocked in the child until it
/// calls [`release_signals_in_child`]: a signal the parent sends a child that has not
/// run yet (a stop during start-up) is then handled by the child's own handlers, not
/// by the parent's ones it inherited (which would record it in the child's copy of
/// the parent's state, where nobody looks: the stop would be lost).
pub(crate) fn fork(_proof: &SingleThreaded) -> io::Result<Forked> {
    SingleThreaded::check("fork")?;
    let mut before = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut before),
    )?;
    // Taken before the fork so the child's copy of the lock is not held by anyone.
    let mut set = children();
    // SAFETY: checked just above: this process has one thread, so the child's memory
    // holds no lock owned by a thread that no longer exists (the one lock held here
    // belongs to this very thread and is released in both processes below).
    let forked = unsafe { nix::unistd::fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
    }
    match forked? {
        ForkResult::Parent { child } => {
            set.get_or_insert_with(HashSet::new)
                .insert(child.as_raw() as u32);
            Ok(Forked::Parent(child))
        }
        ForkResult::Child => {
            // The parent's children are not this process's.
            *set = None;
            if let Ok(mut mask) = MASK_BEFORE_FORK.lock() {
                *mask = Some(before);
            }
            Ok(Forked::Child)
        }
    }
}

/// In a child forked by [`fork`]: the signal mask the parent had, restored by
/// [`release_signals_in_child`].
static MASK_BEFORE_FORK: Mutex<Option<SigSet>> = Mutex::new(None);

/// In a child forked by [`fork`], once its own signal handling is set up: unblocks
/// the signals (restores the parent's mask); signals that came since the fork are
/// delivered now, to the child's handlers.
pub(crate) fn release_signals_in_child() {
    let before = MASK_BEFORE_FORK
        .lock()
        .ok()
        .and_then(|mut mask| mask.take());
    if let Some(before) = before {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
    }
}

/// Ends a forked child without running the parent's `atexit` handlers or unwinding into
/// the parent's loop (the socketserver rule: a forked child never returns).
pub(crate) fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Number of threads in this process, from `/proc/self/status`; `None` when it cannot
/// be read (callers must then assume the worst).
pub(crate) fn thread_count() -> Option<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
}

/// The exit code [`reap_exited`] reports for a child someone else reaped.
pub(crate) const REAPED_ELSEWHERE: i32 = -1;

/// Reaps every child this process forked with [`fork`] that has exited, without
/// blocking; returns `(pid, exit code)`, where a child killed by a signal reports
/// `128 + signal`, and one reaped elsewhere [`REAPED_ELSEWHERE`]. Children the program started itself are left to it (their exit
/// status is theirs to collect).
pub(crate) fn reap_exited() -> Vec<(Pid, i32)> {
    let mut reaped = Vec::new();
    loop {
        // Look at one exited child without reaping it: the common case, one of ours.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::All, flags) {
            Ok(WaitStatus::StillAlive) => return reaped,
            // No child left to wait for: any still counted here was reaped elsewhere
            // (SIGCHLD ignored, or the program waited for it); look at each.
            Err(Errno::ECHILD) => break,
            Ok(status) => match status.pid() {
                Some(pid) if is_own_child(pid.as_raw() as u32) => match reap_one(pid) {
                    Some(code) => reaped.push((pid, code)),
                    None => return reaped,
                },
                // A child of the program's own exited: it would hide ours from
                // `waitid`, so look at ours one by one.
                _ => break,
            },
            Err(Errno::EINTR) => continue,
            Err(_) => return reaped,
        }
    }
    let own: Vec<u32> = children()
        .as_ref()
        .map(|set| set.iter().copied().collect())
        .unwrap_or_default();
    for pid in own {
        let pid = Pid::from_raw(pid as i32);
        if let Some(code) = reap_one(pid) {
            reaped.push((pid, code));
        }
    }
    reaped
}

/// Reaps `pid` if it has exited: its exit code, as [`reap_exited`] reports it.
fn reap_one(pid: Pid) -> Option<i32> {
    loop {
        let code = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => exit_code(status)?,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {
                // Reaped elsewhere (SIGCHLD ignored, or the program waited for it):
                // gone, with an exit code nobody can know now.
                forget_child(pid);
                return Some(REAPED_ELSEWHERE);
            }
            Err(_) => return None,
        };
        forget_child(pid);
        return Some(code);
    }
}

/// The exit code a wait status reports, with a child killed by a signal as
/// `128 + signal` (as a shell says it); `None` while the child has not ended.
pub(crate) fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

/// Blocks until the child `pid` exits; returns its exit code as `reap_exited` does.
pub(crate) fn wait_child(pid: Pid) -> Option<i32> {
    loop {
        let code = match waitpid(pid, None) {
            Ok(status) => match exit_code(status) {
                Some(code) => Some(code),
                None => continue,
            },
            Err(Errno::EINTR) => continue,
            Err(_) => None,
        };
        forget_child(pid);
        return code;
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

/// In a freshly forked child: closes the master's fds and resets signal handling (the
/// signals stay blocked until [`release_signals_in_child`]).
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
    IN_FORKED_CHILD.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_checks_the_thread_count_itself() {
        // A proof taken earlier does not let a fork through once a thread runs.
        let (stop, parked) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || parked.recv());
        let stale_proof = SingleThreaded(());
        let refused = fork(&stale_proof).expect_err("forked with two threads");
        assert!(refused.to_string().contains("threads"), "{refused}");
        stop.send(()).unwrap();
        let _ = other.join();
    }
}
