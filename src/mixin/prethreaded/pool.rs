//! The running pool of a `Prethreaded` server: its threads, how each gets its next
//! connection (from the source under the accept lock, or over the hand-off channel),
//! growth, and stopping.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::PoolAccept;
use crate::conn::Conn;
use crate::mixin::pool_stats::{Scoreboard, SlotState};
use crate::mixin::threads::{Threads, Tracker};
use crate::server::Context;
use crate::server::source::Source;
use crate::sync::lock;

/// What every pool thread shares.
#[derive(Debug)]
struct Shared {
    ctx: Arc<Context>,
    board: Arc<Scoreboard>,
    accept: PoolAccept,
    /// `Locked`: where connections come from, and the one thread allowed to wait on it.
    source: Arc<Source>,
    accept_lock: Mutex<()>,
    /// Where handed-over connections arrive: every connection under `Handoff`; under
    /// `Locked`, those the serving loop hands over after shutdown began.
    receiver: Receiver<Conn>,
    stopping: AtomicBool,
    /// Threads alive, and those serving a connection.
    live: AtomicUsize,
    busy: AtomicUsize,
    /// `Handoff`: connections sent but not yet taken by a thread.
    queued: AtomicUsize,
    max: usize,
    /// A thread could not be started (the process or container is at its thread
    /// limit): the pool holds at the threads it has, as if they were `max`, until a
    /// start succeeds. `Some` holds the scope's cap on blocked waits from before,
    /// restored then (`None`: not short).
    short: Mutex<Option<usize>>,
    /// `short` is `Some`, read without its lock on every connection.
    is_short: AtomicBool,
    /// Which thread slots are taken.
    slots: Mutex<Vec<bool>>,
    threads: Threads,
    /// Starts fail as if at the thread limit (tests only).
    #[cfg(test)]
    failing_spawns: AtomicBool,
}

/// The pool, owned by the `Prethreaded` model while it serves.
#[derive(Debug)]
pub(super) struct Pool {
    shared: Arc<Shared>,
    /// The sending side of the hand-over channel, dropped when the pool stops.
    sender: Option<Sender<Conn>>,
}

impl Pool {
    /// Starts `threads` threads.
    pub(super) fn start(
        ctx: &Arc<Context>,
        source: &Arc<Source>,
        board: Arc<Scoreboard>,
        accept: PoolAccept,
        threads: usize,
        max: usize,
    ) -> io::Result<Pool> {
        let (sender, receiver) = unbounded();
        let shared = Arc::new(Shared {
            ctx: Arc::clone(ctx),
            board,
            accept,
            source: Arc::clone(source),
            accept_lock: Mutex::new(()),
            receiver,
            stopping: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            max,
            short: Mutex::new(None),
            is_short: AtomicBool::new(false),
            slots: Mutex::new(vec![false; max]),
            threads: Threads::new("mixserve-pool"),
            #[cfg(test)]
            failing_spawns: AtomicBool::new(false),
        });
        let pool = Pool {
            shared,
            sender: Some(sender),
        };
        // Counted by `live`, not by calls: under `Locked` the first threads serve at
        // once and may grow the pool themselves (even to `max`) before this loop ends;
        // a spawn refused then for want of a slot is not a failure to start.
        while pool.shared.live.load(Ordering::SeqCst) < threads {
            #[cfg(test)]
            super::pool_tests::before_start_spawn();
            // A thread that served between the check above and this spawn may have
            // taken the last slot: only a pool still short of `threads` failed.
            if !spawn(&pool.shared) && pool.shared.live.load(Ordering::SeqCst) < threads {
                // Threads already serving may be parked in a wait: drain (new waits
                // fail) and answer those, or the join in `stop` would never return.
                ctx.shutdown.begin_drain();
                crate::sync::close_waiters_of(ctx.scope());
                pool.stop();
                return Err(io::Error::other(
                    "prethreaded: cannot start the pool's threads",
                ));
            }
        }
        Ok(pool)
    }

