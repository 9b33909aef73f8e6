//! The scheduler core of one runtime: coroutine slots, the run queue, and the park/wake
//! state machine every blocking operation goes through.
//!
//! Each coroutine lives in a slot addressed by a [`CoroutineId`] (index + generation), so
//! waking a coroutine that already finished is harmless: the generation no longer
//! matches. Each park gets a [`WaitTicket`] (the id plus the slot's wait sequence
//! number); a readiness event only wakes the coroutine if its ticket is still the
//! current one, so stale events are ignored in O(1). A timer entry names the coroutine
//! and its deadline, which must still be the one the slot has armed (see
//! [`super::timer`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::coroutine::{self, Co};
use super::error::SpawnError;
use super::reactor::Reactor;
use super::stack_pool::{GuardedStack, StackPool};
use super::stall::StallWatch;
use super::timer::Timers;
use super::waker::Remote;
use super::{RuntimeConfig, context};
use crate::sync::watch::{self, Watched};
use crate::sys::stack_guard::GuardRegistration;

mod deadlines;
mod labels;
mod stackless;
mod teardown;

use stackless::Continuation;
pub(crate) use stackless::Resume;

/// A coroutine's address in its runtime: a slot index plus that slot's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CoroutineId {
    /// Slot index.
    pub(crate) index: u32,
    /// Incremented each time the slot is freed.
    pub(crate) generation: u32,
}

/// One park of one coroutine; wakes carrying an outdated ticket are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WaitTicket {
    /// The parked coroutine.
    pub(crate) id: CoroutineId,
    /// The slot's wait sequence number when it parked.
    pub(crate) seq: u64,
}

/// What a parked coroutine waits for; decides which wakes reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParkKind {
    /// [`park`](super::park): a [`Waker`](super::Waker) or the deadline.
    Park,
    /// [`IoSource::wait`](super::IoSource::wait): readiness or the deadline.
    Io,
    /// [`sleep`](super::sleep): only the deadline.
    Sleep,
    /// An idle connection's wait for its next request: readiness, the deadline, or
    /// [`wake_idle`](Core::wake_idle) (a drain began).
    Idle,
}

/// When a park ends at the latest, if nothing wakes it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Only a wake ends it.
    Woken,
    /// At this instant.
    At(Instant),
    /// This long after the coroutine suspended: the loop arms it from the clock reading
    /// it takes once the resume has ended (the stall detector's; a fresh one when that
    /// is off), so the wait costs the coroutine no clock read of its own and still runs
    /// from the park, however long the resume before it lasted.
    After(Duration),
}

/// Why a parked coroutine was resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WakeReason {
    /// A [`Waker`](super::Waker) or a readiness event.
    Woken,
    /// Its deadline passed.
    TimedOut,
    /// The runtime is being torn down; the wait was not performed.
    ShuttingDown,
}

/// Where a coroutine is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The slot holds no coroutine.
    Free,
    /// In the run queue (exactly once).
    Runnable,
    /// On the CPU now.
    Running,
    /// Suspended until a matching wake.
    Parked(ParkKind),
}

/// One coroutine slot.
struct Slot {
    /// Generation of the current occupant.
    generation: u32,
    /// Life-cycle state.
    state: State,
    /// A [`Waker`](super::Waker) wake that arrived while not parked in `park`.
    permit: bool,
    /// Wait sequence number: incremented by every wake.
    seq: u64,
    /// Why the last park ended.
    reason: WakeReason,
    /// The current park's deadline, if it has one.
    deadline: Option<Instant>,
    /// The current park's timeout ([`Until::After`]) until the loop turns it into its
    /// `deadline`, right after the coroutine suspended.
    timeout: Option<Duration>,
    /// The deadline of this coroutine's live timer entry, if it has one: it may be
    /// earlier than `deadline` (see [`super::timer`]), never later.
    armed: Option<Instant>,
    /// The coroutine, taken out while it runs.
    coroutine: Option<Co>,
    /// Its stack's guard-page registration (holds the label for the overflow message).
    guard: Option<GuardRegistration>,
    /// The connection its waits watch (see `sync::watch`), kept here while it is
    /// suspended.
    watched: Option<Watched>,
    /// What runs, on a stack from the pool, when an idle wait that holds no stack ends
    /// (see [`Core::idle_then`]); `coroutine` is `None` meanwhile.
    resume_with: Option<Continuation>,
}

