//! [`Conn::send_file`]: file bodies with `sendfile(2)`.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;

use super::Conn;
use super::stream_io::Limit;
use crate::rt::Interest;
use crate::rt::park;
use crate::sys;

impl Conn {
    /// Sends `len` bytes of `file`, starting at `offset`, with `sendfile(2)`: the kernel
    /// copies from the page cache to the socket, with no pass through user memory.
    /// Buffered output is flushed first. Returns the bytes sent: `len`, or fewer if the
    /// file ends first (the caller decides what a short file means for its framing).
    ///
    /// It blocks like a write — the thread, or only the coroutine: on a coroutine, or
    /// when a write timeout is set, the socket is non-blocking for the call (and blocking
    /// again after it) and each wait for the peer parks or polls. The write timeout
    /// bounds each such wait, and restarts whenever bytes go out, so a large file on a
    /// slow but live link is not cut off. A peer that closed gives `BrokenPipe`, never
    /// a `SIGPIPE` (see the note in `sys/sendfile.rs`). A file `sendfile` cannot read
    /// from (some special files) is copied through a buffer instead.
    pub fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64> {
        self.flush()?;
        if len == 0 {
            return Ok(0);
        }
        match self.sendfile_all(file, offset, len)? {
            Some(sent) => Ok(sent),
            None => self.copy_file(file, offset, len),
        }
    }

    /// The `sendfile` loop; `None` if the kernel refused the file before any byte went.
    fn sendfile_all(&self, file: &File, offset: u64, len: u64) -> io::Result<Option<u64>> {
        let mut position = i64::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        let waits = self.write_timeout.is_some() || crate::rt::in_coroutine();
        let _mode = sys::sendfile::NonBlockingFor::set(self.fd.as_fd(), waits)?;
        let mut limit = Limit::new(None, self.write_timeout);
        let mut sent = 0u64;
        while sent < len {
            let count = usize::try_from(len - sent).unwrap_or(usize::MAX);
            match sys::sendfile::sendfile(self.fd.as_fd(), file.as_fd(), &mut position, count) {
                Ok(0) => break,
                Ok(n) => {
                    sent += n as u64;
                    limit = Limit::new(None, self.write_timeout);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => park::wait_fd(
                    self.fd.as_raw_fd(),
                    &self.registered,
                    Interest::Writable,
                    limit.deadline(),
                )?,
                Err(Errno::EINVAL | Errno::ENOSYS) if sent == 0 => return Ok(None),
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(Some(sent))
    }

    /// `send_file` the slow way, for files `sendfile` refuses: read, then send.
    fn copy_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64> {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < len {
            let want = usize::try_from(len - sent).map_or(buffer.len(), |n| n.min(buffer.len()));
            let n = match file.read_at(&mut buffer[..want], offset + sent) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            self.send_all(&buffer[..n])?;
            sent += n as u64;
        }
        Ok(sent)
    }
}
