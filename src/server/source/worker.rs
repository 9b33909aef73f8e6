//! A preforked worker's share of the connections, per accept strategy: blocking
//! `accept` on the inherited listener, `accept` under a process lock, the worker's own
//! `SO_REUSEPORT` listener (plus fds the master passes), or fds the master passes after
//! a "ready". The share keeps the worker's slot on the scoreboard current (idle while
//! it waits, busy when its model is full) and turns the worker's stop into the model's
//! shutdown.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{BACK_OFF, accept_beside_others, accept_with_rules, conn_from, conn_from_accepted};
use crate::conn::Conn;
use crate::mixin::pool_stats::{Scoreboard, SlotState};
use crate::server::{Context, Listener};
use crate::status::Counter;
use crate::sync::lock;
use crate::sys::accept::is_out_of_fds;
use crate::sys::borrow_fd;
use crate::sys::fd_passing::{self, Received};
use crate::sys::process_lock::{FileLock, SharedMutex};
use crate::sys::worker_process::{self, RUN, STOP_FAST, STOP_GRACEFUL};

/// Control bytes between master and worker.
pub(crate) mod message {
    /// Worker → master: ready for one passed connection.
    pub const READY: u8 = b'r';
    /// Worker → master: I took the last idle slot; grow the pool.
    pub const GROW: u8 = b'g';
    /// Master → worker: a connection (with its fd attached).
    pub const CONNECTION: u8 = b'c';
    /// Master → worker: finish what you hold and exit.
    pub const QUIT: u8 = b'q';
    /// Worker → master (`ReusePort`): I reached my quota and stop; pass me nothing more
    /// and answer with a `QUIT`, after which nothing more comes.
    pub const RETIRING: u8 = b'x';
}

/// How long a `ReusePort` worker that said it retires waits for the master's `QUIT`,
/// reading the connections passed to it before it: the master answers within a turn.
const QUIT_WAIT: Duration = Duration::from_secs(2);

/// Backlog of a worker's own `SO_REUSEPORT` listener.
const REUSEPORT_BACKLOG: i32 = 4096;
/// Connections a stopping worker takes from its own listener before it stops it: the
/// backlog, and as many that arrive meanwhile.
const STRANDED_MAX: usize = 2 * REUSEPORT_BACKLOG as usize;
/// How long a worker waits for the shared mutex before looking at its stop flag.
const MUTEX_SLICE: Duration = Duration::from_millis(250);

/// How a worker takes its connections (the master's `Accept`, made concrete).
#[derive(Debug, Clone)]
pub(crate) enum Way {
    /// Blocking `accept` on the inherited listener.
    Shared,
    /// `accept` while holding a lock shared by every worker.
    Locked(Arc<AcceptLock>),
    /// The worker's own `SO_REUSEPORT` listener on this address, and passed fds.
    ReusePort {
        /// The server's address.
        addr: SocketAddr,
        /// The server listener's `TCP_NODELAY`, which the worker's own copies (the
        /// worker does not keep the server's listener to read it from).
        nodelay: bool,
    },
    /// Fds the master passes after a "ready".
    Passed,
}

/// The lock around `accept`, made before the fork.
#[derive(Debug)]
pub(crate) enum AcceptLock {
    /// A record lock on an unnamed file.
    File(FileLock),
    /// A robust process-shared mutex.
    Mutex(SharedMutex),
}

/// A worker's place, as its model's source sees it.
#[derive(Debug)]
pub(crate) struct WorkerSeat {
    /// The pool's scoreboard.
    pub(crate) board: Arc<Scoreboard>,
    /// This worker's slot on it.
    pub(crate) slot: usize,
    /// The worker's end of its control socket.
    pub(crate) control: RawFd,
    /// How it takes connections.
    pub(crate) way: Way,
    /// Connections it takes before it retires (`max_requests` plus jitter).
    pub(crate) quota: Option<u64>,
}

impl WorkerSeat {
    /// Marks the worker busy; if no worker is left idle, asks the master to grow.
    pub(crate) fn busy(&self) {
        self.board.set_state(self.slot, SlotState::Busy);
        let free = self
            .board
            .count_in(self.board.slots(), &[SlotState::Idle, SlotState::Starting]);
        if free == 0 {
            let _ = fd_passing::send_byte(self.control, message::GROW);
        }
    }

    /// One connection fully served.
    pub(crate) fn served(&self) {
        self.board.count_request(self.slot);
    }
}

