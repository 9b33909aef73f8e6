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

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watched {
    /// The client socket.
    fd: RawFd,
    /// Set once a wait saw the client leave.
    gone: bool,
    /// Set while a remote wait (a hub call that waits) is in progress: other hub calls
    /// — a send, a count — finish whatever the client does.
    in_remote_wait: bool,
}

thread_local! {
    /// The watched connection of the code running on this thread now: the running
    /// coroutine's, which the scheduler swaps in before each resume and keeps in the
    /// coroutine's slot meanwhile (see [`swap_running`]), or else the thread's own.
    /// Setting and ending a watch, done for every request, are a load and a store.
    static WATCHED: Cell<Option<Watched>> = const { Cell::new(None) };
}

/// Makes `record` the watched connection of the code running on this thread and returns
/// the one it replaces: the scheduler swaps a coroutine's record in before it resumes
/// the coroutine, and back out (into the coroutine's slot) when it suspends.
pub(crate) fn swap_running(record: Option<Watched>) -> Option<Watched> {
    // A const `Cell` of a `Copy` type: no destructor, usable until the thread ends.
    WATCHED.replace(record)
}

/// Calls `f` with the record of the code running now.
fn with_record<R>(f: impl FnOnce(&mut Option<Watched>) -> R) -> R {
    let mut record = WATCHED.get();
    let result = f(&mut record);
    WATCHED.set(record);
    result
}

fn current() -> Option<Watched> {
    WATCHED.get()
}

fn mark_gone() {
    with_record(|record| {
        if let Some(watched) = record {
            watched.gone = true;
        }
    });
}

/// Watches `fd` for the current thread or coroutine until the guard is dropped.
pub(crate) fn watching(fd: RawFd) -> WatchGuard {
    let watched = Watched {
        fd,
        gone: false,
        in_remote_wait: false,
    };
    WatchGuard {
        previous: WATCHED.replace(Some(watched)),
        ended: false,
        _not_send: PhantomData,
    }
}

/// Runs `f` with no client watched: a call that must finish whatever the client does
/// (a Redis send or count, or a `try_recv` whose value is taken once it is asked for)
/// parks until its answer or its own deadline, and leaves no "client gone" mark. The
/// watch is back when `f` returns or unwinds.
pub(crate) fn unwatched<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the hidden watch back, on return and on unwinding alike.
    struct Restore(Option<Watched>);
    impl Drop for Restore {
        fn drop(&mut self) {
            WATCHED.set(self.0.take());
        }
    }
    let _restore = Restore(WATCHED.replace(None));
    f()
}

/// Marks the hub calls of the current thread or coroutine as a wait until dropped: only
/// those end when the watched client leaves (a send must reach the hub regardless).
pub(crate) fn remote_wait() -> RemoteWait {
    set_in_remote_wait(true);
    RemoteWait {
        _not_send: PhantomData,
    }
}

fn set_in_remote_wait(value: bool) {
    with_record(|record| {
        if let Some(watched) = record {
            watched.in_remote_wait = value;
        }
    });
}

/// A remote wait in progress (see [`remote_wait`]); ends where it began.
#[derive(Debug)]
pub(crate) struct RemoteWait {
    _not_send: PhantomData<*const ()>,
}

impl Drop for RemoteWait {
    fn drop(&mut self) {
        set_in_remote_wait(false);
    }
}

/// Ends a watch; says whether a wait saw the client leave. It stays on the thread (and
/// coroutine) that made it, where its record is.
#[derive(Debug)]
pub(crate) struct WatchGuard {
    /// The record this watch hides, put back when it ends.
    previous: Option<Watched>,
    /// Set by [`end`](Self::end): nothing is left to undo.
    ended: bool,
    _not_send: PhantomData<*const ()>,
}

impl WatchGuard {
    /// True when a wait made under this watch ended because the client left.
    pub(crate) fn client_left(&self) -> bool {
        current().is_some_and(|watched| watched.gone)
    }

