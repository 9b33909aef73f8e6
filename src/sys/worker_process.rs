//! What a forked worker process sets up for itself: to die with its master, and stop
//! signals that interrupt a blocking `accept` (installed *without* `SA_RESTART`) and
//! nothing else.
//!
//! The stop signals are blocked in every thread that runs handlers, so a handler never
//! sees `EINTR` from them, however often the master re-sends them during a drain. They
//! reach only the watchdog thread (which never blocks them) and a thread while it waits
//! for its next connection (between [`begin_interruptible_wait`] and
//! [`end_interruptible_wait`]), where an interrupted `accept` is the point. A
//! thread-directed re-send ([`interrupt_waiting_thread`]) wakes that thread if a signal
//! landed just before it blocked.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction};

/// No stop asked.
pub(crate) const RUN: u8 = 0;
/// Finish the connection in hand, then exit (SIGTERM).
pub(crate) const STOP_GRACEFUL: u8 = 1;
/// Exit now (a second SIGINT, SIGQUIT).
pub(crate) const STOP_FAST: u8 = 2;

static STOP: AtomicU8 = AtomicU8::new(RUN);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The thread waiting for a connection now (its kernel thread id; 0: none).
static WAITING: AtomicI32 = AtomicI32::new(0);
/// The master's death was noticed (and acted on) already.
static MASTER_GONE_NOTICED: AtomicBool = AtomicBool::new(false);
/// SIGINTs received by this worker.
static INTERRUPTS: AtomicU32 = AtomicU32::new(0);
/// Turns of the worker's serving loop: bumped each time the model comes back to its
/// source (for its next connection, or to wait for room).
static TURNS: AtomicU64 = AtomicU64::new(0);
/// Threads blocked waiting for a connection now (`WAITING` names only the last).
static WAITING_THREADS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    // SAFETY: reading this thread's errno slot, always valid.
    let saved = unsafe { *libc::__errno_location() };
    // SIGTERM, and the first SIGINT (a terminal's Ctrl-C reaches every worker), are
    // graceful; a second SIGINT, or SIGQUIT, fast. Counted, not read from `STOP`: the
    // master's SIGTERM may be handled first, though it came second.
    let first_interrupt = signal == libc::SIGINT && INTERRUPTS.fetch_add(1, Ordering::SeqCst) == 0;
    let level = if signal == libc::SIGTERM || first_interrupt {
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

/// In a fresh worker: SIGTERM and a first SIGINT ask a graceful stop, a second SIGINT
/// or SIGQUIT a fast one, each
/// interrupting blocking calls (`EINTR`) and poking `wake_fd`; the master's own
/// signals (SIGHUP, SIGTTIN, SIGTTOU, SIGUSR2), sent to a whole process group by a
/// terminal or `kill -- -PGID`, are ignored. The parent-death signal is SIGTERM; a master that died before that
/// was set is caught by comparing `getppid` with `master`.
pub(crate) fn install(wake_fd: RawFd, master: u32) -> io::Result<()> {
    WAKE_FD.store(wake_fd, Ordering::SeqCst);
    STOP.store(RUN, Ordering::SeqCst);
    WAITING_THREADS.store(0, Ordering::SeqCst);
    INTERRUPTS.store(0, Ordering::SeqCst);
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
    for signal in super::signal::MASTER_ONLY {
        // SAFETY: SIG_IGN installs no handler.
        unsafe { sigaction(signal, &ignore) }?;
    }
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
    if nix::unistd::getppid().as_raw() as u32 != master {
        STOP.fetch_max(STOP_GRACEFUL, Ordering::SeqCst);
    }
    Ok(())
}

/// True once per worker: the first time a caller finds that `master` is no longer
/// its parent (the watchdog, or the worker's last look before it exits, whichever
/// comes first: the parent-death signal may end the model before the watchdog's turn).
pub(crate) fn master_gone_first_seen(master: u32) -> bool {
    nix::unistd::getppid().as_raw() as u32 != master
        && !MASTER_GONE_NOTICED.swap(true, Ordering::SeqCst)
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

/// The model's serving loop came back to its source (see [`loop_turns`]).
pub(crate) fn loop_turned() {
    TURNS.fetch_add(1, Ordering::Relaxed);
}

/// How many times the serving loop came back to its source so far: the watchdog beats
/// the heartbeat only while this moves, or the loop is [`waiting_for_connection`], or a
/// handler is parked in a shared-object wait.
pub(crate) fn loop_turns() -> u64 {
    TURNS.load(Ordering::Relaxed)
}

/// Whether a thread of the worker is blocked waiting for its next connection now.
pub(crate) fn waiting_for_connection() -> bool {
    WAITING_THREADS.load(Ordering::SeqCst) != 0
}

/// The calling thread starts waiting for a connection: the stop signals, blocked in
/// every other thread of the worker but the watchdog, may interrupt it now.
pub(crate) fn begin_interruptible_wait() {
    WAITING.store(nix::unistd::gettid().as_raw(), Ordering::SeqCst);
    WAITING_THREADS.fetch_add(1, Ordering::SeqCst);
    block_stop_signals(false);
}

/// The calling thread stops waiting for a connection.
pub(crate) fn end_interruptible_wait() {
    block_stop_signals(true);
    WAITING_THREADS.fetch_sub(1, Ordering::SeqCst);
    let me = nix::unistd::gettid().as_raw();
    let _ = WAITING.compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst);
}

/// Interrupts the thread waiting for a connection, if any (SIGTERM to that thread
/// alone), so it looks at the stop flag; a signal the watchdog took never reaches it.
pub(crate) fn interrupt_waiting_thread() {
    let tid = WAITING.load(Ordering::SeqCst);
    if tid != 0 {
        // SAFETY: tgkill only sends a signal; a thread that left meanwhile makes it
        // fail with ESRCH (or, its id reused by another thread of this process, gives
        // that thread a SIGTERM whose handler only records the stop), both harmless.
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGTERM) };
    }
}
