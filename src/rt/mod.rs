//! The coroutine runtime: stackful coroutines on one mio loop per thread.
//!
//! This file is the seam the rest of the crate uses; the runtime itself is built in
//! issue 3. Until then nothing runs on a coroutine, so [`in_coroutine`] is `false` and
//! every caller takes its plain-thread path.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Which readiness a coroutine waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// The fd has data to read (or EOF / an error).
    Readable,
    /// The fd has room to write (or an error).
    Writable,
}

/// True when the caller runs on a coroutine of a [`Runtime`] on this thread.
pub fn in_coroutine() -> bool {
    false
}

/// An fd registered with the current thread's reactor (edge-triggered, both directions).
#[derive(Debug)]
pub struct IoSource {
    _fd: RawFd,
}

impl IoSource {
    /// Registers `fd` with the reactor of the current coroutine's loop.
    pub fn new(fd: RawFd) -> io::Result<IoSource> {
        let _ = fd;
        Err(io::Error::other("not running on a coroutine"))
    }

    /// Parks the current coroutine until the fd may be ready for `interest` or the
    /// deadline passes (`TimedOut`). Wake-ups may be spurious: retry the syscall.
    pub fn wait(&self, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
        let _ = (interest, deadline);
        Err(io::Error::other("not running on a coroutine"))
    }
}

/// Wakes one parked coroutine from any thread (permit semantics, like `Thread::unpark`).
#[derive(Debug, Clone)]
pub struct Waker {
    _private: (),
}

impl Waker {
    /// Makes the coroutine runnable; a wake before its park makes that park return at once.
    pub fn wake(&self) {}
}

/// The current coroutine's waker; `None` on a plain thread.
pub fn current_waker() -> Option<Waker> {
    None
}

/// Parks the current coroutine until woken or until `deadline`.
pub fn park(deadline: Option<Instant>) {
    let _ = deadline;
}

/// Sleeps the current coroutine, or the thread when not on one.
pub fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}