    /// Ends the watch now, saying whether a wait saw the client leave: what
    /// [`client_left`](Self::client_left) and dropping do, in one look at the record.
    pub(crate) fn end(mut self) -> bool {
        self.ended = true;
        WATCHED
            .replace(self.previous.take())
            .is_some_and(|watched| watched.gone)
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if !self.ended {
            WATCHED.set(self.previous.take());
        }
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
    let left = if rt::in_coroutine() {
        park_coroutine(watched, deadline)
    } else {
        if watched.gone || hung_up(watched.fd) {
            mark_gone();
            return Err(Gone);
        }
        match waker {
            Waker::Signal(bell) => {
                // An error (none is expected) is a spurious return: the caller loops.
                let _ = wake_signal::wait_hangup_or_ring(watched.fd, bell, deadline);
            }
            Waker::Park(_) => park::park(deadline),
        }
        hung_up(watched.fd)
    };
    if left {
        mark_gone();
        return Err(Gone);
    }
    Ok(())
}

/// [`park`] on a coroutine: parks on the waker and the client socket together, and says
/// whether the client left. The loop's epoll reports a hang-up as read readiness and
/// the reactor remembers it, so no `poll(2)` is made: a socket the loop has not
/// registered yet is registered by the park, and epoll reports at once a hang-up that
/// came before. (Only a socket epoll refused is asked with `poll(2)`.) A hang-up the
/// loop has not collected yet (it polls between batches of coroutines) is seen at the
/// next park: a waiter woken in the same batch may still take its value.
fn park_coroutine(watched: Watched, deadline: Option<Instant>) -> bool {
    if watched.gone || rt::read_closed(watched.fd) == Some(true) {
        return true;
    }
    if rt::park_or_readable(&[watched.fd], deadline).is_err() {
        park::park(deadline);
    }
    rt::read_closed(watched.fd).unwrap_or_else(|| hung_up(watched.fd))
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;

    use super::*;
    use crate::rt::{Runtime, RuntimeConfig};

    fn watched_fd() -> Option<RawFd> {
        current().map(|watched| watched.fd)
    }

    #[test]
    fn watches_nest_and_end_in_order() {
        assert_eq!(watched_fd(), None);
        let outer = watching(10);
        let inner = watching(11);
        assert_eq!(watched_fd(), Some(11));
        mark_gone();
        assert!(inner.client_left());
        assert!(inner.end(), "the inner watch saw its client leave");
        assert_eq!(watched_fd(), Some(10));
        assert!(!outer.client_left(), "the outer client did not leave");
        drop(outer);
        assert_eq!(watched_fd(), None);
    }

    #[test]
    fn a_remote_wait_sees_its_client_leave() {
        let (client, peer) = UnixStream::pair().unwrap();
        let guard = watching(client.as_raw_fd());
        assert_eq!(remote_wait_client(), None, "no remote wait yet");
        {
            let _wait = remote_wait();
            assert_eq!(remote_wait_client(), Some(client.as_raw_fd()));
            assert!(!remote_wait_client_left());
            drop(peer);
            assert!(remote_wait_client_left());
            assert_eq!(hub_error(String::from("x")), WaitError::ClientGone);
        }
        assert_eq!(remote_wait_client(), None, "the remote wait ended");
        assert!(guard.end());
        assert_eq!(
            hub_error(String::from("x")),
            WaitError::Hub(String::from("x"))
        );
    }

    #[test]
    fn each_coroutine_has_its_own_watch() {
        let seen = Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let thread_guard = watching(7);
        for fd in [20, 21] {
            let seen = Rc::clone(&seen);
            runtime
                .spawn(move || {
                    seen.borrow_mut().push((fd, watched_fd()));
                    let guard = watching(fd);
                    rt::yield_now();
                    seen.borrow_mut().push((fd, watched_fd()));
                    // Never ended: the record goes with the coroutine's slot.
                    std::mem::forget(guard);
                })
                .unwrap();
        }
        runtime.run().unwrap();
        let seen_again = Rc::clone(&seen);
        runtime
            .spawn(move || seen_again.borrow_mut().push((0, watched_fd())))
            .unwrap();
        runtime.run().unwrap();
        assert_eq!(
            *seen.borrow(),
            [
                (20, None),
                (21, None),
                (20, Some(20)),
                (21, Some(21)),
                (0, None)
            ]
        );
        assert_eq!(watched_fd(), Some(7), "the thread's own watch is apart");
        drop(thread_guard);
    }

    #[test]
    fn a_coroutine_unwound_at_runtime_drop_has_its_own_watch_and_leaves_none() {
        struct Report(Rc<std::cell::Cell<Option<Option<RawFd>>>>);
        impl Drop for Report {
            fn drop(&mut self) {
                self.0.set(Some(watched_fd()));
            }
        }
        let seen = Rc::new(std::cell::Cell::new(None));
        let thread_guard = watching(7);
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let handle = runtime.handle();
        let report = Report(Rc::clone(&seen));
        runtime
            .spawn(move || {
                let _guard = watching(30);
                // Dropped first, while the watch is on.
                let _report = report;
                rt::park(None);
            })
            .unwrap();
        runtime.spawn(move || handle.stop()).unwrap();
        runtime.run().unwrap();
        assert_eq!(watched_fd(), Some(7), "between runs, the thread's own");
        drop(runtime);
        assert_eq!(seen.get(), Some(Some(30)), "unwound with its own record");
        assert_eq!(watched_fd(), Some(7), "after the drop, the thread's own");
        drop(thread_guard);
    }
}
