//! This process's id without a syscall per look. glibc no longer caches `getpid(2)`,
//! and the registry asks on every operation of a shared object (is it at home here?);
//! the id is asked once, and again after each fork.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The id asked last; 0 until asked, and again in a child just forked.
static CACHED: AtomicU32 = AtomicU32::new(0);
/// Set once the fork handler that clears [`CACHED`] is registered.
static CLEARED_AT_FORK: AtomicBool = AtomicBool::new(false);
static REGISTER: Once = Once::new();

/// Run by libc in the child of every `fork(2)` made through it (the crate's, nix's,
/// a program's own): only an atomic store, as a forked child allows.
extern "C" fn forget_in_child() {
    CACHED.store(0, Ordering::Relaxed);
}

/// This process's id (`getpid(2)`), asked once per process.
///
/// A child made with a raw `clone(2)` that skips libc's fork handlers, and then runs
/// this crate's code, would see its parent's id; no such child is made here.
pub(crate) fn process_id() -> u32 {
    REGISTER.call_once(|| {
        // SAFETY: registers a child handler only; it stores to an atomic, which is
        // async-signal-safe as a handler run in a forked child must be.
        let registered = unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
        CLEARED_AT_FORK.store(registered == 0, Ordering::SeqCst);
    });
    if !CLEARED_AT_FORK.load(Ordering::SeqCst) {
        return std::process::id();
    }
    match CACHED.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            CACHED.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

#[cfg(test)]
mod tests {
    use super::process_id;

    #[test]
    fn the_id_is_this_process_s() {
        assert_eq!(process_id(), std::process::id());
        assert_eq!(process_id(), std::process::id());
    }
}
