//! How a forked child learns that its parent began a graceful stop: the parent sends
//! SIGURG (ignored by default, so a child that has not installed the handler yet is
//! not killed by it), and the child's handler sets the drain flag its connection reads,
//! so the response in hand goes out with `Connection: close`. A SIGTERM sent to the
//! child itself (with its whole process group, as `kill -TERM -PGID` and systemd's
//! `KillMode=control-group` send it) means the same: finish the request, then exit.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::unistd::Pid;

use crate::conn::Drain;

/// The signal a parent sends its children when it starts draining.
const DRAIN: Signal = Signal::SIGURG;

/// The child's drain state, leaked for the life of the process.
static FLAG: AtomicPtr<Drain> = AtomicPtr::new(std::ptr::null_mut());
/// The write end of its bell (-1: none): a thread idle between requests polls the
/// bell, and a flag set while it was not in that poll yet would not wake it.
static BELL: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_drain(_signal: libc::c_int) {
    // SAFETY: reading errno is async-signal-safe; it is restored before returning.
    let saved = unsafe { *libc::__errno_location() };
    let flag = FLAG.load(Ordering::SeqCst);
    if !flag.is_null() {
        // SAFETY: `flag` comes from `Arc::into_raw` and is never released, so it points
        // to a live `Drain` until the process exits; `mark` only stores to an atomic,
        // which is signal-safe.
        unsafe { (*flag).mark() };
    }
    let bell = BELL.load(Ordering::SeqCst);
    if bell >= 0 {
        // SAFETY: write(2) of one static byte is async-signal-safe; the pipe is the
        // leaked drain state's, open for the life of the process; errors are ignored.
        unsafe { libc::write(bell, b"d".as_ptr().cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// In a forked child: the parent's drain signal, or a SIGTERM, sets `flag`.
pub(crate) fn follow_parent_drain(flag: Arc<Drain>) -> io::Result<()> {
    // A flag set before is left leaked: a handler running now may still read it.
    BELL.store(flag.bell_fd().unwrap_or(-1), Ordering::SeqCst);
    FLAG.store(Arc::into_raw(flag).cast_mut(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_drain),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [DRAIN, Signal::SIGTERM] {
        // SAFETY: the handler only loads atomics, stores to one and writes to a pipe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// In the parent: tells `child` that a graceful stop began.
pub(crate) fn tell(child: Pid) {
    let _ = nix::sys::signal::kill(child, DRAIN);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::conn::Drain;

    #[test]
    fn the_drain_signal_rings_the_bell_an_idle_thread_polls() {
        let drain = Arc::new(Drain::new());
        super::follow_parent_drain(Arc::clone(&drain)).unwrap();
        // SAFETY: raising a signal this process handles.
        unsafe { libc::raise(libc::SIGURG) };
        assert!(drain.is_draining());
        assert!(
            crate::sys::readable_now(drain.bell_read_fd()),
            "a thread about to poll the bell would sleep out its idle timeout"
        );
    }
}
