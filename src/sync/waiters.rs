//! Wait lists shared by [`Broadcast`](super::Broadcast) and [`Channel`](super::Channel):
//! local waiters (a thread or coroutine parked on a slot) and remote ones (a worker
//! process waiting on the hub for a reply).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::sync::hub::{RemoteReply, encode_shared};
use crate::sync::lock;
use crate::sync::watch::{self, Waker};
use crate::sync::wire::Wire;
use crate::sync::{WaitError, scope};

/// Where one local waiter's result lands.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    result: Mutex<Option<Result<T, WaitError>>>,
    waker: Waker,
    /// Set before the waiter tries to leave its list, so a list that gets back a
    /// detached waiter (see [`WaitList::restore`]) can tell one that stopped waiting.
    gave_up: AtomicBool,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Arc<Slot<T>> {
        Arc::new(Slot {
            result: Mutex::new(None),
            waker: Waker::current(),
            gave_up: AtomicBool::new(false),
        })
    }

    /// Whether the waiter stopped waiting (timed out, its client left, or it unwound).
    pub(crate) fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::SeqCst)
    }

    /// Stores the result (the first one wins) and wakes the waiter.
    pub(crate) fn fill(&self, result: Result<T, WaitError>) {
        let mut guard = lock(&self.result);
        if guard.is_none() {
            *guard = Some(result);
        }
        drop(guard);
        self.waker.wake();
    }

    pub(crate) fn take(&self) -> Option<Result<T, WaitError>> {
        lock(&self.result).take()
    }

    /// Parks until filled, until `deadline`, or until the watched client leaves (see
    /// [`watch`]); then `leave` takes the waiter off its list. If it was no longer
    /// there, a release won the race and its result stands.
    ///
    /// A waiter unwound while parked (its coroutine force-unwound as its runtime is
    /// dropped, say) leaves its list too, and a value already handed to it goes to
    /// `orphaned` (a channel puts it back): left in the list, it would take the next
    /// value for nobody.
    pub(crate) fn wait_or_leave(
        &self,
        deadline: Option<Instant>,
        leave: impl FnOnce() -> bool,
        orphaned: impl FnOnce(T),
    ) -> Result<T, WaitError> {
        let mut unwinding = LeaveOnUnwind {
            slot: self,
            leave: Some(leave),
            orphaned: Some(orphaned),
        };
        let waited = self.wait(deadline);
        let leave = unwinding.leave.take();
        match waited {
            Ok(result) => result,
            Err(error) => {
                // Before leaving: a restore that runs after this leaves the waiter out,
                // one that ran before put it back where `leave` finds it.
                self.gave_up.store(true, Ordering::SeqCst);
                if leave.is_some_and(|leave| leave()) {
                    Err(error)
                } else {
                    self.take().unwrap_or(Err(error))
                }
            }
        }
    }

    /// Parks until filled; `TimedOut` at the deadline, `ClientGone` when the watched
    /// client left first.
    pub(crate) fn wait(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Result<T, WaitError>, WaitError> {
        loop {
            if let Some(result) = self.take() {
                return Ok(result);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(WaitError::TimedOut);
            }
            if watch::park(&self.waker, deadline).is_err() {
                return Err(WaitError::ClientGone);
            }
        }
    }
}

/// What a parked waiter that unwinds does (see [`Slot::wait_or_leave`]); nothing once
/// the wait returned.
struct LeaveOnUnwind<'s, T, L: FnOnce() -> bool, O: FnOnce(T)> {
    slot: &'s Slot<T>,
    leave: Option<L>,
    orphaned: Option<O>,
}

impl<T, L: FnOnce() -> bool, O: FnOnce(T)> Drop for LeaveOnUnwind<'_, T, L, O> {
    fn drop(&mut self) {
        let Some(leave) = self.leave.take() else {
            return;
        };
        self.slot.gave_up.store(true, Ordering::SeqCst);
        if !leave() {
            if let (Some(Ok(value)), Some(orphaned)) = (self.slot.take(), self.orphaned.take()) {
                orphaned(value);
            }
        }
    }
}

/// One waiter: here, or a worker process waiting on the hub.
#[derive(Debug)]
pub(crate) enum Waiter<T> {
    /// A thread or coroutine of this process.
    Local(Arc<Slot<T>>),
    /// A worker process; the reply goes out through the hub.
    Remote(RemoteReply),
}

/// A waiter with the server it waits for, so a draining server answers only its own.
#[derive(Debug)]
struct Entry<T> {
    waiter: Waiter<T>,
    scope: usize,
}

/// Waiters in arrival order.
#[derive(Debug)]
pub(crate) struct WaitList<T> {
    entries: BTreeMap<u64, Entry<T>>,
    next_key: u64,
}

