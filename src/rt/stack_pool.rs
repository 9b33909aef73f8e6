//! Coroutine stacks: allocated with `mmap` plus a guard page, pooled for reuse.
//!
//! A fresh stack costs an `mmap` and an `mprotect` (~10 µs); a pooled one ~25 ns. Each
//! stack is two kernel mappings (the guard page and the usable part), and Linux allows
//! `vm.max_map_count` (65530 by default) mappings per process, so the pool enforces a cap
//! on stacks in existence (live coroutines plus idle pooled stacks).
//!
//! Each fresh stack registers its guard page with `sys::stack_guard`, so an overflow
//! ends the process with a message instead of a bare `SIGSEGV`; the registration
//! travels with the stack and is dropped just before the stack is unmapped.

use std::collections::VecDeque;

use corosensei::stack::{DefaultStack, Stack};

use super::error::SpawnError;
use crate::sys::stack_guard::{self, GuardRegistration};

/// A stack with its guard-page registration (`None` when the table was full).
/// Field order matters: the registration is dropped before the stack is unmapped.
pub(crate) struct GuardedStack {
    /// The guard page's entry in the overflow handler's table.
    pub(crate) guard: Option<GuardRegistration>,
    /// The stack itself.
    pub(crate) stack: DefaultStack,
}

/// The stacks of one runtime.
pub(crate) struct StackPool {
    /// Idle stacks ready for reuse, the last given back (still in the cache) at the
    /// back, where the next is taken.
    idle: VecDeque<GuardedStack>,
    /// Stacks in existence: handed out plus idle.
    allocated: usize,
    /// Most stacks in existence at once.
    max_allocated: usize,
    /// Most idle stacks kept; extra ones are unmapped.
    max_idle: usize,
    /// Usable bytes per stack (the guard page comes on top).
    stack_size: usize,
}

impl std::fmt::Debug for StackPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackPool")
            .field("idle", &self.idle.len())
            .field("allocated", &self.allocated)
            .field("max_allocated", &self.max_allocated)
            .field("max_idle", &self.max_idle)
            .field("stack_size", &self.stack_size)
            .finish()
    }
}

impl StackPool {
    /// An empty pool.
    pub(crate) fn new(stack_size: usize, max_allocated: usize, max_idle: usize) -> StackPool {
        StackPool {
            idle: VecDeque::new(),
            allocated: 0,
            max_allocated,
            max_idle,
            stack_size,
        }
    }

    /// A stack from the pool, or a fresh one; an error at the cap or when `mmap` fails.
    pub(crate) fn take(&mut self) -> Result<GuardedStack, SpawnError> {
        if let Some(stack) = self.idle.pop_back() {
            if let Some(guard) = &stack.guard {
                guard.clear_label();
            }
            return Ok(stack);
        }
        if self.allocated >= self.max_allocated {
            return Err(SpawnError::AtCapacity {
                max: self.max_allocated,
            });
        }
        let stack = DefaultStack::new(self.stack_size).map_err(SpawnError::StackAllocation)?;
        self.allocated += 1;
        let guard = stack_guard::register(stack.limit().get(), stack.base().get());
        Ok(GuardedStack { guard, stack })
    }

    /// Returns a stack whose coroutine finished (or went idle without one). Kept even
    /// past `max_idle`: the extra ones are unmapped by [`trim`](StackPool::trim) once
    /// the loop has nothing to run. Unmapped here, a burst (a notify answering ten
    /// thousand waiters, which then idle) would pay a `munmap` per stack before its
    /// last answer went out.
    pub(crate) fn give(&mut self, stack: GuardedStack) {
        self.idle.push_back(stack);
    }

    /// Unmaps up to `batch` of the idle stacks past `max_idle`, the longest idle first;
    /// true while some remain past it.
    pub(crate) fn trim(&mut self, batch: usize) -> bool {
        for _ in 0..batch {
            if self.idle.len() <= self.max_idle {
                break;
            }
            // The guard's registration goes before the mapping (field order).
            drop(self.idle.pop_front());
            self.forget_one();
        }
        self.idle.len() > self.max_idle
    }

    /// Accounts for a stack that was unmapped elsewhere (dropped with its coroutine).
    pub(crate) fn forget_one(&mut self) {
        self.allocated = self.allocated.saturating_sub(1);
    }

    /// Number of idle stacks.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_caps() {
        let mut pool = StackPool::new(64 * 1024, 2, 1);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert!(matches!(
            pool.take(),
            Err(SpawnError::AtCapacity { max: 2 })
        ));
        pool.give(a);
        pool.give(b);
        assert_eq!(pool.idle(), 2, "kept until trimmed");
        assert!(!pool.trim(8));
        assert_eq!(pool.idle(), 1);
        let _c = pool.take().unwrap();
        let _d = pool.take().unwrap();
        assert!(pool.take().is_err());
    }
}
