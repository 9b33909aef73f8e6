//! [`Conn`]: the one thing a handler sees — a buffered, model-aware stream.

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, send};
use socket2::SockRef;

use crate::rt::Interest;
use crate::sync::park;
use crate::sys;

/// Size of the read buffer, and the largest write that is buffered rather than sent at once.
const BUFFER_SIZE: usize = 16 * 1024;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix-domain peer; usually unnamed.
    Unix(Option<PathBuf>),
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => write!(f, "{addr}"),
            PeerAddr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            PeerAddr::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

/// A connection as a handler sees it: buffered reads and writes on a socket, which
/// block the thread under thread- and process-based models and park the coroutine under
/// the scheduled one. The handler's code is the same either way.
///
/// A `Conn` is `Send`, so a model may hand it to another thread before it is served.
/// Once it has waited on a coroutine it is registered with that coroutine's loop: keep
/// it on that thread until it is dropped.
///
/// Writes are buffered: call [`flush`](Write::flush) (the server also flushes after
/// `Handler::finish`). Reads come through [`BufRead`], so protocol parsers can look at
/// what arrived without consuming it.
pub struct Conn {
    /// Set once the socket waited on a coroutine: it is then registered with that
    /// thread's loop and must be deregistered there before it closes.
    registered: Cell<bool>,
    /// The socket.
    fd: OwnedFd,
    /// TCP or Unix, with the peer's address.
    peer: PeerAddr,
    /// Bytes received but not yet consumed: `read_buf[read_pos..read_end]`.
    read_buf: Box<[u8]>,
    read_pos: usize,
    read_end: usize,
    /// Bytes written but not yet sent.
    write_buf: Vec<u8>,
    /// Per-call limits, as `SO_RCVTIMEO`/`SO_SNDTIMEO` would give.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// An absolute limit for reads, e.g. "the whole request head by then".
    read_deadline: Option<Instant>,
    /// Set by the server when it shuts down gracefully.
    drain: Option<Arc<AtomicBool>>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("fd", &self.fd.as_raw_fd())
            .field("peer", &self.peer)
            .field("buffered_in", &(self.read_end - self.read_pos))
            .field("buffered_out", &self.write_buf.len())
            .finish()
    }
}

impl Conn {
    /// Wraps an accepted TCP stream.
    pub fn from_tcp(stream: TcpStream) -> io::Result<Conn> {
        let peer = PeerAddr::Tcp(stream.peer_addr()?);
        Ok(Conn::new(OwnedFd::from(stream), peer))
    }

    /// Wraps a connected Unix-domain stream.
    pub fn from_unix(stream: UnixStream) -> io::Result<Conn> {
        let peer = PeerAddr::Unix(stream.peer_addr()?.as_pathname().map(PathBuf::from));
        Ok(Conn::new(OwnedFd::from(stream), peer))
    }

    /// Wraps a connected socket fd whose peer is already known.
    pub fn from_fd(fd: OwnedFd, peer: PeerAddr) -> Conn {
        Conn::new(fd, peer)
    }

    fn new(fd: OwnedFd, peer: PeerAddr) -> Conn {
        Conn {
            registered: Cell::new(false),
            fd,
            peer,
            read_buf: vec![0; BUFFER_SIZE].into_boxed_slice(),
            read_pos: 0,
            read_end: 0,
            write_buf: Vec::new(),
            read_timeout: None,
            write_timeout: None,
            read_deadline: None,
            drain: None,
        }
    }

    /// Lets the server tell this connection that a graceful shutdown has begun.
    pub(crate) fn set_drain_flag(&mut self, flag: Arc<AtomicBool>) {
        self.drain = Some(flag);
    }

    /// True once the server has begun a graceful shutdown: a protocol loop should finish
    /// the request in hand, answer it with `Connection: close`, and return.
    pub fn draining(&self) -> bool {
        self.drain
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> &PeerAddr {
        &self.peer
    }

    /// The local address of a TCP connection (`None` for Unix-domain ones).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        SockRef::from(&self.fd).local_addr().ok()?.as_socket()
    }

    /// Limits each read to `timeout` (`None`: wait for ever); a read that waits longer
    /// fails with `TimedOut`.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Limits each write to `timeout`, as [`set_read_timeout`](Self::set_read_timeout).
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// Fails every read that would wait past `deadline` with `TimedOut`.
    pub fn set_read_deadline(&mut self, deadline: Option<Instant>) {
        self.read_deadline = deadline;
    }

