//! What a forked worker process sets up for itself: to die with its master, and stop
//! signals that interrupt a blocking `accept` (installed *without* `SA_RESTART`) and
//! nothing else.
//!
//! The stop signals are blocked in every thread that runs handlers, so a handler never
//! sees `EINTR` from them, however often the master re-sends them during a drain. They
//! reach only the watchdog thread (which never blocks them) and a thread while it waits
//! for its next connection inside [`accepting`], where an interrupted `accept` is the
//! point. A thread-directed re-send ([`interrupt_accept`]) wakes that thread if a
//! signal landed just before it blocked.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction};

/// No stop asked.
pub(crate) const RUN: u8 = 0;
/// Finish the connection in hand, then exit (SIGTERM).
pub(crate) const STOP_GRACEFUL: u8 = 1;
/// Exit now (SIGINT, SIGQUIT).
pub(crate) const STOP_FAST: u8 = 2;

static STOP: AtomicU8 = AtomicU8::new(RUN);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The thread that last waited for a connection (0: none yet).
static ACCEPTING_TID: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    // SAFETY: reading this thread's errno slot, always valid.
    let saved = unsafe { *libc::__errno_location() };
    let level = if signal == libc::SIGTERM {
        STOP_GRACEFUL
    } else {
        STOP_FAST
    };
    STOP.fetch_max(level, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) of one static byte is async-signal-safe; errors are ignored.
        unsafe { libc::write(fd, b"s".as_ptr().cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// The signals that stop a worker.
pub(crate) const STOP_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT];

/// In a fresh worker: SIGTERM asks a graceful stop, SIGINT/SIGQUIT a fast one, each
/// poking `wake_fd` and interrupting (`EINTR`) the blocking call of the thread that
/// takes it — only a thread inside [`accepting`] or the watchdog, see the module doc; the master's own
/// signals (SIGHUP, SIGTTIN, SIGTTOU), sent to a whole process group by a terminal,
/// are ignored. The parent-death signal is SIGTERM; a master that died before that
/// was set is caught by comparing `getppid` with `master`.
pub(crate) fn install(wake_fd: RawFd, master: u32) -> io::Result<()> {
    WAKE_FD.store(wake_fd, Ordering::SeqCst);
    STOP.store(RUN, Ordering::SeqCst);
    let stop = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for signal in STOP_SIGNALS {
        // SAFETY: the handler only touches atomics and write(2).
        unsafe { sigaction(signal, &stop) }?;
    }
    for signal in [Signal::SIGHUP, Signal::SIGTTIN, Signal::SIGTTOU] {
        // SAFETY: SIG_IGN installs no handler.
        unsafe { sigaction(signal, &ignore) }?;
    }
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
    if nix::unistd::getppid().as_raw() as u32 != master {
        STOP.fetch_max(STOP_GRACEFUL, Ordering::SeqCst);
    }
    Ok(())
}

/// The stop asked so far: [`RUN`], [`STOP_GRACEFUL`] or [`STOP_FAST`].
pub(crate) fn stop_requested() -> u8 {
    STOP.load(Ordering::SeqCst)
}

/// Asks this worker to stop (from its own code, e.g. after `max_requests`).
pub(crate) fn request_stop(level: u8) {
    STOP.fetch_max(level, Ordering::SeqCst);
}

/// Blocks (`true`) or unblocks the stop signals in the calling thread, so that they
/// reach the thread that blocks in `accept`, not a helper or connection thread.
pub(crate) fn block_stop_signals(block: bool) {
    let mut set = SigSet::empty();
    STOP_SIGNALS.iter().for_each(|&s| set.add(s));
    let how = if block {
        SigmaskHow::SIG_BLOCK
    } else {
        SigmaskHow::SIG_UNBLOCK
    };
    let _ = nix::sys::signal::pthread_sigmask(how, Some(&set), None);
}

/// While alive, the calling thread takes the stop signals, so they interrupt its wait
/// for a connection; dropping it blocks them again, before the connection's handler
/// runs on this thread.
#[derive(Debug)]
pub(crate) struct Accepting(());

/// Opens the calling thread to the stop signals for its wait for a connection; a
/// signal that arrived while they were blocked is handled now.
pub(crate) fn accepting() -> Accepting {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    ACCEPTING_TID.store(tid, Ordering::SeqCst);
    block_stop_signals(false);
    Accepting(())
}

impl Drop for Accepting {
    fn drop(&mut self) {
        block_stop_signals(true);
    }
}

/// Sends SIGTERM to the thread that waits for connections (not to the process, which
/// could hand it to any thread): it interrupts that wait, or stays pending until the
/// thread waits again.
pub(crate) fn interrupt_accept() {
    let tid = ACCEPTING_TID.load(Ordering::SeqCst);
    if tid > 0 {
        // SAFETY: tgkill only sends a signal; a thread that is gone makes it fail with
        // ESRCH, which is ignored. The tgid check keeps it inside this process.
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGTERM) };
    }
}
