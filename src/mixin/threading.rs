//! [`Threading`]: a new thread per connection.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::conn::Conn;
use crate::mixin::MixIn;
use crate::mixin::settings::settings;
use crate::mixin::threads::Threads;
use crate::server::{ConfigCheck, ConfigError, Context};

/// One thread per connection (UNP row 6), with an optional cap.
///
/// The accepting thread spawns a thread for each connection; finished threads are
/// joined on the next turn of the loop, so bookkeeping never grows past the number of
/// live connections. At the cap ([`max_threads`](Threading::max_threads)) the loop stops
/// accepting until a thread finishes. One thread is always kept free of shared-object
/// waits: a `/wait` that would take the last one fails at once (`503`), so a `/notify`
/// can still be served.
///
/// On shutdown, connections still open after the server's shutdown timeout have their
/// sockets shut down, and every thread is joined.
#[derive(Debug)]
pub struct Threading {
    /// At most this many connection threads at once (`None`: no cap).
    max_threads: Option<usize>,
    /// Stack size of connection threads (`None`: Rust's default, 2 MiB).
    stack_size: Option<usize>,
    /// The connection threads.
    threads: Threads,
    /// Threads still running their handler.
    running: Arc<AtomicUsize>,
}

settings!(Threading {
    /// Caps the number of connection threads.
    fn max_threads(max: usize) { max_threads = Some(max) }
    /// Sets the stack size of connection threads (bytes).
    fn stack_size(bytes: usize) { stack_size = Some(bytes) }
});

impl Threading {
    /// Thread per connection, no cap.
    pub fn new() -> Threading {
        Threading {
            max_threads: None,
            stack_size: None,
            threads: Threads::new("mixserve-conn"),
            running: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl MixIn for Threading {
    fn name(&self) -> &'static str {
        "threading"
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let check = ConfigCheck(self.name());
        check.at_least("max_threads", self.max_threads.unwrap_or(1), 1)?;
        check.at_least(
            "stack_size",
            self.stack_size.unwrap_or(usize::MAX),
            16 * 1024,
        )
    }

    fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
        self.threads.join_finished();
        let (ctx, running) = (Arc::clone(ctx), Arc::clone(&self.running));
        let capped = self.max_threads.is_some();
        self.running.fetch_add(1, Ordering::SeqCst);
        let spawned = self.threads.spawn(self.stack_size, move |tracker| {
            tracker.serve(&ctx, conn);
            running.fetch_sub(1, Ordering::SeqCst);
            if capped {
                // The loop may be waiting for a free slot: let it accept now.
                ctx.shutdown.wake();
            }
        });
        if spawned.is_err() {
            self.running.fetch_sub(1, Ordering::SeqCst);
        }
        spawned
    }

    fn service_actions(&mut self, _ctx: &Arc<Context>) {
        self.threads.join_finished();
    }

    fn can_accept(&self) -> bool {
        self.max_threads
            .is_none_or(|max| self.running.load(Ordering::SeqCst) < max)
    }

    fn max_blocked(&self) -> Option<usize> {
        self.max_threads.map(|max| max.saturating_sub(1))
    }

    fn in_flight(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    fn server_close(&mut self, _ctx: &Arc<Context>) {
        self.threads.force_and_join();
        // A forced end serves nothing after it: a later `serve_forever` gets new threads.
        self.threads = Threads::new("mixserve-conn");
    }
}
