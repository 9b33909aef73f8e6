//! The reactor: one mio `Poll` per runtime, and the readiness and wait lists of every
//! registered fd.
//!
//! An fd is registered once for both directions, edge-triggered. An event sets the
//! direction's readiness flag and wakes every coroutine waiting on that direction; a
//! waiter consumes the flag. Because callers try the syscall first and wait only after
//! `WouldBlock`, a flag left over from an earlier edge costs at most one extra syscall,
//! and an edge that arrives while nobody waits is never lost.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Poll, Registry, Token};

use super::Interest;
use super::clock;
use super::moderation::Moderation;
use super::scheduler::{CoroutineId, WaitTicket};

/// The token of the runtime's cross-thread [`mio::Waker`].
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// Bits of a token that hold the entry index; the rest hold its generation.
const INDEX_BITS: u32 = usize::BITS / 2;

/// Generations wrap within the token bits left above the index.
const GENERATION_MASK: u32 = if usize::BITS >= 64 {
    u32::MAX
} else {
    (1 << (usize::BITS - INDEX_BITS)) - 1
};

/// Highest entry index; an all-ones index would let a token collide with [`WAKER_TOKEN`].
const MAX_INDEX: usize = (1 << INDEX_BITS) - 2;

/// The address of one registered fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceKey {
    index: u32,
    generation: u32,
}

impl SourceKey {
    fn token(self) -> Token {
        Token(((self.generation as usize) << INDEX_BITS) | self.index as usize)
    }

    fn from_token(token: Token) -> SourceKey {
        SourceKey {
            index: (token.0 & ((1 << INDEX_BITS) - 1)) as u32,
            generation: (token.0 >> INDEX_BITS) as u32,
        }
    }
}

/// Readiness and waiters of one direction of one fd.
#[derive(Debug, Default)]
struct Direction {
    /// An edge arrived that no waiter consumed yet.
    ready: bool,
    /// An edge arrived since the owner last said the fd was drained
    /// ([`Reactor::clear_ready`]), consumed or not.
    edge_since_clear: bool,
    /// The peer closed this direction, or the socket has an error: no edge will come
    /// again, so neither flag above is ever cleared from now on.
    closed: bool,
    /// Coroutines parked on this direction (the allocation is kept across uses).
    waiters: Vec<WaitTicket>,
    /// When the first of `waiters` parked (reads only, with moderation on): the peer's
    /// turnaround starts there.
    parked_at: Option<Instant>,
}

/// One registered fd.
#[derive(Debug, Default)]
struct Entry {
    generation: u32,
    in_use: bool,
    read: Direction,
    write: Direction,
}

impl Entry {
    fn direction(&mut self, interest: Interest) -> &mut Direction {
        match interest {
            Interest::Readable => &mut self.read,
            Interest::Writable => &mut self.write,
        }
    }
}

/// Entries plus the free list.
#[derive(Debug, Default)]
struct Entries {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

impl Entries {
    fn get_mut(&mut self, key: SourceKey) -> Option<&mut Entry> {
        self.entries
            .get_mut(key.index as usize)
            .filter(|entry| entry.in_use && entry.generation == key.generation)
    }
}

/// The mio poll and the registered fds of one runtime.
#[derive(Debug)]
pub(crate) struct Reactor {
    poll: RefCell<Poll>,
    /// Samples each read wake-up's turnaround; tells the loop when to nap.
    pub(crate) moderation: Moderation,
    events: RefCell<Events>,
    registry: Registry,
    entries: RefCell<Entries>,
}

impl Reactor {
    /// A reactor with a fresh epoll instance.
    pub(crate) fn new(events_capacity: usize, nap: Option<Duration>) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        Ok(Reactor {
            poll: RefCell::new(poll),
            moderation: Moderation::new(nap),
            events: RefCell::new(Events::with_capacity(events_capacity.max(1))),
            registry,
            entries: RefCell::default(),
        })
    }

