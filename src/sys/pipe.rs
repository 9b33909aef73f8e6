//! The self-pipe: a non-blocking pipe whose write end any thread or signal handler may
//! poke to wake a loop blocked in `poll`/`epoll`.

use std::io;
use std::mem::ManuallyDrop;
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
    read: ManuallyDrop<OwnedFd>,
    /// Write end: `notify` writes one byte to it.
    write: ManuallyDrop<OwnedFd>,
    /// The process that made it, the only one whose drop closes it.
    owner: u32,
}

impl SelfPipe {
    /// Creates the pipe, both ends `O_NONBLOCK | O_CLOEXEC`.
    pub(crate) fn new() -> io::Result<SelfPipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        fork::close_in_child(read.as_raw_fd());
        fork::close_in_child(write.as_raw_fd());
        Ok(SelfPipe {
            read: ManuallyDrop::new(read),
            write: ManuallyDrop::new(write),
            owner: std::process::id(),
        })
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
        if std::process::id() != self.owner {
            // A forked child's copy: `after_fork_in_child` closed both ends already,
            // and the numbers may name the child's own files by now (a new pipe made
            // to replace this one takes the lowest free numbers: these).
            return;
        }
        fork::forget_in_child(self.read.as_raw_fd());
        fork::forget_in_child(self.write.as_raw_fd());
        // SAFETY: each end is dropped once, here, in the process that owns it.
        unsafe {
            ManuallyDrop::drop(&mut self.read);
            ManuallyDrop::drop(&mut self.write);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SelfPipe;

    /// Whether `fd` is open in this process.
    fn is_open(fd: i32) -> bool {
        nix::fcntl::fcntl(super::super::borrow_fd(fd), nix::fcntl::FcntlArg::F_GETFD).is_ok()
    }

    #[test]
    fn a_copy_dropped_in_another_process_closes_nothing() {
        // As in a forked child: the ends were closed at the fork and the numbers
        // reused; dropping the inherited copy must not close the new files.
        let mut inherited = SelfPipe::new().unwrap();
        inherited.owner = 0;
        let (read, write) = (inherited.read_fd(), inherited.write_fd());
        drop(inherited);
        assert!(
            is_open(read) && is_open(write),
            "an inherited copy closed fds"
        );
        // SAFETY: this test owns both fds, which the dropped copy left open.
        unsafe {
            libc::close(read);
            libc::close(write);
        }
    }
}
