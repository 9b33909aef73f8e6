//! Deadlines of parked coroutines: a binary min-heap with at most one live entry per
//! coroutine, armed lazily.
//!
//! A keep-alive connection parks with a fresh idle deadline after every request. Pushing
//! a heap entry each time (and leaving the last one stale) cost a heap push per request
//! and a heap full of stale entries. Instead a coroutine keeps the entry it has (its slot
//! remembers the entry's deadline as "armed") as long as that entry fires no later than
//! the new deadline; when it fires early, the scheduler finds the coroutine parked with a
//! later deadline and arms one entry for that (nginx keeps its keep-alive timers the same
//! way). A park with an earlier deadline than the armed one pushes a new entry; the old
//! one is then stale, and is recognised as such when it expires (its deadline is no
//! longer the slot's armed one) or when [`Timers::compact`] rebuilds the heap because
//! more than half of it is stale. Insert and expiry are O(log n); nothing scans all
//! timers per wake.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::scheduler::CoroutineId;

/// Below this many entries the heap is never compacted: stale entries cost little.
const COMPACT_MIN_LEN: usize = 1024;

/// One deadline; `order` keeps equal deadlines first-in, first-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    deadline: Instant,
    order: u64,
    id: CoroutineId,
}

/// The timer heap of one runtime.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Min-heap of deadlines.
    heap: BinaryHeap<Reverse<Entry>>,
    /// Next insertion number, for FIFO order among equal deadlines.
    next_order: u64,
    /// Estimate of entries no coroutine waits for any more (an upper bound).
    stale: usize,
}

impl Timers {
    /// Arms a deadline for coroutine `id`.
    pub(crate) fn insert(&mut self, deadline: Instant, id: CoroutineId) {
        let order = self.next_order;
        self.next_order += 1;
        self.heap.push(Reverse(Entry {
            deadline,
            order,
            id,
        }));
    }

    /// The earliest deadline, stale or not.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(entry)| entry.deadline)
    }

    /// Removes and returns one entry (its coroutine and deadline) whose deadline is at or
    /// before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(CoroutineId, Instant)> {
        match self.heap.peek() {
            Some(Reverse(entry)) if entry.deadline <= now => {
                let expired = (entry.id, entry.deadline);
                self.heap.pop();
                Some(expired)
            }
            _ => None,
        }
    }

    /// Records that an entry became stale: its coroutine armed an earlier one, or ended.
    pub(crate) fn note_stale(&mut self) {
        self.stale += 1;
    }

    /// Records that an expired entry turned out to be stale.
    pub(crate) fn note_stale_expired(&mut self) {
        self.stale = self.stale.saturating_sub(1);
    }

    /// Drops stale entries when they are more than half of a large heap (amortised O(1)).
    /// `is_live(id, deadline)`: whether that entry is still its coroutine's armed one.
    pub(crate) fn compact(&mut self, mut is_live: impl FnMut(CoroutineId, Instant) -> bool) {
        if self.heap.len() < COMPACT_MIN_LEN || self.stale * 2 < self.heap.len() {
            return;
        }
        self.heap
            .retain(|Reverse(entry)| is_live(entry.id, entry.deadline));
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
    use std::time::Duration;

    fn id(index: u32) -> CoroutineId {
        CoroutineId {
            index,
            generation: 0,
        }
    }

    #[test]
    fn expires_in_deadline_order_then_fifo() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.insert(now + Duration::from_millis(30), id(3));
        timers.insert(now + Duration::from_millis(10), id(1));
        timers.insert(now + Duration::from_millis(10), id(2));
        assert_eq!(
            timers.next_deadline(),
            Some(now + Duration::from_millis(10))
        );
        assert_eq!(timers.pop_expired(now), None);
        let later = now + Duration::from_millis(20);
        assert_eq!(
            timers.pop_expired(later),
            Some((id(1), now + Duration::from_millis(10)))
        );
        assert_eq!(
            timers.pop_expired(later),
            Some((id(2), now + Duration::from_millis(10)))
        );
        assert_eq!(timers.pop_expired(later), None);
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn compaction_drops_only_stale_entries() {
        let now = Instant::now();
        let mut timers = Timers::default();
        for i in 0..2000 {
            timers.insert(now + Duration::from_secs(60), id(i));
        }
        for _ in 0..1500 {
            timers.note_stale();
        }
        timers.compact(|id, _| id.index < 500);
        assert_eq!(timers.len(), 500);
    }
}
