//! Waking coroutines from any thread: [`Waker`] and the runtime's remote wake queue.
//!
//! A wake on the runtime's own thread goes straight to the scheduler. A wake from another
//! thread is pushed onto a mutex-protected queue of coroutine ids that the loop drains in
//! one batch each turn. The loop's `mio::Waker` (an eventfd) is signalled only when the
//! loop said, under the same mutex, that it is about to block in `epoll_wait`; so a burst
//! of N remote wakes costs N uncontended locks and one syscall, not N.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mio::Registry;

use super::context;
use super::reactor::WAKER_TOKEN;
use super::scheduler::CoroutineId;

/// Source of unique runtime ids, to tell a local wake from a remote one.
static NEXT_RUNTIME_ID: AtomicU64 = AtomicU64::new(1);

/// The part of a runtime other threads can reach.
#[derive(Debug)]
pub(crate) struct Remote {
    /// Unique id of the runtime.
    pub(crate) runtime_id: u64,
    /// Cleared when the runtime is dropped: later wakes are ignored.
    alive: AtomicBool,
    /// Set by [`RuntimeHandle::stop`](super::RuntimeHandle::stop).
    stop: AtomicBool,
    /// Wakes from other threads not yet seen by the loop, and whether it may be blocked.
    queue: Mutex<Queue>,
    /// Interrupts the loop's `poll`.
    waker: mio::Waker,
}

impl Remote {
    /// Creates the remote part, registering its eventfd with `registry`.
    pub(crate) fn new(registry: &Registry) -> io::Result<Remote> {
        Ok(Remote {
            runtime_id: NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed),
            alive: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            queue: Mutex::new(Queue::default()),
            waker: mio::Waker::new(registry, WAKER_TOKEN)?,
        })
    }

    /// Queues a wake for `id` and interrupts the loop if it is blocked in `poll`.
    pub(crate) fn push(&self, id: CoroutineId) {
        if !self.alive.load(Ordering::Acquire) {
            return;
        }
        let interrupt = {
            let mut queue = self.lock();
            queue.ids.push(id);
            std::mem::take(&mut queue.loop_blocking)
        };
        if interrupt {
            self.interrupt();
        }
    }

    /// Called by the loop before a blocking `poll`: false (do not block) when wakes are
    /// already queued; otherwise records that the next wake must signal the eventfd.
    pub(crate) fn prepare_to_block(&self) -> bool {
        let mut queue = self.lock();
        if !queue.ids.is_empty() || self.stop.load(Ordering::Acquire) {
            return false;
        }
        queue.loop_blocking = true;
        true
    }

    /// Swaps the queued wakes into `spare` (which must be empty); the loop is awake.
    pub(crate) fn swap_queue(&self, spare: &mut Vec<CoroutineId>) {
        let mut queue = self.lock();
        queue.loop_blocking = false;
        std::mem::swap(&mut queue.ids, spare);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the loop to return from `run`.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.interrupt();
    }

    /// Takes a pending stop request.
    pub(crate) fn take_stop(&self) -> bool {
        self.stop.swap(false, Ordering::AcqRel)
    }

    /// Marks the runtime dropped.
    pub(crate) fn close(&self) {
        self.alive.store(false, Ordering::Release);
    }

    /// Makes the loop's current or next `poll` return.
    fn interrupt(&self) {
        if let Err(error) = self.waker.wake() {
            log::error!("could not wake the coroutine loop: {error}");
        }
    }
}

/// The remote wake queue.
#[derive(Debug, Default)]
struct Queue {
    /// Coroutines woken from other threads.
    ids: Vec<CoroutineId>,
    /// The loop is (about to be) blocked in `poll` and needs the eventfd to wake.
    loop_blocking: bool,
}

/// Wakes one parked coroutine; callable from any thread, any number of times.
///
/// Obtained with [`current_waker`](super::current_waker) inside the coroutine. It has
/// permit semantics like [`Thread::unpark`](std::thread::Thread::unpark): a wake while
/// the coroutine is not parked in [`park`](super::park) leaves one permit, and the next
/// `park` returns at once. Waking a coroutine that already finished, or whose runtime
/// was dropped, does nothing.
#[derive(Clone)]
pub struct Waker {
    remote: Arc<Remote>,
    id: CoroutineId,
}

impl Waker {
    /// A waker for coroutine `id` of the runtime owning `remote`.
    pub(crate) fn new(remote: Arc<Remote>, id: CoroutineId) -> Waker {
        Waker { remote, id }
    }

    /// Makes the coroutine runnable if it is parked in [`park`](super::park), otherwise
    /// leaves a permit for its next `park`.
    pub fn wake(&self) {
        let local = context::with_core(|core| {
            if core.remote.runtime_id == self.remote.runtime_id {
                core.unpark(self.id);
                true
            } else {
                false
            }
        });
        if local != Some(true) {
            self.remote.push(self.id);
        }
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waker")
            .field("runtime", &self.remote.runtime_id)
            .field("coroutine", &self.id.index)
            .field("generation", &self.id.generation)
            .finish()
    }
}
