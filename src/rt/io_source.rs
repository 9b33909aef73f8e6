//! [`IoSource`]: an fd registered with the current runtime's reactor.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Interest;
use super::coroutine;
use super::reactor::SourceKey;
use super::scheduler::{Core, ParkKind, Resume, Until, WakeReason};
use super::{clock, context};

/// An fd registered with the reactor of the runtime running on this thread: both
/// directions, once, edge-triggered.
///
/// The owner keeps the fd open and non-blocking, tries each syscall first, and calls
/// [`wait`](IoSource::wait) only after it returned `WouldBlock`:
///
/// ```no_run
/// # use std::io::{self, Read};
/// # use std::os::fd::AsRawFd;
/// # fn read_some(stream: &mut std::os::unix::net::UnixStream, buf: &mut [u8]) -> io::Result<usize> {
/// use mixserve::rt::{Interest, IoSource};
/// stream.set_nonblocking(true)?;
/// let source = IoSource::new(stream.as_raw_fd())?;
/// loop {
///     match stream.read(buf) {
///         Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
///             source.wait(Interest::Readable, None)?
///         }
///         result => return result,
///     }
/// }
/// # }
/// ```
///
/// **Drop the `IoSource` before closing the fd.** Dropping deregisters the fd from epoll;
/// if the fd was already closed that fails silently, but if its number was meanwhile
/// reused by another registered fd, that other registration would be removed.
///
/// `IoSource` is `!Send`: it belongs to one runtime's thread.
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<mixserve::rt::IoSource>();
/// ```
pub struct IoSource {
    core: Rc<Core>,
    key: SourceKey,
    fd: RawFd,
    /// `!Send` and `!Sync`, also if `Core` ever became thread-safe.
    _not_send: PhantomData<*const ()>,
}

impl IoSource {
    /// Registers `fd` with the reactor of the runtime running on this thread.
    ///
    /// # Errors
    ///
    /// An error when no runtime runs on this thread, or when epoll refuses the fd (for
    /// instance because another `IoSource` already registered it).
    pub fn new(fd: RawFd) -> io::Result<IoSource> {
        let core = context::core()
            .ok_or_else(|| io::Error::other("IoSource::new called outside a coroutine runtime"))?;
        let key = core.reactor.register(fd)?;
        Ok(IoSource {
            core,
            key,
            fd,
            _not_send: PhantomData,
        })
    }

    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Parks the current coroutine until the fd may be ready for `interest`.
    ///
    /// Wake-ups may be spurious: retry the syscall and wait again on `WouldBlock`.
    ///
    /// # Errors
    ///
    /// `TimedOut` once `deadline` passes; another error when called off a coroutine of
    /// this source's runtime or while that runtime is being dropped.
    pub fn wait(&self, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
        if context::with_core(|current| Rc::ptr_eq(current, &self.core)) != Some(true) {
            return Err(io::Error::other(
                "waiting on an IoSource off a coroutine of its runtime",
            ));
        }
        let until = deadline.map_or(Until::Woken, Until::At);
        wait_on(&self.core, self.key, interest, until, ParkKind::Io).map(drop)
    }
}

/// Parks the current coroutine until `fd` may be ready for `interest`, registering the
/// fd with this thread's runtime on its first wait (kept until [`forget_fd`]).
///
/// This is the registration-free form of [`IoSource`] for values that must stay `Send`
/// (a connection moved between threads before it first waits): the registration lives
/// in the runtime, keyed by fd, not in the caller. Wake-ups may be spurious.
///
/// # Errors
///
/// As [`IoSource::wait`], plus an error when no runtime runs on this thread.
pub fn wait_fd(fd: RawFd, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
    let core = context::core()
        .ok_or_else(|| io::Error::other("wait_fd called outside a coroutine runtime"))?;
    let key = key_of(&core, fd)?;
    let until = deadline.map_or(Until::Woken, Until::At);
    wait_on(&core, key, interest, until, ParkKind::Io).map(drop)
}

/// How long a connection may stay idle: a timeout that starts when it first parks
/// (the end of the answer before), then the deadline that made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleLimit {
    /// Not parked yet: this long from the first park.
    Timeout(Duration),
    /// Parked before: until then.
    Deadline(Instant),
}

