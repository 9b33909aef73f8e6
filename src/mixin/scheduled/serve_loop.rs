//! One scheduler loop of the `Scheduled` model: an accept coroutine, a watch coroutine
//! (shutdown, signals, housekeeping, drain) and a coroutine per connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Counters;
use super::turns::{self, Turns};
use crate::mixin::serve_loop::drain;
use crate::rt::{self, Interest, Runtime, RuntimeConfig, RuntimeHandle};
use crate::server::Context;
use crate::server::source::{Source, TryNext};

/// Connections the accept coroutine takes in a row before the loop runs the others.
const ACCEPTS_PER_YIELD: usize = 64;

/// How often a stopped accept loop looks for connections its feeder still hands over.
const LEFTOVER_RECHECK: Duration = Duration::from_millis(10);

/// What every loop of one `Scheduled` server shares.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) runtime: RuntimeConfig,
    pub(super) max_connections: usize,
    pub(super) counters: Arc<Counters>,
    /// Where every loop takes its connections.
    pub(super) source: Arc<Source>,
}

/// This loop's connections, by id, with their sockets (to force them at shutdown).
/// A connection's coroutine removes its entry before its socket closes, and nothing
/// else runs in between on this thread, so an fd here is always open.
type LiveSockets = Rc<RefCell<HashMap<u64, RawFd>>>;

/// What the loop's accept and watch coroutines share.
#[derive(Default)]
struct Shared {
    /// Set by the watch coroutine at shutdown: the accept coroutine stops.
    stop: Cell<bool>,
    /// The accept coroutine has ended (and handed out every leftover connection).
    accept_done: Cell<bool>,
    /// Why the loop ended early, if it did (reported by `run` after the drain).
    failure: RefCell<Option<String>>,
    sockets: LiveSockets,
}

impl Shared {
    /// The loop cannot go on: records why, and shuts the server down (gracefully, so
    /// every loop drains what it holds).
    fn fail(&self, ctx: &Context, why: String) {
        log::error!("scheduled: {why}; shutting down");
        self.failure.borrow_mut().get_or_insert(why);
        ctx.shutdown.request();
    }
}

/// Runs one loop until shutdown and drain. `primary` marks the loop that runs the
/// user's `service_actions` hook. A loop that fails (it cannot start, or an accept or
/// watch coroutine ends before the stop: an error, or a panic in a hook it runs) shuts
/// the whole server down, so the other loops do not serve on short-handed, and
/// returns the error.
pub(super) fn run(ctx: &Arc<Context>, settings: &Settings, primary: bool) -> io::Result<()> {
    let ran = run_loop(ctx, settings, primary);
    if ran.is_err() {
        ctx.shutdown.request();
    }
    ran
}

fn run_loop(ctx: &Arc<Context>, settings: &Settings, primary: bool) -> io::Result<()> {
    let mut runtime = Runtime::new(settings.runtime.clone())?;
    let shared = Rc::new(Shared::default());
    let accept = {
        let (ctx, shared) = (Arc::clone(ctx), Rc::clone(&shared));
        let (max, counters) = (settings.max_connections, Arc::clone(&settings.counters));
        let source = Arc::clone(&settings.source);
        move || {
            let _end = AcceptEnd(&ctx, &shared);
            accept_loop(&ctx, &source, &shared, max, &counters)
        }
    };
    let watch = {
        let (ctx, shared) = (Arc::clone(ctx), Rc::clone(&shared));
        let (handle, source) = (runtime.handle(), Arc::clone(&settings.source));
        move || {
            let _end = WatchEnd(&ctx, &shared, &handle);
            watch_loop(&ctx, &source, &shared, &handle, primary)
        }
    };
    runtime.spawn(accept).map_err(io::Error::other)?;
    runtime.spawn(watch).map_err(io::Error::other)?;
    runtime.run()?;
    let failure = shared.failure.borrow_mut().take();
    failure.map_or(Ok(()), |why| {
        Err(io::Error::other(format!("scheduled: {why}")))
    })
}

