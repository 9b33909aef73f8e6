//! Connection threads, written once for every model that runs handlers on threads
//! (`Threading`'s thread per connection, `Prethreaded`'s pool): spawn, track the
//! socket each one serves, join the finished ones, and at the end shut down the
//! sockets still open and join every thread (within a grace period).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::conn::Conn;
use crate::server::Context;
use crate::sync::lock;

/// How long a forced end waits for threads whose socket it shut down.
const FORCED_GRACE: Duration = Duration::from_secs(5);

/// The sockets being served, shared by the threads.
type Sockets = Arc<Mutex<Tracked>>;

/// Socket of each connection being served, by thread id; and whether the forced end
/// has begun, after which no connection is served (its socket would miss the sweep).
#[derive(Debug, Default)]
struct Tracked {
    by_thread: HashMap<u64, RawFd>,
    forced: bool,
}

/// A model's threads.
#[derive(Debug)]
pub(crate) struct Threads {
    /// Thread names start with this (`mixserve-conn`).
    prefix: &'static str,
    /// Live threads.
    handles: Mutex<HashMap<u64, JoinHandle<()>>>,
    next_id: AtomicU64,
    /// The socket each thread serves now. A thread removes its entry (under the lock)
    /// before it closes the socket, so an fd here is never one the kernel reused.
    sockets: Sockets,
    /// Threads report their id here when done, to be joined.
    done_tx: Sender<u64>,
    done_rx: Receiver<u64>,
}

/// What a thread is given: serves connections with their socket tracked.
#[derive(Debug)]
pub(crate) struct Tracker {
    id: u64,
    sockets: Sockets,
}

impl Tracker {
    /// Runs the handler on `conn` and closes it, tracked meanwhile. Once the forced
    /// end has begun, `conn` is closed unserved: the sweep that shuts the tracked
    /// sockets down has run or is running, and would miss it.
    pub(crate) fn serve(&self, ctx: &Context, mut conn: Conn) {
        {
            let mut tracked = lock(&self.sockets);
            if tracked.forced {
                return;
            }
            tracked.by_thread.insert(self.id, conn.as_raw_fd());
        }
        // Declared after `conn`, so dropped before it, on return or unwind alike.
        let _untrack = Untrack(self);
        ctx.serve_connection(&mut conn);
    }
}

/// Removes its tracker's socket entry when dropped: the fd number must leave the map
/// before the socket is closed, or a forced end could shut down whatever reuses it.
struct Untrack<'a>(&'a Tracker);

impl Drop for Untrack<'_> {
    fn drop(&mut self) {
        lock(&self.0.sockets).by_thread.remove(&self.0.id);
    }
}

/// Reports its thread done when dropped, on return or unwind alike, so every thread
/// is joined.
struct Done {
    id: u64,
    done: Sender<u64>,
}

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.done.send(self.id);
    }
}

impl Threads {
    pub(crate) fn new(prefix: &'static str) -> Threads {
        let (done_tx, done_rx) = unbounded();
        Threads {
            prefix,
            handles: Mutex::default(),
            next_id: AtomicU64::new(0),
            sockets: Arc::default(),
            done_tx,
            done_rx,
        }
    }

    /// Starts a thread running `body` (with `stack` bytes of stack, if given).
    pub(crate) fn spawn(
        &self,
        stack: Option<usize>,
        body: impl FnOnce(&Tracker) + Send + 'static,
    ) -> io::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracker = Tracker {
            id,
            sockets: Arc::clone(&self.sockets),
        };
        let done = Done {
            id,
            done: self.done_tx.clone(),
        };
        let mut builder = thread::Builder::new().name(format!("{}-{id}", self.prefix));
        if let Some(size) = stack {
            builder = builder.stack_size(size);
        }
        let mut handles = lock(&self.handles);
        let handle = builder.spawn(move || {
            let _done = done;
            body(&tracker);
        })?;
        handles.insert(id, handle);
        Ok(())
    }

    /// Joins the threads that finished.
    pub(crate) fn join_finished(&self) {
        while let Ok(id) = self.done_rx.try_recv() {
            self.join(id);
        }
    }

    fn join(&self, id: u64) {
        let handle = lock(&self.handles).remove(&id);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// The forced end: shuts down every tracked socket (a thread blocked on it ends)
    /// and serves no connection after that (one a thread takes later, from a queue,
    /// is closed unserved), then joins every thread; one blocked elsewhere (a sleep, a database call) gets
    /// a grace period, then is left running rather than hang the shutdown for ever.
    pub(crate) fn force_and_join(&self) {
        self.join_finished();
        let mut tracked = lock(&self.sockets);
        tracked.forced = true;
        for &fd in tracked.by_thread.values() {
            // The fd is open: its thread removes it under this lock before closing.
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
        }
        drop(tracked);
        let deadline = Instant::now() + FORCED_GRACE;
        while !lock(&self.handles).is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done_rx.recv_timeout(left) {
                Ok(id) => self.join(id),
                Err(_) => {
                    let mut handles = lock(&self.handles);
                    log::error!(
                        "{}: {} threads did not finish; leaving them",
                        self.prefix,
                        handles.len()
                    );
                    handles.clear();
                }
            }
        }
    }
}