impl<T: Wire + Clone> WaitList<T> {
    pub(crate) fn new() -> WaitList<T> {
        WaitList {
            entries: BTreeMap::new(),
            next_key: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds a waiter; the key lets it leave again on timeout.
    pub(crate) fn push(&mut self, waiter: Waiter<T>) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        let scope = match &waiter {
            Waiter::Local(_) => scope::current_tag(),
            Waiter::Remote(reply) => reply.scope(),
        };
        self.entries.insert(key, Entry { waiter, scope });
        key
    }

    /// Removes a waiter that gave up; false if it was already released.
    pub(crate) fn remove(&mut self, key: u64) -> bool {
        self.entries.remove(&key).is_some()
    }

    /// Releases the oldest waiter with `value`; gives the value back if nobody waits.
    pub(crate) fn release_one(&mut self, value: T) -> Result<(), T> {
        match self.entries.pop_first() {
            Some((_, entry)) => {
                complete(entry.waiter, Ok(value));
                Ok(())
            }
            None => Err(value),
        }
    }

    /// Releases every waiter with a copy of `value`; returns how many. If a copy panics
    /// (the application's `Clone`, or its `Wire` for a worker), the waiters not
    /// released yet are answered with an error as the panic goes on, not left waiting.
    ///
    /// The value is encoded once for all the workers' waiters, whose replies share it.
    pub(crate) fn release_all(&mut self, value: &T) -> usize {
        let mut entries = FailOnUnwind(std::mem::take(&mut self.entries));
        let count = entries.0.len();
        let mut encoded: Option<Arc<[u8]>> = None;
        while let Some(first) = entries.0.first_entry() {
            // Copied before the waiter leaves the list, so a panicking copy leaves it
            // there to be answered.
            let copy = match first.get().waiter {
                Waiter::Local(_) => Share::Value(value.clone()),
                Waiter::Remote(_) => {
                    let bytes = encoded.get_or_insert_with(|| encode_shared(value));
                    Share::Encoded(Arc::clone(bytes))
                }
            };
            match (first.remove().waiter, copy) {
                (Waiter::Local(slot), Share::Value(copy)) => slot.fill(Ok(copy)),
                (Waiter::Remote(reply), Share::Encoded(bytes)) => reply.complete_encoded(bytes),
                _ => unreachable!("the copy was made for this waiter"),
            }
        }
        count
    }

    /// Answers every waiter of server `scope` with `Closed`.
    pub(crate) fn close_scope(&mut self, scope: usize) {
        self.take_scope(scope).fail_all(WaitError::Closed);
    }
}

/// A list dropped with waiters on it answers them `Closed`. The master drops an
/// object's list when its last handle there goes, and a worker's wait on it would
/// otherwise get no reply, its call counted as blocked for good.
impl<T> Drop for WaitList<T> {
    fn drop(&mut self) {
        for (_, entry) in std::mem::take(&mut self.entries) {
            match entry.waiter {
                Waiter::Local(slot) => slot.fill(Err(WaitError::Closed)),
                Waiter::Remote(reply) => reply.fail(&WaitError::Closed),
            }
        }
    }
}

/// A released value as one waiter takes it.
enum Share<T> {
    /// For a waiter of this process.
    Value(T),
    /// For a worker's waiter: the wire form, shared.
    Encoded(Arc<[u8]>),
}

/// Waiters a release had not reached when it unwound: answered with an error.
struct FailOnUnwind<T: Wire>(BTreeMap<u64, Entry<T>>);

impl<T: Wire> Drop for FailOnUnwind<T> {
    fn drop(&mut self) {
        for (_, entry) in std::mem::take(&mut self.0) {
            let why = "the send panicked copying its value for each waiter".to_string();
            complete(entry.waiter, Err(WaitError::Hub(why)));
        }
    }
}

fn complete<T: Wire>(waiter: Waiter<T>, result: Result<T, WaitError>) {
    match waiter {
        Waiter::Local(slot) => slot.fill(result),
        Waiter::Remote(reply) => reply.complete(result),
    }
}

impl<T: Wire + Clone> WaitList<T> {
    /// Takes every waiter off this list into a new one; keys stay unique here.
    pub(crate) fn detach(&mut self) -> WaitList<T> {
        WaitList {
            entries: std::mem::take(&mut self.entries),
            next_key: self.next_key,
        }
    }

    /// Answers every waiter with `error`.
    pub(crate) fn fail_all(&mut self, error: WaitError) {
        for (_, entry) in std::mem::take(&mut self.entries) {
            complete(entry.waiter, Err(error.clone()));
        }
    }

    /// Takes the waiters of server `scope` off this list, into a new one.
    pub(crate) fn take_scope(&mut self, scope: usize) -> WaitList<T> {
        self.take_where(|_, entry| entry.scope == scope)
    }

    /// Takes the waiters with these keys that are still here, into a new list.
    pub(crate) fn take_keys(&mut self, keys: &[u64]) -> WaitList<T> {
        self.take_where(|key, _| keys.binary_search(key).is_ok())
    }

    fn take_where(&mut self, mut taken: impl FnMut(&u64, &Entry<T>) -> bool) -> WaitList<T> {
        let (out, kept) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|(key, entry)| taken(key, entry));
        self.entries = kept;
        WaitList {
            entries: out,
            next_key: self.next_key,
        }
    }

    /// Puts back waiters detached from this list (by [`detach`](Self::detach)) for a
    /// release that never came, each in its place: their keys are older than any pushed
    /// since, and are the keys their waiters leave by. Left out: a waiter of this process
    /// that gave up meanwhile, and a worker's wait whose deadline passed (the hub's timer
    /// found it gone): those go in the second list, to be answered `TimedOut`. The first
    /// is the keys put back, in order.
    pub(crate) fn restore(
        &mut self,
        mut detached: WaitList<T>,
        now: Instant,
    ) -> (Vec<u64>, WaitList<T>) {
        let mut expired = BTreeMap::new();
        let mut keys = Vec::with_capacity(detached.entries.len());
        for (key, entry) in std::mem::take(&mut detached.entries) {
            match &entry.waiter {
                Waiter::Local(slot) if slot.gave_up() => {}
                Waiter::Remote(reply) if reply.expired(now) => {
                    expired.insert(key, entry);
                }
                _ => {
                    keys.push(key);
                    self.entries.insert(key, entry);
                }
            }
        }
        let expired = WaitList {
            entries: expired,
            next_key: self.next_key,
        };
        (keys, expired)
    }
}
