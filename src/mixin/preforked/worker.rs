//! A worker process, from the fork to `_exit`: it closes what belongs to the master,
//! installs its stop signals, starts its watchdog thread (heartbeat, stop requests,
//! master gone), then runs its inner model's own `serve_forever` on a context whose
//! source is the worker's share of the connections.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use super::pool::WorkerPlan;
use crate::mixin::pool_stats::SlotState;
use crate::server::Context;
use crate::server::source::worker::{Way, WorkerSeat};
use crate::sync::lock;
use crate::sys::pipe::SelfPipe;
use crate::sys::worker_process::{self, RUN, STOP_FAST, STOP_GRACEFUL};
use crate::sys::{borrow_fd, fork};

/// Exit code of a worker that finished normally (stop asked, quota reached).
pub(super) const EXIT_DONE: i32 = 0;
/// Exit code of a worker that could not start serving.
pub(super) const EXIT_BOOT_FAILED: i32 = 3;
/// Exit code of a worker whose serving code panicked (not a boot failure: the master
/// respawns it without backing off).
pub(super) const EXIT_PANICKED: i32 = 101;
/// Exit code of a worker stopped fast.
pub(super) const EXIT_FAST: i32 = 4;

/// A worker's end, as the log says it: its exit code, or the signal that killed it.
pub(super) fn exit_reason(code: i32) -> String {
    match code {
        EXIT_BOOT_FAILED => format!("exit {code}: could not start serving"),
        EXIT_PANICKED => format!("exit {code}: panicked"),
        c if c > 128 => match Signal::try_from(c - 128) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("exit {c}"),
        },
        c => format!("exit {c}"),
    }
}

/// How often the watchdog beats (the master's timeout is at least twice this).
const BEAT_EVERY_MS: u16 = 1000;
/// How often a stopping worker's serving thread is signalled again.
const RESIGNAL_EVERY: Duration = Duration::from_millis(500);

/// The worker's whole life. Never returns into the master's code.
pub(super) fn run(
    ctx: &Arc<Context>,
    plan: &WorkerPlan,
    slot: usize,
    control: OwnedFd,
    master: u32,
) -> ! {
    if let Some(delay) = plan.slow_start {
        thread::sleep(delay);
    }
    fork::after_fork_in_child();
    ctx.spare_fd().close_in_child();
    crate::sync::hub::after_fork_in_child();
    plan.board.set_pid(slot, std::process::id());
    let code = match serve(ctx, plan, slot, &control, master) {
        Ok(()) => EXIT_DONE,
        Err(error) => {
            log::error!("preforked worker {slot}: cannot start: {error}");
            EXIT_BOOT_FAILED
        }
    };
    // The master's death may have ended the model (its wait interrupted by the
    // parent-death signal) before the watchdog's turn saw it.
    if worker_process::master_gone_first_seen(master) {
        stop_listening(ctx, &plan.way);
    }
    plan.board.set_state(slot, SlotState::Exiting);
    drop(control);
    fork::exit_child(code)
}

fn serve(
    ctx: &Arc<Context>,
    plan: &WorkerPlan,
    slot: usize,
    control: &OwnedFd,
    master: u32,
) -> io::Result<()> {
    if plan.fail_boot == Some(slot) {
        return Err(io::Error::other(
            "failing on purpose (MIXSERVE_TEST_FAIL_BOOT)",
        ));
    }
    let seat = Arc::new(plan.seat(slot, control.as_raw_fd()));
    let worker_ctx = Arc::new(ctx.for_worker(Arc::clone(&seat))?);
    let wake = SelfPipe::new()?;
    worker_process::install(wake.write_fd(), master)?;
    // A stop sent while this worker was starting is handled now, by the handler just
    // installed.
    fork::release_signals_in_child();
    // Every thread of the worker blocks the stop signals (threads the model starts
    // inherit that) but the watchdog; its source unblocks them only while it waits
    // for a connection, so they interrupt that wait and no handler.
    worker_process::block_stop_signals(true);
    {
        let (ctx, seat) = (Arc::clone(&worker_ctx), Arc::clone(&seat));
        thread::Builder::new()
            .name("mixserve-watchdog".into())
            .spawn(move || watchdog(&ctx, &seat, &wake, master))?;
    }
    worker_ctx.shutdown.prepare_drain();
    let mut inner = lock(&plan.inner);
    if let Way::ReusePort { .. } = seat.way {
        // A queue of its own: the reserve rule applies to this worker alone.
        worker_ctx.scope().set_max_blocked(inner.max_blocked());
    }
    inner.serve_forever(&worker_ctx)
}

