//! The self-pipe: a non-blocking pipe whose write end any thread or signal handler may
//! poke to wake a loop blocked in `poll`/`epoll`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;

/// A non-blocking, close-on-exec pipe used only as a wake-up signal.
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
