//! The coroutine runtime: stackful coroutines on one mio loop per thread.
//!
//! This folder holds the scheduler (`scheduler.rs`: coroutine slots, run queue, park/wake),
//! the reactor (`reactor.rs`: epoll via mio, edge-triggered), timers (`timer.rs`), the
//! cross-thread [`Waker`] (`waker.rs`), pooled guarded stacks (`stack_pool.rs`), the
//! coroutine switch (`coroutine.rs`, the only `unsafe` here) and [`IoSource`]
//! (`io_source.rs`), the loop-stall detector (`stall.rs`, [`stall_count`]) and wake-up
//! moderation (`moderation.rs`, [`nap_count`]). It knows nothing about servers or HTTP.
//!
//! # Using it
//!
//! ```
//! use std::time::Duration;
//! use mixserve::rt::{self, Runtime, RuntimeConfig};
//!
//! let mut runtime = Runtime::new(RuntimeConfig::default())?;
//! runtime.spawn(|| {
//!     for i in 0..3 {
//!         rt::spawn(move || rt::sleep(Duration::from_millis(i))).unwrap();
//!     }
//! }).unwrap();
//! runtime.run()?; // returns when every coroutine has finished
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The free functions ([`park`], [`sleep`], [`yield_now`], [`current_waker`],
//! [`in_coroutine`]) work on a plain thread too, where they fall back to the `std`
//! thread equivalents; that is how the rest of the crate stays model-agnostic.
//!
//! # Rules for code running on a coroutine
//!
//! Every coroutine of a runtime shares one OS thread. Whatever blocks that thread blocks
//! every connection on it, so code on a coroutine must block only through this crate
//! (the connection's reads and writes, [`sleep`], [`park`], the crate's `sync`
//! primitives):
//!
//! - **No `std::thread::sleep`**, no blocking socket or file I/O, no blocking DNS
//!   (`ToSocketAddrs` with a host name), no crossbeam or `std::sync::mpsc` `recv`.
//! - **No `std::sync::Mutex` (or `RwLock`) held across anything that parks.** Another
//!   coroutine on the same thread that then locks it blocks the whole loop, so the owner
//!   is never resumed: a deadlock.
//! - **No `RefCell` borrow held across anything that parks.** Other coroutines run in
//!   between and their `borrow_mut` panics (in them, not in you).
//! - **Keep deep recursion off coroutine stacks.** Stacks are small (64 KiB by default,
//!   see [`RuntimeConfig::stack_size`]); an overflow hits the guard page and the process
//!   dies of `SIGSEGV`, after a message on stderr naming the coroutine (see
//!   [`set_label`]), its stack size and how to raise it. Below 32 KiB even a panic
//!   printing a backtrace overflows.
//! - **A stall is reported:** a coroutine that keeps the thread longer than
//!   [`RuntimeConfig::stall_threshold`] (100 ms by default) between two switches gets a
//!   `log::warn!` naming it and the time held, and counts in [`stall_count`].
//! - **Panics are contained:** a panic is caught at the coroutine's boundary and logged
//!   with `log::error!`; the loop and the other coroutines carry on.
//! - Coroutines are `!Send` and never migrate: thread-locals stay valid, but are shared
//!   with every other coroutine of the thread.
//!
//! # Capacity
//!
//! Each coroutine stack is two kernel mappings; Linux allows `vm.max_map_count` (65530 by
//! default) mappings per process, so one process holds about 32,000 coroutines. The
//! runtime refuses spawns past [`RuntimeConfig::max_coroutines`] (default 30,000) with
//! [`SpawnError::AtCapacity`] rather than crashing; shed connections before that and scale
//! out with processes.

pub(crate) mod clock;
mod context;
#[allow(unsafe_code)]
mod coroutine;
mod error;
mod fd_keys;
mod io_source;
mod moderation;
pub(crate) mod park;
mod reactor;
mod runtime;
mod scheduler;
mod stack_pool;
mod stall;
mod timer;
mod waker;

use std::time::{Duration, Instant};

use scheduler::ParkKind;

pub(crate) use coroutine::on_scheduler_stack;

/// `catch_unwind` for a handler's code, except that the forced unwind of a coroutine
/// dropped with its runtime (a stop that outlived its drain) goes on unwinding: caught
/// as the handler's panic, it was reported to the `handle_error` hook, logged, answered
/// with a `500`, and the coroutine ran on at teardown.
pub(crate) fn catch_handler_panic<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    if let Err(payload) = caught {
        if scheduler::tearing_down() {
            std::panic::resume_unwind(payload);
        }
        return Err(payload);
    }
    caught
}
pub use error::SpawnError;
pub(crate) use io_source::{
    IdleLimit, clear_readable, idle_then, park_or_readable, park_or_ready, read_closed,
    readable_since_cleared, wait_idle_fd,
};
pub use io_source::{IoSource, forget_fd, wait_fd};
pub use moderation::nap_count;
pub use runtime::{Runtime, RuntimeConfig, RuntimeHandle};
pub(crate) use scheduler::Resume;
pub use stall::stall_count;
pub use waker::Waker;