/// A worker's source.
#[derive(Debug)]
pub(crate) struct Share {
    seat: Arc<WorkerSeat>,
    /// `ReusePort`: the worker's own listener.
    own: Option<Listener>,
    /// `ReusePort`, stopping: the connections taken from its listener and not yet
    /// handed out, and whether the listener stopped listening.
    stranded: Mutex<Stranded>,
    /// `Passed`: a "ready" is outstanding.
    announced: AtomicBool,
    /// `ReusePort`: the worker told the master it retires (its quota), and has not
    /// seen the master's `QUIT` yet.
    awaiting_quit: AtomicBool,
    /// Connections taken so far.
    taken: AtomicU64,
    /// Out of fds, said once: backing off every tenth of a second, the worker would
    /// say it ten times a second. Cleared by the next connection taken.
    said_out_of_fds: AtomicBool,
}

/// What a stopping `ReusePort` worker took from its own listener.
#[derive(Debug, Default)]
struct Stranded {
    /// Taken, not yet handed out.
    queue: VecDeque<Conn>,
    /// Taken in all.
    taken: usize,
    /// The listener stopped listening.
    stopped: bool,
}

/// Fds this process may still open, less a reserve for the connections' handlers.
fn free_fds() -> usize {
    const KEPT: usize = 64;
    let limit = crate::sys::fd_passing::open_files_limit().map_or(usize::MAX, |l| l as usize);
    let open = crate::sys::fd_passing::open_fds_now(KEPT);
    limit.saturating_sub(open + KEPT)
}

/// A worker's own non-blocking `SO_REUSEPORT` listener on the server's address.
fn own_listener(addr: SocketAddr, nodelay: bool) -> io::Result<Listener> {
    let listener = Listener::bind_tcp_reuseport(addr, REUSEPORT_BACKLOG)?;
    listener.set_nonblocking(true)?;
    listener.set_nodelay(nodelay)?;
    Ok(listener)
}

impl Share {
    /// Opens the share; fails (a boot failure) if e.g. the worker's own
    /// `SO_REUSEPORT` listener cannot be bound.
    pub(crate) fn open(_ctx: &Context, seat: Arc<WorkerSeat>) -> io::Result<Share> {
        let own = match seat.way {
            Way::ReusePort { addr, nodelay } => {
                let listener = own_listener(addr, nodelay)?;
                fd_passing::set_nonblocking(&borrow_fd(seat.control), true)?;
                Some(listener)
            }
            _ => None,
        };
        Ok(Share {
            seat,
            own,
            stranded: Mutex::default(),
            announced: AtomicBool::new(false),
            awaiting_quit: AtomicBool::new(false),
            taken: AtomicU64::new(0),
            said_out_of_fds: AtomicBool::new(false),
        })
    }

    /// Turns a stop asked of the worker (a signal, the master's quit, the quota) into
    /// the model's shutdown; true if stopping.
    pub(crate) fn check_stop(&self, ctx: &Context) -> bool {
        // Every return of the model to its source passes here: the loop is alive.
        worker_process::loop_turned();
        if self
            .seat
            .quota
            .is_some_and(|quota| self.taken.load(Ordering::SeqCst) >= quota)
        {
            worker_process::request_stop(STOP_GRACEFUL);
            self.tell_retiring();
        }
        match worker_process::stop_requested() {
            RUN => false,
            STOP_FAST => {
                ctx.shutdown.request_fast();
                true
            }
            _ => {
                ctx.shutdown.request();
                true
            }
        }
    }

    /// The next connection: blocks until one comes, or a signal or the master's quit
    /// interrupts (`None`). The stop signals are unblocked only here (and in the
    /// watchdog, which then interrupts this wait), never in a thread of the model.
    pub(crate) fn next(&self, ctx: &Context) -> Option<Conn> {
        worker_process::begin_interruptible_wait();
        let taken = if self.check_stop(ctx) {
            None
        } else {
            self.seat.board.set_state(self.seat.slot, SlotState::Idle);
            match self.wait_one(ctx) {
                Ok(conn) => conn,
                Err(e) => {
                    self.on_error(ctx, e);
                    None
                }
            }
        };
        worker_process::end_interruptible_wait();
        self.check_stop(ctx);
        taken.map(|conn| self.took(conn))
    }

    /// The model is full: the worker shows busy.
    pub(crate) fn busy(&self) {
        self.seat.busy();
    }

