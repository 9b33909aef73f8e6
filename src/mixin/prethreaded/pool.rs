//! The running pool of a `Prethreaded` server: its threads, how each gets its next
//! connection (the accept lock, or the hand-off channel), growth, and stopping.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::PoolAccept;
use crate::conn::Conn;
use crate::mixin::pool_stats::{Scoreboard, SlotState};
use crate::server::Context;
use crate::sync::lock;
use crate::sys::pipe::SelfPipe;
use crate::sys::{accept, borrow_fd};

/// What every pool thread shares.
#[derive(Debug)]
struct Shared {
    ctx: Arc<Context>,
    board: Arc<Scoreboard>,
    accept: PoolAccept,
    /// `Locked`: the one thread allowed to wait in `accept`.
    accept_lock: Mutex<()>,
    /// `Handoff`: where connections arrive.
    receiver: Receiver<Conn>,
    /// Readable once the pool stops (never drained).
    stop_pipe: SelfPipe,
    stopping: AtomicBool,
    /// Threads alive, and those serving a connection.
    live: AtomicUsize,
    busy: AtomicUsize,
    /// `Handoff`: connections sent but not yet taken by a thread.
    queued: AtomicUsize,
    max: usize,
    /// Which thread slots are taken.
    slots: Mutex<Vec<bool>>,
    /// Each serving thread's socket, to force it at the deadline.
    sockets: Vec<Mutex<Option<RawFd>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The pool, owned by the `Prethreaded` model while it serves.
#[derive(Debug)]
pub(super) struct Pool {
    shared: Arc<Shared>,
    /// `Handoff`: the sending side, dropped when the pool stops.
    sender: Option<Sender<Conn>>,
}

impl Pool {
    /// Starts `threads` threads.
    pub(super) fn start(
        ctx: &Arc<Context>,
        board: Arc<Scoreboard>,
        accept: PoolAccept,
        threads: usize,
        max: usize,
    ) -> io::Result<Pool> {
        // Locked: the accepting thread polls the listener and its stop pipe, then
        // accepts without blocking (an empty accept is a wasted wake-up).
        ctx.listener().set_nonblocking(true)?;
        let (sender, receiver) = unbounded();
        let shared = Arc::new(Shared {
            ctx: Arc::clone(ctx),
            board,
            accept,
            accept_lock: Mutex::new(()),
            receiver,
            stop_pipe: SelfPipe::new()?,
            stopping: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            max,
            slots: Mutex::new(vec![false; max]),
            sockets: (0..max).map(|_| Mutex::new(None)).collect(),
            threads: Mutex::new(Vec::new()),
        });
        // Counted by `live`, not by calls: under `Locked` the first threads serve at
        // once and may grow the pool themselves (even to `max`) before this loop ends;
        // a spawn refused then for want of a slot is not a failure to start.
        while shared.live.load(Ordering::SeqCst) < threads {
            if !spawn(&shared) {
                // Threads already serving may be parked in a wait: drain (new waits
                // fail) and answer those, or the join in `stop` would never return.
                ctx.shutdown.begin_drain();
                crate::sync::close_waiters_of(ctx.scope());
                let pool = Pool {
                    shared,
                    sender: Some(sender),
                };
                pool.stop();
                return Err(io::Error::other(
                    "prethreaded: cannot start the pool's threads",
                ));
            }
        }
        Ok(Pool {
            shared,
            sender: Some(sender),
        })
    }

    /// `Handoff`: gives `conn` to the pool, growing it if every thread is taken.
    pub(super) fn hand_off(&mut self, conn: Conn) -> io::Result<()> {
        let shared = &self.shared;
        let waiting =
            shared.busy.load(Ordering::SeqCst) + shared.queued.fetch_add(1, Ordering::SeqCst) + 1;
        if waiting > shared.live.load(Ordering::SeqCst) {
            spawn(shared);
        }
        let sent = self.sender.as_ref().is_some_and(|s| s.send(conn).is_ok());
        if !sent {
            shared.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(io::Error::other("prethreaded: the pool is stopped"));
        }
        Ok(())
    }

    /// Whether a thread is (or can be made) free for one more connection.
    pub(super) fn can_take_one(&self) -> bool {
        let s = &self.shared;
        let taken = s.busy.load(Ordering::SeqCst) + s.queued.load(Ordering::SeqCst);
        taken < s.live.load(Ordering::SeqCst) || s.live.load(Ordering::SeqCst) < s.max
    }

    /// Connections being served or queued.
    pub(super) fn in_flight(&self) -> usize {
        self.shared.busy.load(Ordering::SeqCst) + self.shared.queued.load(Ordering::SeqCst)
    }

