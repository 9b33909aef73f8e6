//! [`StatusBoard`]: the live counters in memory shared by every process of a server —
//! one row for the server's own process (and the children `Forking` makes), then one
//! row per preforked worker slot. It is mapped when the server is built, before any
//! fork, so a handler in a worker writes where the master (and any other worker) reads.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

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
}

/// The shared rows, and the model's name once the server runs.
#[derive(Debug)]
pub(crate) struct StatusBoard {
    words: SharedWords,
    model: OnceLock<&'static str>,
}

impl StatusBoard {
    /// Maps the zeroed rows, shared with every process forked afterwards.
    pub(crate) fn new() -> io::Result<StatusBoard> {
        Ok(StatusBoard {
            words: SharedWords::new((1 + WORKER_ROWS) * ROW_WORDS)?,
            model: OnceLock::new(),
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

    pub(crate) fn get(&self, row: usize, counter: Counter) -> u64 {
        self.word(row, counter).load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, row: usize, counter: Counter, n: u64) {
        self.word(row, counter).fetch_add(n, Ordering::Relaxed);
    }

    /// Lowers a gauge, never below zero.
    pub(crate) fn sub(&self, row: usize, counter: Counter) {
        let _ = self
            .word(row, counter)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }

    /// A worker starts in `row`: count it, record its pid, and zero the gauges its
    /// predecessor (which may have died mid-request) left behind.
    pub(crate) fn worker_started(&self, row: usize, pid: u32) {
        self.word(row, Counter::InFlight)
            .store(0, Ordering::Relaxed);
        self.word(row, Counter::Waiters).store(0, Ordering::Relaxed);
        self.word(row, Counter::Pid)
            .store(u64::from(pid), Ordering::Relaxed);
        self.add(row, Counter::WorkerStarts, 1);
    }

    pub(crate) fn set_model(&self, model: &'static str) {
        let _ = self.model.set(model);
    }

    pub(crate) fn model(&self) -> &'static str {
        self.model.get().copied().unwrap_or("unknown")
    }
}
