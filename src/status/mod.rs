//! Live status: what a server is doing while it runs, under every model — connections,
//! requests, in flight, refused at a cap, wasted wake-ups, waiters, hub round trips,
//! worker starts, loop stalls — summed over every process, with one row per preforked
//! worker. nginx's `stub_status` and Apache's `mod_status`, for every model at once.
//!
//! - `board.rs` — the counters, in memory shared by the master and every process it
//!   forks (mapped when the server is built, before any fork);
//! - `objects.rs` — named shared objects ([`watch_broadcast`], [`watch_channel`]);
//! - `prometheus.rs` — [`Status::prometheus`], the text exposition format.
//!
//! Read it with [`Server::status`](crate::Server::status) (from any thread, also while
//! `serve_forever` runs) or, inside a handler, with [`current`]:
//!
//! ```
//! use mixserve::http::{Http, Request, Response};
//!
//! let app = |req: &mut Request| match req.path() {
//!     "/_status" => match mixserve::status::current() {
//!         Some(status) => Response::text(200, status.snapshot().prometheus()),
//!         None => Response::text(404, "no status here\n"),
//!     },
//!     _ => Response::text(200, "hello\n"),
//! };
//! let server = mixserve::Server::builder(mixserve::Threading::new())
//!     .bind("127.0.0.1:0")
//!     .build(Http::new(app))?;
//! let status = server.status().snapshot();
//! assert_eq!(status.total.requests, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod board;
mod objects;
mod prometheus;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use board::{Counter, StatusBoard, enter_child_slot};
pub use objects::{ObjectFigures, watch_broadcast, watch_channel};

/// A handle on a server's live counters; cheap to clone, usable from any thread and
/// any process of the server.
#[derive(Debug, Clone)]
pub struct StatusHandle {
    board: Arc<StatusBoard>,
}

/// The figures of one row (or their sum).
///
/// Non-exhaustive: a new counter is not a breaking change. Read the fields; the
/// server builds the value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Figures {
    /// Connections handed to the handler.
    pub connections: u64,
    /// Requests parsed by the HTTP or SCGI adapter (other handlers count none).
    pub requests: u64,
    /// Connections inside the handler now (an idle keep-alive connection counts until
    /// it closes).
    pub in_flight: u64,
    /// Connections refused at a cap (`503`, or closed when the handler is not HTTP).
    pub refused: u64,
    /// Wake-ups that found no connection to accept (the thundering herd).
    pub wasted_wakeups: u64,
    /// Handlers blocked in a `Broadcast`/`Channel` wait now.
    pub waiters: u64,
    /// Requests a forked process sent to the hub (shared objects across processes).
    pub hub_round_trips: u64,
    /// Loop stalls of the `scheduled` model (see [`rt::stall_count`](crate::rt::stall_count)).
    pub stalls: u64,
    /// Times a `scheduled` loop napped instead of blocking, its clients all being slow
    /// to come back (see [`rt::nap_count`](crate::rt::nap_count)).
    pub naps: u64,
}

/// One preforked worker slot's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerFigures {
    /// The worker slot (0-based).
    pub worker: usize,
    /// The process serving the slot last.
    pub pid: u32,
    /// Workers started in the slot; all but the first are restarts.
    pub starts: u64,
    /// The slot's figures.
    pub figures: Figures,
}

/// A snapshot of the live status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The model's name (`"preforked"`), or `"unknown"` before `serve_forever`.
    pub model: &'static str,
    /// The sum over every process.
    pub total: Figures,
    /// Worker restarts (preforked): starts beyond the first, over every slot.
    pub worker_restarts: u64,
    /// One row per preforked worker slot that ever had a worker (empty otherwise).
    pub workers: Vec<WorkerFigures>,
    /// The shared objects named with [`watch_broadcast`] and [`watch_channel`].
    pub objects: Vec<ObjectFigures>,
}

impl StatusHandle {
    pub(crate) fn new(board: Arc<StatusBoard>) -> StatusHandle {
        StatusHandle { board }
    }

    /// The shared counters themselves.
    pub(crate) fn board(&self) -> &StatusBoard {
        &self.board
    }