    /// `ReusePort`, stopping on its own (its quota): tells the master, once, which
    /// otherwise would go on passing it its share of the port's connections, to be
    /// dropped unread at its exit. The master answers with a `QUIT`.
    fn tell_retiring(&self) {
        if !matches!(self.seat.way, Way::ReusePort { .. })
            || self.awaiting_quit.swap(true, Ordering::SeqCst)
        {
            return;
        }
        if let Err(error) = fd_passing::send_byte(self.seat.control, message::RETIRING) {
            log::warn!("preforked worker: cannot tell the master it retires: {error}");
            self.awaiting_quit.store(false, Ordering::SeqCst);
        }
    }

    /// One attempt: a connection, or `None` to look at the stop flag and go round.
    fn wait_one(&self, ctx: &Context) -> io::Result<Option<Conn>> {
        let listener = ctx.listener_fd();
        let control = self.seat.control;
        match &self.seat.way {
            Way::Shared => accept_beside_others(listener),
            Way::Locked(lock) => locked_accept(lock, listener),
            Way::ReusePort { .. } => {
                let own = self.own.as_ref().map_or(listener, AsRawFd::as_raw_fd);
                let (listener_ready, control_ready) = wait_two(own, control)?;
                if control_ready {
                    if let Some(conn) = self.receive(control)? {
                        return Ok(Some(conn));
                    }
                }
                if !listener_ready {
                    return Ok(None);
                }
                let conn = accept_with_rules(own, ctx.spare_fd())?;
                if conn.is_none() {
                    self.seat.board.count_wasted_wakeup(self.seat.slot);
                    ctx.count(Counter::WastedWakeups);
                }
                Ok(conn)
            }
            Way::Passed => {
                if !self.announced.swap(true, Ordering::SeqCst) {
                    if let Err(e) = fd_passing::send_byte(control, message::READY) {
                        self.announced.store(false, Ordering::SeqCst);
                        return Err(e);
                    }
                }
                // `Ok`: a message was taken, so the master answered the READY (with a
                // connection, a quit, or an fd this process had no room for): the next
                // wait announces again. An error took nothing; the READY stands.
                let conn = self.receive(control)?;
                self.announced.store(false, Ordering::SeqCst);
                Ok(conn)
            }
        }
    }

    /// Connections already handed to a stopping worker: its own `SO_REUSEPORT` queue
    /// and fds the master passed before its quit. Others have none.
    pub(crate) fn leftover(&self) -> Option<Conn> {
        let control = self.seat.control;
        let passed = || {
            fd_passing::set_nonblocking(&borrow_fd(control), true).ok()?;
            // Never block here, what is not in the socket now will not come; unless
            // the master was told this worker retires and has not answered yet.
            if self.awaiting_quit.load(Ordering::SeqCst) {
                return self.passed_before_quit(control);
            }
            self.receive(control).ok().flatten()
        };
        let conn = match (&self.seat.way, &self.own) {
            (Way::ReusePort { .. }, Some(own)) => self.stranded_on(own).or_else(passed),
            (Way::Passed, _) => passed(),
            _ => None,
        }?;
        Some(self.took(conn))
    }

    /// Reads one control message: a passed connection, or a quit / a gone master (which
    /// ask the worker to stop, and end a retiring worker's wait for the quit).
    fn receive(&self, control: RawFd) -> io::Result<Option<Conn>> {
        match fd_passing::recv_fd(control)? {
            Received::Message(message::CONNECTION, Some(fd)) => Ok(Some(conn_from(fd))),
            Received::Message(message::CONNECTION, None) => {
                log::warn!("preforked worker: a passed connection was lost: no fd free to take it");
                Ok(None)
            }
            Received::Message(message::QUIT, _) | Received::Closed => {
                worker_process::request_stop(STOP_GRACEFUL);
                self.awaiting_quit.store(false, Ordering::SeqCst);
                Ok(None)
            }
            Received::Message(other, _) => {
                log::warn!("preforked worker: unexpected control byte {other:#x}");
                Ok(None)
            }
        }
    }

