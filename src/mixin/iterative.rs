//! [`Iterative`]: one connection at a time, on the thread that accepts.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::conn::Conn;
use crate::mixin::{MixIn, serve_accepting};
use crate::server::Context;

/// How often the stop watcher looks for a stop while a handler runs.
const WATCH_TICK: Duration = Duration::from_millis(20);

/// Serves one connection at a time, inline on the accepting thread — UNP's iterative
/// server, the baseline every other model is measured against.
///
/// No two handlers ever run at once, so a handler that waits for *another connection*
/// (a comet `Broadcast::wait`) could never be released: such a wait fails at once with
/// [`WaitError::NoOtherWorker`](crate::sync::WaitError::NoOtherWorker), which the comet
/// example answers with `503`, instead of hanging the server.
///
/// The handler runs on the loop's thread, which reads no stop meanwhile, so
/// `serve_forever` keeps one more thread that does: a stop (a signal, a
/// [`ShutdownHandle`](crate::server::ShutdownHandle)) drains the connection in hand as
/// under every model (an HTTP keep-alive answers its request in hand with `Connection:
/// close`), and ends it at the shutdown timeout, or at once on a fast stop.
#[derive(Debug, Clone, Copy, Default)]
pub struct Iterative;

impl Iterative {
    /// The iterative model.
    pub fn new() -> Iterative {
        Iterative
    }
}

impl MixIn for Iterative {
    fn name(&self) -> &'static str {
        "iterative"
    }

    fn serve_forever(&mut self, ctx: &Arc<Context>) -> io::Result<()> {
        let in_hand = Arc::new(InHand::default());
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let watcher = std::thread::Builder::new()
                .name("mixserve-stop-watch".into())
                .spawn_scoped(scope, || watch(ctx, &in_hand, &done));
            if let Err(error) = &watcher {
                log::warn!("iterative: no stop watcher ({error}); a stop waits for the handler");
            }
            let served = serve_accepting(&mut Watched(Arc::clone(&in_hand)), ctx);
            done.store(true, Ordering::SeqCst);
            if let Ok(watcher) = watcher {
                let _ = watcher.join();
            }
            served
        })
    }

    fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
        ctx.finish_request(conn);
        Ok(())
    }

    fn max_blocked(&self) -> Option<usize> {
        Some(0)
    }
}

/// [`Iterative`] with its connection in hand known to the stop watcher.
#[derive(Debug)]
struct Watched(Arc<InHand>);

impl MixIn for Watched {
    fn name(&self) -> &'static str {
        Iterative.name()
    }

    fn process_request(&mut self, ctx: &Arc<Context>, mut conn: Conn) -> io::Result<()> {
        self.0.set(Some(conn.as_raw_fd()));
        ctx.serve_connection(&mut conn);
        // Before the close: the watcher must never shut an fd number reused since.
        self.0.set(None);
        Ok(())
    }

    fn max_blocked(&self) -> Option<usize> {
        Iterative.max_blocked()
    }
}

/// The socket of the connection being served, if any.
#[derive(Debug, Default)]
struct InHand(Mutex<Option<RawFd>>);

impl InHand {
    fn set(&self, fd: Option<RawFd>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = fd;
    }

    /// Ends the connection in hand: its handler's next read or write fails.
    fn force(&self) {
        let fd = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(fd) = *fd {
            // Under the lock: the fd is the connection's until `set(None)`.
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
        }
    }
}

/// Until `done`: turns stop signals into the server's stop, and once stopping, begins
/// the drain and forces the connection in hand at the shutdown timeout (at once on a
/// fast stop).
fn watch(ctx: &Context, in_hand: &InHand, done: &AtomicBool) {
    let mut force_at: Option<Instant> = None;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(WATCH_TICK);
        ctx.shutdown.take_stop_signals();
        if !ctx.is_shutting_down() {
            continue;
        }
        let force_at = *force_at.get_or_insert_with(|| {
            ctx.shutdown.begin_drain();
            crate::deadline::from_now(ctx.shutdown_timeout())
        });
        if ctx.shutdown.is_fast() || Instant::now() >= force_at {
            in_hand.force();
        }
    }
}
