//! Deadlines of parked coroutines: a binary min-heap with lazy cancellation.
//!
//! A wait that ends for another reason (I/O readiness, a wake) leaves its entry in the
//! heap; the entry is recognised as stale when it expires (its [`WaitTicket`] no longer
//! matches) or when [`Timers::compact`] rebuilds the heap because more than half of it is
//! stale. Insert and expiry are O(log n); nothing scans all timers per wake.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::scheduler::WaitTicket;

/// Below this many entries the heap is never compacted: stale entries cost little.
const COMPACT_MIN_LEN: usize = 1024;

/// One deadline; `order` keeps equal deadlines first-in, first-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    deadline: Instant,
    order: u64,
    ticket: WaitTicket,
}

/// The timer heap of one runtime.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Min-heap of deadlines.
    heap: BinaryHeap<Reverse<Entry>>,
    /// Next insertion number, for FIFO order among equal deadlines.
    next_order: u64,
    /// Estimate of entries whose wait already ended (an upper bound).
    stale: usize,
}

impl Timers {
    /// Adds a deadline for the wait identified by `ticket`.
    pub(crate) fn insert(&mut self, deadline: Instant, ticket: WaitTicket) {
        let order = self.next_order;
        self.next_order += 1;
        self.heap.push(Reverse(Entry {
            deadline,
            order,
            ticket,
        }));
    }

    /// The earliest deadline, stale or not.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(entry)| entry.deadline)
    }

    /// Removes and returns one entry whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<WaitTicket> {
        match self.heap.peek() {
            Some(Reverse(entry)) if entry.deadline <= now => {
                let ticket = entry.ticket;
                self.heap.pop();
                Some(ticket)
            }
            _ => None,
        }
    }

    /// Records that a wait with a deadline ended before the deadline.
    pub(crate) fn note_cancelled(&mut self) {
        self.stale += 1;
    }

    /// Records that an expired entry turned out to be stale.
    pub(crate) fn note_stale_expired(&mut self) {
        self.stale = self.stale.saturating_sub(1);
    }

    /// Drops stale entries when they are more than half of a large heap (amortised O(1)).
    pub(crate) fn compact(&mut self, mut is_live: impl FnMut(WaitTicket) -> bool) {
        if self.heap.len() < COMPACT_MIN_LEN || self.stale * 2 < self.heap.len() {
            return;
        }
        self.heap.retain(|Reverse(entry)| is_live(entry.ticket));
        self.stale = 0;
    }

    /// Number of entries, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Forgets every deadline.
    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.stale = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::scheduler::CoroutineId;
    use std::time::Duration;

    fn ticket(index: u32, seq: u64) -> WaitTicket {
        WaitTicket {
            id: CoroutineId {
                index,
                generation: 0,
            },
            seq,
        }
    }

    #[test]
    fn expires_in_deadline_order_then_fifo() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.insert(now + Duration::from_millis(30), ticket(3, 0));
        timers.insert(now + Duration::from_millis(10), ticket(1, 0));
        timers.insert(now + Duration::from_millis(10), ticket(2, 0));
        assert_eq!(
            timers.next_deadline(),
            Some(now + Duration::from_millis(10))
        );
        assert_eq!(timers.pop_expired(now), None);
        let later = now + Duration::from_millis(20);
        assert_eq!(timers.pop_expired(later), Some(ticket(1, 0)));
        assert_eq!(timers.pop_expired(later), Some(ticket(2, 0)));
        assert_eq!(timers.pop_expired(later), None);
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn compaction_drops_only_stale_entries() {
        let now = Instant::now();
        let mut timers = Timers::default();
        for i in 0..2000 {
            timers.insert(now + Duration::from_secs(60), ticket(i, 0));
        }
        for _ in 0..1500 {
            timers.note_cancelled();
        }
        timers.compact(|t| t.id.index < 500);
        assert_eq!(timers.len(), 500);
    }
}
