//! [`Threading`]: a new thread per connection.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::conn::Conn;
use crate::mixin::MixIn;
use crate::mixin::threads::Threads;
use crate::server::{ConfigError, Context};

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

impl Default for Threading {
    fn default() -> Threading {
        Threading::new()
    }
}

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

    /// Caps the number of connection threads.
    pub fn max_threads(mut self, max: usize) -> Threading {
        self.max_threads = Some(max);
        self
    }

    /// Sets the stack size of connection threads (bytes).
    pub fn stack_size(mut self, bytes: usize) -> Threading {
        self.stack_size = Some(bytes);
        self
    }
}

impl MixIn for Threading {
    fn name(&self) -> &'static str {
        "threading"
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match (self.max_threads, self.stack_size) {
            (Some(0), _) => Err(ConfigError::new(
                "threading",
                "max_threads",
                "must be at least 1",
            )),
            (_, Some(size)) if size < 16 * 1024 => Err(ConfigError::new(
                "threading",
                "stack_size",
                format!("{size} is below 16 KiB"),
            )),
            _ => Ok(()),
        }
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
        self.max_threads.map(|max| max - 1)
    }

    fn in_flight(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    fn server_close(&mut self, _ctx: &Arc<Context>) {
        self.threads.force_and_join();
    }
}