    /// A retiring `ReusePort` worker: the next connection the master passed before its
    /// `QUIT`, waiting at most [`QUIT_WAIT`] for it or the `QUIT` (which ends the wait).
    fn passed_before_quit(&self, control: RawFd) -> Option<Conn> {
        let deadline = Instant::now() + QUIT_WAIT;
        while self.awaiting_quit.load(Ordering::SeqCst) {
            match self.receive(control) {
                Ok(Some(conn)) => return Some(conn),
                // The QUIT, or a byte that carried no connection.
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        log::warn!("preforked worker: no quit from the master after {QUIT_WAIT:?}");
                        break;
                    }
                    let millis = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
                    let mut fds = [PollFd::new(borrow_fd(control), PollFlags::POLLIN)];
                    let _ = poll(&mut fds, PollTimeout::from(millis));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.awaiting_quit.store(false, Ordering::SeqCst);
        None
    }

    /// `ReusePort`, stopping: the next connection its own listener held. It takes what
    /// is queued in batches the process's free fds allow, and once the queue is empty
    /// (or it took [`STRANDED_MAX`], or can take none) leaves the port's group: the
    /// listener stops listening, so the kernel sends new connections to the other
    /// workers for as long as this one drains, instead of queueing them where nobody
    /// accepts and resetting them at its exit.
    fn stranded_on(&self, own: &Listener) -> Option<Conn> {
        let mut stranded = lock(&self.stranded);
        if stranded.queue.is_empty() && !stranded.stopped {
            let fd = own.as_raw_fd();
            let batch = free_fds().min(STRANDED_MAX - stranded.taken);
            let mut stop = batch == 0;
            for _ in 0..batch {
                match crate::sys::accept::accept(fd) {
                    Ok(accepted) => {
                        stranded.queue.push_back(conn_from_accepted(accepted));
                        stranded.taken += 1;
                    }
                    // That one connection was lost before it was taken: the next.
                    Err(e) if crate::sys::accept::is_transient(&e) => {}
                    // Out of fds: hand out what is held first, then take more.
                    Err(e) if crate::sys::accept::is_out_of_fds(&e) => {
                        stop = stranded.queue.is_empty();
                        break;
                    }
                    // Empty (or failing for good): nothing more will be taken.
                    Err(_) => {
                        stop = true;
                        break;
                    }
                }
            }
            if stop || stranded.taken >= STRANDED_MAX {
                stranded.stopped = true;
                if let Err(error) = crate::sys::accept::stop_listening(fd) {
                    log::warn!("preforked worker: cannot stop its own listener: {error}");
                }
            }
        }
        stranded.queue.pop_front()
    }

    /// Counts a new connection.
    fn took(&self, conn: Conn) -> Conn {
        self.taken.fetch_add(1, Ordering::SeqCst);
        self.said_out_of_fds.store(false, Ordering::Relaxed);
        self.seat.board.count_connection(self.seat.slot);
        conn
    }

    fn on_error(&self, ctx: &Context, error: io::Error) {
        match error.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                self.seat.board.count_wasted_wakeup(self.seat.slot);
                ctx.count(Counter::WastedWakeups);
            }
            // The master closed the shared listener: the pool is stopping.
            _ if error.raw_os_error() == Some(libc::EINVAL) => std::thread::sleep(BACK_OFF),
            // Out of fds: on a listener its siblings share, they take the connections
            // while this worker backs off (see `accept_beside_others`).
            _ if is_out_of_fds(&error) => {
                if !self.said_out_of_fds.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "preforked worker {}: accept: {error}; backing off until one of its \
                         connections closes",
                        self.seat.slot
                    );
                }
                std::thread::sleep(BACK_OFF);
            }
            _ => {
                log::warn!("preforked worker {}: accept: {error}", self.seat.slot);
                std::thread::sleep(BACK_OFF);
            }
        }
    }
}

/// Takes the accept lock, accepts one connection, releases the lock.
fn locked_accept(lock: &AcceptLock, listener: RawFd) -> io::Result<Option<Conn>> {
    match lock {
        AcceptLock::File(lock) => {
            lock.lock()?;
            let result = accept_beside_others(listener);
            lock.unlock()?;
            result
        }
        AcceptLock::Mutex(mutex) => {
            if !mutex.lock_timeout(MUTEX_SLICE)? {
                return Ok(None);
            }
            let result = accept_beside_others(listener);
            mutex.unlock()?;
            result
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_own_listener_takes_the_servers_nodelay() {
        let server = Listener::bind_tcp_reuseport("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let crate::ListenAddr::Tcp(addr) = server.local_addr().unwrap() else {
            unreachable!("bound a TCP listener")
        };
        for nodelay in [true, false] {
            let own = own_listener(addr, nodelay).unwrap();
            assert_eq!(own.nodelay().unwrap(), nodelay);
        }
    }
}
