//! How a worker process serves the connections its [`Source`] hands it, per [`Inner`].
//! Each inner model owns the worker's loop until the source runs dry, and returns only
//! when every connection it took is finished.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, unbounded};

use super::Inner;
use super::accept::Source;
use super::scheduled;
use crate::server::Context;
use crate::sys::worker_process::{self, RUN};

/// Runs `inner` over `source` until the worker stops.
pub(super) fn run(inner: Inner, ctx: &Arc<Context>, source: &mut Source<'_>) {
    match inner {
        Inner::Iterative => iterative(ctx, source),
        Inner::Threading { max_threads } => threading(ctx, source, max_threads),
        Inner::Scheduled { max_connections } => scheduled::run(ctx, source, max_connections),
    }
}

/// One connection at a time, on the worker's only serving thread.
fn iterative(ctx: &Arc<Context>, source: &mut Source<'_>) {
    while let Some(conn) = source.next() {
        source.slot.busy();
        ctx.finish_request(conn);
        source.slot.served();
    }
}

/// A thread per connection, at most `max_threads` at once. The worker counts as busy
/// only while it is at the cap.
fn threading(ctx: &Arc<Context>, source: &mut Source<'_>, max_threads: Option<usize>) {
    let running = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = unbounded::<u64>();
    let mut threads: HashMap<u64, JoinHandle<()>> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        while let Ok(id) = done_rx.try_recv() {
            if let Some(handle) = threads.remove(&id) {
                let _ = handle.join();
            }
        }
        if max_threads.is_some_and(|max| running.load(Ordering::SeqCst) >= max) {
            source.slot.busy();
            match done_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(id) => {
                    if let Some(handle) = threads.remove(&id) {
                        let _ = handle.join();
                    }
                }
                Err(RecvTimeoutError::Timeout) if worker_process::stop_requested() != RUN => {
                    break;
                }
                Err(_) => {}
            }
            continue;
        }
        let Some(conn) = source.next() else { break };
        let (ctx, still_running, done, slot) = (
            Arc::clone(ctx),
            Arc::clone(&running),
            done_tx.clone(),
            source.slot.clone(),
        );
        let id = next_id;
        next_id += 1;
        running.fetch_add(1, Ordering::SeqCst);
        // Connection threads never take the stop signals: they must interrupt the
        // thread that blocks in accept.
        worker_process::block_stop_signals(true);
        let spawned = thread::Builder::new()
            .name(format!("mixserve-conn-{id}"))
            .spawn(move || {
                ctx.finish_request(conn);
                slot.served();
                still_running.fetch_sub(1, Ordering::SeqCst);
                let _ = done.send(id);
            });
        worker_process::block_stop_signals(false);
        match spawned {
            Ok(handle) => {
                threads.insert(id, handle);
            }
            Err(e) => {
                log::warn!("preforked worker: cannot start a connection thread: {e}");
                running.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
    for (_, handle) in threads.drain() {
        let _ = handle.join();
    }
}
