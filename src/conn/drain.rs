//! [`Drain`]: a server's graceful stop as its connections see it — a flag for "answer
//! with `Connection: close`", and a pipe that becomes readable (and stays so) when the
//! drain begins, so a connection idle between requests wakes and closes at once.
//! Each process has its own pipe: a forked worker drains when its own server does.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::Conn;
use crate::sync::lock;
use crate::sys::pipe::SelfPipe;

/// The drain state of one server, shared by its loop and its connections.
///
/// The bell is per process, made when the process starts serving ([`prepare`]) or on
/// first use: a worker forked from the server's process inherits this value, and
/// ringing the inherited pipe would wake (and close the idle connections of) every
/// process of the pool.
///
/// [`prepare`]: Drain::prepare
#[derive(Debug, Default)]
pub(crate) struct Drain {
    /// Set when the drain begins.
    flag: AtomicBool,
    /// This process's bell and its pid: written once when the drain begins, emptied
    /// only by `reset`.
    bell: Mutex<Option<(u32, Arc<SelfPipe>)>>,
}

impl Drain {
    pub(crate) fn new() -> Drain {
        Drain::default()
    }

    /// Makes this process's bell now, not at the first connection that waits idle, so
    /// the process's open files do not change while it serves. `None` from the pipe
    /// (out of fds) is left to the first use, which tries again.
    pub(crate) fn prepare(&self) {
        let _ = self.bell();
    }

    /// Begins the drain: the flag, then the bell.
    pub(crate) fn begin(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(bell) = self.bell() {
            bell.notify();
        }
    }

    /// Sets the flag alone, from a signal handler (async-signal-safe: one atomic
    /// store); the handler rings the bell itself, through [`bell_fd`](Self::bell_fd).
    pub(crate) fn mark(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// The write end of this process's bell, made now if needed, for a signal handler
    /// to ring (a `write(2)`); `None` if no pipe could be made.
    pub(crate) fn bell_fd(&self) -> Option<std::os::fd::RawFd> {
        self.bell().map(|bell| bell.write_fd())
    }

    /// The read end of this process's bell (a test looks whether it rang).
    #[cfg(test)]
    pub(crate) fn bell_read_fd(&self) -> std::os::fd::RawFd {
        self.bell().map_or(-1, |bell| bell.read_fd())
    }

    /// Ends it (the server may serve again).
    pub(crate) fn reset(&self) {
        self.flag.store(false, Ordering::SeqCst);
        if let Some(bell) = self.bell() {
            bell.drain();
        }
    }

    /// True once the drain began in this process. A relaxed load: what a drain must
    /// not miss (an idle connection) is woken after the flag is set, by the bell or by
    /// [`rt::wake_idle`](crate::rt::wake_idle), and both order the store before it.
    pub(crate) fn is_draining(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// This process's bell (`None` if no pipe could be made: idle connections then
    /// wait out their timeout).
    fn bell(&self) -> Option<Arc<SelfPipe>> {
        let pid = std::process::id();
        let mut bell = lock(&self.bell);
        if bell.as_ref().is_none_or(|(owner, _)| *owner != pid) {
            *bell = SelfPipe::new().ok().map(|pipe| (pid, Arc::new(pipe)));
        }
        bell.as_ref().map(|(_, pipe)| Arc::clone(pipe))
    }
}

/// How long after its establishment a connection that has not sent its first request
/// is still waited for once a drain began (see [`Conn::wait_first_request`]): a few
/// round trips of a slow link.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// How waiting for the next request on an idle connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Bytes (or the end of the stream) arrived.
    Request,
    /// The server began draining: close without a word.
    Draining,
}

/// How an idle wait that holds no stack ended (see [`Conn::idle_over`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleOver {
    /// Bytes (or the end of the stream) are buffered: serve them.
    Input,
    /// The timeout passed, or the server began to drain: close without a word.
    Close,
    /// A spurious wake: wait again, this long at most.
    Again(Duration),
}