/// The master is gone: the shared listener stops listening at once, for every worker
/// (`shutdown` acts on the socket, not on this worker's copy of the fd), so a new
/// connection is refused instead of queued where nobody will accept it; the drain that
/// follows closes idle keep-alive connections and finishes the requests in hand.
/// (Workers that take passed fds never held the listener; a worker's own
/// `SO_REUSEPORT` listener stops listening once the worker took its queue, see
/// `Share::leftover`.)
/// A listener shared with another master (a binary upgrade) is left alone: the other
/// serves it. So is one the server does not own (a service manager's socket, see
/// `LoopConfig::owns_listener`): shut down, it would stay dead for the next start.
fn stop_listening(ctx: &Context, way: &Way) {
    let shared = crate::sys::upgrade::listener_shared() || !ctx.config.owns_listener;
    let mut stopped = "stopped accepting";
    if matches!(way, Way::Shared | Way::Locked(_)) && !shared {
        let (fd, how) = (ctx.listener_fd(), nix::sys::socket::Shutdown::Read);
        match nix::sys::socket::shutdown(fd, how) {
            Ok(()) => stopped = "stopped listening",
            Err(error) => log::debug!("preforked worker: shutting the listener down: {error}"),
        }
    }
    log::warn!(
        "preforked worker {}: the master died; {stopped}, finishing what it holds",
        std::process::id()
    );
}

/// Every second, beats the heartbeat if the serving loop is alive (it came back to
/// its source since the last look, or waits for a connection, or a handler is parked
/// in a shared-object wait); on a stop request, stops the worker's model (its connections
/// finish the request in hand) and interrupts the thread waiting for a connection at
/// once and every half second after (a signal that landed here, or just before that
/// thread blocked in `accept` or took the lock, is otherwise lost); a fast stop exits
/// at once. When the master is gone, asks for a
/// graceful stop.
fn watchdog(ctx: &Context, seat: &WorkerSeat, wake: &SelfPipe, master: u32) {
    // A stop signal that lands here while the model is busy is seen at once.
    worker_process::block_stop_signals(false);
    let mut last_signal: Option<Instant> = None;
    let mut last_turns = worker_process::loop_turns();
    loop {
        let mut fds = [PollFd::new(borrow_fd(wake.read_fd()), PollFlags::POLLIN)];
        let every = if last_signal.is_some() {
            RESIGNAL_EVERY.as_millis() as u16
        } else {
            BEAT_EVERY_MS
        };
        let _ = poll(&mut fds, PollTimeout::from(every));
        wake.drain();
        let waiters = ctx.scope().blocked();
        let turns = worker_process::loop_turns();
        if turns != last_turns || worker_process::waiting_for_connection() || waiters > 0 {
            // The serving loop is alive (see `mod` docs): a stuck handler stops this.
            seat.board.beat(seat.slot);
        }
        last_turns = turns;
        seat.board.set_waiters(seat.slot, waiters);
        if worker_process::master_gone_first_seen(master) {
            // The master died (its parent-death SIGTERM woke us, or it died before
            // that was set): nobody supervises this pool any more.
            stop_listening(ctx, &seat.way);
            worker_process::request_stop(STOP_GRACEFUL);
        }
        match worker_process::stop_requested() {
            STOP_FAST => fork::exit_child(EXIT_FAST),
            RUN => {}
            _ => {
                ctx.shutdown.begin_drain();
                if !ctx.is_shutting_down() {
                    ctx.shutdown.request();
                }
                if last_signal.is_none_or(|last| last.elapsed() >= RESIGNAL_EVERY) {
                    worker_process::interrupt_waiting_thread();
                    last_signal = Some(Instant::now());
                }
            }
        }
    }
}
