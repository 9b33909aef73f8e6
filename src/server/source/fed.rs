//! A hand-off source: a feeder thread pulls connections from a blocking source (a
//! preforked worker's `accept`, which its stop signals interrupt) and queues them,
//! poking a pipe a coroutine loop can wait on. Connections cross threads before they
//! ever wait, which `Conn` allows.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::Source;
use crate::conn::Conn;
use crate::server::Context;
use crate::sync::lock;
use crate::sys::pipe::SelfPipe;
use crate::sys::worker_process;

/// How often a feeder whose consumer is full looks again.
const FULL_RECHECK: Duration = Duration::from_millis(50);
/// How often a consumer that gives up interrupts its feeder's wait until it ends.
const INTERRUPT_AGAIN: Duration = Duration::from_millis(20);

/// What the feeder and the consumer share.
#[derive(Debug)]
struct Inbox {
    queue: Mutex<VecDeque<Conn>>,
    /// Readable while the queue may hold connections.
    ready: SelfPipe,
}

/// The consumer's side.
#[derive(Debug)]
pub(crate) struct Fed {
    inbox: Arc<Inbox>,
    feeder: Mutex<Option<JoinHandle<()>>>,
    /// The server the feeder serves, to stop it when the consumer gives up early.
    ctx: Arc<Context>,
}

impl Fed {
    /// Starts the feeder on `source`; it takes a connection only while `room` says
    /// the consumer can start one beside those queued.
    pub(crate) fn start(
        source: Source,
        room: Arc<dyn Fn(usize) -> bool + Send + Sync>,
    ) -> io::Result<Fed> {
        let inbox = Arc::new(Inbox {
            queue: Mutex::new(VecDeque::new()),
            ready: SelfPipe::new()?,
        });
        let ctx = Arc::clone(&source.ctx);
        let feeder = {
            let inbox = Arc::clone(&inbox);
            thread::Builder::new()
                .name("mixserve-feeder".into())
                .spawn(move || feed(&source, &inbox, &*room))?
        };
        Ok(Fed {
            inbox,
            feeder: Mutex::new(Some(feeder)),
            ctx,
        })
    }

    /// A queued connection, if any.
    pub(crate) fn try_next(&self) -> Option<Conn> {
        let conn = lock(&self.inbox.queue).pop_front();
        if conn.is_none() {
            self.inbox.ready.drain();
            // Queued between the pop and the drain: keep the pipe readable.
            if !lock(&self.inbox.queue).is_empty() {
                self.inbox.ready.notify();
            }
        }
        conn
    }

    /// Whether the feeder still runs (it may queue more: what it took before the
    /// stop, then the worker's leftovers).
    pub(crate) fn feeding(&self) -> bool {
        lock(&self.feeder)
            .as_ref()
            .is_some_and(|feeder| !feeder.is_finished())
    }

    pub(crate) fn ready_fd(&self) -> RawFd {
        self.inbox.ready.read_fd()
    }
}

impl Drop for Fed {
    /// Ends the feeder. After a shutdown it has ended or soon will; when the consumer
    /// gives up without one (its loop could not start: no runtime, no stack), nothing
    /// asked the feeder to stop, and it would accept connections nobody serves, for
    /// ever: the drop asks, and interrupts the `accept` it may be blocked in.
    fn drop(&mut self) {
        let Some(feeder) = lock(&self.feeder).take() else {
            return;
        };
        if !self.ctx.is_shutting_down() {
            self.ctx.shutdown.request();
        }
        while !feeder.is_finished() {
            worker_process::interrupt_waiting_thread();
            thread::sleep(INTERRUPT_AGAIN);
        }
        let _ = feeder.join();
    }
}

/// Pulls from `source` until it stops; queues each connection and pokes the pipe.
/// Those queued count against the consumer's room: a loop busy for a while would
/// otherwise find more queued than it may start, and close the rest unserved, while
/// this worker took them from siblings with room (and looked idle to its master).
fn feed(source: &Source, inbox: &Inbox, room: &(dyn Fn(usize) -> bool + Send + Sync)) {
    while !source.ctx.is_shutting_down() {
        let queued = lock(&inbox.queue).len();
        if !room(queued) {
            source.at_capacity();
            thread::sleep(FULL_RECHECK);
            source.idle(Duration::ZERO);
            continue;
        }
        if let Some(conn) = source.next() {
            lock(&inbox.queue).push_back(conn);
            inbox.ready.notify();
        }
    }
    while let Some(conn) = source.leftover() {
        lock(&inbox.queue).push_back(conn);
    }
    inbox.ready.notify();
}
