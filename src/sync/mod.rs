//! Model-aware shared objects: [`Channel`] and [`Broadcast`].
//!
//! A handler may block on them under any model. At the moment it blocks, the object
//! asks what it runs on: a coroutine parks, a plain thread blocks, and a worker
//! process forked by a process-based model sends the operation to the hub in its
//! master, where the object lives. Create them before the server starts, and move
//! clones into the handler factory.
//!
//! # What is per process
//!
//! | state | threading, prethreaded, scheduled | forking, preforked |
//! |---|---|---|
//! | [`Broadcast`], [`Channel`] created before the server starts | one object | one object (in the master, reached through the hub) |
//! | the same objects created inside a handler or a `static LazyLock` | one object | **one per worker process**: a send reaches only that process |
//! | `static` atomics, `Mutex`, `RwLock`, `LazyLock`, thread-locals | shared by every connection | **a copy per worker process**, not seen by the master or siblings |
//! | files, databases, other servers | shared | shared |
//!
//! So a counter in an `AtomicU64` reads 0 in a fresh forked child, and a `Broadcast` in a
//! `static LazyLock` is created by the first child that touches it, where no other
//! worker can see it. Keep cross-connection state in these objects (or outside the
//! process) and create them in `main` before `serve_forever`.
//!
//! A server that shuts down answers its handlers' pending waits with
//! [`WaitError::Closed`]; an `Iterative` server, which can never run a second
//! connection while one waits, fails such waits at once with
//! [`WaitError::NoOtherWorker`].
//!
//! Across machines, the same objects can live on Redis instead ([`Redis`]): several
//! servers then share one `Broadcast` or `Channel`, and handlers do not change.

pub(crate) mod broadcast;
mod channel;
mod error;
pub mod hub;
pub(crate) mod redis;
mod registry;
pub(crate) mod scope;
mod waiters;
pub(crate) mod watch;
pub mod wire;

/// A private `redis-server` for the crate's own tests (shared with `tests/`).
#[cfg(test)]
#[path = "../../tests/redis_util/mod.rs"]
pub(crate) mod redis_util;

use std::sync::Arc;

pub use broadcast::Broadcast;
pub use channel::Channel;
pub use error::{SendError, TryRecvError, WaitError};
pub use redis::{Redis, RedisBuilder, RedisError};
pub use scope::ServerScope;
pub use wire::{Wire, WireError};

/// Locks a mutex of the crate's bookkeeping, taking it over if a panic poisoned it: a
/// handler that panicked (and was caught) must not make every later lock fail.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Answers every pending wait of the server of `scope` with `Closed`.
pub(crate) fn close_waiters_of(scope: &Arc<ServerScope>) {
    registry::close_scope(scope.tag());
}
