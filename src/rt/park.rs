//! Blocking, decided in one place: a coroutine parks, a plain thread blocks.
//!
//! Everything in the crate that waits — a connection read, a `Broadcast::wait`, a
//! `Channel::recv`, a hub reply — asks here how to wait. On a coroutine of the
//! scheduler the coroutine is suspended and the loop runs others; on a plain thread the
//! thread blocks in `poll(2)` or `thread::park`.

use std::cell::Cell;
use std::io;
use std::os::fd::RawFd;
use std::thread::{self, Thread};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::rt::{self, Interest};

/// Waits until `fd` may be ready for `interest`, or fails with `TimedOut` at `deadline`.
///
/// On a coroutine the fd is registered with the loop on its first wait (the caller
/// then owes an [`rt::forget_fd`] before closing it; `registered` records that) and the
/// coroutine parks; on a plain thread the thread blocks in `poll(2)`. Wake-ups may be
/// spurious: the caller retries its non-blocking syscall and waits again on `WouldBlock`.
pub(crate) fn wait_fd(
    fd: RawFd,
    registered: &Cell<bool>,
    interest: Interest,
    deadline: Option<Instant>,
) -> io::Result<()> {
    if rt::in_coroutine() {
        registered.set(true);
        return rt::wait_fd(fd, interest, deadline);
    }
    poll_fd(fd, interest, deadline)
}

/// Blocks the thread in `poll(2)` until `fd` is ready or `deadline` passes.
pub(crate) fn poll_fd(fd: RawFd, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
    let events = match interest {
        Interest::Readable => PollFlags::POLLIN,
        Interest::Writable => PollFlags::POLLOUT,
    };
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                // Round up so a 0.4 ms remainder does not become a busy 0 ms poll.
                let millis = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
            }
        };
        // The caller owns `fd` for the whole wait.
        let mut fds = [PollFd::new(crate::sys::borrow_fd(fd), events)];
        match poll(&mut fds, timeout) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Wakes one waiter, whichever kind it is.
#[derive(Debug, Clone)]
pub(crate) enum Unparker {
    /// A plain thread blocked in `thread::park`.
    Thread(Thread),
    /// A coroutine parked on its loop.
    Coroutine(rt::Waker),
}

impl Unparker {
    /// The unparker for whoever is running now.
    pub(crate) fn current() -> Unparker {
        match rt::current_waker() {
            Some(waker) => Unparker::Coroutine(waker),
            None => Unparker::Thread(thread::current()),
        }
    }

    /// Makes the waiter runnable (a wake before its park makes the park return at once).
    pub(crate) fn unpark(&self) {
        match self {
            Unparker::Thread(thread) => thread.unpark(),
            Unparker::Coroutine(waker) => waker.wake(),
        }
    }
}

/// Parks whoever is running now until unparked or `deadline` (spurious returns allowed).
pub(crate) fn park(deadline: Option<Instant>) {
    if rt::in_coroutine() {
        return rt::park(deadline);
    }
    match deadline {
        None => thread::park(),
        Some(deadline) => thread::park_timeout(deadline.saturating_duration_since(Instant::now())),
    }
}
