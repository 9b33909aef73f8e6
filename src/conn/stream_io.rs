//! Reading and writing a [`Conn`]: one non-blocking try, then a wait that parks the
//! coroutine or blocks the thread; buffering on top.

use std::cell::Cell;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, send};

use super::{BUFFER_SIZE, Conn, write_buffer};
use crate::rt::Interest;
#[cfg(doc)]
use crate::rt::clock;
use crate::rt::park;

impl Conn {
    /// One `recv` into `read_buf[start..]`, as [`recv_raw`] does. While it waits with
    /// nothing buffered (`start` 0 and nothing unconsumed) it holds no read buffer: a
    /// client that connects and stays silent costs no buffer.
    pub(super) fn recv_raw_into(&mut self, start: usize) -> io::Result<usize> {
        if self.input_ended {
            return Ok(0);
        }
        self.hold_read_buffer();
        let fd = self.fd.as_raw_fd();
        let mut limit = Limit::new(self.read_deadline.get(), self.read_timeout);
        // A deadline still to be worked out limits the read too: it must not block.
        let flags = if self.read_deadline_pending() {
            MsgFlags::MSG_DONTWAIT
        } else {
            recv_flags(&limit)
        };
        loop {
            match recv_once(fd, &mut self.read_buf[start..], flags) {
                Err(Errno::EAGAIN) => {
                    if start == 0 {
                        self.release_read_buffer();
                    }
                    if self.read_deadline_pending() {
                        // The first wait: the limit is made before any wait used it.
                        limit = Limit::new(self.read_deadline(), self.read_timeout);
                    }
                    park::wait_fd(fd, &self.registered, Interest::Readable, limit.deadline())?;
                    self.hold_read_buffer();
                }
                Ok(n) => {
                    self.note_read(n, self.read_buf.len() - start);
                    return Ok(n);
                }
                Err(errno) => return Err(errno.into()),
            }
        }
    }

    /// One non-blocking `recv` into the empty read buffer: `true` when bytes (or the
    /// end of the stream) arrived, `false` on `EAGAIN` (the buffer is given back).
    pub(super) fn try_fill(&mut self) -> io::Result<bool> {
        if self.read_pos != self.read_end {
            return Ok(true);
        }
        self.read_pos = 0;
        if self.input_ended {
            self.read_end = 0;
            return Ok(true);
        }
        self.hold_read_buffer();
        match recv_once(
            self.fd.as_raw_fd(),
            &mut self.read_buf,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => {
                self.read_end = n;
                self.note_read(n, self.read_buf.len());
                Ok(true)
            }
            Err(Errno::EAGAIN) => {
                self.read_end = 0;
                // Drained: what arrives next brings an edge, so a wait parks at once
                // instead of asking the socket again.
                self.input_drained = true;
                self.release_read_buffer();
                Ok(false)
            }
            Err(errno) => Err(errno.into()),
        }
    }

    /// Records whether a read of `n` bytes into room for `asked` drained the socket;
    /// if it did, the loop's leftover read readiness is cleared, so the next wait parks
    /// instead of coming back for an `EAGAIN` (an edge arrives with the next bytes).
    /// No bytes into some room is the end of the stream, remembered.
    fn note_read(&mut self, n: usize, asked: usize) {
        self.input_drained = n < asked;
        self.input_ended |= n == 0 && asked > 0;
        if self.input_drained && n > 0 && self.registered.get() {
            crate::rt::clear_readable(self.fd.as_raw_fd());
        }
    }

    /// Sends all of `data`. The write timeout runs between bytes going out, not over
    /// the whole call (nginx's `send_timeout`, and `send_file`'s): a large answer to a
    /// slow but live client is not cut off.
    pub(super) fn send_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        while !data.is_empty() {
            let mut limit = Limit::new(None, self.write_timeout);
            let n = send_raw(fd, data, &self.registered, &mut limit)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Waits until the socket is readable (data, EOF or error) or the read deadline.
    pub fn wait_readable(&self) -> io::Result<()> {
        park::wait_fd(
            self.fd.as_raw_fd(),
            &self.registered,
            Interest::Readable,
            Limit::new(self.read_deadline(), self.read_timeout).deadline(),
        )
    }
}

/// One `recv`: blocking when nothing limits it on a plain thread; otherwise a
/// non-blocking try, then a wait (park or `poll`) on `EAGAIN`.
fn recv_raw(
    fd: RawFd,
    buf: &mut [u8],
    registered: &Cell<bool>,
    limit: &mut Limit,
) -> io::Result<usize> {
    let flags = recv_flags(limit);
    loop {
        match recv_once(fd, buf, flags) {
            Err(Errno::EAGAIN) => {
                park::wait_fd(fd, registered, Interest::Readable, limit.deadline())?
            }
            result => return result.map_err(io::Error::from),
        }
    }
}

/// Blocking when nothing limits the read on a plain thread, non-blocking otherwise.
fn recv_flags(limit: &Limit) -> MsgFlags {
    if !limit.is_limited() && !crate::rt::in_coroutine() {
        MsgFlags::empty()
    } else {
        MsgFlags::MSG_DONTWAIT
    }
}

/// One `recv`, retried on `EINTR`.
fn recv_once(fd: RawFd, buf: &mut [u8], flags: MsgFlags) -> Result<usize, Errno> {
    loop {
        match recv(fd, buf, flags) {
            Err(Errno::EINTR) => continue,
            result => return result,
        }
    }
}

/// The limit of one read or write: a fixed deadline and a timeout that starts when the
/// call first has to wait, whichever ends first.
///
/// The timeout becomes a deadline only then, on the real clock: most calls never wait
/// and so read no clock, and the loop clock ([`crate::rt::clock`]) is behind by all the coroutine
/// did since it was resumed — after a slow handler, longer than the timeout, which
/// would make the wait's deadline one already past.
pub(super) struct Limit {
    /// The deadline: the fixed one, then the earlier of it and the timeout's.
    deadline: Option<Instant>,
    /// The timeout, until the first wait turns it into a deadline.
    timeout: Option<Duration>,
}

impl Limit {
    /// A limit of `deadline` and of `timeout` from the first wait.
    pub(super) fn new(deadline: Option<Instant>, timeout: Option<Duration>) -> Limit {
        Limit { deadline, timeout }
    }