/// Marks the accept coroutine ended when dropped; an end before the stop (a failed
/// wait, a bug of ours) is the loop's failure.
struct AcceptEnd<'a>(&'a Context, &'a Shared);

impl Drop for AcceptEnd<'_> {
    fn drop(&mut self) {
        let AcceptEnd(ctx, shared) = *self;
        shared.accept_done.set(true);
        if !shared.stop.get() {
            let how = if std::thread::panicking() {
                "panicked"
            } else {
                "ended"
            };
            shared.fail(ctx, format!("the accept coroutine {how} before the stop"));
        }
    }
}

/// Stops the loop if the watch coroutine unwinds (a bug of ours): nobody else would,
/// and `run` would never return.
struct WatchEnd<'a>(&'a Context, &'a Shared, &'a RuntimeHandle);

impl Drop for WatchEnd<'_> {
    fn drop(&mut self) {
        let WatchEnd(ctx, shared, handle) = *self;
        if std::thread::panicking() {
            shared.fail(ctx, "the watch coroutine panicked".into());
            handle.stop();
        }
    }
}

/// Accepts until stopped; each connection gets a coroutine, or is closed at once past
/// the cap (counted as refused).
///
/// It lets the loop run the others after every [`ACCEPTS_PER_YIELD`] connections taken
/// in a row.
fn accept_loop(
    ctx: &Arc<Context>,
    source: &Source,
    shared: &Shared,
    max_connections: usize,
    counters: &Arc<Counters>,
) {
    let (stop, sockets) = (&shared.stop, &shared.sockets);
    let Some(ready_fd) = source.ready_fd() else {
        log::error!("scheduled: the connection source cannot be waited on");
        return;
    };
    let mut next_id = 0u64;
    let mut in_a_row = 0usize;
    while !stop.get() {
        match source.try_next() {
            TryNext::Conn(conn) => {
                start_connection(ctx, conn, sockets, max_connections, counters, &mut next_id);
                // A backlog that refills as fast as it is taken (a connect flood, which
                // the cap makes cheap: accept and close) must not keep the loop from
                // the connections it serves: they run between every few dozen.
                in_a_row += 1;
                if in_a_row % ACCEPTS_PER_YIELD == 0 {
                    rt::yield_now();
                }
            }
            // A connection refused (for want of fds, or by a hook) leaves the rest of
            // the backlog queued with no new edge to wake us: go straight on, letting
            // the connections started so far run first (no pause per refusal).
            TryNext::Again => rt::yield_now(),
            TryNext::Empty => {
                in_a_row = 0;
                // Bounded, so a stop is noticed within one poll interval.
                let deadline = crate::deadline::from_now(ctx.poll_interval());
                match rt::wait_fd(ready_fd, Interest::Readable, Some(deadline)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(e) => {
                        log::error!("scheduled: cannot wait for connections: {e}");
                        return;
                    }
                }
            }
        }
    }
    // What was handed over before the stop is served too: a preforked worker's feeder
    // queues the connections it took, then the worker's leftovers, before it ends
    // (dropped unserved, they would be reset).
    loop {
        let feeding = source.feeding();
        while let Some(conn) = source.leftover() {
            start_connection(ctx, conn, sockets, max_connections, counters, &mut next_id);
            in_a_row += 1;
            if in_a_row % ACCEPTS_PER_YIELD == 0 {
                rt::yield_now();
            }
        }
        if !feeding {
            break;
        }
        rt::sleep(LEFTOVER_RECHECK);
    }
    rt::forget_fd(ready_fd);
}

