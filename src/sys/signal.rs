//! Signals through the self-pipe trick: the handler only records the signal number and
//! writes one byte to every registered pipe; loops read the pending set at leisure.
//!
//! The pending set is kept per registration: every loop registered when a signal
//! arrives sees it (two servers in one process both stop on one SIGTERM), and taking
//! a signal takes it for the loop whose pipe is named only.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// How many loops in one process may listen for signals at once.
const SLOTS: usize = 64;

static PIPES: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
/// Per registration: the signals arrived since its loop last looked.
static PENDING: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// Per registration: SIGINTs since the last look, counted: a second Ctrl-C means
/// "now", even when both arrive before the loop looks.
static INTERRUPTS: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];

/// The signals only a pool's master acts on (replace, grow, shrink, upgrade): its
/// children ignore them when the whole process group gets one.
pub(crate) const MASTER_ONLY: [Signal; 4] = [
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR2,
];

/// The signals the crate's loops act on.
pub(crate) const HANDLED: [Signal; 8] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR2,
    Signal::SIGCHLD,
];

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe work here: atomics and write(2). errno is saved because
    // the interrupted code may be between a failing call and its errno read.
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    let saved = unsafe { *libc::__errno_location() };
    // Counted before any pipe is read: an unregistering loop waits for this handler to
    // finish before its pipe can be closed (see `Drop`).
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let bit = if (0..64).contains(&signal) {
        1u64 << signal
    } else {
        0
    };
    for (slot, pipe) in PIPES.iter().enumerate() {
        let fd = pipe.load(Ordering::SeqCst);
        if fd >= 0 {
            PENDING[slot].fetch_or(bit, Ordering::SeqCst);
            if signal == libc::SIGINT {
                INTERRUPTS[slot].fetch_add(1, Ordering::SeqCst);
            }
            // SAFETY: writing one byte from a static buffer; a closed or full pipe only
            // makes write fail, which is ignored.
            unsafe { libc::write(fd, b"s".as_ptr().cast(), 1) };
        }
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// Signal handlers running now, on any thread.
static IN_HANDLER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A pipe registered to receive a byte on every handled signal; unregisters on drop.
#[derive(Debug)]
pub(crate) struct SignalRegistration {
    /// Index into the process-wide table.
    slot: usize,
}

/// Registers `write_fd` to be poked on signals and installs the handler for `signals`.
/// On failure nothing stays registered, and the dispositions go back as the last
/// registration's drop puts them.
pub(crate) fn register(write_fd: RawFd, signals: &[Signal]) -> io::Result<SignalRegistration> {
    let slot = claim_slot()?;
    // What a previous owner of the slot left is not this loop's. Cleared while the
    // slot is only claimed (the handler skips it), before the pipe is published:
    // cleared after, a signal the handler recorded in between would be wiped, and a
    // second server in the process would miss that SIGTERM.
    PENDING[slot].store(0, Ordering::SeqCst);
    INTERRUPTS[slot].store(0, Ordering::SeqCst);
    PIPES[slot].store(write_fd, Ordering::SeqCst);
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    // From here on, dropping it undoes all of the above (a failed install below too).
    let registration = SignalRegistration { slot };
    install_handler(signals)?;
    Ok(registration)
}

/// Marks a slot taken while its registration is set up: not an fd, so the handler
/// (which pokes only fds >= 0) and [`slots_of`] skip it; not -1, so no other
/// registration takes it.
const CLAIMED: RawFd = -2;

/// Takes a free slot of the table, marked [`CLAIMED`].
fn claim_slot() -> io::Result<usize> {
    PIPES
        .iter()
        .position(|s| {
            s.compare_exchange(-1, CLAIMED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })
        .ok_or_else(|| io::Error::other("too many loops listening for signals in one process"))
}

/// Installs the handler for `signals`, keeping each one's disposition from before any
/// loop took it over.
fn install_handler(signals: &[Signal]) -> io::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let mut saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
    for &signal in signals {
        // SAFETY: the handler only touches atomics and calls write(2), both
        // async-signal-safe.
        let previous = unsafe { sigaction(signal, &action) }?;
        if !saved.iter().any(|(s, _)| *s == signal) {
            saved.push((signal, previous));
        }
    }
    Ok(())
}

impl SignalRegistration {
    /// Unregisters, then raises again each of `signals` that arrived while registered
    /// and that no loop took, now that the process's own dispositions are back: for a
    /// server that never runs a loop (only `handle_request`), a SIGTERM held since
    /// `build` acts as if the crate had never caught it.
    pub(crate) fn release_redelivering(self, signals: &[Signal]) {
        let pending = PENDING[self.slot].load(Ordering::SeqCst);
        drop(self);
        for &signal in signals {
            if pending & (1u64 << (signal as i32)) != 0 {
                let _ = nix::sys::signal::raise(signal);
            }
        }
    }
}

/// The dispositions the crate replaced, restored when the last loop stops listening.
static SAVED: std::sync::Mutex<Vec<(Signal, SigAction)>> = std::sync::Mutex::new(Vec::new());
/// Registrations alive now.
static ACTIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for SignalRegistration {
    /// Unregisters the pipe; the last registration gives the signals back their
    /// previous dispositions, so a program's Ctrl-C works again after `serve_forever`.
    fn drop(&mut self) {
        PIPES[self.slot].store(-1, Ordering::SeqCst);
        // A handler on another thread may have read the fd just before: its write must
        // land before the caller closes the pipe, or it could land in whatever file or
        // socket takes the number next. Handlers only make a few atomic operations and
        // one write, so this wait is short; one that starts now reads -1.
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        let mut saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
        if ACTIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            for (signal, previous) in saved.drain(..) {
                // SAFETY: reinstalls a disposition the process had before; it was
                // valid then and its handler (if any) is still in the program.
                let _ = unsafe { sigaction(signal, &previous) };
            }
        }
    }
}