    /// The deadline of a wait starting now: every wait after the first shares it.
    pub(super) fn deadline(&mut self) -> Option<Instant> {
        if let Some(timeout) = self.timeout.take() {
            let from_now = crate::deadline::from_now(timeout);
            self.deadline = Some(self.deadline.map_or(from_now, |fixed| fixed.min(from_now)));
        }
        self.deadline
    }

    fn is_limited(&self) -> bool {
        self.deadline.is_some() || self.timeout.is_some()
    }
}

/// One `send` with `MSG_NOSIGNAL` (a closed peer is `EPIPE`, never `SIGPIPE`).
fn send_raw(
    fd: RawFd,
    data: &[u8],
    registered: &Cell<bool>,
    limit: &mut Limit,
) -> io::Result<usize> {
    let blocking = !limit.is_limited() && !crate::rt::in_coroutine();
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if !blocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    loop {
        match send(fd, data, flags) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                park::wait_fd(fd, registered, Interest::Writable, limit.deadline())?
            }
            Err(errno) => return Err(errno.into()),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read_pos == self.read_end && buf.len() >= BUFFER_SIZE {
            if self.input_ended {
                return Ok(0);
            }
            let fd = self.fd.as_raw_fd();
            let mut limit = Limit::new(self.read_deadline(), self.read_timeout);
            let n = recv_raw(fd, buf, &self.registered, &mut limit)?;
            self.note_read(n, buf.len());
            return Ok(n);
        }
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Conn {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.read_pos == self.read_end {
            self.read_pos = 0;
            self.read_end = 0;
            self.read_end = self.recv_raw_into(0)?;
        }
        Ok(&self.read_buf[self.read_pos..self.read_end])
    }

    fn consume(&mut self, amount: usize) {
        self.read_pos = (self.read_pos + amount).min(self.read_end);
    }
}

impl Conn {
    /// Lets `append` add bytes straight to the output buffer (sent by the next flush),
    /// for a writer that builds a message piece by piece: no buffer of its own, no copy.
    /// What is buffered already is sent first if the buffer is full.
    pub(crate) fn append_to_output(&mut self, append: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        if self.write_buf.len() >= BUFFER_SIZE {
            self.flush()?;
        }
        append(self.output());
        Ok(())
    }
}

impl Write for Conn {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.write_buf.len() + data.len() > BUFFER_SIZE {
            self.flush()?;
        }
        if data.len() >= BUFFER_SIZE {
            self.send_all(data)?;
        } else {
            self.output().extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        // Sent or not (an error ends the connection), the bytes are done with: the
        // buffer goes back to the spares.
        let pending = std::mem::take(&mut self.write_buf);
        let result = self.send_all(&pending);
        write_buffer::give(pending);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, Write};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use crate::Conn;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_deadline_after_the_start_is_worked_out_only_when_a_read_waits() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let before = Instant::now();
        let mut conn = Conn::from_unix(server).unwrap();
        let after = Instant::now();
        conn.set_read_deadline_after_start(HOUR);
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        assert_eq!(conn.fill_buf().unwrap(), b"GET / HTTP/1.1\r\n");
        assert!(conn.read_deadline_pending(), "a read that did not wait");
        let deadline = conn.read_deadline().expect("a deadline");
        assert!(!conn.read_deadline_pending());
        // From when the connection began (for a Unix socket, when the `Conn` was made).
        assert!(before + HOUR <= deadline && deadline <= after + HOUR);
        conn.set_read_deadline(None);
        assert_eq!(conn.read_deadline(), None);
    }

    #[test]
    fn a_read_that_waits_works_out_the_deadline_after_the_start() {
        let (_client, server) = UnixStream::pair().unwrap();
        let mut conn = Conn::from_unix(server).unwrap();
        // Already past when worked out: the first read that would wait times out.
        conn.set_read_deadline_after_start(Duration::ZERO);
        let error = conn.fill_buf().unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(!conn.read_deadline_pending());
    }
}
