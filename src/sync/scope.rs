//! Which server the current handler serves, so a shutdown answers only that server's
//! waiters, and whether another connection could ever run while this one waits.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// The drain flag of the server whose handlers run on this thread. A thread (or a
    /// scheduler's loop thread) serves one server, so the flag is set once and kept.
    static SERVING: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
    /// True while an `Iterative` server runs a handler: nobody else can run.
    static EXCLUSIVE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as serving the server whose drain flag is `drain`.
pub(crate) fn enter(drain: &Arc<AtomicBool>) {
    SERVING.with(|s| {
        let mut serving = s.borrow_mut();
        if !serving
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, drain))
        {
            *serving = Some(Arc::clone(drain));
        }
    });
}

/// The tag of the current thread's server (0 outside any server).
pub(crate) fn current() -> usize {
    SERVING.with(|s| s.borrow().as_ref().map_or(0, |flag| of(flag)))
}

/// The tag of a server, from its drain flag.
pub(crate) fn of(drain: &Arc<AtomicBool>) -> usize {
    Arc::as_ptr(drain) as usize
}

/// True when the current thread's server has begun draining: new waits end at once.
pub(crate) fn draining() -> bool {
    SERVING.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    })
}

/// Runs `f` with no other connection able to run (the `Iterative` model): a wait on a
/// shared object inside `f` fails with `WaitError::NoOtherWorker` instead of hanging.
pub fn exclusive<R>(f: impl FnOnce() -> R) -> R {
    let previous = EXCLUSIVE.with(|e| e.replace(true));
    let result = f();
    EXCLUSIVE.with(|e| e.set(previous));
    result
}

/// True inside [`exclusive`].
pub(crate) fn is_exclusive() -> bool {
    EXCLUSIVE.with(Cell::get)
}
