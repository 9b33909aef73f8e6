//! The coroutine inner model: a loop on the worker's main thread runs a coroutine per
//! connection; a feeder thread takes connections from the worker's [`Source`] and
//! hands them over.
//!
//! The source blocks in `accept` (or waits for a passed fd) and is interrupted by the
//! worker's stop signals, so it runs on its own thread, the only one that leaves those
//! signals unblocked. Connections cross to the loop before they ever wait, which
//! `Conn` allows.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use super::accept::{SlotHandle, Source};
use crate::conn::Conn;
use crate::rt::{self, Runtime, RuntimeConfig, Waker};
use crate::server::Context;
use crate::sync::lock;
use crate::sys::fork;
use crate::sys::worker_process::{self, RUN};

/// What the feeder and the loop share.
#[derive(Debug, Default)]
struct Inbox {
    /// Connections taken but not yet started.
    queue: Mutex<VecDeque<Conn>>,
    /// The feeder is done: no more connections will come.
    closed: AtomicBool,
    /// The dispatcher coroutine, to wake when the queue fills or closes.
    dispatcher: Mutex<Option<Waker>>,
    /// Connections taken and not yet finished.
    live: AtomicUsize,
    /// Signalled when a connection finishes, for a feeder waiting at the cap.
    freed: Condvar,
    freed_lock: Mutex<()>,
}

impl Inbox {
    fn wake_dispatcher(&self) {
        if let Some(waker) = lock(&self.dispatcher).as_ref() {
            waker.wake();
        }
    }
}

/// Serves `source` with up to `max_connections` coroutines until it runs dry and every
/// connection has finished.
pub(super) fn run(ctx: &Arc<Context>, source: &mut Source<'_>, max_connections: usize) {
    let inbox = Arc::new(Inbox::default());
    let mut runtime = match Runtime::new(RuntimeConfig::default()) {
        Ok(runtime) => runtime,
        Err(e) => {
            log::error!("preforked worker: cannot start a coroutine loop: {e}");
            return;
        }
    };
    let dispatcher = {
        let (ctx, inbox, slot) = (Arc::clone(ctx), Arc::clone(&inbox), source.slot.clone());
        move || dispatch(&ctx, &inbox, &slot)
    };
    if let Err(e) = runtime.spawn(dispatcher) {
        log::error!("preforked worker: cannot start the dispatcher: {e}");
        return;
    }
    thread::scope(|scope| {
        // Spawned while the stop signals are unblocked here, so the feeder gets them;
        // then this thread blocks them, leaving the feeder the only one they interrupt.
        let feeder = scope.spawn(|| feed(source, &inbox, max_connections));
        worker_process::block_stop_signals(true);
        if let Err(e) = runtime.run() {
            log::error!("preforked worker: coroutine loop failed: {e}");
            // Nobody would serve what the feeder takes next: stop the worker, and the
            // master replaces it.
            worker_process::request_stop(worker_process::STOP_GRACEFUL);
            fork::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM);
        }
        let _ = feeder.join();
    });
}

/// Takes connections from the source while below the cap; closes the inbox at the end.
fn feed(source: &mut Source<'_>, inbox: &Inbox, max_connections: usize) {
    loop {
        if inbox.live.load(Ordering::SeqCst) >= max_connections {
            source.slot.busy();
            let guard = lock(&inbox.freed_lock);
            let _ = inbox.freed.wait_timeout(guard, Duration::from_millis(200));
            if worker_process::stop_requested() != RUN {
                break;
            }
            continue;
        }
        let Some(conn) = source.next() else { break };
        inbox.live.fetch_add(1, Ordering::SeqCst);
        lock(&inbox.queue).push_back(conn);
        inbox.wake_dispatcher();
    }
    inbox.closed.store(true, Ordering::SeqCst);
    inbox.wake_dispatcher();
}

/// Starts a coroutine for each connection handed over, until the feeder is done.
fn dispatch(ctx: &Arc<Context>, inbox: &Arc<Inbox>, slot: &SlotHandle) {
    *lock(&inbox.dispatcher) = rt::current_waker();
    loop {
        let batch: Vec<Conn> = lock(&inbox.queue).drain(..).collect();
        for conn in batch {
            let (ctx, done, slot) = (Arc::clone(ctx), Arc::clone(inbox), slot.clone());
            // Counted finished when dropped: after serving, after a panic's unwind, or
            // with the closure if the coroutine cannot start (the connection closes).
            let finished = Finished(done);
            let served = move || {
                let _finished = finished;
                ctx.finish_request(conn);
                slot.served();
            };
            if let Err(e) = rt::spawn(served) {
                log::warn!("preforked worker: refusing a connection: {e}");
            }
        }
        if inbox.closed.load(Ordering::SeqCst) && lock(&inbox.queue).is_empty() {
            return;
        }
        rt::park(None);
    }
}

/// One connection's place under the cap, given back on drop.
struct Finished(Arc<Inbox>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        let _guard = lock(&self.0.freed_lock);
        self.0.freed.notify_one();
    }
}