/// All slots plus the free list.
#[derive(Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl Slots {
    fn get_mut(&mut self, id: CoroutineId) -> Option<&mut Slot> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|slot| slot.generation == id.generation && slot.state != State::Free)
    }
}

/// The shared state of one runtime, reachable from its coroutines through the
/// thread-local context and from [`IoSource`](super::IoSource)s through an `Rc`.
pub(crate) struct Core {
    slots: RefCell<Slots>,
    run_queue: RefCell<VecDeque<CoroutineId>>,
    pub(crate) timers: RefCell<Timers>,
    pub(crate) reactor: Reactor,
    stacks: RefCell<StackPool>,
    /// Most coroutines alive at once, with a stack or waiting without one
    /// ([`RuntimeConfig::max_coroutines`]): every waiting one can then get a stack
    /// when its wait ends.
    max_live: usize,
    pub(crate) remote: Arc<Remote>,
    /// Remote wakes drained from `remote`, kept to reuse the allocation.
    remote_spare: RefCell<Vec<CoroutineId>>,
    /// Set while the runtime drops its coroutines.
    tearing_down: Cell<bool>,
    /// Fds registered through [`wait_fd`](super::wait_fd), kept until
    /// [`forget_fd`](super::forget_fd): a socket is registered once, on its first wait.
    pub(crate) fd_keys: RefCell<super::fd_keys::FdKeys>,
    /// Times resumes, to report coroutines that keep the thread too long.
    stall: StallWatch,
}

impl Core {
    /// A runtime core with no coroutines.
    pub(crate) fn new(config: &RuntimeConfig) -> std::io::Result<Core> {
        let reactor = Reactor::new(config.events_capacity, config.moderation_nap)?;
        let remote = Arc::new(Remote::new(reactor.registry())?);
        Ok(Core {
            slots: RefCell::default(),
            run_queue: RefCell::default(),
            timers: RefCell::default(),
            reactor,
            stacks: RefCell::new(StackPool::new(
                config.stack_size,
                config.max_coroutines,
                config.max_idle_stacks,
            )),
            max_live: config.max_coroutines,
            remote,
            remote_spare: RefCell::default(),
            tearing_down: Cell::new(false),
            fd_keys: RefCell::default(),
            stall: StallWatch::new(config.stall_threshold),
        })
    }

    /// Unmaps a batch of the idle stacks past the pool's size (see
    /// [`StackPool::trim`]); true while some remain.
    pub(crate) fn trim_stacks(&self) -> bool {
        /// Stacks unmapped per quiet turn of the loop: ~a millisecond of `munmap`.
        const BATCH: usize = 256;
        self.stacks.borrow_mut().trim(BATCH)
    }

    /// Number of coroutines not yet finished.
    pub(crate) fn live(&self) -> usize {
        self.slots.borrow().live
    }

    /// True while no coroutine is runnable.
    pub(crate) fn run_queue_is_empty(&self) -> bool {
        self.run_queue.borrow().is_empty()
    }

