//! The self-pipe: a non-blocking pipe whose write end any thread or signal handler may
//! poke to wake a loop blocked in `poll`/`epoll`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;

use super::fork;

/// A non-blocking, close-on-exec pipe used only as a wake-up signal. It belongs to the
/// process that made it: a child forked from that process closes both ends at once
/// (see [`fork::close_in_child`]).
#[derive(Debug)]
pub(crate) struct SelfPipe {
    /// Read end: a loop polls it for readability.
    read: OwnedFd,
    /// Write end: `notify` writes one byte to it.
    write: OwnedFd,
}

impl SelfPipe {
    /// Creates the pipe, both ends `O_NONBLOCK | O_CLOEXEC`.
    pub(crate) fn new() -> io::Result<SelfPipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        fork::close_in_child(read.as_raw_fd());
        fork::close_in_child(write.as_raw_fd());
        Ok(SelfPipe { read, write })
    }

    /// The fd to poll for readability.
    pub(crate) fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The fd a signal handler writes to.
    pub(crate) fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Wakes the reader. A full pipe already holds a wake-up, so `EAGAIN` is success.
    pub(crate) fn notify(&self) {
        loop {
            match nix::unistd::write(self.write.as_fd(), &[1u8]) {
                Err(Errno::EINTR) => continue,
                _ => return,
            }
        }
    }

    /// Empties the pipe so the next `poll` blocks until the next `notify`.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(self.read.as_fd(), &mut buf) {
                Ok(n) if n == buf.len() => continue,
                Err(Errno::EINTR) => continue,
                _ => return,
            }
        }
    }
}

impl Drop for SelfPipe {
    fn drop(&mut self) {
        fork::forget_in_child(self.read.as_raw_fd());
        fork::forget_in_child(self.write.as_raw_fd());
    }
}