    /// `Locked`: the main thread only watches for shutdown; then drains.
    pub(super) fn serve_locked(&mut self, ctx: &Arc<Context>) -> io::Result<()> {
        while !ctx.is_shutting_down() {
            let deadline = Instant::now() + ctx.poll_interval();
            match crate::rt::park::poll_fd(
                ctx.wake_fd(),
                crate::rt::Interest::Readable,
                Some(deadline),
            ) {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
                Ok(()) => {
                    ctx.shutdown.clear_wakeups();
                    ctx.shutdown.take_stop_signals();
                }
            }
            ctx.service_actions();
        }
        ctx.shutdown.begin_drain();
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.stop_pipe.notify();
        crate::sync::close_waiters_of(ctx.scope());
        let deadline = Instant::now() + ctx.shutdown_timeout();
        while self.in_flight() > 0 && Instant::now() < deadline && !ctx.shutdown.is_fast() {
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the pool: wakes idle threads, shuts down the sockets of busy ones, and
    /// joins every thread.
    pub(super) fn stop(mut self) {
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        shared.stop_pipe.notify();
        drop(self.sender.take());
        for socket in &shared.sockets {
            // Open while tracked: its thread untracks it under this lock before closing.
            if let Some(fd) = *lock(socket) {
                let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
            }
        }
        loop {
            let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&shared.threads));
            if handles.is_empty() {
                break;
            }
            handles.into_iter().for_each(|h| drop(h.join()));
        }
        while shared.receiver.try_recv().is_ok() {}
    }
}

/// Starts one more thread if the pool is below its limit and not stopping.
fn spawn(shared: &Arc<Shared>) -> bool {
    if shared.stopping.load(Ordering::SeqCst) {
        return false;
    }
    let slot = {
        let mut slots = lock(&shared.slots);
        let Some(slot) = slots.iter().position(|taken| !taken) else {
            return false;
        };
        slots[slot] = true;
        slot
    };
    shared.live.fetch_add(1, Ordering::SeqCst);
    shared.board.set_pid(slot, std::process::id());
    shared.board.set_state(slot, SlotState::Idle);
    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("mixserve-pool-{slot}"))
        .spawn(move || serve(&thread_shared, slot));
    match spawned {
        Ok(handle) => {
            lock(&shared.threads).push(handle);
            true
        }
        Err(e) => {
            log::warn!("prethreaded: cannot start a thread: {e}");
            release(shared, slot);
            false
        }
    }
}

fn release(shared: &Shared, slot: usize) {
    shared.board.set_state(slot, SlotState::Empty);
    shared.live.fetch_sub(1, Ordering::SeqCst);
    lock(&shared.slots)[slot] = false;
}

/// A pool thread's life: take a connection, serve it, again.
fn serve(shared: &Arc<Shared>, slot: usize) {
    while let Some(mut conn) = next(shared, slot) {
        let busy = shared.busy.fetch_add(1, Ordering::SeqCst) + 1;
        shared.board.set_state(slot, SlotState::Busy);
        if busy >= shared.live.load(Ordering::SeqCst) {
            spawn(shared);
        }
        // Untracked (under the lock) before the socket closes, so `stop` never shuts
        // down an fd number the kernel has reused.
        *lock(&shared.sockets[slot]) = Some(conn.as_raw_fd());
        shared.ctx.serve_connection(&mut conn);
        lock(&shared.sockets[slot]).take();
        drop(conn);
        shared.board.count_request(slot);
        shared.board.set_state(slot, SlotState::Idle);
        shared.busy.fetch_sub(1, Ordering::SeqCst);
    }
    release(shared, slot);
}

/// The thread's next connection; `None` when the pool stops.
fn next(shared: &Shared, slot: usize) -> Option<Conn> {
    match shared.accept {
        PoolAccept::Handoff => {
            let conn = shared.receiver.recv().ok()?;
            shared.queued.fetch_sub(1, Ordering::SeqCst);
            shared.board.count_connection(slot);
            Some(conn)
        }
        PoolAccept::Locked => locked_accept(shared, slot),
    }
}

/// Takes the accept lock and waits for a connection (or the stop pipe).
fn locked_accept(shared: &Shared, slot: usize) -> Option<Conn> {
    let _turn = lock(&shared.accept_lock);
    let listener = shared.ctx.listener_fd();
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let mut fds = [
            PollFd::new(borrow_fd(listener), PollFlags::POLLIN),
            PollFd::new(borrow_fd(shared.stop_pipe.read_fd()), PollFlags::POLLIN),
        ];
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        match accept::accept(listener) {
            Ok(mut conn) => {
                shared.board.count_connection(slot);
                conn.set_drain_flag(shared.ctx.shutdown.drain_flag());
                if shared.ctx.verify_request(&conn) {
                    return Some(conn);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !shared.stopping.load(Ordering::SeqCst) {
                    shared.board.count_wasted_wakeup(slot);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("prethreaded: accept: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
