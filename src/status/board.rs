//! [`StatusBoard`]: the live counters in memory shared by every process of a server —
//! one row for the server's own process (and the children `Forking` makes), then one
//! row per preforked worker slot. It is mapped when the server is built, before any
//! fork, so a handler in a worker writes where the master (and any other worker) reads.
//!
//! A `Forking` child's gauges (in flight, waiters) go to a ledger slot of its own
//! instead of row 0, and row 0 reads as its own words plus every slot. The parent
//! empties a child's slot when it reaps it: a child killed mid-request (`SIGKILL`
//! runs no destructor) gives back what it held. The preforked master does the same
//! with a worker's row when it reaps the worker.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sys::shared_memory::SharedWords;

/// Words per row.
pub(crate) const ROW_WORDS: usize = 16;
/// Worker rows after the server's own row: one per slot of the largest preforked
/// pool (two per worker, for side-by-side replacement); a slot beyond counts in row 0.
pub(crate) const WORKER_ROWS: usize = 2 * crate::mixin::Preforked::MAX_WORKERS;

/// The counters of one row, by word index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    /// Connections handed to the handler.
    Connections = 0,
    /// Requests the protocol adapter parsed (HTTP, SCGI); other handlers count none.
    Requests = 1,
    /// Connections inside the handler now (a gauge).
    InFlight = 2,
    /// Connections refused at a cap (`503` or closed).
    Refused = 3,
    /// Wake-ups that found no connection to accept.
    WastedWakeups = 4,
    /// Handlers blocked in a shared-object wait now (a gauge).
    Waiters = 5,
    /// Requests sent to the hub and answered or failed.
    HubRoundTrips = 6,
    /// Workers started in this slot (the first one included).
    WorkerStarts = 7,
    /// Loop stalls of the `scheduled` model.
    Stalls = 8,
    /// The process serving the row last.
    Pid = 9,
    /// Naps of the `scheduled` model's wake-up moderation.
    Naps = 10,
}

/// Gauges per `Forking` child slot: in flight, waiters.
const SLOT_WORDS: usize = 2;

/// At most this many `Forking` child slots (1 MiB): children beyond them (a
/// `max_children` past it) count in row 0.
const MAX_CHILD_SLOTS: usize = 1 << 16;

/// The `Forking` child slot of this process (`NO_SLOT` outside such a child).
static CHILD_SLOT: AtomicUsize = AtomicUsize::new(NO_SLOT);
const NO_SLOT: usize = usize::MAX;

/// The shared rows, and the model's name once the server runs.
#[derive(Debug)]
pub(crate) struct StatusBoard {
    words: SharedWords,
    model: OnceLock<&'static str>,
    /// One slot of gauges per live `Forking` child, mapped before its first fork.
    children: OnceLock<SharedWords>,
}

impl StatusBoard {
    /// Maps the zeroed rows, shared with every process forked afterwards.
    pub(crate) fn new() -> io::Result<StatusBoard> {
        Ok(StatusBoard {
            words: SharedWords::new((1 + WORKER_ROWS) * ROW_WORDS)?,
            model: OnceLock::new(),
            children: OnceLock::new(),
        })
    }

    /// The row of a preforked worker slot (row 0 for the server's own process).
    pub(crate) fn worker_row(slot: usize) -> usize {
        if slot < WORKER_ROWS { slot + 1 } else { 0 }
    }

    pub(crate) fn rows(&self) -> usize {
        1 + WORKER_ROWS
    }

    pub(crate) fn word(&self, row: usize, counter: Counter) -> &AtomicU64 {
        &self.words.words()[row * ROW_WORDS + counter as usize]
    }

    /// The value of `counter` in `row`; row 0's gauges include every child slot's.
    pub(crate) fn get(&self, row: usize, counter: Counter) -> u64 {
        let own = self.word(row, counter).load(Ordering::Relaxed);
        let Some(index) = slot_index(row, counter) else {
            return own;
        };
        let slots = self.children.get().map_or(&[][..], SharedWords::words);
        slots
            .chunks(SLOT_WORDS)
            .fold(own, |sum, slot| sum + slot[index].load(Ordering::Relaxed))
    }

    #[inline]
    pub(crate) fn add(&self, row: usize, counter: Counter, n: u64) {
        self.target(row, counter).fetch_add(n, Ordering::Relaxed);
    }

    /// Lowers a gauge, never below zero.
    pub(crate) fn sub(&self, row: usize, counter: Counter) {
        let _ = self
            .target(row, counter)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }

    /// Where this process counts `counter` of `row`: a `Forking` child's gauges go to
    /// its slot. A plain counter (requests, counted on every request) is looked up
    /// first and goes straight to its word.
    #[inline]
    fn target(&self, row: usize, counter: Counter) -> &AtomicU64 {
        if let Some(index) = slot_index(row, counter) {
            let slot = CHILD_SLOT.load(Ordering::Relaxed);
            if slot != NO_SLOT
                && let Some(word) = self.children.get().and_then(|slots| {
                    slots
                        .words()
                        .get(slot.saturating_mul(SLOT_WORDS).saturating_add(index))
                })
            {
                return word;
            }
        }
        self.word(row, counter)
    }

