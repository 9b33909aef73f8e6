//! Per-worker counters and states of a worker pool (processes of `Preforked`, threads
//! of `Prethreaded`), kept in memory every worker can write: a shared anonymous
//! mapping made before the fork. [`PoolStats`] reads them; its table is UNP Fig. 30.2.

use std::fmt::Write as _;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys::shared_memory::SharedWords;

/// Words per worker slot.
const SLOT_WORDS: usize = 10;
const PID: usize = 0;
const STATE: usize = 1;
const BEAT: usize = 2;
const CONNECTIONS: usize = 3;
const REQUESTS: usize = 4;
const WASTED: usize = 5;
/// Handlers of the worker blocked in a shared-object wait (as of its last heartbeat).
const WAITERS: usize = 6;
/// Supervision of the slot by the master: workers started after the first, attempts
/// to start one that failed (fork, socketpair, registration, or its boot), back-offs.
const RESTARTS: usize = 7;
const SPAWN_FAILURES: usize = 8;
const BACKOFFS: usize = 9;

/// What a worker slot is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// No worker.
    Empty = 0,
    /// Forked, not yet waiting for connections.
    Starting = 1,
    /// Waiting for a connection.
    Idle = 2,
    /// Serving (a worker with free threads is still idle).
    Busy = 3,
    /// Finishing before it exits.
    Exiting = 4,
}

impl SlotState {
    fn from_word(word: u64) -> SlotState {
        match word {
            1 => SlotState::Starting,
            2 => SlotState::Idle,
            3 => SlotState::Busy,
            4 => SlotState::Exiting,
            _ => SlotState::Empty,
        }
    }
}

/// One worker's counters, as [`PoolStats::workers`] reports them. A slot whose worker
/// was replaced keeps counting, so the totals cover the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    /// The worker slot (0-based).
    pub worker: usize,
    /// The process serving the slot last (`Prethreaded`: the server's own pid).
    pub pid: u32,
    /// Connections accepted by (or handed to) the worker.
    pub connections: u64,
    /// Connections fully served (a worker sees connections, not HTTP requests).
    pub requests: u64,
    /// Wake-ups that found no connection to accept (`EAGAIN` after readiness).
    pub wasted_wakeups: u64,
    /// Workers started in the slot after its first (replacements, respawns).
    pub restarts: u64,
    /// Attempts to start a worker in the slot that failed: `fork`, `socketpair` or a
    /// registration refused (`EMFILE`, `EAGAIN`, `ENOMEM`), or the worker died booting.
    pub spawn_failures: u64,
    /// Times the master backed off before trying the slot again.
    pub backoffs: u64,
}

/// A handle on a pool's per-worker counters; cheap to clone, readable while the server
/// runs and after `serve_forever` returned.
///
/// ```
/// use mixserve::mixin::{Accept, Preforked};
///
/// let model = Preforked::new().accept(Accept::Shared).workers(2);
/// let stats = model.stats();
/// // … build the server with `model`, serve, then:
/// print!("{}", stats.table());
/// ```
#[derive(Debug, Clone)]
pub struct PoolStats {
    /// `None` when the shared memory could not be mapped (the model refuses to start).
    board: Option<Arc<Scoreboard>>,
}

impl PoolStats {
    pub(crate) fn new(board: Option<Arc<Scoreboard>>) -> PoolStats {
        PoolStats { board }
    }

    /// Every slot that ever had a worker, in slot order.
    pub fn workers(&self) -> Vec<WorkerStats> {
        let Some(board) = self.board.as_deref() else {
            return Vec::new();
        };
        (0..board.slots())
            .filter_map(|slot| {
                let word = |i| board.word(slot, i).load(Ordering::Relaxed);
                let used = word(PID) != 0 || word(SPAWN_FAILURES) != 0;
                used.then(|| WorkerStats {
                    worker: slot,
                    pid: word(PID) as u32,
                    connections: word(CONNECTIONS),
                    requests: word(REQUESTS),
                    wasted_wakeups: word(WASTED),
                    restarts: word(RESTARTS),
                    spawn_failures: word(SPAWN_FAILURES),
                    backoffs: word(BACKOFFS),
                })
            })
            .collect()
    }

    /// The distribution table (UNP Fig. 30.2), one Markdown row per worker, then totals,
    /// with the master's supervision counters (restarts, spawn failures, back-offs):
    ///
    /// ```text
    /// | worker | pid | connections | requests | wasted wakeups | restarts | spawn failures | back-offs |
    /// |---|---|---|---|---|---|---|---|
    /// | 0 | 4242 | 51 | 51 | 0 | 0 | 0 | 0 |
    /// | total | - | 51 | 51 | 0 | 0 | 0 | 0 |
    /// ```
    pub fn table(&self) -> String {
        let workers = self.workers();
        let mut out = String::from(
            "| worker | pid | connections | requests | wasted wakeups | restarts | spawn failures \
             | back-offs |\n|---|---|---|---|---|---|---|---|\n",
        );
        let mut total = [0u64; 6];
        for w in &workers {
            let row = [
                w.connections,
                w.requests,
                w.wasted_wakeups,
                w.restarts,
                w.spawn_failures,
                w.backoffs,
            ];
            let _ = write!(out, "| {} | {} |", w.worker, w.pid);
            for (sum, n) in total.iter_mut().zip(row) {
                *sum += n;
                let _ = write!(out, " {n} |");
            }
            out.push('\n');
        }
        out.push_str("| total | - |");
        for n in total {
            let _ = write!(out, " {n} |");
        }
        out.push('\n');
        out
    }

