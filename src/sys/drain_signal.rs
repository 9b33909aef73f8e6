//! How a forked child learns that its parent began a graceful stop: the parent sends
//! SIGURG (ignored by default, so a child that has not installed the handler yet is
//! not killed by it), and the child's handler sets the drain flag its connection reads,
//! so the response in hand goes out with `Connection: close`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::unistd::Pid;

use crate::conn::Drain;

/// The signal a parent sends its children when it starts draining.
const DRAIN: Signal = Signal::SIGURG;

/// The child's drain state, leaked for the life of the process.
static FLAG: AtomicPtr<Drain> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_drain(_signal: libc::c_int) {
    let flag = FLAG.load(Ordering::SeqCst);
    if !flag.is_null() {
        // SAFETY: `flag` comes from `Arc::into_raw` and is never released, so it points
        // to a live `Drain` until the process exits; `mark` only stores to an atomic,
        // which is signal-safe.
        unsafe { (*flag).mark() };
    }
}

/// In a forked child: the parent's drain signal sets `flag`.
pub(crate) fn follow_parent_drain(flag: Arc<Drain>) -> io::Result<()> {
    // A flag set before is left leaked: a handler running now may still read it.
    FLAG.store(Arc::into_raw(flag).cast_mut(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_drain),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only loads an atomic pointer and stores to an atomic.
    unsafe { sigaction(DRAIN, &action) }?;
    Ok(())
}

/// In the parent: tells `child` that a graceful stop began.
pub(crate) fn tell(child: Pid) {
    let _ = nix::sys::signal::kill(child, DRAIN);
}