    /// Maps one slot of gauges per `Forking` child, `slots` of them but at most
    /// `MAX_CHILD_SLOTS`; call it in the parent before it forks. Returns how many slots
    /// there are (a second call keeps the first mapping).
    pub(crate) fn map_child_slots(&self, slots: usize) -> io::Result<usize> {
        if self.children.get().is_none() {
            let words = SharedWords::new(slots.min(MAX_CHILD_SLOTS) * SLOT_WORDS)?;
            let _ = self.children.set(words);
        }
        Ok(self
            .children
            .get()
            .map_or(0, |w| w.words().len() / SLOT_WORDS))
    }

    /// Empties a child's slot: in the parent, before a child gets it and once it is
    /// reaped (whatever it still held is given back).
    pub(crate) fn clear_child_slot(&self, slot: usize) {
        let words = self.children.get().map_or(&[][..], SharedWords::words);
        let first = slot.saturating_mul(SLOT_WORDS);
        for word in words.iter().skip(first).take(SLOT_WORDS) {
            word.store(0, Ordering::Relaxed);
        }
    }

    /// A worker starts in `row`: count it, record its pid, and zero the gauges its
    /// predecessor (which may have died mid-request) left behind.
    pub(crate) fn worker_started(&self, row: usize, pid: u32) {
        self.clear_gauges(row);
        self.word(row, Counter::Pid)
            .store(u64::from(pid), Ordering::Relaxed);
        self.add(row, Counter::WorkerStarts, 1);
    }

    /// The worker of preforked `slot` was reaped: whatever it still counted in flight
    /// or waiting goes with it. Killed mid-request (`SIGKILL` runs no destructor) it
    /// could not take that back itself, and a slot no new worker takes (a grown pool
    /// back at its size) would show it for good. A slot beyond the rows counts in row
    /// 0, which the server's own process shares: it is left alone.
    pub(crate) fn worker_reaped(&self, slot: usize) {
        let row = StatusBoard::worker_row(slot);
        if row != 0 {
            self.clear_gauges(row);
        }
    }

    /// Zeroes the gauges (in flight, waiters) of `row`.
    fn clear_gauges(&self, row: usize) {
        for counter in [Counter::InFlight, Counter::Waiters] {
            self.word(row, counter).store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_model(&self, model: &'static str) {
        let _ = self.model.set(model);
    }

    pub(crate) fn model(&self) -> &'static str {
        self.model.get().copied().unwrap_or("unknown")
    }
}

/// In a `Forking` child right after the fork: its gauges go to `slot` from now on.
pub(crate) fn enter_child_slot(slot: usize) {
    CHILD_SLOT.store(slot, Ordering::Relaxed);
}

/// The word of `counter` within a child slot, for row 0's gauges only.
fn slot_index(row: usize, counter: Counter) -> Option<usize> {
    match (row, counter) {
        (0, Counter::InFlight) => Some(0),
        (0, Counter::Waiters) => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Forking::max_children(usize::MAX)` (no limit) must not overflow the mapping's
    /// size nor allocate a slot per possible child: the slots stop at a bound.
    #[test]
    fn child_slots_are_bounded() {
        let board = StatusBoard::new().unwrap();
        let slots = board.map_child_slots(usize::MAX).unwrap();
        assert!((1..=MAX_CHILD_SLOTS).contains(&slots), "{slots}");
        board.clear_child_slot(slots - 1);
        board.clear_child_slot(usize::MAX);
        assert_eq!(board.get(0, Counter::InFlight), 0);
    }

    /// A reaped worker's gauges leave its row; the server's own row, where a slot
    /// beyond the rows counts, keeps what its live process counted.
    #[test]
    fn a_reaped_workers_gauges_are_zeroed_and_row_zero_is_left_alone() {
        let board = StatusBoard::new().unwrap();
        let row = StatusBoard::worker_row(1);
        board.add(row, Counter::InFlight, 1);
        board.add(row, Counter::Waiters, 1);
        board.add(row, Counter::Connections, 1);
        board.add(0, Counter::InFlight, 1);
        board.worker_reaped(1);
        board.worker_reaped(WORKER_ROWS);
        assert_eq!(board.get(row, Counter::InFlight), 0);
        assert_eq!(board.get(row, Counter::Waiters), 0);
        assert_eq!(board.get(row, Counter::Connections), 1, "counters stay");
        assert_eq!(board.get(0, Counter::InFlight), 1);
    }

    /// A slot's gauges count in row 0 until the slot is emptied.
    #[test]
    fn row_zero_sums_the_child_slots() {
        let board = StatusBoard::new().unwrap();
        assert_eq!(board.map_child_slots(3).unwrap(), 3);
        let slots = board.children.get().unwrap().words();
        slots[2 * SLOT_WORDS].store(4, Ordering::Relaxed);
        slots[SLOT_WORDS + 1].store(2, Ordering::Relaxed);
        board.add(0, Counter::InFlight, 1);
        assert_eq!(board.get(0, Counter::InFlight), 5);
        assert_eq!(board.get(0, Counter::Waiters), 2);
        board.clear_child_slot(2);
        board.clear_child_slot(1);
        assert_eq!(board.get(0, Counter::InFlight), 1);
        assert_eq!(board.get(0, Counter::Waiters), 0);
    }
}