impl Conn {
    /// Waits, between requests, until the client sends something, the server begins to
    /// drain, or `timeout` has passed (`TimedOut`). Without a drain state it only waits
    /// for input. The timeout runs from the call (the end of the answer before), as
    /// near as the wait can tell.
    ///
    /// On a coroutine this costs no syscall beyond the wait itself, nor a clock read:
    /// the drain flag is an atomic load, a drain that begins wakes every idle connection
    /// of the loop ([`rt::wake_idle`](crate::rt::wake_idle)), and the loop arms the
    /// timeout from its reading after the park ([`rt::IdleLimit`](crate::rt::IdleLimit)).
    /// On a plain thread it polls the socket and the drain's bell.
    pub(crate) fn wait_idle(&mut self, timeout: Duration) -> io::Result<Idle> {
        if crate::rt::in_coroutine() {
            return self.wait_idle_parked(crate::rt::IdleLimit::Timeout(timeout));
        }
        self.wait_idle_polling(crate::deadline::from_now(timeout))
    }

    /// Waits, before the first request, as [`wait_idle`](Self::wait_idle) does between
    /// requests, until the read deadline (set by `set_read_deadline_after_start`: the
    /// header timeout from the connection's establishment). A client that connected and
    /// sent nothing (a browser's speculative connection) is no request in flight: once
    /// a drain begins it is closed, [`FIRST_REQUEST_GRACE`] after its establishment,
    /// instead of holding the stop for its whole header timeout. The grace serves a
    /// request still on its way (a client that just connected, during a rolling
    /// restart), which closing at once would lose. Input already there costs one
    /// `recv`, and no clock or deadline is worked out.
    pub(crate) fn wait_first_request(&mut self) -> io::Result<Idle> {
        if self.try_fill()? {
            return Ok(Idle::Request);
        }
        let deadline = self
            .read_deadline()
            .unwrap_or_else(|| crate::deadline::from_now(Duration::MAX));
        let waited = if crate::rt::in_coroutine() {
            self.wait_idle_parked(crate::rt::IdleLimit::Deadline(deadline))?
        } else {
            self.wait_idle_polling(deadline)?
        };
        if waited == Idle::Request {
            return Ok(Idle::Request);
        }
        let grace = crate::deadline::after(self.established_at(), FIRST_REQUEST_GRACE);
        let grace = grace.min(deadline);
        loop {
            if self.try_fill()? {
                return Ok(Idle::Request);
            }
            match self.wait_until_readable(grace) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                    return Ok(Idle::Draining);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// [`wait_idle`](Self::wait_idle) on a plain thread, until `deadline`.
    fn wait_idle_polling(&mut self, deadline: Instant) -> io::Result<Idle> {
        let Some((drain, bell)) = self
            .drain
            .as_ref()
            .and_then(|drain| Some((drain, drain.bell()?)))
        else {
            self.wait_until_readable(deadline)?;
            return Ok(Idle::Request);
        };
        let (socket, bell) = (self.as_raw_fd(), bell.read_fd());
        loop {
            if drain.is_draining() {
                return Ok(Idle::Draining);
            }
            if Instant::now() >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            // One poll: it returns at once if input is already there.
            if poll_both(socket, bell, deadline)? {
                return Ok(if drain.is_draining() {
                    Idle::Draining
                } else {
                    Idle::Request
                });
            }
        }
    }

    /// The idle wait of a coroutine. It parks on the socket alone; after each return
    /// (input, a drain's wake, or readiness left over from an earlier edge) it looks at
    /// the drain flag, then reads once: `Idle::Request` only once bytes (or the end of
    /// the stream) are in. A read is tried before parking only when input may wait in
    /// the socket with no new edge to come: the last read filled its buffer, or an
    /// edge came since it and another wait took it (a watched wait in the handler
    /// also waits for this socket's readability).
    ///
    /// Inlined, with the park beneath it (`rt::wait_idle_fd`, `wait_on`,
    /// `Core::park_until`): a connection idle between requests then waits in one frame,
    /// not five. On a loop serving a thousand keep-alive clients every coroutine stack
    /// is out of the cache when its next request comes, so each line of frames it
    /// returns through costs a miss: callgrind at c=1000 counts 5,513 instructions and
    /// 50.9 last-level misses per request instead of 5,796 and 52.3.
    #[inline(always)]
    fn wait_idle_parked(&mut self, mut limit: crate::rt::IdleLimit) -> io::Result<Idle> {
        let fd = self.as_raw_fd();
        let mut look_first = self.input_may_wait();
        loop {
            if self.draining() {
                return Ok(Idle::Draining);
            }
            if look_first && self.try_fill()? {
                return Ok(Idle::Request);
            }
            self.registered.set(true);
            crate::rt::wait_idle_fd(fd, &mut limit)?;
            look_first = true;
        }
    }

    /// Whether bytes may wait in the socket with no edge to come for them: the last
    /// read filled its buffer, or an edge came since it and a wait took it.
    fn input_may_wait(&self) -> bool {
        !self.input_drained || crate::rt::readable_since_cleared(self.as_raw_fd())
    }

    /// The look before an idle wait that holds no stack (see
    /// [`Handler::handle_until_idle`](crate::Handler::handle_until_idle)): reads what
    /// may wait in the socket with no edge to come for it; `true` when bytes (or the
    /// end of the stream) are buffered now. Marks the socket as registered with this
    /// thread's loop, where the wait registers it.
    pub(crate) fn input_before_idle(&mut self) -> io::Result<bool> {
        self.registered.set(true);
        Ok(self.input_may_wait() && self.try_fill()?)
    }

    /// How an idle wait that holds no stack, begun at `since` (by the loop's clock)
    /// for `timeout`, ended, now that something woke it.
    pub(crate) fn idle_over(&mut self, since: Instant, timeout: Duration) -> io::Result<IdleOver> {
        if self.draining() {
            return Ok(IdleOver::Close);
        }
        if self.try_fill()? {
            return Ok(IdleOver::Input);
        }
        let waited = crate::rt::clock::now().saturating_duration_since(since);
        Ok(match timeout.checked_sub(waited) {
            Some(left) if !left.is_zero() => IdleOver::Again(left),
            _ => IdleOver::Close,
        })
    }

    fn wait_until_readable(&self, deadline: Instant) -> io::Result<()> {
        crate::rt::park::wait_fd(
            self.as_raw_fd(),
            &self.registered,
            crate::rt::Interest::Readable,
            Some(deadline),
        )
    }
}

/// Waits until `a` or `b` is readable (data, an error or the end) or `deadline`;
/// `Ok(true)` when `a` is.
fn poll_both(a: RawFd, b: RawFd, deadline: Instant) -> io::Result<bool> {
    let left = deadline.saturating_duration_since(Instant::now());
    let millis = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
    // The caller owns both fds for the call.
    let mut fds = [
        PollFd::new(crate::sys::borrow_fd(a), PollFlags::POLLIN),
        PollFd::new(crate::sys::borrow_fd(b), PollFlags::POLLIN),
    ];
    match poll(&mut fds, timeout) {
        Ok(_) => Ok(fds[0].revents().is_some_and(|events| !events.is_empty())),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::{BufRead, Write};
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Drain, Idle};
    use crate::conn::{BUFFER_SIZE, Conn};
    use crate::rt::{Runtime, RuntimeConfig};

    /// Runs `f` on a coroutine of a fresh runtime and returns what it returned.
    fn on_coroutine<T: 'static>(f: impl FnOnce() -> T + 'static) -> T {
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let out = Rc::new(Cell::new(None));
        let put = Rc::clone(&out);
        runtime.spawn(move || put.set(Some(f()))).unwrap();
        runtime.run().unwrap();
        out.take().expect("the coroutine finished")
    }

    #[test]
    fn an_idle_wait_after_a_full_read_finds_what_is_left_in_the_socket() {
        let (client, server) = UnixStream::pair().unwrap();
        let rest = 10;
        let found = on_coroutine(move || {
            let mut conn = Conn::from_unix(server).unwrap();
            // Parks first (nothing sent yet): the socket is registered, and the edge
            // the whole message brings is consumed by this wait.
            let writer = std::thread::spawn(move || {
                (&client)
                    .write_all(&vec![b'x'; BUFFER_SIZE + rest])
                    .unwrap();
                client
            });
            let full = conn.fill_buf().unwrap().len();
            conn.consume(full);
            // No new edge will come for the bytes still in the socket.
            let idle = conn.wait_idle(Duration::from_secs(10));
            let left = conn.buffered().len();
            drop(writer.join().unwrap());
            (full, idle.ok(), left)
        });
        if found.0 == BUFFER_SIZE {
            assert_eq!(found, (BUFFER_SIZE, Some(Idle::Request), rest));
        } else {
            // The message arrived in two reads: nothing was left without an edge.
            assert_eq!(found.1, Some(Idle::Request));
        }
    }

    /// A request and the end of the stream that arrive in one event: the short read
    /// of the request says the socket is drained, but the end must still be seen at
    /// once, not after the idle timeout (`printf 'GET ...' | nc -N`).
    #[test]
    fn an_end_that_came_with_the_last_request_ends_the_idle_wait_at_once() {
        let (client, server) = UnixStream::pair().unwrap();
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let outcome = Rc::new(Cell::new(None));
        let put = Rc::clone(&outcome);
        runtime
            .spawn(move || {
                let mut conn = Conn::from_unix(server).unwrap();
                // Parks (nothing sent yet), which registers the socket.
                let got = conn.fill_buf().unwrap().len();
                conn.consume(got);
                let started = std::time::Instant::now();
                let idle = conn.wait_idle(Duration::from_secs(20));
                put.set(Some((got, idle.ok(), started.elapsed())));
            })
            .unwrap();
        let keep = Rc::new(Cell::new(None));
        let kept = Rc::clone(&keep);
        runtime
            .spawn(move || {
                // On the loop's thread, so both reach the loop's next poll together.
                (&client).write_all(b"GET").unwrap();
                client.shutdown(std::net::Shutdown::Write).unwrap();
                kept.set(Some(client)); // half-closed, not closed
            })
            .unwrap();
        runtime.run().unwrap();
        drop(keep.take());
        let (got, idle, waited) = outcome.take().expect("the reading coroutine finished");
        assert_eq!(got, 3);
        assert_eq!(idle, Some(Idle::Request), "the end was missed ({waited:?})");
    }

    #[test]
    fn a_drain_wakes_a_coroutine_idle_between_requests() {
        let (client, server) = UnixStream::pair().unwrap();
        let drain = Arc::new(Drain::new());
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let outcome = Rc::new(Cell::new(None));
        let (put, idle_drain) = (Rc::clone(&outcome), Arc::clone(&drain));
        runtime
            .spawn(move || {
                let mut conn = Conn::from_unix(server).unwrap();
                conn.set_drain_flag(idle_drain);
                let idle = conn.wait_idle(Duration::from_secs(60));
                put.set(Some(idle.ok()));
            })
            .unwrap();
        runtime
            .spawn(move || {
                crate::rt::yield_now();
                drain.begin();
                crate::rt::wake_idle();
            })
            .unwrap();
        runtime.run().unwrap();
        drop(client);
        let idle = outcome.take().expect("the idle coroutine finished");
        assert_eq!(
            idle,
            Some(Idle::Draining),
            "woken by the drain, not timed out"
        );
    }
}
