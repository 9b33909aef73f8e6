//! [`Handler`]: what to do with one connection, and [`MakeHandler`], which makes one
//! handler per connection.

use std::io;
use std::time::Duration;

use crate::conn::Conn;

/// What to do with one connection — the socketserver `BaseRequestHandler`.
///
/// The server makes a fresh handler for every connection (through [`MakeHandler`]) and
/// calls, in order, [`setup`](Handler::setup), [`handle`](Handler::handle) and
/// [`finish`](Handler::finish); `finish` runs even when `handle` fails, then the server
/// flushes and closes the connection. Under every model the handler runs on one thread
/// from start to end, so it may keep per-connection state in `self`: on one coroutine
/// under `Scheduled`, except that one which implements
/// [`handle_until_idle`](Handler::handle_until_idle) goes on, after an idle wait, on
/// another coroutine of the same thread.
///
/// A handler writes ordinary blocking code: reads and writes on [`Conn`] and waits on the
/// crate's shared objects block the thread, or park the coroutine under `Scheduled`.
///
/// ```
/// use std::io::{self, BufRead, Write};
/// use mixserve::{Conn, Handler};
///
/// /// Echoes lines back, upper-cased.
/// struct Shout;
///
/// impl Handler for Shout {
///     fn handle(&mut self, conn: &mut Conn) -> io::Result<()> {
///         let mut line = String::new();
///         while conn.read_line(&mut line)? > 0 {
///             conn.write_all(line.to_uppercase().as_bytes())?;
///             conn.flush()?;
///             line.clear();
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Handler {
    /// Runs before `handle`; an error skips `handle` (but not `finish`).
    fn setup(&mut self, conn: &mut Conn) -> io::Result<()> {
        let _ = conn;
        Ok(())
    }

    /// Serves the connection.
    fn handle(&mut self, conn: &mut Conn) -> io::Result<()>;

    /// Runs after `handle`, even when it failed.
    fn finish(&mut self, conn: &mut Conn) -> io::Result<()> {
        let _ = conn;
        Ok(())
    }

    /// Serves the connection as [`handle`](Handler::handle) does, but may stop early,
    /// between two exchanges, where it would only wait for the client's next bytes:
    /// it returns [`Handled::Idle`] then. Models that can hold a waiting connection
    /// more cheaply than a blocked handler call this instead of `handle`: `Scheduled`
    /// keeps such a connection as an epoll entry and a timer, without a coroutine
    /// stack, as nginx keeps a keep-alive connection. The HTTP adapter implements it;
    /// the default serves the whole connection with `handle`.
    ///
    /// After `Idle(timeout)` the server sends what the handler wrote, waits for the
    /// client, and calls this again once bytes are buffered (or the client closed its
    /// side: a read then returns 0). If `timeout` passes first, or the server begins
    /// to drain, it calls [`finish`](Handler::finish) and closes the connection
    /// instead. Return `Idle` only where a client may rightly find the connection
    /// closed: nothing of a request read, nothing owed to it.
    fn handle_until_idle(&mut self, conn: &mut Conn) -> io::Result<Handled> {
        self.handle(conn).map(|()| Handled::Done)
    }
}

/// What [`Handler::handle_until_idle`] did with the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handled {
    /// It is served: `finish` comes next, then the close.
    Done,
    /// It waits, for at most this long, for the client's next bytes.
    Idle(Duration),
}

/// Makes one [`Handler`] per connection. Shared by every thread, process and coroutine
/// of a server, so it is `Send + Sync`; the handlers it makes need not be.
///
/// Any `Fn() -> H` closure is a `MakeHandler`.
pub trait MakeHandler: Send + Sync + 'static {
    /// The handler type made.
    type Handler: Handler;

    /// Makes the handler for the next connection.
    fn make_handler(&self) -> Self::Handler;

    /// Answers a connection the server cannot serve now: every worker is blocked and
    /// no more can be added. The default says nothing (the connection just closes);
    /// the HTTP adapter answers `503 Service Unavailable`.
    fn reject(&self, conn: &mut Conn) {
        let _ = conn;
    }
}

impl<F, H> MakeHandler for F
where
    F: Fn() -> H + Send + Sync + 'static,
    H: Handler,
{
    type Handler = H;

    fn make_handler(&self) -> H {
        self()
    }
}

/// A [`Handler`] made from a closure that serves the whole connection.
///
/// ```
/// use std::io::Write;
/// use mixserve::handler::from_fn;
///
/// let make = || from_fn(|conn: &mut mixserve::Conn| conn.write_all(b"hi\n"));
/// # let _ = make;
/// ```
pub fn from_fn<F>(f: F) -> FnHandler<F>
where
    F: FnMut(&mut Conn) -> io::Result<()>,
{
    FnHandler(f)
}

/// The handler [`from_fn`] makes.
#[derive(Debug, Clone)]
pub struct FnHandler<F>(F);

impl<F> Handler for FnHandler<F>
where
    F: FnMut(&mut Conn) -> io::Result<()>,
{
    fn handle(&mut self, conn: &mut Conn) -> io::Result<()> {
        (self.0)(conn)
    }
}
