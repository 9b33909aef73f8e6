//! The server a handler serves, as the shared objects see it: whether it is draining
//! (new waits end at once, pending ones are answered), and how many of its workers may
//! block in a wait before none would be left to serve the request that releases them.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::Mutex;

use crate::conn::Drain;
use crate::sync::{WaitError, lock};

/// One server's view for the shared objects.
#[derive(Debug)]
pub struct ServerScope {
    /// The server's drain state (shared with its connections).
    draining: Arc<Drain>,
    /// Handlers of this process blocked in a wait now.
    blocked: AtomicUsize,
    /// At most this many may block (`usize::MAX`: no limit). A model with `N` workers
    /// allows `N - 1`, keeping one free to serve the notify; `Iterative` allows none.
    max_blocked: AtomicUsize,
    /// The server's model, named in refusals.
    model: Mutex<&'static str>,
}

impl ServerScope {
    pub(crate) fn new(draining: Arc<Drain>) -> Arc<ServerScope> {
        Arc::new(ServerScope {
            draining,
            blocked: AtomicUsize::new(0),
            max_blocked: AtomicUsize::new(usize::MAX),
            model: Mutex::new("server's"),
        })
    }

    /// Records the server's model, named when a wait is refused.
    pub(crate) fn set_model(&self, model: &'static str) {
        *lock(&self.model) = model;
    }

    /// The refusal of a wait that would take the last free worker.
    pub(crate) fn no_other_worker(&self) -> WaitError {
        WaitError::NoOtherWorker {
            model: *lock(&self.model),
            max_waiting: self.max_blocked(),
        }
    }

    /// The tag waiters carry, so a draining server answers only its own.
    pub(crate) fn tag(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    /// Sets how many handlers may block at once (`None`: no limit).
    pub(crate) fn set_max_blocked(&self, max: Option<usize>) {
        self.max_blocked
            .store(max.unwrap_or(usize::MAX), Ordering::SeqCst);
    }

    pub(crate) fn max_blocked(&self) -> usize {
        self.max_blocked.load(Ordering::SeqCst)
    }

    /// Handlers of this process blocked in a wait now.
    pub fn blocked(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.is_draining()
    }
}

thread_local! {
    /// The scope of the server whose handlers run on this thread. A thread (or a
    /// scheduler's loop thread) serves one server, so it is set once and kept.
    static SERVING: RefCell<Option<Arc<ServerScope>>> = const { RefCell::new(None) };
}

/// The server this thread serves now (see [`restore`]).
pub(crate) fn serving() -> Option<Arc<ServerScope>> {
    SERVING.with(|s| s.borrow().clone())
}

/// Puts back what [`serving`] returned.
pub(crate) fn restore(serving: Option<Arc<ServerScope>>) {
    SERVING.with(|s| *s.borrow_mut() = serving);
}

/// Marks this thread as serving the server of `scope`.
pub(crate) fn enter(scope: &Arc<ServerScope>) {
    SERVING.with(|s| {
        let mut serving = s.borrow_mut();
        if !serving
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, scope))
        {
            *serving = Some(Arc::clone(scope));
        }
    });
}

/// The refusal [`ServerScope::no_other_worker`] of the current thread's server (for a
/// refusal the hub sent, which carries no text).
pub(crate) fn no_other_worker_here() -> WaitError {
    SERVING.with(|s| match s.borrow().as_ref() {
        Some(scope) => scope.no_other_worker(),
        None => WaitError::NoOtherWorker {
            model: "master's",
            max_waiting: 0,
        },
    })
}

/// The tag of the current thread's server (0 outside any server).
pub(crate) fn current_tag() -> usize {
    SERVING.with(|s| s.borrow().as_ref().map_or(0, ServerScope::tag))
}

/// A handler counted as blocked until this is dropped.
#[derive(Debug)]
pub(crate) struct Blocking(Option<Arc<ServerScope>>);

impl Drop for Blocking {
    fn drop(&mut self) {
        if let Some(scope) = &self.0 {
            scope.blocked.fetch_sub(1, Ordering::SeqCst);
            crate::status::uncount(crate::status::Counter::Waiters);
        }
    }
}

/// Counts the current handler as blocked in a wait. A wait that would leave the server
/// no free worker fails with `NoOtherWorker`, timed or not: the request that could
/// release it would queue for that worker — for ever without a deadline; with one,
/// until the waits time out, and then it would find nobody to release (a lost notify).
/// A draining server fails every new wait with `Closed`.
pub(crate) fn begin_wait() -> Result<Blocking, WaitError> {
    SERVING.with(|s| {
        let Some(scope) = s.borrow().clone() else {
            return Ok(Blocking(None));
        };
        if scope.is_draining() {
            return Err(WaitError::Closed);
        }
        let before = scope.blocked.fetch_add(1, Ordering::SeqCst);
        crate::status::count(crate::status::Counter::Waiters);
        let guard = Blocking(Some(Arc::clone(&scope)));
        if before >= scope.max_blocked() {
            return Err(scope.no_other_worker());
        }
        Ok(guard)
    })
}
