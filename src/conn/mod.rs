//! [`Conn`]: the one thing a handler sees — a buffered, model-aware stream.
//!
//! `stream_io.rs` reads and writes it (try, then park or poll); `send_file.rs` sends files;
//! `watch.rs` ties waits made for it to its client; `drain.rs` holds the server's drain
//! state as connections see it; `read_buffer.rs` and `write_buffer.rs` lend it buffers
//! only while it has bytes in them.

pub(crate) use drain::{Drain, Idle, IdleOver};

mod drain;
mod read_buffer;
mod send_file;
mod stream_io;
mod watch;
mod write_buffer;

use std::cell::Cell;
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockRef;

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
/// `Handler::finish`). Reads come through [`BufRead`](std::io::BufRead), so protocol parsers can look at
/// what arrived without consuming it.
pub struct Conn {
    /// Set once the socket waited on a coroutine: it is then registered with that
    /// thread's loop and must be deregistered there before it closes.
    registered: Cell<bool>,
    /// The socket.
    fd: OwnedFd,
    /// TCP or Unix, with the peer's address.
    peer: PeerAddr,
    /// Bytes received but not yet consumed: `read_buf[read_pos..read_end]`. Empty (no
    /// allocation) until the first read and whenever given back while idle.
    read_buf: Box<[u8]>,
    read_pos: usize,
    read_end: usize,
    /// The last read returned less than it asked for: the socket held nothing more then,
    /// so anything that arrives later brings a new readiness edge.
    input_drained: bool,
    /// A read returned the end of the stream. A stream socket's end is for good, so
    /// later reads return it without asking the socket again.
    input_ended: bool,
    /// Bytes written but not yet sent. No allocation until the first write and whenever
    /// a flush sent everything (the buffer goes back to `write_buffer`'s spares).
    write_buf: Vec<u8>,
    /// Per-call limits, as `SO_RCVTIMEO`/`SO_SNDTIMEO` would give.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// An absolute limit for reads, e.g. "the whole request head by then".
    read_deadline: Cell<Option<Instant>>,
    /// A read deadline this long after the connection began, not worked out yet: when
    /// it began is asked of the kernel (`TCP_INFO`) only when a read first has to wait.
    read_deadline_after_start: Cell<Option<Duration>>,
    /// The server's drain state (a graceful shutdown).
    drain: Option<Arc<Drain>>,
    /// When this value was made (accepted, or received from another process).
    created: Instant,
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
            read_buf: Box::default(),
            read_pos: 0,
            read_end: 0,
            input_drained: false,
            input_ended: false,
            write_buf: Vec::new(),
            read_timeout: None,
            write_timeout: None,
            read_deadline: Cell::new(None),
            read_deadline_after_start: Cell::new(None),
            drain: None,
            created: Instant::now(),
        }
    }

    /// Lets the server tell this connection that a graceful shutdown has begun.
    pub(crate) fn set_drain_flag(&mut self, drain: Arc<Drain>) {
        self.drain = Some(drain);
    }

    /// True once the server has begun a graceful shutdown: a protocol loop (or a raw
    /// [`Handler`](crate::Handler)) should finish the request in hand, answer it with
    /// `Connection: close`, and return. The HTTP adapter also closes a connection idle
    /// between requests the moment a drain begins.
    pub fn draining(&self) -> bool {
        self.drain.as_ref().is_some_and(|drain| drain.is_draining())
    }

    /// When the connection began, as far as can be known: for TCP, when the kernel
    /// completed the handshake — or last received data, if later — read from
    /// `TCP_INFO`, so time spent in the listen queue, in a model's hand-off queue or on
    /// the way to another process counts; otherwise when this `Conn` was made.
    /// Deadlines for a connection's first request start here, so a connection that
    /// waited for a free worker gets no fresh allowance when one takes it.
    pub fn established_at(&self) -> Instant {
        let now = Instant::now();
        let kernel = match self.peer {
            PeerAddr::Tcp(_) => crate::sys::tcp_info::since_last_data(self.fd.as_fd())
                .and_then(|age| now.checked_sub(age)),
            PeerAddr::Unix(_) => None,
        };
        kernel.map_or(self.created, |kernel| kernel.min(self.created))
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
        self.read_deadline.set(deadline);
        self.read_deadline_after_start.set(None);
    }

    /// Fails every read that would wait past `timeout` after the connection began (see
    /// [`established_at`](Self::established_at)). When it began is asked of the kernel
    /// only once a buffered read has to wait (or at once by a `wait_readable` or a read
    /// straight into a large buffer): most first requests arrive whole in the first
    /// read and never pay for the `getsockopt`.
    pub(crate) fn set_read_deadline_after_start(&mut self, timeout: Duration) {
        self.read_deadline.set(None);
        self.read_deadline_after_start.set(Some(timeout));
    }

    /// The read deadline, working out (once) one set by
    /// [`set_read_deadline_after_start`](Self::set_read_deadline_after_start).
    fn read_deadline(&self) -> Option<Instant> {
        if let Some(timeout) = self.read_deadline_after_start.take() {
            let deadline = crate::deadline::after(self.established_at(), timeout);
            self.read_deadline.set(Some(deadline));
        }
        self.read_deadline.get()
    }

    /// Whether a read deadline waits to be worked out at the first wait.
    fn read_deadline_pending(&self) -> bool {
        self.read_deadline_after_start.get().is_some()
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
        self.reset_on_close();
        drop(self);
    }

    /// Makes the close a reset (`SO_LINGER` 0), as [`abort`](Self::abort) does, for a
    /// connection whose owner closes it later: the peer must not take the close for
    /// the orderly end of what it received.
    pub(crate) fn reset_on_close(&self) {
        let _ = SockRef::from(&self.fd).set_linger(Some(Duration::ZERO));
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
        self.hold_read_buffer();
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
        BUFFER_SIZE
    }

    /// Gives the read buffer back when nothing is buffered, before a wait that may be
    /// long (idle between requests, a handler's long poll): a parked connection then
    /// holds no buffer. The next read takes one again.
    pub(crate) fn release_read_buffer(&mut self) {
        if self.read_pos == self.read_end && !self.read_buf.is_empty() {
            read_buffer::give(std::mem::take(&mut self.read_buf));
            self.read_pos = 0;
            self.read_end = 0;
        }
    }

    /// Makes sure there is a read buffer to read into.
    fn hold_read_buffer(&mut self) {
        if self.read_buf.is_empty() {
            self.read_buf = read_buffer::take();
        }
    }

    /// True while this connection holds a read buffer.
    #[cfg(test)]
    pub(crate) fn holds_read_buffer(&self) -> bool {
        !self.read_buf.is_empty()
    }

    /// True while this connection holds a write buffer.
    #[cfg(test)]
    pub(crate) fn holds_write_buffer(&self) -> bool {
        self.write_buf.capacity() > 0
    }

    /// The output buffer, taken from the spares if this connection holds none.
    fn output(&mut self) -> &mut Vec<u8> {
        if self.write_buf.capacity() == 0 {
            self.write_buf = write_buffer::take();
        }
        &mut self.write_buf
    }
}

impl Drop for Conn {
    /// Deregisters the socket from the coroutine loop it waited on (before the fd
    /// closes, so a reused fd number is never deregistered by mistake), and gives the
    /// buffers back for the next connection.
    fn drop(&mut self) {
        if self.registered.get() {
            crate::rt::forget_fd(self.fd.as_raw_fd());
        }
        if !self.read_buf.is_empty() {
            read_buffer::give(std::mem::take(&mut self.read_buf));
        }
        write_buffer::give(std::mem::take(&mut self.write_buf));
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
