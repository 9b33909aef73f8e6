//! [`Threading`]: a new thread per connection.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::conn::Conn;
use crate::mixin::MixIn;
use crate::server::Context;
use crate::sync::lock;

/// How long a forced shutdown waits for threads whose socket it shut down.
const FORCED_GRACE: Duration = Duration::from_secs(5);

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
    /// Live threads.
    threads: HashMap<u64, JoinHandle<()>>,
    /// The socket of each connection still being served, to force it at shutdown. A
    /// thread removes its entry (under the lock) before it closes the socket, so an fd
    /// here is never one the kernel has reused.
    sockets: Arc<Mutex<HashMap<u64, RawFd>>>,
    next_id: u64,
    /// Threads report their id here when done, to be joined.
    done_tx: Sender<u64>,
    done_rx: Receiver<u64>,
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
        let (done_tx, done_rx) = unbounded();
        Threading {
            max_threads: None,
            stack_size: None,
            threads: HashMap::new(),
            sockets: Arc::default(),
            next_id: 0,
            done_tx,
            done_rx,
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

    fn join_finished(&mut self) {
        while let Ok(id) = self.done_rx.try_recv() {
            if let Some(handle) = self.threads.remove(&id) {
                let _ = handle.join();
            }
        }
    }
}

impl MixIn for Threading {
    fn name(&self) -> &'static str {
        "threading"
    }

    fn validate(&self) -> Result<(), String> {
        match (self.max_threads, self.stack_size) {
            (Some(0), _) => Err("threading: max_threads must be at least 1".into()),
            (_, Some(size)) if size < 16 * 1024 => {
                Err(format!("threading: stack_size {size} is below 16 KiB"))
            }
            _ => Ok(()),
        }
    }

    fn process_request(&mut self, ctx: &Arc<Context>, mut conn: Conn) -> io::Result<()> {
        self.join_finished();
        let id = self.next_id;
        self.next_id += 1;
        lock(&self.sockets).insert(id, conn.as_raw_fd());
        let sockets = Arc::clone(&self.sockets);
        let (ctx, done, running) = (
            Arc::clone(ctx),
            self.done_tx.clone(),
            Arc::clone(&self.running),
        );
        let mut builder = thread::Builder::new().name(format!("mixserve-conn-{id}"));
        if let Some(size) = self.stack_size {
            builder = builder.stack_size(size);
        }
        running.fetch_add(1, Ordering::SeqCst);
        let capped = self.max_threads.is_some();
        let spawned = builder.spawn(move || {
            ctx.serve_connection(&mut conn);
            lock(&sockets).remove(&id);
            drop(conn);
            running.fetch_sub(1, Ordering::SeqCst);
            let _ = done.send(id);
            if capped {
                // The loop may be waiting for a free slot: let it accept now.
                ctx.shutdown.wake();
            }
        });
        match spawned {
            Ok(handle) => {
                self.threads.insert(id, handle);
                Ok(())
            }
            Err(e) => {
                lock(&self.sockets).remove(&id);
                self.running.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    fn service_actions(&mut self, _ctx: &Arc<Context>) {
        self.join_finished();
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
        self.join_finished();
        for &fd in lock(&self.sockets).values() {
            // The fd is open: its thread removes it under this lock before closing.
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
        }
        // Threads blocked on their socket end now; one blocked elsewhere (a sleep, a
        // database call) gets a grace period, then is left running rather than hang
        // the shutdown for ever.
        let deadline = Instant::now() + FORCED_GRACE;
        while !self.threads.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done_rx.recv_timeout(left) {
                Ok(id) => {
                    if let Some(handle) = self.threads.remove(&id) {
                        let _ = handle.join();
                    }
                }
                Err(_) => {
                    log::error!(
                        "threading: {} connection threads did not finish; leaving them",
                        self.threads.len()
                    );
                    self.threads.clear();
                }
            }
        }
    }
}