    /// The master's supervision counters summed over every slot: workers restarted,
    /// failed starts, back-offs.
    pub fn supervision(&self) -> (u64, u64, u64) {
        self.workers().iter().fold((0, 0, 0), |(r, f, b), w| {
            (r + w.restarts, f + w.spawn_failures, b + w.backoffs)
        })
    }
}

/// The shared slots themselves: the master (or pool owner) and every worker write here.
#[derive(Debug)]
pub(crate) struct Scoreboard {
    words: SharedWords,
    slots: usize,
}

impl Scoreboard {
    /// Maps `slots` zeroed worker slots, shared with processes forked afterwards.
    pub(crate) fn new(slots: usize) -> io::Result<Scoreboard> {
        Ok(Scoreboard {
            words: SharedWords::new(slots * SLOT_WORDS)?,
            slots,
        })
    }

    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    fn word(&self, slot: usize, index: usize) -> &AtomicU64 {
        &self.words.words()[slot * SLOT_WORDS + index]
    }

    pub(crate) fn state(&self, slot: usize) -> SlotState {
        SlotState::from_word(self.word(slot, STATE).load(Ordering::SeqCst))
    }

    pub(crate) fn set_state(&self, slot: usize, state: SlotState) {
        self.word(slot, STATE).store(state as u64, Ordering::SeqCst);
    }

    /// A worker is about to start in `slot`: `Starting`, with a fresh heartbeat. Called
    /// before the fork, so the worker's own first state change always wins.
    pub(crate) fn prepare(&self, slot: usize) {
        self.set_state(slot, SlotState::Starting);
        self.set_waiters(slot, 0);
        self.beat(slot);
    }

    /// Records how many handlers of the worker in `slot` wait on a shared object.
    pub(crate) fn set_waiters(&self, slot: usize, waiters: usize) {
        self.word(slot, WAITERS)
            .store(waiters as u64, Ordering::SeqCst);
    }

    /// Whether the worker in `slot` is idle and holds no waiter: the one a pool may
    /// retire without answering anybody early.
    pub(crate) fn is_free(&self, slot: usize) -> bool {
        self.state(slot) == SlotState::Idle && self.word(slot, WAITERS).load(Ordering::SeqCst) == 0
    }

    /// Records the process serving `slot`.
    pub(crate) fn set_pid(&self, slot: usize, pid: u32) {
        self.word(slot, PID).store(u64::from(pid), Ordering::SeqCst);
    }

    /// Connections the worker of `slot` has taken so far.
    pub(crate) fn connections(&self, slot: usize) -> u64 {
        self.word(slot, CONNECTIONS).load(Ordering::Relaxed)
    }

    /// Records that the worker of `slot` is alive now.
    pub(crate) fn beat(&self, slot: usize) {
        self.word(slot, BEAT).store(now_millis(), Ordering::SeqCst);
    }

    /// Milliseconds since the last heartbeat of `slot`.
    pub(crate) fn silent_for_millis(&self, slot: usize) -> u64 {
        now_millis().saturating_sub(self.word(slot, BEAT).load(Ordering::SeqCst))
    }

    pub(crate) fn count_connection(&self, slot: usize) {
        self.word(slot, CONNECTIONS).fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_request(&self, slot: usize) {
        self.word(slot, REQUESTS).fetch_add(1, Ordering::Relaxed);
    }

    /// A worker was started in `slot` again.
    pub(crate) fn count_restart(&self, slot: usize) {
        self.word(slot, RESTARTS).fetch_add(1, Ordering::Relaxed);
    }

    /// Starting a worker in `slot` failed.
    pub(crate) fn count_spawn_failure(&self, slot: usize) {
        self.word(slot, SPAWN_FAILURES)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The master backed off before trying `slot` again.
    pub(crate) fn count_backoff(&self, slot: usize) {
        self.word(slot, BACKOFFS).fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_wasted_wakeup(&self, slot: usize) {
        self.word(slot, WASTED).fetch_add(1, Ordering::Relaxed);
    }

    /// Slots in `state` among the first `upto`.
    pub(crate) fn count_in(&self, upto: usize, states: &[SlotState]) -> usize {
        (0..upto.min(self.slots))
            .filter(|&slot| states.contains(&self.state(slot)))
            .count()
    }
}

fn now_millis() -> u64 {
    crate::sys::shared_memory::monotonic_millis()
}