    /// The registry, for the cross-thread waker.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers `fd` for both directions, edge-triggered.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<SourceKey> {
        let key = {
            let mut entries = self.entries.borrow_mut();
            let index = match entries.free.pop() {
                Some(index) => index,
                None => {
                    let index = u32::try_from(entries.entries.len())
                        .ok()
                        .filter(|&index| index as usize <= MAX_INDEX)
                        .ok_or_else(|| io::Error::other("too many registered fds"))?;
                    entries.entries.push(Entry::default());
                    index
                }
            };
            let entry = &mut entries.entries[index as usize];
            entry.in_use = true;
            entry.read.ready = false;
            entry.write.ready = false;
            // No edge yet: `EPOLL_CTL_ADD` puts an fd that is ready now on epoll's ready
            // list, so the next poll brings its present state as an edge.
            entry.read.edge_since_clear = false;
            entry.write.edge_since_clear = false;
            entry.read.closed = false;
            entry.write.closed = false;
            SourceKey {
                index,
                generation: entry.generation,
            }
        };
        let interests = mio::Interest::READABLE | mio::Interest::WRITABLE;
        if let Err(error) = self
            .registry
            .register(&mut SourceFd(&fd), key.token(), interests)
        {
            self.release(key);
            return Err(error);
        }
        Ok(key)
    }

    /// Deregisters `fd` (errors, e.g. an already closed fd, are ignored) and frees `key`;
    /// returns the coroutines that were parked on it, for the caller to wake.
    pub(crate) fn deregister(&self, key: SourceKey, fd: RawFd) -> Vec<WaitTicket> {
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        self.release(key)
    }

    fn release(&self, key: SourceKey) -> Vec<WaitTicket> {
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = entries.get_mut(key) else {
            return Vec::new();
        };
        entry.in_use = false;
        entry.generation = entry.generation.wrapping_add(1) & GENERATION_MASK;
        let mut parked = std::mem::take(&mut entry.read.waiters);
        parked.append(&mut entry.write.waiters);
        entries.free.push(key.index);
        parked
    }

    /// Consumes the readiness flag of one direction.
    pub(crate) fn take_ready(&self, key: SourceKey, interest: Interest) -> bool {
        self.entries
            .borrow_mut()
            .get_mut(key)
            .is_some_and(|entry| std::mem::take(&mut entry.direction(interest).ready))
    }

    /// Forgets a direction's readiness after the owner drained the fd (a read that
    /// returned less than it asked for): the next bytes bring a new edge. Not once the
    /// peer closed it: the close came with the bytes just read, in the same event, and
    /// no edge will say so again.
    pub(crate) fn clear_ready(&self, key: SourceKey, interest: Interest) {
        if let Some(entry) = self.entries.borrow_mut().get_mut(key) {
            let direction = entry.direction(interest);
            if direction.closed {
                return;
            }
            direction.ready = false;
            direction.edge_since_clear = false;
        }
    }

    /// Whether epoll said the peer closed its sending side, hung up or left an error
    /// (false for an unknown key).
    pub(crate) fn read_closed(&self, key: SourceKey) -> bool {
        self.entries
            .borrow_mut()
            .get_mut(key)
            .is_some_and(|entry| entry.read.closed)
    }

    /// Whether an edge arrived since the last [`clear_ready`](Self::clear_ready), also
    /// one another waiter consumed (true for an unknown key: nothing is known).
    pub(crate) fn edge_since_clear(&self, key: SourceKey, interest: Interest) -> bool {
        self.entries
            .borrow_mut()
            .get_mut(key)
            .is_none_or(|entry| entry.direction(interest).edge_since_clear)
    }

    /// Adds a parked coroutine to a direction's wait list.
    pub(crate) fn add_waiter(&self, key: SourceKey, interest: Interest, ticket: WaitTicket) {
        if let Some(entry) = self.entries.borrow_mut().get_mut(key) {
            let direction = entry.direction(interest);
            if direction.waiters.is_empty()
                && interest == Interest::Readable
                && self.moderation.enabled()
            {
                direction.parked_at = Some(clock::now());
            }
            direction.waiters.push(ticket);
        }
    }

    /// Removes a coroutine from a direction's wait list (after a timeout).
    pub(crate) fn remove_waiter(&self, key: SourceKey, interest: Interest, id: CoroutineId) {
        if let Some(entry) = self.entries.borrow_mut().get_mut(key) {
            let direction = entry.direction(interest);
            direction.waiters.retain(|ticket| ticket.id != id);
            if direction.waiters.is_empty() {
                direction.parked_at = None;
            }
        }
    }

    /// Waits for events (EINTR counts as none) and hands each woken waiter to `wake`.
    /// The cross-thread waker's event only interrupts the wait: the caller drains the
    /// remote queue after every poll. True if epoll returned any event. Refreshes the
    /// loop's clock once the wait is over.
    pub(crate) fn poll(
        &self,
        timeout: Option<Duration>,
        mut wake: impl FnMut(WaitTicket),
    ) -> io::Result<bool> {
        let mut events = self.events.borrow_mut();
        let polled = self.poll.borrow_mut().poll(&mut events, timeout);
        // The loop's one clock reading per poll (see `clock`): the wake-ups' turnarounds
        // end here, and the loop fires its timers by it.
        let now = clock::refresh();
        match polled {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(error) => return Err(error),
        }
        let now = self.moderation.enabled().then_some(now);
        let mut entries = self.entries.borrow_mut();
        for event in events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            let Some(entry) = entries.get_mut(SourceKey::from_token(event.token())) else {
                continue;
            };
            if event.is_read_closed() || event.is_error() {
                entry.read.closed = true;
            }
            if event.is_write_closed() || event.is_error() {
                entry.write.closed = true;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                entry.read.ready = true;
                entry.read.edge_since_clear = true;
                if let (Some(now), Some(parked_at), false) = (
                    now,
                    entry.read.parked_at.take(),
                    entry.read.waiters.is_empty(),
                ) {
                    self.moderation
                        .record(now.saturating_duration_since(parked_at));
                }
                entry.read.waiters.drain(..).for_each(&mut wake);
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                entry.write.ready = true;
                entry.write.edge_since_clear = true;
                entry.write.waiters.drain(..).for_each(&mut wake);
            }
        }
        Ok(!events.is_empty())
    }

    /// Number of registered fds.
    pub(crate) fn registered(&self) -> usize {
        let entries = self.entries.borrow();
        entries.entries.len() - entries.free.len()
    }
}
