//! Dropping a runtime: every coroutine is dropped, a suspended one force-unwound on its
//! own stack, each with its watch record in place (see [`Runtime`](crate::rt::Runtime)),
//! and the continuation of one waiting without a stack dropped.

use super::{Core, CoroutineId, context, coroutine, watch};

impl Core {
    /// Drops every coroutine, force-unwinding suspended ones; see [`Runtime`](super::Runtime).
    pub(crate) fn tear_down(&self) {
        self.tearing_down.set(true);
        let count = self.slots.borrow().slots.len();
        for index in 0..count {
            let taken = {
                let mut slots = self.slots.borrow_mut();
                let slot = &mut slots.slots[index];
                let id = CoroutineId {
                    index: index as u32,
                    generation: slot.generation,
                };
                let watched = slot.watched.take();
                slot.coroutine.take().map(|co| (id, co, watched))
            };
            let Some((id, mut co, watched)) = taken else {
                // One waiting without a stack has only its continuation to drop.
                self.drop_continuation(index);
                continue;
            };
            context::set_current(Some(id));
            let outer = watch::swap_running(watched);
            // Unwound on its stack while the guard page is still registered (an
            // overflow then is reported as one), ...
            let unwound =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| co.force_unwind()));
            watch::swap_running(outer);
            coroutine::back_on_scheduler();
            context::set_current(None);
            if unwound.is_err() {
                log::error!("a coroutine panicked while being unwound at runtime drop");
            }
            // ... then its registration goes, and only then the mapping: the overflow
            // handler never claims a range that is no longer the stack's.
            drop(self.free_slot(id));
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(co)));
            if dropped.is_err() {
                log::error!("a coroutine panicked again while its stack was freed");
            }
            self.stacks.borrow_mut().forget_one();
        }
        self.run_queue.borrow_mut().clear();
        self.timers.borrow_mut().clear();
    }
}