    /// `Handoff`: gives `conn` to the pool, growing it if every thread is taken.
    pub(super) fn hand_off(&mut self, conn: Conn) -> io::Result<()> {
        let shared = &self.shared;
        let waiting =
            shared.busy.load(Ordering::SeqCst) + shared.queued.fetch_add(1, Ordering::SeqCst) + 1;
        if waiting > shared.live.load(Ordering::SeqCst) {
            spawn(shared);
        }
        let sent = self.sender.as_ref().is_some_and(|s| s.send(conn).is_ok());
        if !sent {
            shared.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(io::Error::other("prethreaded: the pool is stopped"));
        }
        Ok(())
    }

    /// Whether a thread is (or can be made) free for one more connection.
    pub(super) fn can_take_one(&self) -> bool {
        !was_full(&self.shared, self.shared.busy.load(Ordering::SeqCst))
    }

    /// Connections being served or queued.
    pub(super) fn in_flight(&self) -> usize {
        self.shared.busy.load(Ordering::SeqCst) + self.shared.queued.load(Ordering::SeqCst)
    }

    /// Makes thread starts fail (`true`) as at the thread limit, or work again.
    #[cfg(test)]
    pub(super) fn fail_spawns(&self, fail: bool) {
        self.shared.failing_spawns.store(fail, Ordering::SeqCst);
    }

    /// Stops the pool: idle threads stop taking connections, the sockets of busy ones
    /// are shut down, and every thread is joined.
    pub(super) fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(self.sender.take());
        self.shared.threads.force_and_join();
        while self.shared.receiver.try_recv().is_ok() {}
    }
}

/// Starts one more thread if the pool is below its limit and not stopping.
fn spawn(shared: &Arc<Shared>) -> bool {
    if shared.stopping.load(Ordering::SeqCst) {
        return false;
    }
    let slot = {
        let mut slots = lock(&shared.slots);
        let Some(slot) = slots.iter().position(|taken| !taken) else {
            return false;
        };
        slots[slot] = true;
        slot
    };
    shared.live.fetch_add(1, Ordering::SeqCst);
    shared.board.set_pid(slot, std::process::id());
    shared.board.set_state(slot, SlotState::Idle);
    let thread_shared = Arc::clone(shared);
    let spawned = match injected_spawn_failure(shared) {
        Some(error) => Err(error),
        None => shared
            .threads
            .spawn(None, move |tracker| serve(&thread_shared, slot, tracker)),
    };
    match spawned {
        Ok(()) => {
            not_short(shared);
            true
        }
        Err(e) => {
            release(shared, slot);
            short_of_threads(shared, &e);
            false
        }
    }
}

/// A thread could not start: the pool takes no more connections than its threads
/// can serve, and lets at most all of them but one block in a wait, so a notify
/// always finds a thread (the reserve rule, at the threads it has).
fn short_of_threads(shared: &Shared, error: &io::Error) {
    let live = shared.live.load(Ordering::SeqCst);
    let scope = shared.ctx.scope();
    let mut short = lock(&shared.short);
    if short.is_none() {
        log::warn!(
            "prethreaded: cannot start a thread ({error}); serving with the {live} there are \
             until one can start"
        );
        *short = Some(scope.max_blocked());
        shared.is_short.store(true, Ordering::SeqCst);
    }
    let cap = short.unwrap_or(usize::MAX).min(live.saturating_sub(1));
    scope.set_max_blocked(Some(cap));
}

/// A thread started: the pool may grow to `max` again.
fn not_short(shared: &Shared) {
    if !shared.is_short.load(Ordering::SeqCst) {
        return;
    }
    let mut short = lock(&shared.short);
    shared.is_short.store(false, Ordering::SeqCst);
    if let Some(cap) = short.take() {
        shared.ctx.scope().set_max_blocked(Some(cap));
        log::info!("prethreaded: threads start again");
    }
}

