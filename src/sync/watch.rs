//! Waits that belong to a connection: when its client closes or resets it, they end.
//!
//! A protocol adapter (or a raw handler, through [`Conn::watch`](crate::Conn::watch))
//! says "the code running now serves the connection on fd X" with [`watching`]. Every
//! wait made meanwhile — a local `Broadcast::wait` / `Channel::recv`, or a worker's hub
//! call — then watches that socket beside what it waits for, and ends with
//! [`WaitError::ClientGone`](crate::sync::WaitError::ClientGone) as soon as the peer's
//! end closes (`EOF`), resets or hangs up:
//!
//! - a plain thread blocks in `ppoll(2)` on the socket (`POLLRDHUP`) instead of
//!   `thread::park`, and the releasing side wakes it with the crate's wake signal (see
//!   [`crate::sys::wake_signal`]): no file descriptor is made per wait, so ten thousand
//!   waiting threads cost ten thousand client sockets and nothing more;
//! - a coroutine parks on both its wait list and the socket's readiness;
//! - a worker process's hub call waits for the hub's reply or the hang-up, and on a
//!   hang-up drops its hub connection, which makes the hub cancel the remote wait. (A
//!   reply already there wins; a `Channel` value the hub sends in the very instant the
//!   client leaves is lost with that connection, as it would be with the client.)
//!
//! Bytes the client pipelines behind its request are not a hang-up: the watch never
//! reads, so they stay in the socket for the next request. As in nginx, a client that
//! half-closes (shuts down its sending side) counts as gone.
//!
//! The record is per thread, or per coroutine on a scheduler's thread, and nests.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::rt;
use crate::rt::park::{self, Unparker};
use crate::sync::WaitError;
use crate::sys::wake_signal::{self, ThreadBell};

/// `POLLRDHUP`: the peer closed its end (nix does not name it).
const RDHUP: PollFlags = PollFlags::from_bits_retain(libc::POLLRDHUP);

/// The watched connection of one thread or coroutine.
#[derive(Debug, Clone, Copy)]
struct Watched {
    /// The client socket.
    fd: RawFd,
    /// Set once a wait saw the client leave.
    gone: bool,
    /// Set while a remote wait (a hub call that waits) is in progress: other hub calls
    /// — a send, a count — finish whatever the client does.
    in_remote_wait: bool,
}

thread_local! {
    /// Watched connections on this thread, keyed by coroutine id (`None`: the thread).
    static WATCHED: RefCell<HashMap<Option<u64>, Watched, BuildHasherDefault<IdHasher>>> =
        RefCell::new(HashMap::default());
}

fn key() -> Option<u64> {
    rt::current_coroutine_id()
}

fn current() -> Option<Watched> {
    let key = key();
    WATCHED.with(|w| w.borrow().get(&key).copied())
}

fn mark_gone() {
    let key = key();
    WATCHED.with(|w| {
        if let Some(watched) = w.borrow_mut().get_mut(&key) {
            watched.gone = true;
        }
    });
}

/// Watches `fd` for the current thread or coroutine until the guard is dropped.
pub(crate) fn watching(fd: RawFd) -> WatchGuard {
    let key = key();
    let watched = Watched {
        fd,
        gone: false,
        in_remote_wait: false,
    };
    let previous = WATCHED.with(|w| w.borrow_mut().insert(key, watched));
    WatchGuard { key, previous }
}

/// Marks the hub calls of the current thread or coroutine as a wait until dropped: only
/// those end when the watched client leaves (a send must reach the hub regardless).
pub(crate) fn remote_wait() -> RemoteWait {
    let key = key();
    set_in_remote_wait(key, true);
    RemoteWait { key }
}

fn set_in_remote_wait(key: Option<u64>, value: bool) {
    let _ = WATCHED.try_with(|w| {
        if let Some(watched) = w.borrow_mut().get_mut(&key) {
            watched.in_remote_wait = value;
        }
    });
}

/// A remote wait in progress (see [`remote_wait`]).
#[derive(Debug)]
pub(crate) struct RemoteWait {
    key: Option<u64>,
}

impl Drop for RemoteWait {
    fn drop(&mut self) {
        set_in_remote_wait(self.key, false);
    }
}

/// Ends a watch; says whether a wait saw the client leave.
#[derive(Debug)]
pub(crate) struct WatchGuard {
    key: Option<u64>,
    previous: Option<Watched>,
}

impl WatchGuard {
    /// True when a wait made under this watch ended because the client left.
    pub(crate) fn client_left(&self) -> bool {
        WATCHED.with(|w| {
            w.borrow()
                .get(&self.key)
                .is_some_and(|watched| watched.gone)
        })
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let _ = WATCHED.try_with(|w| {
            let mut watched = w.borrow_mut();
            match self.previous.take() {
                Some(previous) => watched.insert(self.key, previous),
                None => watched.remove(&self.key),
            }
        });
    }
}

/// The watched client of the current remote wait (a hub call that waits), if any: a
/// send or a count has none, as it must finish whatever the client does.
pub(crate) fn remote_wait_client() -> Option<RawFd> {
    current()
        .filter(|watched| watched.in_remote_wait)
        .map(|watched| watched.fd)
}

