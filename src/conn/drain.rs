//! [`Drain`]: a server's graceful stop as its connections see it — a flag for "answer
//! with `Connection: close`", and a pipe that becomes readable (and stays so) when the
//! drain begins, so a connection idle between requests wakes and closes at once.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::Conn;
use crate::sys::pipe::SelfPipe;

/// The drain state of one server, shared by its loop and its connections.
///
/// A forked worker inherits the pipe, so it sees the bell even where its copy of the
/// flag never changes.
#[derive(Debug)]
pub(crate) struct Drain {
    /// Set when the drain begins.
    flag: AtomicBool,
    /// Written once when the drain begins; emptied only by `reset`.
    bell: SelfPipe,
}

impl Drain {
    pub(crate) fn new() -> io::Result<Drain> {
        Ok(Drain {
            flag: AtomicBool::new(false),
            bell: SelfPipe::new()?,
        })
    }

    /// Begins the drain: the flag, then the bell.
    pub(crate) fn begin(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.bell.notify();
    }

    /// Ends it (the server may serve again).
    pub(crate) fn reset(&self) {
        self.flag.store(false, Ordering::SeqCst);
        self.bell.drain();
    }

    /// True once the drain began in this process.
    pub(crate) fn is_draining(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// True once the drain began here or in the process this one was forked from.
    fn rang(&self) -> bool {
        self.is_draining() || readable(self.bell.read_fd())
    }
}

/// How waiting for the next request on an idle connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Bytes (or the end of the stream) arrived.
    Request,
    /// The server began draining: close without a word.
    Draining,
}

impl Conn {
    /// Waits, between requests, until the client sends something, the server begins to
    /// drain, or `deadline` (`TimedOut`). Without a drain state it only waits for input.
    pub(crate) fn wait_idle(&self, deadline: Instant) -> io::Result<Idle> {
        let Some(drain) = &self.drain else {
            self.wait_until_readable(deadline)?;
            return Ok(Idle::Request);
        };
        let (socket, bell) = (self.as_raw_fd(), drain.bell.read_fd());
        loop {
            if drain.rang() {
                return Ok(Idle::Draining);
            }
            if readable(socket) {
                return Ok(Idle::Request);
            }
            if Instant::now() >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if crate::rt::in_coroutine() {
                self.registered.set(true);
                crate::rt::park_or_readable(&[socket, bell], Some(deadline))?;
            } else {
                poll_both(socket, bell, deadline)?;
            }
        }
    }

    fn wait_until_readable(&self, deadline: Instant) -> io::Result<()> {
        crate::sync::park::wait_fd(
            self.as_raw_fd(),
            &self.registered,
            crate::rt::Interest::Readable,
            Some(deadline),
        )
    }
}

/// True when `fd` has input (or an error, or its end) now.
fn readable(fd: RawFd) -> bool {
    // The caller owns `fd` for the call.
    let mut fds = [PollFd::new(crate::sys::borrow_fd(fd), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

fn poll_both(a: RawFd, b: RawFd, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    let millis = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
    // The caller owns both fds for the call.
    let mut fds = [
        PollFd::new(crate::sys::borrow_fd(a), PollFlags::POLLIN),
        PollFd::new(crate::sys::borrow_fd(b), PollFlags::POLLIN),
    ];
    match poll(&mut fds, timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}
