//! The coroutine switch: creating a coroutine on a pooled stack, resuming it, and
//! suspending the running one from anywhere in its call stack.
//!
//! This is the one module of `rt` that uses `unsafe`: code deep inside a coroutine
//! (a socket read, [`park`](super::park)) must reach the coroutine's `Yielder`, which
//! corosensei only hands to the coroutine's entry closure. The entry closure stores a
//! pointer to it in a thread-local; [`suspend`] dereferences that pointer.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

/// A runtime coroutine: no values in or out; parking state lives in the scheduler.
pub(crate) type Co = Coroutine<(), (), (), DefaultStack>;

thread_local! {
    /// The `Yielder` of the coroutine running on this thread; null on the scheduler's stack.
    static YIELDER: Cell<*const Yielder<(), ()>> = const { Cell::new(ptr::null()) };
}

/// Creates a coroutine that runs `f` on `stack`. A panic in `f` is caught at the
/// coroutine's boundary and logged. The forced unwind corosensei uses to drop a suspended
/// coroutine is caught there too, which ends it just as well; `tearing_down` says when
/// that is expected, so it is not logged as a panic.
pub(crate) fn new<F>(stack: DefaultStack, f: F, tearing_down: fn() -> bool) -> Co
where
    F: FnOnce() + 'static,
{
    Co::with_stack(stack, move |yielder, ()| {
        YIELDER.set(yielder);
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        if let Err(payload) = result
            && !tearing_down()
        {
            log::error!("coroutine panicked: {}", panic_message(&*payload));
        }
    })
}

/// Marks the scheduler as back in control (no coroutine running): after a resume, and
/// after a suspended coroutine was dropped (its unwind restored its own yielder).
pub(crate) fn back_on_scheduler() {
    YIELDER.set(ptr::null());
}

/// Runs `co` until it suspends or finishes; true when it finished.
pub(crate) fn resume(co: &mut Co) -> bool {
    let finished = matches!(co.resume(()), CoroutineResult::Return(()));
    YIELDER.set(ptr::null());
    finished
}

/// True when called on a coroutine's stack.
pub(crate) fn on_coroutine() -> bool {
    YIELDER.try_with(|y| !y.get().is_null()).unwrap_or(false)
}

/// Suspends the running coroutine back to the scheduler; returns when it is resumed.
///
/// # Panics
///
/// When called off a coroutine (a bug in the caller: check [`on_coroutine`] first), and
/// when the coroutine is force-unwound while suspended (runtime teardown).
pub(crate) fn suspend() {
    /// Puts this coroutine's `Yielder` back after the switch, also when unwinding.
    struct Restore(*const Yielder<(), ()>);
    impl Drop for Restore {
        fn drop(&mut self) {
            YIELDER.set(self.0);
        }
    }

    let yielder = YIELDER.get();
    assert!(!yielder.is_null(), "suspend called outside a coroutine");
    let _restore = Restore(yielder);
    // SAFETY: `yielder` was stored by this coroutine's entry closure from the `&Yielder`
    // corosensei passed it, which stays valid until that closure returns; the scheduler
    // nulls YIELDER whenever it regains control and each coroutine restores its own after
    // resuming, so a non-null value always belongs to the coroutine running now.
    let yielder = unsafe { &*yielder };
    yielder.suspend(());
}

/// The message of a panic payload, for the log.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(non-string panic payload)"
    }
}
