//! Coroutine labels: who runs on a stack, named in the stack-overflow message and the
//! stall warning. A label lives with its stack's guard-page registration.

use super::{Core, CoroutineId};
use crate::sys::stack_guard::GuardRegistration;

impl Core {
    /// Names coroutine `id` in the message printed if it overflows its stack.
    pub(crate) fn set_label(&self, id: CoroutineId, label: std::fmt::Arguments<'_>) {
        self.with_guard(id, |guard| guard.set_label(label));
    }

    /// [`set_label`](Core::set_label) from pieces joined without formatting.
    pub(crate) fn set_label_parts(&self, id: CoroutineId, parts: &[&str]) {
        self.with_guard(id, |guard| guard.set_label_parts(parts));
    }

    /// Calls `f` with the guard registration of coroutine `id`'s stack, if it has one.
    fn with_guard(&self, id: CoroutineId, f: impl FnOnce(&GuardRegistration)) {
        if let Some(guard) = self
            .slots
            .borrow_mut()
            .get_mut(id)
            .and_then(|s| s.guard.as_ref())
        {
            f(guard);
        }
    }

    /// The label of coroutine `id` (see [`set_label`](Core::set_label)), or a neutral
    /// name when it has none.
    pub(super) fn label(&self, id: CoroutineId) -> String {
        let slots = self.slots.borrow();
        let label = slots
            .slots
            .get(id.index as usize)
            .and_then(|slot| slot.guard.as_ref())
            .map(GuardRegistration::label)
            .unwrap_or_default();
        if label.is_empty() {
            String::from("a coroutine")
        } else {
            format!("coroutine \"{label}\"")
        }
    }
}
