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

/// The switch of the coroutine running on this thread, set aside while another
/// runtime is torn down on its stack (see `context::enter_for_teardown`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Saved(*const Yielder<(), ()>);

/// Sets the running coroutine's switch aside: this thread counts as on no coroutine.
pub(crate) fn set_aside() -> Saved {
    Saved(YIELDER.replace(ptr::null()))
}

/// Puts back what [`set_aside`] took.
pub(crate) fn restore(saved: Saved) {
    YIELDER.set(saved.0);
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

/// Runs `f` on the stack of the scheduler that resumed this coroutine, and returns what
/// it returns; on a plain thread, just runs it.
///
/// For stack-heavy work that never waits (parsing a request head): its frames then
/// never deepen a coroutine's stack, whose every touched page a parked coroutine keeps,
/// and they run on the one stack that stays in the CPU's cache. `f` must not suspend: while it runs, this
/// thread counts as off any coroutine, and a wait in it fails as one made outside a
/// runtime would. A panic in `f` propagates to the caller.
pub(crate) fn on_scheduler_stack<R>(f: impl FnOnce() -> R + Send) -> R {
    let yielder = YIELDER.get();
    if yielder.is_null() {
        return f();
    }
    /// Puts this coroutine's `Yielder` back after `f`, also when `f` panics.
    struct Restore(*const Yielder<(), ()>);
    impl Drop for Restore {
        fn drop(&mut self) {
            YIELDER.set(self.0);
        }
    }
    let _restore = Restore(yielder);
    // SAFETY: as in `suspend`: a non-null YIELDER belongs to the coroutine running now,
    // whose entry closure (and so its `Yielder`) outlives this call.
    let yielder = unsafe { &*yielder };
    YIELDER.set(ptr::null());
    yielder.on_parent_stack(f)
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::rt::{Runtime, RuntimeConfig};

    #[test]
    fn work_runs_on_the_scheduler_stack_and_the_coroutine_goes_on_after() {
        let outer = 0u8;
        let outer = &outer as *const u8 as usize;
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let seen = Rc::new(Cell::new((0usize, 0usize, false, false, false)));
        let report = Rc::clone(&seen);
        runtime
            .spawn(move || {
                let here = 0u8;
                let here = &here as *const u8 as usize;
                let (there, inside_counts_as_coroutine) = on_scheduler_stack(|| {
                    let there = 0u8;
                    (&there as *const u8 as usize, on_coroutine())
                });
                let panicked = std::panic::catch_unwind(|| {
                    on_scheduler_stack(|| panic!("propagates"));
                })
                .is_err();
                // Still a coroutine afterwards: it can suspend and be resumed.
                crate::rt::yield_now();
                report.set((
                    here,
                    there,
                    inside_counts_as_coroutine,
                    panicked,
                    on_coroutine(),
                ));
            })
            .unwrap();
        runtime.run().unwrap();
        let (here, there, inside, panicked, after) = seen.get();
        // The scheduler runs on this thread's stack, a little below `outer`; the
        // coroutine on a stack of its own, mapped elsewhere.
        assert!(
            outer.abs_diff(there) < outer.abs_diff(here),
            "ran on the thread's stack: outer {outer:#x}, there {there:#x}, here {here:#x}"
        );
        assert!(!inside, "off any coroutine while on the scheduler's stack");
        assert!(panicked, "a panic propagates to the caller");
        assert!(after, "the coroutine's own yielder is back");
    }
}