/// True (and remembered, for [`hub_error`]) once the client of the current remote
/// wait has left.
pub(crate) fn remote_wait_client_left() -> bool {
    let left = current()
        .filter(|watched| watched.in_remote_wait)
        .is_some_and(|watched| watched.gone || hung_up(watched.fd));
    if left {
        mark_gone();
    }
    left
}

/// Hashes the map's keys (coroutine ids, unique per thread, chosen by the runtime, not
/// by a peer) with one multiply per word: the map is touched on every request, and
/// SipHash's flood resistance buys nothing here.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_isize(&mut self, word: isize) {
        self.write_u64(word as u64);
    }
}

/// The error of a failed hub call: `ClientGone` when the call ended because the watched
/// client left (see [`wait_readable`]).
pub(crate) fn hub_error(message: String) -> WaitError {
    if current().is_some_and(|watched| watched.gone) {
        WaitError::ClientGone
    } else {
        WaitError::Hub(message)
    }
}

/// True when the peer of `fd` closed, reset or hung up (never for pipelined bytes).
fn hung_up(fd: RawFd) -> bool {
    // The watched socket is owned by the connection being served for the whole watch.
    let mut fds = [PollFd::new(crate::sys::borrow_fd(fd), RDHUP)];
    // Only `POLLRDHUP` is asked for; `POLLHUP`, `POLLERR` and `POLLNVAL` come anyway: any
    // event at all is a hang-up. (nix's `revents` would drop the bit it has no name for.)
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// How a local waiter is woken: a plain park, or — for a watched thread, which blocks
/// in `ppoll(2)` rather than `thread::park` — the crate's wake signal.
#[derive(Debug, Clone)]
pub(crate) enum Waker {
    /// `thread::unpark` or a coroutine's waker.
    Park(Unparker),
    /// A watched thread, armed for the wake signal.
    Signal(Arc<ThreadBell>),
}

impl Waker {
    /// The waker for whoever runs now. A watched thread is armed here, before the
    /// waker is registered anywhere, so no wake sent from now on can be lost.
    pub(crate) fn current() -> Waker {
        if current().is_some() && !rt::in_coroutine() {
            match wake_signal::arm() {
                Ok(bell) => return Waker::Signal(bell),
                // Logged once as a warning where it can happen (no free signal).
                Err(error) => log::debug!("waiting without watching the client: {error}"),
            }
        }
        Waker::Park(Unparker::current())
    }

    /// Makes the waiter runnable.
    pub(crate) fn wake(&self) {
        match self {
            Waker::Park(unparker) => unparker.unpark(),
            Waker::Signal(bell) => bell.ring(),
        }
    }
}

/// The watched client left; the wait should end with `ClientGone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gone;

/// Parks like [`park::park`] (spurious returns allowed), but returns `Err(Gone)` once the
/// watched client has left. `waker` is the one the waiter registered.
pub(crate) fn park(waker: &Waker, deadline: Option<Instant>) -> Result<(), Gone> {
    let Some(watched) = current() else {
        park::park(deadline);
        return Ok(());
    };
    if watched.gone || hung_up(watched.fd) {
        mark_gone();
        return Err(Gone);
    }
    if rt::in_coroutine() {
        if rt::park_or_readable(&[watched.fd], deadline).is_err() {
            park::park(deadline);
        }
    } else {
        match waker {
            Waker::Signal(bell) => {
                // An error (none is expected) is a spurious return: the caller loops.
                let _ = wake_signal::wait_hangup_or_ring(watched.fd, bell, deadline);
            }
            Waker::Park(_) => park::park(deadline),
        }
    }
    if hung_up(watched.fd) {
        mark_gone();
        return Err(Gone);
    }
    Ok(())
}

/// Waits until `fd` (a hub connection) is readable, or fails with `ConnectionAborted`
/// once the watched client has left. Outside a watched [`remote_wait`] it returns at
/// once: the caller's read then waits as usual.
pub(crate) fn wait_readable(fd: RawFd, deadline: Option<Instant>) -> io::Result<()> {
    let gone = || {
        mark_gone();
        io::Error::new(io::ErrorKind::ConnectionAborted, "the client left")
    };
    let Some(watched) = current().filter(|watched| watched.in_remote_wait) else {
        return Ok(());
    };
    loop {
        // A reply that is already here wins: a channel value it carries is not lost.
        if readable(fd) {
            return Ok(());
        }
        if watched.gone || hung_up(watched.fd) {
            return Err(gone());
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(());
        }
        if rt::in_coroutine() {
            rt::park_or_readable(&[fd, watched.fd], deadline)?;
        } else {
            poll_until(&[(fd, PollFlags::POLLIN), (watched.fd, RDHUP)], deadline)?;
        }
    }
}

fn readable(fd: RawFd) -> bool {
    // The caller owns `fd` for the whole call.
    let mut fds = [PollFd::new(crate::sys::borrow_fd(fd), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Blocks in `poll(2)` until one of `fds` has an event or `deadline` passes.
fn poll_until(fds: &[(RawFd, PollFlags)], deadline: Option<Instant>) -> io::Result<()> {
    let timeout = match deadline {
        None => PollTimeout::NONE,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            let millis = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
        }
    };
    // The callers own every fd for the whole call.
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&(fd, events)| PollFd::new(crate::sys::borrow_fd(fd), events))
        .collect();
    match poll(&mut polled, timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}