/// Which readiness a coroutine waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// The fd has data to read (or EOF / an error).
    Readable,
    /// The fd has room to write (or an error).
    Writable,
}

/// True when the caller runs on a coroutine of a [`Runtime`] on this thread.
pub fn in_coroutine() -> bool {
    coroutine::on_coroutine() && context::current().is_some()
}

/// The current coroutine's waker; `None` on a plain thread.
pub fn current_waker() -> Option<Waker> {
    let id = context::current().filter(|_| coroutine::on_coroutine())?;
    let remote = context::with_core(|core| std::sync::Arc::clone(&core.remote))?;
    Some(Waker::new(remote, id))
}

/// Parks the current coroutine until its [`Waker`] is woken or `deadline` passes.
///
/// A wake that arrived before the park (a permit) makes it return at once. Like
/// [`std::thread::park`] it may also return spuriously: callers re-check their
/// condition in a loop. On a plain thread this is `std::thread::park` /
/// `park_timeout`.
pub fn park(deadline: Option<Instant>) {
    match coroutine_context() {
        Some((core, id)) => {
            if core.take_permit(id) || deadline.is_some_and(|d| d <= clock::now()) {
                return;
            }
            core.park_current(id, ParkKind::Park, deadline, drop);
        }
        None => match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                let timeout = deadline.saturating_duration_since(Instant::now());
                if !timeout.is_zero() {
                    std::thread::park_timeout(timeout);
                }
            }
        },
    }
}

/// Sleeps the current coroutine for `duration` (other coroutines run meanwhile), or the
/// thread when not on a coroutine. Wakes from a [`Waker`] do not shorten it (they leave a
/// permit for the next [`park`]); a zero duration is a [`yield_now`].
pub fn sleep(duration: Duration) {
    let Some((core, id)) = coroutine_context() else {
        std::thread::sleep(duration);
        return;
    };
    if duration.is_zero() {
        core.yield_current(id);
        return;
    }
    let deadline = crate::deadline::from_now(duration);
    while Instant::now() < deadline {
        let reason = core.park_current(id, ParkKind::Sleep, Some(deadline), drop);
        if reason == scheduler::WakeReason::ShuttingDown {
            return;
        }
    }
}

/// Lets every other runnable coroutine run before continuing (on a plain thread:
/// `std::thread::yield_now`).
pub fn yield_now() {
    match coroutine_context() {
        Some((core, id)) => core.yield_current(id),
        None => std::thread::yield_now(),
    }
}

/// Spawns a coroutine on the runtime running on this thread.
///
/// # Errors
///
/// [`SpawnError::NoRuntime`] off a runtime's thread; otherwise as [`Runtime::spawn`].
pub fn spawn<F: FnOnce() + 'static>(f: F) -> Result<(), SpawnError> {
    let core = context::core().ok_or(SpawnError::NoRuntime)?;
    core.spawn(f).map(drop)
}

/// Names the running coroutine in the message printed if it overflows its stack
/// (cut to 112 bytes); does nothing off a coroutine. The `Scheduled` model labels each
/// connection's coroutine with the peer's address.
///
/// ```
/// # let mut runtime = mixserve::rt::Runtime::new(Default::default())?;
/// # runtime.spawn(|| {
/// mixserve::rt::set_label(format_args!("job {}", 42));
/// # }).unwrap();
/// # runtime.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_label(label: std::fmt::Arguments<'_>) {
    if let Some((core, id)) = coroutine_context() {
        core.set_label(id, label);
    }
}

/// Wakes every coroutine of this thread's runtime that waits in [`wait_idle_fd`] (a
/// connection idle between requests), so it sees that a drain began; a no-op off a
/// runtime's thread.
pub(crate) fn wake_idle() {
    let _ = context::with_core(|core| core.wake_idle());
}

/// [`set_label`] with the label given as pieces to join (no formatting: for a label
/// set on every request).
pub(crate) fn set_label_parts(parts: &[&str]) {
    if !coroutine::on_coroutine() {
        return;
    }
    if let Some(id) = context::current() {
        let _ = context::with_core(|core| core.set_label_parts(id, parts));
    }
}

/// Live coroutines of the runtime running on this thread (0 when none is).
pub fn coroutine_count() -> usize {
    context::with_core(|core| core.live()).unwrap_or(0)
}

/// The running runtime and coroutine, when called on a coroutine.
fn coroutine_context() -> Option<(std::rc::Rc<scheduler::Core>, scheduler::CoroutineId)> {
    if !coroutine::on_coroutine() {
        return None;
    }
    Some((context::core()?, context::current()?))
}