/// Gives `conn` a coroutine, or closes it at once past the cap (counted as refused).
fn start_connection(
    ctx: &Arc<Context>,
    conn: crate::conn::Conn,
    sockets: &LiveSockets,
    max_connections: usize,
    counters: &Arc<Counters>,
    next_id: &mut u64,
) {
    // A place taken in one step: loops on other threads take theirs from the same
    // count, and a load then an add would let them all pass at the cap.
    let placed = counters
        .live
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |live| {
            (live < max_connections).then_some(live + 1)
        });
    if placed.is_err() {
        counters.refused.fetch_add(1, Ordering::Relaxed);
        ctx.count(crate::status::Counter::Refused);
        log::debug!("scheduled: at {max_connections} connections, refusing one");
        return;
    }
    let id = *next_id;
    *next_id += 1;
    let tracked = Tracked::start(id, conn.as_raw_fd(), sockets, counters);
    // On the heap, not in the coroutine's entry frames (which catch_unwind copies): that
    // keeps a waiting request's stack within one page, 4 KiB per client less.
    let turns = Turns::new(Arc::clone(ctx), conn, tracked);
    match rt::spawn(move || turns::serve(turns)) {
        Ok(()) => {
            counters.accepted.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            ctx.count(crate::status::Counter::Refused);
            log::warn!("scheduled: refusing a connection: {e}");
        }
    }
}

/// A connection counted live (its place taken by the caller) and tracked for shutdown
/// until dropped.
pub(super) struct Tracked {
    id: u64,
    sockets: LiveSockets,
    counters: Arc<Counters>,
}

impl Tracked {
    fn start(id: u64, fd: RawFd, sockets: &LiveSockets, counters: &Arc<Counters>) -> Tracked {
        sockets.borrow_mut().insert(id, fd);
        Tracked {
            id,
            sockets: Rc::clone(sockets),
            counters: Arc::clone(counters),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.sockets.borrow_mut().remove(&self.id);
        self.counters.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits for shutdown (handling signals and housekeeping on the way), then drains:
/// stop accepting, answer pending waiters, let connections finish until the shutdown
/// timeout, force the rest, and finally stop the loop.
fn watch_loop(
    ctx: &Arc<Context>,
    source: &Source,
    shared: &Shared,
    handle: &RuntimeHandle,
    primary: bool,
) {
    let sockets = &shared.sockets;
    let wake_fd = ctx.wake_fd();
    while !ctx.is_shutting_down() {
        let deadline = crate::deadline::from_now(ctx.poll_interval());
        match rt::wait_fd(wake_fd, Interest::Readable, Some(deadline)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            // The wake fd cannot be watched (epoll_ctl out of memory, say): a timer needs
            // no fd, so the loop still turns every poll interval instead of spinning and
            // starving every coroutine of this thread.
            Err(e) => {
                log::warn!("scheduled: cannot wait on the wake-up pipe ({e}); polling");
                rt::sleep(ctx.poll_interval());
            }
        }
        ctx.shutdown.take_stop_signals();
        ctx.report_loop_counts();
        if primary {
            ctx.shutdown.clear_wakeups();
            let hook = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ctx.service_actions();
            }));
            if hook.is_err() {
                shared.fail(ctx, "the service_actions hook panicked".into());
            }
        }
    }
    rt::forget_fd(wake_fd);
    shared.stop.set(true);
    // Connections idle between requests wait on their socket alone: wake them to see
    // the drain flag and close (`drain` sets it again, harmlessly).
    ctx.shutdown.begin_drain();
    rt::wake_idle();
    // The accept coroutine may still be handing out leftovers: wait for it too.
    let accepting = || usize::from(!shared.accept_done.get());
    drain(ctx, source, &mut || sockets.borrow().len() + accepting());
    for &fd in sockets.borrow().values() {
        // Open: see `LiveSockets`. Parked reads and writes wake with EOF or an error.
        let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
    }
    // Coroutines parked elsewhere (a long sleep) get one more second, then the loop
    // stops and the runtime unwinds them, and any coroutine a handler started that
    // has not ended (a periodic task): `run` would wait for those for ever.
    let last = Instant::now() + Duration::from_secs(1);
    while (!sockets.borrow().is_empty() || accepting() > 0) && Instant::now() < last {
        rt::sleep(Duration::from_millis(20));
    }
    handle.stop();
}