#[cfg(not(test))]
fn injected_spawn_failure(_: &Shared) -> Option<io::Error> {
    None
}

#[cfg(test)]
fn injected_spawn_failure(shared: &Shared) -> Option<io::Error> {
    let failing = shared.failing_spawns.load(Ordering::SeqCst);
    failing.then(|| io::Error::from_raw_os_error(libc::EAGAIN))
}

fn release(shared: &Shared, slot: usize) {
    shared.board.set_state(slot, SlotState::Empty);
    shared.live.fetch_sub(1, Ordering::SeqCst);
    lock(&shared.slots)[slot] = false;
}

/// A pool thread's life: take a connection, serve it, again.
fn serve(shared: &Arc<Shared>, slot: usize, tracker: &Tracker) {
    while let Some(conn) = next(shared, slot) {
        let busy = shared.busy.load(Ordering::SeqCst);
        shared.board.set_state(slot, SlotState::Busy);
        if busy >= shared.live.load(Ordering::SeqCst) && !spawn(shared) {
            // Every thread busy and the pool at its limit: a preforked worker shows busy.
            shared.source.at_capacity();
        }
        tracker.serve(&shared.ctx, conn);
        shared.board.count_request(slot);
        shared.board.set_state(slot, SlotState::Idle);
        let was_busy = shared.busy.fetch_sub(1, Ordering::SeqCst);
        if shared.accept == PoolAccept::Handoff && was_full(shared, was_busy) {
            // The serving loop may be waiting for a free thread: it can accept now.
            shared.ctx.shutdown.wake();
        }
    }
    release(shared, slot);
}

/// Whether the pool, with `busy` threads busy, could take no more (see
/// [`Pool::can_take_one`]).
fn was_full(shared: &Shared, busy: usize) -> bool {
    let live = shared.live.load(Ordering::SeqCst);
    let max = match shared.is_short.load(Ordering::SeqCst) {
        true => live,
        false => shared.max,
    };
    live >= max && busy + shared.queued.load(Ordering::SeqCst) >= live
}

/// The thread's next connection, already counted busy; `None` when the pool stops.
/// Under `Locked` a thread accepts from the source until shutdown begins, then takes
/// what the serving loop hands over, like a `Handoff` thread.
fn next(shared: &Shared, slot: usize) -> Option<Conn> {
    let stopping = || shared.stopping.load(Ordering::SeqCst) || shared.ctx.is_shutting_down();
    let conn = match shared.accept {
        PoolAccept::Handoff => handed(shared)?,
        PoolAccept::Locked => loop {
            if stopping() {
                // Accepting is over, not serving: what the serving loop still hands
                // over (a reuseport worker's queue, taken as it stops) comes over the
                // channel until the pool stops.
                break handed(shared)?;
            }
            let _turn = lock(&shared.accept_lock);
            if stopping() {
                continue;
            }
            let Some(conn) = shared.source.next_unadmitted(Some((&shared.board, slot))) else {
                continue;
            };
            // Busy before the hooks run: the drain, which waits while `in_flight` is
            // above 0, must not miss a connection taken just before the listener
            // closed (it would be cut unanswered when the pool stops).
            shared.busy.fetch_add(1, Ordering::SeqCst);
            match shared.source.admit(conn) {
                Some(conn) => break conn,
                None => shared.busy.fetch_sub(1, Ordering::SeqCst),
            };
        },
    };
    shared.board.count_connection(slot);
    Some(conn)
}

/// The next connection handed over the channel, counted busy; `None` once the pool
/// stopped (its sender dropped).
fn handed(shared: &Shared) -> Option<Conn> {
    let conn = shared.receiver.recv().ok()?;
    // Busy first, then no longer queued: the drain, which waits while `in_flight`
    // (busy + queued) is above 0, never sees this one as neither.
    shared.busy.fetch_add(1, Ordering::SeqCst);
    shared.queued.fetch_sub(1, Ordering::SeqCst);
    Some(conn)
}
