//! The one loop of every model that takes its own connections, and the one drain
//! every model ends with. The loop runs over a [`Source`], so the same code serves a
//! single-process server and each worker of a preforked pool.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mixin::MixIn;
use crate::server::Context;
use crate::server::source::Source;

/// How often a drain looks at what is still running.
const DRAIN_TICK: Duration = Duration::from_millis(20);
/// How long a drain waits before it says (and then keeps saying, this often) what it
/// still waits for.
const DRAIN_REPORT: Duration = Duration::from_secs(2);

/// Runs `mixin` until shutdown: takes connections from the server's source (the
/// listener, or a preforked worker's share) while [`MixIn::can_accept`], hands each to
/// [`MixIn::process_request`], then drains and calls [`MixIn::server_close`]. This is
/// [`MixIn::serve_forever`]'s default.
pub fn serve_accepting<M: MixIn + ?Sized>(mixin: &mut M, ctx: &Arc<Context>) -> io::Result<()> {
    let source = Source::open(ctx, None)?;
    serve(mixin, ctx, &source, Takes::Connections);
    Ok(())
}

/// Who takes connections from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Takes {
    /// The loop does, and hands them to `process_request`.
    Connections,
    /// The model's own threads do; the loop only watches for shutdown.
    Nothing,
}

/// The loop itself (see [`serve_accepting`]).
pub(crate) fn serve<M: MixIn + ?Sized>(
    mixin: &mut M,
    ctx: &Arc<Context>,
    source: &Source,
    takes: Takes,
) {
    while !ctx.is_shutting_down() {
        if takes == Takes::Nothing {
            source.idle(ctx.poll_interval());
        } else if mixin.can_accept() {
            if let Some(conn) = source.next() {
                if mixin
                    .max_blocked()
                    .is_some_and(|most| mixin.in_flight() >= most)
                {
                    // This connection fills the model: a pool sends others elsewhere.
                    source.at_capacity();
                }
                if let Err(e) = mixin.process_request(ctx, conn) {
                    log::warn!("{}: process_request failed: {e}", mixin.name());
                }
            }
        } else {
            source.at_capacity();
            source.idle(ctx.poll_interval());
        }
        mixin.service_actions(ctx);
        ctx.service_actions();
    }
    while let Some(conn) = source.leftover() {
        if let Err(e) = mixin.process_request(ctx, conn) {
            log::warn!("{}: process_request failed: {e}", mixin.name());
        }
    }
    drain(ctx, source, &mut || {
        mixin.service_actions(ctx);
        mixin.in_flight()
    });
    mixin.server_close(ctx);
}

/// The graceful end, written once: tells connections to finish the request in hand
/// (`Connection: close`), answers every pending waiter (here and, for a forking
/// parent, in its children through the hub), then waits while `in_flight` reports
/// work, up to the shutdown timeout (SIGQUIT cuts it short), saying in the log what it
/// waits for when that takes long. The caller then forces what is left.
pub(crate) fn drain(ctx: &Context, source: &Source, in_flight: &mut dyn FnMut() -> usize) {
    ctx.shutdown.begin_drain();
    crate::sync::close_waiters_of(ctx.scope());
    source.close_hub_waiters();
    let started = Instant::now();
    let deadline = crate::deadline::after(started, ctx.shutdown_timeout());
    let mut report_at = started + DRAIN_REPORT;
    let mut left = in_flight();
    if left > 0 {
        log::info!(
            "draining: {left} connection(s) in flight; idle ones close now, the rest finish \
             their request (at most {:?})",
            ctx.shutdown_timeout()
        );
    }
    while left > 0 && Instant::now() < deadline && !ctx.shutdown.is_fast() {
        source.pause(DRAIN_TICK);
        // The loop is alive while it drains: a preforked worker's watchdog beats on, so
        // the master's heartbeat check leaves the drain to the shutdown timeout.
        crate::sys::worker_process::loop_turned();
        ctx.shutdown.take_stop_signals();
        left = in_flight();
        let now = Instant::now();
        if left > 0 && now >= report_at {
            log::warn!(
                "draining: still waiting for {left} connection(s) in flight after {:.1?}; \
                 forced in {:.1?} (SIGQUIT or a second Ctrl-C: now)",
                now - started,
                deadline.saturating_duration_since(now)
            );
            report_at = now + DRAIN_REPORT;
        }
    }
    if left > 0 && !ctx.shutdown.is_fast() {
        log::warn!(
            "draining: shutdown timeout reached; closing {left} connection(s) still in flight"
        );
    }
}