/// [`wait_fd`] for readability, for a connection idle between requests: a drain's
/// [`wake_idle`](super::wake_idle) also ends it (returning `Ok`, like a spurious wake),
/// so the caller looks at its drain flag after each return.
///
/// A [`IdleLimit::Timeout`] is armed by the loop from the clock reading it takes after
/// the coroutine suspends (see [`Until::After`]): the coroutine reads no clock. Once it
/// parked, `limit` holds the deadline that gave, for the waits after a spurious return.
///
/// # Errors
///
/// As [`wait_fd`].
// Inlined into the idle wait: see `Conn::wait_idle_parked`.
#[inline(always)]
pub(crate) fn wait_idle_fd(fd: RawFd, limit: &mut IdleLimit) -> io::Result<()> {
    let core = context::core()
        .ok_or_else(|| io::Error::other("wait_idle_fd called outside a coroutine runtime"))?;
    let key = key_of(&core, fd)?;
    let until = match *limit {
        IdleLimit::Timeout(timeout) => Until::After(timeout),
        IdleLimit::Deadline(deadline) => Until::At(deadline),
    };
    if let Some(deadline) = wait_on(&core, key, Interest::Readable, until, ParkKind::Idle)? {
        *limit = IdleLimit::Deadline(deadline);
    }
    Ok(())
}

/// Ends the running coroutine's turn in an idle wait on `fd` that holds no stack (see
/// `Core::idle_then`): readability, a drain's [`wake_idle`](super::wake_idle), or
/// `timeout` from the end of this turn ends it, and `state` then [resumes] as the
/// coroutine's body on a stack from the pool. The caller returns from its body right
/// after `Ok`. `Err(state)` when no such wait can be made here (off a coroutine, while
/// the runtime is torn down, or epoll refused the fd): wait some other way.
///
/// [resumes]: super::scheduler::Resume::resume
pub(crate) fn idle_then<T: Resume + 'static>(
    fd: RawFd,
    timeout: Duration,
    state: Box<T>,
) -> Result<(), Box<T>> {
    let Some(core) = context::core() else {
        return Err(state);
    };
    let Some(id) = context::current().filter(|_| coroutine::on_coroutine()) else {
        return Err(state);
    };
    if super::scheduler::tearing_down() {
        return Err(state);
    }
    let Ok(key) = key_of(&core, fd) else {
        return Err(state);
    };
    core.idle_then(id, key, timeout, state);
    Ok(())
}

/// Forgets the read readiness recorded for `fd`, after a read that returned less than
/// it asked for: the socket was drained then, and data arriving later brings a new
/// edge. The next wait then parks at once instead of returning for a read that would
/// only say `EAGAIN`. A no-op for an fd not registered on this thread.
pub(crate) fn clear_readable(fd: RawFd) {
    let _ = context::with_core(|core| {
        let key = core.fd_keys.borrow().get(fd);
        if let Some(key) = key {
            core.reactor.clear_ready(key, Interest::Readable);
        }
    });
}

/// What this thread's loop knows of `fd`'s peer: `Some(true)` once epoll said it closed
/// its sending side, hung up or left an error (a flag that stays), `Some(false)` while
/// nothing said so yet, `None` when `fd` is not registered on this thread (nothing is
/// known; ask the socket). Costs no syscall.
pub(crate) fn read_closed(fd: RawFd) -> Option<bool> {
    context::with_core(|core| {
        let key = core.fd_keys.borrow().get(fd);
        key.map(|key| core.reactor.read_closed(key))
    })
    .flatten()
}

/// Whether bytes may have arrived on `fd` since the last [`clear_readable`]: an edge
/// came, even one a wait consumed (a watched wait in a handler also waits for the
/// connection's readability). False when the fd is not registered on this thread yet:
/// the wait that registers it learns what is there, as epoll reports an fd's present
/// readiness when it is added (see [`Reactor::register`](super::reactor::Reactor)).
/// True off a runtime (nothing is known).
pub(crate) fn readable_since_cleared(fd: RawFd) -> bool {
    context::with_core(|core| {
        let key = core.fd_keys.borrow().get(fd);
        key.is_some_and(|key| core.reactor.edge_since_clear(key, Interest::Readable))
    })
    .unwrap_or(true)
}

/// The reactor key of `fd`, registering it (until [`forget_fd`]) on first use.
fn key_of(core: &Core, fd: RawFd) -> io::Result<SourceKey> {
    let known = core.fd_keys.borrow().get(fd);
    match known {
        Some(key) => Ok(key),
        None => {
            let key = core.reactor.register(fd)?;
            core.fd_keys.borrow_mut().insert(fd, key);
            Ok(key)
        }
    }
}

/// Parks the current coroutine until its [`Waker`](super::Waker) wakes it, one of `fds`
/// may be readable (data, EOF or an error), or `deadline` passes — a park that also
/// watches sockets. Each fd is registered on first use as by [`wait_fd`] (the caller
/// owes a [`forget_fd`] before closing it). Returns may be spurious: the caller
/// re-checks what it waits for. It consumes the fds' read readiness, which costs
/// [`wait_fd`] callers nothing: they try their syscall before they wait.
///
/// # Errors
///
/// Off a coroutine, when epoll refuses an fd, or while the runtime is being dropped.
pub(crate) fn park_or_readable(fds: &[RawFd], deadline: Option<Instant>) -> io::Result<()> {
    let interests: Vec<(RawFd, Interest)> =
        fds.iter().map(|&fd| (fd, Interest::Readable)).collect();
    park_or_ready(&interests, deadline)
}

