//! Where a worker's connections come from: one [`Source`] per [`Accept`] strategy.
//! The source also keeps the worker's slot on the scoreboard up to date (idle while it
//! waits, busy while it serves) and notices when the worker should stop.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::pool::WorkerPlan;
use super::{Accept, LockKind};
use crate::conn::Conn;
use crate::mixin::pool_stats::{Scoreboard, SlotState};
use crate::server::{Context, Listener};
use crate::sys::fd_passing::{self, Received};
use crate::sys::worker_process::{self, RUN, STOP_GRACEFUL};
use crate::sys::{accept, borrow_fd};

/// Control bytes between master and worker.
pub(super) mod message {
    /// Worker → master: ready for one passed connection.
    pub const READY: u8 = b'r';
    /// Worker → master: I took the last idle slot; grow the pool.
    pub const GROW: u8 = b'g';
    /// Master → worker: a connection (with its fd attached).
    pub const CONNECTION: u8 = b'c';
    /// Master → worker: finish what you hold and exit.
    pub const QUIT: u8 = b'q';
}

/// Backlog of a worker's own `SO_REUSEPORT` listener.
const REUSEPORT_BACKLOG: i32 = 4096;
/// How long a worker waits for the shared mutex before looking at its stop flag.
const MUTEX_SLICE: Duration = Duration::from_millis(250);

/// The worker's place on the scoreboard; cheap to clone into connection threads.
#[derive(Debug, Clone)]
pub(super) struct SlotHandle {
    pub(super) board: Arc<Scoreboard>,
    pub(super) slot: usize,
    /// The worker's end of its control socket.
    pub(super) control: RawFd,
}

impl SlotHandle {
    pub(super) fn idle(&self) {
        self.board.set_state(self.slot, SlotState::Idle);
    }

    /// Marks the worker busy; if no worker is left idle, asks the master to grow.
    pub(super) fn busy(&self) {
        self.board.set_state(self.slot, SlotState::Busy);
        let free = self
            .board
            .count_in(self.board.slots(), &[SlotState::Idle, SlotState::Starting]);
        if free == 0 {
            let _ = fd_passing::send_byte(self.control, message::GROW);
        }
    }

    /// One connection fully served.
    pub(super) fn served(&self) {
        self.board.count_request(self.slot);
    }
}

/// Where connections come from, per strategy.
#[derive(Debug)]
enum Kind<'a> {
    Shared,
    Locked(&'a WorkerPlan),
    ReusePort(Listener),
    Passed { announced: bool },
}

/// A worker's connection source.
#[derive(Debug)]
pub(super) struct Source<'a> {
    ctx: &'a Arc<Context>,
    kind: Kind<'a>,
    pub(super) slot: SlotHandle,
    /// Connections taken so far, and the worker's quota (`max_requests` + jitter).
    taken: u64,
    quota: Option<u64>,
}

