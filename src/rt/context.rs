//! Thread-local state: which runtime is running on this thread and which coroutine of it.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use super::scheduler::{Core, CoroutineId};

thread_local! {
    /// The runtime whose loop (or teardown) is on this thread's stack.
    static CORE: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
    /// The coroutine the scheduler last resumed; `None` on the scheduler's own stack.
    static CURRENT: Cell<Option<CoroutineId>> = const { Cell::new(None) };
}

/// Marks `core` as this thread's runtime until dropped.
#[derive(Debug)]
pub(crate) struct Entered {
    _private: (),
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = CORE.try_with(|slot| slot.borrow_mut().take());
        let _ = CURRENT.try_with(|current| current.set(None));
        super::clock::clear();
    }
}

/// Makes `core` this thread's runtime; an error if another one already is.
pub(crate) fn enter(core: &Rc<Core>) -> io::Result<Entered> {
    CORE.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_some() {
            return Err(io::Error::other(
                "a coroutine runtime is already running on this thread",
            ));
        }
        *slot = Some(Rc::clone(core));
        Ok(Entered { _private: () })
    })
}

/// The thread's runtime state while another runtime is torn down on its stack (a
/// `Runtime` dropped by a coroutine of the one running): put back when dropped.
pub(crate) struct Borrowed {
    core: Option<Rc<Core>>,
    current: Option<CoroutineId>,
    clock: Option<std::time::Instant>,
    yielder: super::coroutine::Saved,
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        let _ = CORE.try_with(|slot| *slot.borrow_mut() = self.core.take());
        let _ = CURRENT.try_with(|current| current.set(self.current));
        match self.clock {
            Some(now) => super::clock::set(now),
            None => super::clock::clear(),
        }
        super::coroutine::restore(self.yielder);
    }
}

/// Makes `core` this thread's runtime for its teardown, whatever runs here now: the
/// running runtime's state (its core, current coroutine, loop clock and switch) is
/// set aside and put back when the guard drops, so a runtime dropped on another's
/// coroutine leaves that coroutine as it was.
pub(crate) fn enter_for_teardown(core: &Rc<Core>) -> Borrowed {
    Borrowed {
        core: CORE.with(|slot| slot.borrow_mut().replace(Rc::clone(core))),
        current: CURRENT.replace(None),
        clock: super::clock::take(),
        yielder: super::coroutine::set_aside(),
    }
}

/// This thread's running runtime.
pub(crate) fn core() -> Option<Rc<Core>> {
    CORE.try_with(|slot| slot.borrow().clone()).ok().flatten()
}

/// Calls `f` with this thread's running runtime without cloning it. `f` must not suspend.
pub(crate) fn with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> Option<R> {
    CORE.try_with(|slot| slot.borrow().as_ref().map(f))
        .ok()
        .flatten()
}

/// The coroutine running now, if any.
pub(crate) fn current() -> Option<CoroutineId> {
    CURRENT.try_with(Cell::get).ok().flatten()
}

/// Set by the scheduler around each resume.
pub(crate) fn set_current(id: Option<CoroutineId>) {
    CURRENT.set(id);
}
