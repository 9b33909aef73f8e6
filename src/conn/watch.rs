//! Tying waits to a [`Conn`]: a wait made for a connection ends when its client leaves.

use std::io;
use std::os::fd::AsRawFd;

use super::Conn;
use crate::sync::watch;

impl Conn {
    /// Runs `f` with this connection watched: a [`Broadcast::wait`] or
    /// [`Channel::recv`] inside it (here, or in the master's hub under a process-based
    /// model) ends with [`WaitError::ClientGone`] within moments of the client closing
    /// or resetting the connection, stops counting as a waiter at once, and frees its
    /// thread, coroutine or process. Pipelined bytes the client sends meanwhile are no
    /// hang-up; a half-close (the client shut down its sending side) is.
    ///
    /// The HTTP and SCGI adapters watch every request for you; a raw
    /// [`Handler`](crate::Handler) opts in with this:
    ///
    /// ```no_run
    /// use std::io::{self, Write};
    /// use mixserve::sync::{Broadcast, WaitError};
    /// use mixserve::Conn;
    ///
    /// fn serve(conn: &mut Conn, news: &Broadcast<u64>) -> io::Result<()> {
    ///     match conn.watch(|| news.wait()) {
    ///         Ok(value) => writeln!(conn, "{value}"),
    ///         Err(WaitError::ClientGone) => Ok(()), // nobody to answer
    ///         Err(error) => writeln!(conn, "{error}"),
    ///     }
    /// }
    /// ```
    ///
    /// [`Broadcast::wait`]: crate::sync::Broadcast::wait
    /// [`Channel::recv`]: crate::sync::Channel::recv
    /// [`WaitError::ClientGone`]: crate::sync::WaitError::ClientGone
    pub fn watch<R>(&self, f: impl FnOnce() -> R) -> R {
        self.watch_reporting(f).0
    }

    /// [`watch`](Self::watch), also saying whether a wait saw the client leave.
    pub(crate) fn watch_reporting<R>(&self, f: impl FnOnce() -> R) -> (R, bool) {
        let guard = self.start_watch();
        let result = f();
        (result, guard.end())
    }

    /// Watches this connection until the guard drops — for code that must lend the
    /// connection out meanwhile (a streaming body reads from it).
    pub(crate) fn start_watch(&self) -> watch::WatchGuard {
        // On a coroutine the watch registers the socket with the loop: deregister it
        // when this connection drops.
        self.note_loop_registration();
        watch::watching(self.as_raw_fd())
    }

    /// Waits until a reply is readable on this (hub) connection; during a watched wait
    /// fails with `ConnectionAborted` when the client leaves first. Otherwise (a send,
    /// a count, no watch) it returns at once. At `deadline` it returns too, and the
    /// read that follows times out.
    pub(crate) fn wait_reply_unless_client_left(
        &self,
        deadline: Option<std::time::Instant>,
    ) -> io::Result<()> {
        self.note_loop_registration();
        watch::wait_readable(self.as_raw_fd(), deadline)
    }

    fn note_loop_registration(&self) {
        if !self.registered.get() && crate::rt::in_coroutine() {
            self.registered.set(true);
        }
    }
}