/// [`park_or_readable`] for any direction of each fd: returns when the coroutine is
/// woken, one of `fds` may be ready for its interest, or `deadline` passes (an empty
/// list is a plain [`park`](super::park)). It consumes the readiness it waited for.
///
/// # Errors
///
/// As [`park_or_readable`].
pub(crate) fn park_or_ready(
    fds: &[(RawFd, Interest)],
    deadline: Option<Instant>,
) -> io::Result<()> {
    let core = context::core()
        .ok_or_else(|| io::Error::other("park_or_ready called outside a coroutine runtime"))?;
    let id = context::current()
        .filter(|_| coroutine::on_coroutine())
        .ok_or_else(|| io::Error::other("park_or_ready called off a coroutine"))?;
    let keys = fds
        .iter()
        .map(|&(fd, interest)| Ok((key_of(&core, fd)?, interest)))
        .collect::<io::Result<Vec<_>>>()?;
    let reactor = &core.reactor;
    let mut ready = false;
    for &(key, interest) in &keys {
        ready |= reactor.take_ready(key, interest);
    }
    if ready || core.take_permit(id) || deadline.is_some_and(|d| d <= clock::now()) {
        return Ok(());
    }
    let reason = core.park_current(id, ParkKind::Park, deadline, |ticket| {
        for &(key, interest) in &keys {
            reactor.add_waiter(key, interest, ticket);
        }
    });
    for &(key, interest) in &keys {
        reactor.remove_waiter(key, interest, id);
        reactor.take_ready(key, interest);
    }
    match reason {
        WakeReason::ShuttingDown => Err(io::Error::other("the coroutine runtime is shutting down")),
        WakeReason::Woken | WakeReason::TimedOut => Ok(()),
    }
}

/// Deregisters an fd registered by [`wait_fd`]; call it before closing the fd, on the
/// thread that waited. Coroutines parked on it wake (their wait returns `Ok`, as for an
/// edge) and look again. A no-op when the fd was never registered on this thread.
pub fn forget_fd(fd: RawFd) {
    let _ = context::with_core(|core| {
        let key = core.fd_keys.borrow_mut().remove(fd);
        if let Some(key) = key {
            // Those parked on it would wait for an edge that can no longer come: they
            // wake and look again (and find, say, their connection gone).
            for ticket in core.reactor.deregister(key, fd) {
                core.wake(ticket, WakeReason::Woken);
            }
        }
    });
}

/// Parks until `key` may be ready for `interest` or `until`; returns the deadline the
/// park had, if it parked with one. `core` is this thread's running runtime (the
/// caller took it from the thread, or checked).
// Inlined into the idle wait: see `Conn::wait_idle_parked`.
#[inline(always)]
fn wait_on(
    core: &Rc<Core>,
    key: SourceKey,
    interest: Interest,
    until: Until,
    kind: ParkKind,
) -> io::Result<Option<Instant>> {
    let id = context::current()
        .filter(|_| coroutine::on_coroutine())
        .ok_or_else(|| io::Error::other("waiting on an fd off a coroutine of its runtime"))?;
    let reactor = &core.reactor;
    if reactor.take_ready(key, interest) {
        return Ok(None);
    }
    let over = match until {
        Until::Woken => false,
        Until::At(deadline) => deadline <= clock::now(),
        Until::After(timeout) => timeout.is_zero(),
    };
    if over {
        return Err(io::ErrorKind::TimedOut.into());
    }
    let (reason, deadline) = core.park_until(id, kind, until, |ticket| {
        reactor.add_waiter(key, interest, ticket);
    });
    reactor.remove_waiter(key, interest, id);
    if reactor.take_ready(key, interest) {
        return Ok(deadline);
    }
    match reason {
        WakeReason::Woken => Ok(deadline),
        WakeReason::TimedOut => Err(io::ErrorKind::TimedOut.into()),
        WakeReason::ShuttingDown => Err(io::Error::other("the coroutine runtime is shutting down")),
    }
}

impl Drop for IoSource {
    /// Deregisters the fd; never fails, also when the fd is already closed.
    fn drop(&mut self) {
        self.core.reactor.deregister(self.key, self.fd);
    }
}

impl fmt::Debug for IoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoSource").field("fd", &self.fd).finish()
    }
}