impl<'a> Source<'a> {
    /// Opens the worker's source; fails (a boot failure) if e.g. its own
    /// `SO_REUSEPORT` listener cannot be bound.
    pub(super) fn open(
        ctx: &'a Arc<Context>,
        plan: &'a WorkerPlan,
        slot: SlotHandle,
        control: &OwnedFd,
    ) -> io::Result<Source<'a>> {
        let kind = match plan.accept {
            Accept::Shared => Kind::Shared,
            Accept::Locked(_) => Kind::Locked(plan),
            Accept::ReusePort => {
                let addr = plan.reuseport_addr.ok_or_else(|| {
                    io::Error::other("reuseport: the listener has no TCP address")
                })?;
                let listener = Listener::bind_tcp_reuseport(addr, REUSEPORT_BACKLOG)?;
                listener.set_nonblocking(true)?;
                fd_passing::set_nonblocking(control, true)?;
                Kind::ReusePort(listener)
            }
            Accept::Passed(_) => Kind::Passed { announced: false },
        };
        Ok(Source {
            ctx,
            kind,
            slot,
            taken: 0,
            quota: plan.quota(),
        })
    }

    /// The next connection, blocking; `None` once the worker should stop taking them.
    /// Marks the worker idle while it waits.
    pub(super) fn next(&mut self) -> Option<Conn> {
        let _accepting = worker_process::accepting();
        loop {
            if self.quota.is_some_and(|quota| self.taken >= quota) {
                worker_process::request_stop(STOP_GRACEFUL);
            }
            if worker_process::stop_requested() != RUN {
                self.ctx.shutdown.begin_drain();
                return self.leftover();
            }
            self.slot.idle();
            match self.wait_one() {
                Ok(Some(conn)) => {
                    if let Some(conn) = self.took(conn) {
                        return Some(conn);
                    }
                }
                Ok(None) => {}
                Err(e) => self.on_error(e),
            }
        }
    }

    /// One attempt: a connection, or `None` to look at the stop flag and go round.
    fn wait_one(&mut self) -> io::Result<Option<Conn>> {
        let listener = self.ctx.listener_fd();
        match &mut self.kind {
            Kind::Shared => accept_one(listener),
            Kind::Locked(plan) => locked_accept(plan, listener),
            Kind::ReusePort(own) => {
                let own = own.as_raw_fd();
                let (listener_ready, control_ready) = wait_two(own, self.slot.control)?;
                if control_ready {
                    if let Some(conn) = receive(self.slot.control)? {
                        return Ok(Some(conn));
                    }
                }
                if listener_ready {
                    return match accept::accept(own) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.slot.board.count_wasted_wakeup(self.slot.slot);
                            Ok(None)
                        }
                        other => other.map(Some),
                    };
                }
                Ok(None)
            }
            Kind::Passed { announced } => {
                if !*announced {
                    fd_passing::send_byte(self.slot.control, message::READY)?;
                    *announced = true;
                }
                let conn = receive(self.slot.control)?;
                if conn.is_some() {
                    *announced = false;
                }
                Ok(conn)
            }
        }
    }

    /// Connections already handed to a stopping worker: its own `SO_REUSEPORT` queue
    /// and fds passed before the master's quit. Others have none.
    fn leftover(&mut self) -> Option<Conn> {
        let Kind::ReusePort(own) = &self.kind else {
            return None;
        };
        let conn = accept::accept(own.as_raw_fd())
            .ok()
            .or_else(|| receive(self.slot.control).ok().flatten())?;
        self.took(conn)
    }

    /// Counts a new connection and readies it for the handler; `None` if refused.
    fn took(&mut self, mut conn: Conn) -> Option<Conn> {
        self.taken += 1;
        self.slot.board.count_connection(self.slot.slot);
        conn.set_drain_flag(self.ctx.shutdown.drain_flag());
        self.ctx.verify_request(&conn).then_some(conn)
    }

    fn on_error(&self, error: io::Error) {
        match error.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => self.slot.board.count_wasted_wakeup(self.slot.slot),
            _ if is_transient(&error) => {}
            _ => {
                // Out of fds, or worse: say so, and do not spin.
                log::warn!("preforked worker {}: accept: {error}", self.slot.slot);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn accept_one(listener: RawFd) -> io::Result<Option<Conn>> {
    accept::accept(listener).map(Some)
}

/// Takes the accept lock, accepts one connection, releases the lock.
fn locked_accept(plan: &WorkerPlan, listener: RawFd) -> io::Result<Option<Conn>> {
    match plan.accept {
        Accept::Locked(LockKind::File) => {
            let lock = plan.file_lock.as_ref().ok_or_else(missing_lock)?;
            lock.lock()?;
            let result = accept::accept(listener);
            lock.unlock()?;
            result.map(Some)
        }
        _ => {
            let mutex = plan.mutex.as_ref().ok_or_else(missing_lock)?;
            if !mutex.lock_timeout(MUTEX_SLICE)? {
                return Ok(None);
            }
            let result = accept::accept(listener);
            mutex.unlock()?;
            result.map(Some)
        }
    }
}

fn missing_lock() -> io::Error {
    io::Error::other("preforked: the accept lock was not created")
}

/// Reads one control message: a passed connection, or a quit / a gone master (which
/// ask the worker to stop).
fn receive(control: RawFd) -> io::Result<Option<Conn>> {
    match fd_passing::recv_fd(control)? {
        Received::Message(message::CONNECTION, Some(fd)) => Ok(Some(accept::conn_from(fd))),
        Received::Message(message::QUIT, _) | Received::Closed => {
            worker_process::request_stop(STOP_GRACEFUL);
            Ok(None)
        }
        Received::Message(other, _) => {
            log::warn!("preforked worker: unexpected control byte {other:#x}");
            Ok(None)
        }
    }
}

/// Waits until `listener` or `control` is readable; a signal interrupts the wait.
fn wait_two(listener: RawFd, control: RawFd) -> io::Result<(bool, bool)> {
    let mut fds = [
        PollFd::new(borrow_fd(listener), PollFlags::POLLIN),
        PollFd::new(borrow_fd(control), PollFlags::POLLIN),
    ];
    poll(&mut fds, PollTimeout::NONE)?;
    let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
    Ok((ready(&fds[0]), ready(&fds[1])))
}

/// Accept errors about one connection only (it was reset before we took it).
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::ENETDOWN | libc::EHOSTUNREACH)
    )
}