    /// Creates a coroutine running `f` and queues it.
    pub(crate) fn spawn<F: FnOnce() + 'static>(&self, f: F) -> Result<CoroutineId, SpawnError> {
        if self.tearing_down.get() {
            return Err(SpawnError::ShuttingDown);
        }
        if self.live() >= self.max_live {
            return Err(SpawnError::AtCapacity { max: self.max_live });
        }
        let GuardedStack { guard, stack } = self.stacks.borrow_mut().take()?;
        let co = coroutine::new(stack, f, tearing_down);
        let mut slots = self.slots.borrow_mut();
        let index = match slots.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(slots.slots.len()).expect("fewer than 2^32 coroutines");
                slots.slots.push(Slot {
                    generation: 0,
                    state: State::Free,
                    permit: false,
                    seq: 0,
                    reason: WakeReason::Woken,
                    deadline: None,
                    timeout: None,
                    armed: None,
                    coroutine: None,
                    guard: None,
                    watched: None,
                    resume_with: None,
                });
                index
            }
        };
        let slot = &mut slots.slots[index as usize];
        slot.state = State::Runnable;
        slot.permit = false;
        slot.deadline = None;
        slot.timeout = None;
        slot.armed = None;
        slot.coroutine = Some(co);
        slot.guard = guard;
        let id = CoroutineId {
            index,
            generation: slot.generation,
        };
        slots.live += 1;
        self.run_queue.borrow_mut().push_back(id);
        Ok(id)
    }

    /// Resumes every coroutine that is runnable now, then keeps going with ones made
    /// runnable meanwhile (by yields and local wakes) until `budget` resumes in all, so a
    /// yielding coroutine costs no `epoll_wait` per switch yet cannot starve I/O.
    pub(crate) fn run_ready(&self, budget: usize) {
        let count = self.run_queue.borrow().len().max(budget);
        self.stall.begin_batch(super::clock::now());
        for _ in 0..count {
            let Some(id) = self.run_queue.borrow_mut().pop_front() else {
                break;
            };
            self.resume(id);
        }
    }

    /// Runs one coroutine until it suspends or finishes.
    fn resume(&self, id: CoroutineId) {
        let co = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(id) else {
                return;
            };
            if slot.state != State::Runnable {
                return;
            }
            slot.state = State::Running;
            (slot.coroutine.take(), slot.watched.take())
        };
        let (mut co, watched) = match co {
            (Some(co), watched) => (co, watched),
            (None, watched) => match self.start_continuation(id) {
                Some(co) => (co, watched),
                None => return,
            },
        };
        context::set_current(Some(id));
        let outer = watch::swap_running(watched);
        let started = self.stall.resume_started();
        let finished = coroutine::resume(&mut co);
        let ended = self.stall.resume_ended(started, || self.label(id));
        let watched = watch::swap_running(outer);
        context::set_current(None);
        if finished && !self.waits_stackless(id) {
            let guard = self.free_slot(id);
            let stack = co.into_stack();
            self.stacks.borrow_mut().give(GuardedStack { guard, stack });
        } else if let Some(slot) = self.slots.borrow_mut().get_mut(id) {
            if finished {
                // Its body ended in an idle wait that holds no stack: the stack goes
                // back to the pool; the slot (its id, its wait, its timer) stays.
                let guard = slot.guard.take();
                let stack = co.into_stack();
                self.stacks.borrow_mut().give(GuardedStack { guard, stack });
            } else {
                slot.coroutine = Some(co);
            }
            slot.watched = watched;
            if let Some(timeout) = slot.timeout.take() {
                let now = ended.unwrap_or_else(Instant::now);
                slot.deadline = now.checked_add(timeout);
                self.arm(id, slot);
            }
        }
    }

    /// Marks a slot free; its id (and every ticket of it) becomes stale. Returns the
    /// stack's guard registration, which goes back to the pool with the stack.
    fn free_slot(&self, id: CoroutineId) -> Option<GuardRegistration> {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(id)?;
        // Dropped (a connection closed) once the slots are no longer borrowed.
        let continuation = slot.resume_with.take();
        slot.state = State::Free;
        slot.generation = slot.generation.wrapping_add(1);
        slot.seq = slot.seq.wrapping_add(1);
        slot.coroutine = None;
        slot.deadline = None;
        slot.timeout = None;
        if slot.armed.take().is_some() {
            self.timers.borrow_mut().note_stale();
        }
        slot.watched = None;
        let guard = slot.guard.take();
        slots.free.push(id.index);
        slots.live -= 1;
        drop(slots);
        drop(continuation);
        guard
    }

    /// Makes the coroutine of `ticket` runnable if that park is still current.
    pub(crate) fn wake(&self, ticket: WaitTicket, reason: WakeReason) -> bool {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(ticket.id) else {
            return false;
        };
        if slot.seq != ticket.seq || !matches!(slot.state, State::Parked(_)) {
            return false;
        }
        slot.state = State::Runnable;
        slot.reason = reason;
        slot.seq = slot.seq.wrapping_add(1);
        self.run_queue.borrow_mut().push_back(ticket.id);
        true
    }

    /// A [`Waker`](super::Waker) wake: resumes a coroutine in `park`, or leaves a permit.
    pub(crate) fn unpark(&self, id: CoroutineId) {
        let ticket = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(id) else {
                return;
            };
            if slot.state != State::Parked(ParkKind::Park) {
                slot.permit = true;
                return;
            }
            WaitTicket { id, seq: slot.seq }
        };
        self.wake(ticket, WakeReason::Woken);
    }

    /// Applies the wakes other threads queued.
    pub(crate) fn drain_remote(&self) {
        let mut spare = self.remote_spare.borrow_mut();
        self.remote.swap_queue(&mut spare);
        for id in spare.drain(..) {
            self.unpark(id);
        }
    }

    /// Takes the coroutine's pending [`Waker`](super::Waker) permit.
    pub(crate) fn take_permit(&self, id: CoroutineId) -> bool {
        self.slots
            .borrow_mut()
            .get_mut(id)
            .is_some_and(|slot| std::mem::take(&mut slot.permit))
    }

    /// Parks the running coroutine `id` until a wake matching `kind` or `deadline`.
    /// `register` receives the park's ticket before the switch (to join a wait list).
    pub(crate) fn park_current(
        &self,
        id: CoroutineId,
        kind: ParkKind,
        deadline: Option<Instant>,
        register: impl FnOnce(WaitTicket),
    ) -> WakeReason {
        let until = deadline.map_or(Until::Woken, Until::At);
        self.park_until(id, kind, until, register).0
    }

    /// [`park_current`](Core::park_current) until `until`; also returns the deadline
    /// the park had (the one an [`Until::After`] became).
    // Inlined into the idle wait: see `Conn::wait_idle_parked`.
    #[inline(always)]
    pub(crate) fn park_until(
        &self,
        id: CoroutineId,
        kind: ParkKind,
        until: Until,
        register: impl FnOnce(WaitTicket),
    ) -> (WakeReason, Option<Instant>) {
        // While dropping coroutines, a destructor that parks must not switch: one that runs
        // in a forced unwind would abort the process, one that runs off a coroutine
        // (dropping a never-started closure) has nothing to switch from.
        if self.tearing_down.get() && (std::thread::panicking() || !coroutine::on_coroutine()) {
            return (WakeReason::ShuttingDown, None);
        }
        let ticket = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(id) else {
                return (WakeReason::ShuttingDown, None);
            };
            slot.state = State::Parked(kind);
            slot.deadline = None;
            match until {
                Until::Woken => {}
                Until::At(deadline) => {
                    slot.deadline = Some(deadline);
                    self.arm(id, slot);
                }
                // Armed by `resume` once this coroutine has suspended.
                Until::After(timeout) => slot.timeout = Some(timeout),
            }
            WaitTicket { id, seq: slot.seq }
        };
        register(ticket);
        coroutine::suspend();
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(id) else {
            return (WakeReason::ShuttingDown, None);
        };
        (slot.reason, slot.deadline.take())
    }

    /// Requeues the running coroutine behind every runnable one.
    pub(crate) fn yield_current(&self, id: CoroutineId) {
        if self.tearing_down.get() || !coroutine::on_coroutine() {
            return;
        }
        if let Some(slot) = self.slots.borrow_mut().get_mut(id) {
            slot.state = State::Runnable;
        }
        self.run_queue.borrow_mut().push_back(id);
        coroutine::suspend();
    }
}

/// Whether this thread's runtime is tearing down (tells a forced unwind from a panic).
pub(crate) fn tearing_down() -> bool {
    context::with_core(|core| core.tearing_down.get()).unwrap_or(false)
}