    /// Turns Nagle's algorithm off (`true`) or on; a no-op on Unix-domain sockets.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self.peer {
            PeerAddr::Tcp(_) => SockRef::from(&self.fd).set_tcp_nodelay(nodelay),
            PeerAddr::Unix(_) => Ok(()),
        }
    }

    /// Holds back partial frames until uncorked (`TCP_CORK`); a no-op on Unix sockets.
    pub fn set_cork(&self, cork: bool) -> io::Result<()> {
        match self.peer {
            PeerAddr::Tcp(_) => SockRef::from(&self.fd).set_tcp_cork(cork),
            PeerAddr::Unix(_) => Ok(()),
        }
    }

    /// Closes the connection with a reset (`SO_LINGER` 0) instead of an orderly FIN,
    /// dropping anything unsent.
    pub fn abort(self) {
        let _ = SockRef::from(&self.fd).set_linger(Some(Duration::ZERO));
        drop(self);
    }

    /// Shuts down one or both directions of the socket (buffered output is flushed first
    /// when the write side closes).
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Read {
            self.flush()?;
        }
        SockRef::from(&self.fd).shutdown(how)
    }

    /// Bytes already received and buffered, not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.read_buf[self.read_pos..self.read_end]
    }

    /// Reads more bytes into the buffer, keeping what is unconsumed; returns how many
    /// arrived (0 at end of stream, or when the buffer is full).
    pub fn fill_more(&mut self) -> io::Result<usize> {
        if self.read_pos > 0 {
            self.read_buf.copy_within(self.read_pos..self.read_end, 0);
            self.read_end -= self.read_pos;
            self.read_pos = 0;
        }
        if self.read_end == self.read_buf.len() {
            return Ok(0);
        }
        let end = self.read_end;
        let n = self.recv_raw_into(end)?;
        self.read_end += n;
        Ok(n)
    }

    /// Capacity of the read buffer: a protocol head must fit in it.
    pub fn buffer_capacity(&self) -> usize {
        self.read_buf.len()
    }

    fn recv_raw_into(&mut self, start: usize) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        let deadline = earliest(self.read_deadline, self.read_timeout);
        let (buf, registered) = (&mut self.read_buf[start..], &self.registered);
        recv_raw(fd, buf, registered, deadline)
    }

    fn send_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        let deadline = self.write_timeout.map(|t| Instant::now() + t);
        while !data.is_empty() {
            let n = send_raw(fd, data, &self.registered, deadline)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Waits until the socket is readable (data, EOF or error) or the read deadline.
    pub fn wait_readable(&self) -> io::Result<()> {
        let deadline = earliest(self.read_deadline, self.read_timeout);
        park::wait_fd(
            self.fd.as_raw_fd(),
            &self.registered,
            Interest::Readable,
            deadline,
        )
    }

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
        let fresh_deadline = || self.write_timeout.map(|t| Instant::now() + t);
        let mut deadline = fresh_deadline();
        let mut sent = 0u64;
        while sent < len {
            let count = usize::try_from(len - sent).unwrap_or(usize::MAX);
            match sys::sendfile::sendfile(self.fd.as_fd(), file.as_fd(), &mut position, count) {
                Ok(0) => break,
                Ok(n) => {
                    sent += n as u64;
                    deadline = fresh_deadline();
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => park::wait_fd(
                    self.fd.as_raw_fd(),
                    &self.registered,
                    Interest::Writable,
                    deadline,
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

fn earliest(deadline: Option<Instant>, timeout: Option<Duration>) -> Option<Instant> {
    let from_timeout = timeout.map(|t| Instant::now() + t);
    match (deadline, from_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One `recv`: blocking when nothing limits it on a plain thread; otherwise a
/// non-blocking try, then a wait (park or `poll`) on `EAGAIN`.
fn recv_raw(
    fd: RawFd,
    buf: &mut [u8],
    registered: &Cell<bool>,
    deadline: Option<Instant>,
) -> io::Result<usize> {
    let blocking = deadline.is_none() && !crate::rt::in_coroutine();
    let flags = if blocking {
        MsgFlags::empty()
    } else {
        MsgFlags::MSG_DONTWAIT
    };
    loop {
        match recv(fd, buf, flags) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => park::wait_fd(fd, registered, Interest::Readable, deadline)?,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// One `send` with `MSG_NOSIGNAL` (a closed peer is `EPIPE`, never `SIGPIPE`).
fn send_raw(
    fd: RawFd,
    data: &[u8],
    registered: &Cell<bool>,
    deadline: Option<Instant>,
) -> io::Result<usize> {
    let blocking = deadline.is_none() && !crate::rt::in_coroutine();
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if !blocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    loop {
        match send(fd, data, flags) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => park::wait_fd(fd, registered, Interest::Writable, deadline)?,
            Err(errno) => return Err(errno.into()),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read_pos == self.read_end && buf.len() >= self.read_buf.len() {
            let fd = self.fd.as_raw_fd();
            let deadline = earliest(self.read_deadline, self.read_timeout);
            return recv_raw(fd, buf, &self.registered, deadline);
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
            self.read_end = self.recv_raw_into(0)?;
        }
        Ok(&self.read_buf[self.read_pos..self.read_end])
    }

    fn consume(&mut self, amount: usize) {
        self.read_pos = (self.read_pos + amount).min(self.read_end);
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
            self.write_buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.write_buf);
        let result = self.send_all(&pending);
        self.write_buf = pending;
        self.write_buf.clear();
        result
    }
}

impl Drop for Conn {
    /// Deregisters the socket from the coroutine loop it waited on (before the fd
    /// closes, so a reused fd number is never deregistered by mistake).
    fn drop(&mut self) {
        if self.registered.get() {
            crate::rt::forget_fd(self.fd.as_raw_fd());
        }
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