    /// Reads every counter now. Each is read atomically; the set is not one instant.
    /// Watched shared objects are read too (from a forked process: through the hub).
    pub fn snapshot(&self) -> Status {
        let board = &self.board;
        let mut total = Figures::default();
        let mut workers = Vec::new();
        let mut restarts = 0;
        for row in 0..board.rows() {
            let figures = figures_of(board, row);
            total.add(&figures);
            let starts = board.get(row, Counter::WorkerStarts);
            if row > 0 && starts > 0 {
                restarts += starts - 1;
                workers.push(WorkerFigures {
                    worker: row - 1,
                    pid: board.get(row, Counter::Pid) as u32,
                    starts,
                    figures,
                });
            }
        }
        Status {
            model: board.model(),
            total,
            worker_restarts: restarts,
            workers,
            objects: objects::read_all(),
        }
    }
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.connections += other.connections;
        self.requests += other.requests;
        self.in_flight += other.in_flight;
        self.refused += other.refused;
        self.wasted_wakeups += other.wasted_wakeups;
        self.waiters += other.waiters;
        self.hub_round_trips += other.hub_round_trips;
        self.stalls += other.stalls;
        self.naps += other.naps;
    }
}

fn figures_of(board: &StatusBoard, row: usize) -> Figures {
    let get = |counter| board.get(row, counter);
    Figures {
        connections: get(Counter::Connections),
        requests: get(Counter::Requests),
        in_flight: get(Counter::InFlight),
        refused: get(Counter::Refused),
        wasted_wakeups: get(Counter::WastedWakeups),
        waiters: get(Counter::Waiters),
        hub_round_trips: get(Counter::HubRoundTrips),
        stalls: get(Counter::Stalls),
        naps: get(Counter::Naps),
    }
}

thread_local! {
    /// The board and row of the server whose connections this thread serves (set by
    /// the server for each connection; one process serves one row).
    static SERVING: RefCell<Option<(Arc<StatusBoard>, usize)>> = const { RefCell::new(None) };
}

/// The live status of the server whose connection the calling thread (or coroutine)
/// serves; `None` outside a handler.
pub fn current() -> Option<StatusHandle> {
    SERVING.with(|s| {
        s.borrow()
            .as_ref()
            .map(|(board, _)| StatusHandle::new(Arc::clone(board)))
    })
}

/// What this thread serves, as [`enter`] set it (see [`restore`]).
pub(crate) type Serving = Option<(Arc<StatusBoard>, usize)>;

/// What this thread serves now.
pub(crate) fn serving() -> Serving {
    SERVING.with(|s| s.borrow().clone())
}

/// Puts back what [`serving`] returned.
pub(crate) fn restore(serving: Serving) {
    SERVING.with(|s| *s.borrow_mut() = serving);
}

/// Marks this thread as serving `row` of `board`.
pub(crate) fn enter(board: &Arc<StatusBoard>, row: usize) {
    SERVING.with(|s| {
        let mut serving = s.borrow_mut();
        let same = serving
            .as_ref()
            .is_some_and(|(current, r)| Arc::ptr_eq(current, board) && *r == row);
        if !same {
            *serving = Some((Arc::clone(board), row));
        }
    });
}

/// Adds one to `counter` of the current thread's row (nothing outside a server): a
/// thread-local look-up and one relaxed increment. Inlined, so that with a constant
/// counter (requests, counted on every request) the gauge check folds away.
#[inline]
pub(crate) fn count(counter: Counter) {
    SERVING.with(|s| {
        if let Some((board, row)) = s.borrow().as_ref() {
            board.add(*row, counter, 1);
        }
    });
}

/// Takes one from the gauge `counter` of the current thread's row.
pub(crate) fn uncount(counter: Counter) {
    SERVING.with(|s| {
        if let Some((board, row)) = s.borrow().as_ref() {
            board.sub(*row, counter);
        }
    });
}

/// Stalls and naps seen by this process when it last reported them (inherited across a
/// fork together with the runtime's own counts, so each process adds only its own).
static STALLS_REPORTED: AtomicU64 = AtomicU64::new(0);
static NAPS_REPORTED: AtomicU64 = AtomicU64::new(0);

/// Adds the loop stalls and naps since the last report to `row`: after each connection,
/// and at every turn of a `scheduled` loop's watch (so a loop whose connections stay open
/// is seen within a poll interval).
pub(crate) fn report_loop_counts(board: &StatusBoard, row: usize) {
    for (reported, now, counter) in [
        (&STALLS_REPORTED, crate::rt::stall_count(), Counter::Stalls),
        (&NAPS_REPORTED, crate::rt::nap_count(), Counter::Naps),
    ] {
        if reported.load(Ordering::Relaxed) >= now {
            continue;
        }
        // `fetch_max`: a thread that read an older count reports nothing, not twice.
        let before = reported.fetch_max(now, Ordering::Relaxed);
        if now > before {
            board.add(row, counter, now - before);
        }
    }
}