/// The registrations of the loop whose pipe is `write_fd` (one loop may register the
/// same pipe more than once, for different signals).
fn slots_of(write_fd: RawFd) -> impl Iterator<Item = usize> {
    (0..SLOTS).filter(move |&slot| write_fd >= 0 && PIPES[slot].load(Ordering::SeqCst) == write_fd)
}

/// True if `signal` arrived since the loop whose pipe is `write_fd` last took it;
/// leaves the other signals, and other loops' view, pending.
pub(crate) fn take(write_fd: RawFd, signal: Signal) -> bool {
    let bit = 1u64 << (signal as i32);
    // Every registration of the pipe is cleared (no short-circuit).
    let mut seen = false;
    for slot in slots_of(write_fd) {
        seen |= PENDING[slot].fetch_and(!bit, Ordering::SeqCst) & bit != 0;
    }
    seen
}

/// How many SIGINTs arrived since the loop whose pipe is `write_fd` last looked.
pub(crate) fn take_interrupts(write_fd: RawFd) -> u32 {
    slots_of(write_fd)
        .map(|slot| INTERRUPTS[slot].swap(0, Ordering::SeqCst))
        .max()
        .unwrap_or(0)
}

/// In a freshly forked child: forget the parent's pipes and restore default handling,
/// so a signal for the child never pokes the master's loop.
pub(crate) fn reset_in_child() {
    // Only the forking thread lives on here, and it was in no handler.
    IN_HANDLER.store(0, Ordering::SeqCst);
    for slot in 0..SLOTS {
        PIPES[slot].store(-1, Ordering::SeqCst);
        PENDING[slot].store(0, Ordering::SeqCst);
        INTERRUPTS[slot].store(0, Ordering::SeqCst);
    }
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in HANDLED {
        // SAFETY: restoring the default disposition installs no handler.
        let _ = unsafe { sigaction(signal, &default) };
    }
}

/// In a `Forking` child: ignore the signals that reach the whole process group but are
/// the master's to act on: the terminal's SIGINT and SIGQUIT (Ctrl-C / Ctrl-\), a
/// hang-up, and the pool signals HUP, TTIN, TTOU and USR2 (`kill -HUP -- -PGID`), whose
/// default would kill or stop the child mid-response. The master decides how in-flight
/// connections end: it drains, then kills what is left. (Preforked workers ignore the
/// same `MASTER_ONLY` in `worker_process::install`.)
pub(crate) fn ignore_group_signals() {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGQUIT]
        .into_iter()
        .chain(MASTER_ONLY)
    {
        // SAFETY: SIG_IGN installs no handler.
        let _ = unsafe { sigaction(signal, &ignore) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Set in the child run of the test below.
    const CHILD: &str = "MIXSERVE_SIGNAL_REGISTER_CHILD";

    /// The handler `signal` has now.
    fn handler_of(signal: Signal) -> libc::sighandler_t {
        // SAFETY: a zeroed sigaction is a valid value for sigaction to fill in; a null
        // new action only reads the current one.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal as libc::c_int, std::ptr::null(), &mut current);
            current.sa_sigaction
        }
    }

    /// SIGKILL cannot be caught: a registration that asks for it fails after taking a
    /// slot and replacing SIGWINCH's handler. Left so, the handler would write into the
    /// pipe's number for ever, whatever file takes it next, and the process's own
    /// handling of SIGWINCH would never come back.
    #[test]
    fn a_registration_that_cannot_install_its_handler_undoes_itself() {
        if std::env::var_os(CHILD).is_none() {
            // Run in a child: dispositions are the whole process's.
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sys::signal::tests::a_registration_that_cannot_install_its_handler_undoes_itself",
                ])
                .env(CHILD, "1")
                .status()
                .unwrap();
            assert!(status.success(), "the child failed: {status:?}");
            return;
        }
        let (_read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let fd = write_end.as_raw_fd();
        assert_eq!(handler_of(Signal::SIGWINCH), libc::SIG_DFL);
        let registered = register(fd, &[Signal::SIGWINCH, Signal::SIGKILL]);
        assert!(registered.is_err(), "SIGKILL was caught");
        assert_eq!(slots_of(fd).count(), 0, "the pipe is still registered");
        assert_eq!(ACTIVE.load(Ordering::SeqCst), 0);
        assert_eq!(handler_of(Signal::SIGWINCH), libc::SIG_DFL, "not restored");
    }
}
