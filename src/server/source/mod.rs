//! Connection sources: where a model's loop takes its connections from.
//!
//! A model is one loop over a [`Source`]; the source decides where connections come
//! from, so the same loop serves a single-process server and a preforked worker:
//!
//! | flavor | connections come from | used by |
//! |---|---|---|
//! | listener | the server's listener, non-blocking, waited on with the wake-up pipe (and the hub) | every model in one process |
//! | worker ([`worker`]) | a preforked worker's share: blocking `accept` on the shared listener, `accept` under a lock, its own `SO_REUSEPORT` listener, or fds the master passes | every model inside a worker |
//! | fed ([`fed`]) | a thread that pulls from a blocking source and hands over through a queue, so a coroutine loop can wait on it | `Scheduled` inside a worker |
//!
//! The accept-side rules live here once: every source accepts through
//! [`accept::accept_with_rules`] (errors that concern one connection retried, `EMFILE`
//! answered with the spare fd), but for a worker's blocking accept on the listener its
//! siblings share, [`accept::accept_beside_others`] (`EMFILE` leaves the connection to
//! them); every source counts wasted wake-ups, logs and backs off from other failures,
//! and serves a stopping worker's leftovers.

pub(crate) mod fed;
pub(crate) mod worker;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::SockRef;

use crate::conn::{Conn, PeerAddr};
use crate::mixin::pool_stats::Scoreboard;
use crate::server::Context;
use crate::sync::hub::HubServer;
use crate::sync::lock;
use crate::sys::accept::{self, SpareFd, Taken};
use crate::sys::{borrow_fd, fork};

/// How long a source backs off after an accept failure that is not about one
/// connection (out of memory, a broken listener), so the loop never spins on it.
const BACK_OFF: Duration = Duration::from_millis(100);
/// Skipped accepts [`Source::take`] goes on past before it lets its caller wait: a
/// flood of resets cannot hold the loop from everything else.
const SKIPS_IN_A_ROW: usize = 64;

/// Where a model's connections come from (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct Source {
    ctx: Arc<Context>,
    flavor: Flavor,
}

/// The flavors, matched in every method (crossbeam's pattern).
#[derive(Debug)]
enum Flavor {
    /// The listener, and the hub a forking parent serves from its waits (boxed: the
    /// hub's state is large beside the other flavors).
    Listener(Option<Box<Mutex<HubLoop>>>),
    Worker(worker::Share),
    Fed(fed::Fed),
}

/// One per-thread place on a pool's scoreboard, for wasted wake-ups.
pub(crate) type Seat<'a> = Option<(&'a Scoreboard, usize)>;

impl Source {
    /// The source of the server `ctx` belongs to: a preforked worker's share when `ctx`
    /// is a worker's, else the listener (set non-blocking). `hub`, when given, is
    /// served from this source's waits (a forking parent serves its children so).
    pub(crate) fn open(ctx: &Arc<Context>, hub: Option<HubServer>) -> io::Result<Source> {
        let flavor = match ctx.worker_seat() {
            Some(seat) => Flavor::Worker(worker::Share::open(ctx, seat)?),
            None => {
                ctx.listener().set_nonblocking(true)?;
                Flavor::Listener(
                    hub.map(|hub| HubLoop::new(ctx, hub).map(Box::new))
                        .transpose()?,
                )
            }
        };
        Ok(Source {
            ctx: Arc::clone(ctx),
            flavor,
        })
    }

    /// The same connections, pulled by a thread and queued, so a coroutine can wait on
    /// [`ready_fd`](Self::ready_fd). A listener source is returned as it is. `room`
    /// says whether the consumer can take one more beside the given number queued for
    /// it and not taken yet.
    pub(crate) fn fed(self, room: Arc<dyn Fn(usize) -> bool + Send + Sync>) -> io::Result<Source> {
        if self.ready_fd().is_some() {
            return Ok(self);
        }
        let ctx = Arc::clone(&self.ctx);
        Ok(Source {
            ctx,
            flavor: Flavor::Fed(fed::Fed::start(self, room)?),
        })
    }

    /// The next connection, verified: waits up to the poll interval (a worker's share
    /// waits until a connection or a signal). `None` on a wake-up, a timeout, a stop,
    /// or a connection refused.
    pub(crate) fn next(&self) -> Option<Conn> {
        self.next_counting(None)
    }

    /// [`next`](Self::next), counting a wasted wake-up against `seat`.
    pub(crate) fn next_counting(&self, seat: Seat<'_>) -> Option<Conn> {
        self.next_unadmitted(seat).and_then(|conn| self.admit(conn))
    }

    /// [`next_counting`](Self::next_counting) before [`admit`](Self::admit): a caller
    /// that must count the connection in flight before the hooks look at it.
    pub(crate) fn next_unadmitted(&self, seat: Seat<'_>) -> Option<Conn> {
        if self.ctx.is_shutting_down() {
            return None;
        }
        match &self.flavor {
            Flavor::Listener(hub) => self.take().or_else(|| {
                let listener_ready = match hub {
                    Some(hub) => lock(hub).wait(&self.ctx, self.ctx.poll_interval()),
                    None => wait_listener(&self.ctx),
                };
                let conn = listener_ready.then(|| self.take()).flatten();
                if listener_ready && conn.is_none() {
                    count_wasted(seat);
                    self.ctx.count(crate::status::Counter::WastedWakeups);
                }
                conn
            }),
            Flavor::Worker(share) => share.next(&self.ctx),
            Flavor::Fed(fed) => fed.try_next(),
        }
    }

    /// A connection if one is ready now, without waiting (for a coroutine loop).
    pub(crate) fn try_next(&self) -> TryNext {
        let taken = match &self.flavor {
            Flavor::Fed(fed) => fed.try_next().ok_or(TryNext::Empty),
            _ => match self.take_or_say() {
                Ok(Taken::Socket(accepted)) => Ok(conn_from_accepted(accepted)),
                Ok(Taken::Empty) => Err(TryNext::Empty),
                Ok(Taken::Skipped) => Err(TryNext::Again),
                // Logged, and backed off from.
                Err(()) => Err(TryNext::Again),
            },
        };
        match taken {
            // Refused by a hook: more may wait.
            Ok(conn) => self.admit(conn).map_or(TryNext::Again, TryNext::Conn),
            Err(nothing) => nothing,
        }
    }

    /// The fd that turns readable when [`try_next`](Self::try_next) may succeed;
    /// `None` for a source that blocks (wrap it with [`fed`](Self::fed)).
    pub(crate) fn ready_fd(&self) -> Option<RawFd> {
        match &self.flavor {
            Flavor::Listener(_) => Some(self.ctx.listener_fd()),
            Flavor::Worker(_) => None,
            Flavor::Fed(fed) => Some(fed.ready_fd()),
        }
    }

    /// Waits up to `timeout` for the wake-up pipe (a shutdown, a signal, a freed slot),
    /// serving the hub meanwhile: the wait of a loop that cannot take a connection now.
    pub(crate) fn idle(&self, timeout: Duration) {
        match &self.flavor {
            Flavor::Listener(Some(hub)) => {
                lock(hub).wait(&self.ctx, timeout);
            }
            Flavor::Worker(share) => {
                share.check_stop(&self.ctx);
                wait_wake(&self.ctx, timeout);
                share.check_stop(&self.ctx);
            }
            _ => wait_wake(&self.ctx, timeout),
        }
    }

    /// The model is full: a preforked worker shows busy (and asks the master to grow
    /// the pool when no worker is left idle). Nothing elsewhere.
    pub(crate) fn at_capacity(&self) {
        match &self.flavor {
            Flavor::Worker(share) => share.busy(),
            // The feeder shows the worker busy itself while its consumer is full.
            Flavor::Fed(_) | Flavor::Listener(_) => {}
        }
    }

    /// After a stop: a connection already handed to this process (a worker's own
    /// `SO_REUSEPORT` queue, a passed fd, a queued hand-over) that must still be served.
    pub(crate) fn leftover(&self) -> Option<Conn> {
        match &self.flavor {
            Flavor::Worker(share) => share.leftover(),
            Flavor::Fed(fed) => fed.try_next(),
            Flavor::Listener(_) => None,
        }
        .and_then(|conn| self.admit(conn))
    }

    /// Whether a hand-over source may still queue connections after the stop (its
    /// feeder thread runs): the consumer serves them as [`leftover`](Self::leftover)s.
    pub(crate) fn feeding(&self) -> bool {
        match &self.flavor {
            Flavor::Fed(fed) => fed.feeding(),
            Flavor::Worker(_) | Flavor::Listener(_) => false,
        }
    }

    /// Starts the drain on the hub: answers the waits it holds for children.
    pub(crate) fn close_hub_waiters(&self) {
        if let Flavor::Listener(Some(hub)) = &self.flavor {
            let mut hub = lock(hub);
            let HubLoop { poll, hub, .. } = &mut *hub;
            hub.close_waiters(poll.registry());
        }
    }

    /// A drain's pause: serves the hub for `timeout`, or just waits.
    pub(crate) fn pause(&self, timeout: Duration) {
        match &self.flavor {
            Flavor::Listener(Some(hub)) => {
                lock(hub).wait(&self.ctx, timeout);
            }
            _ => crate::rt::sleep(timeout),
        }
    }

    /// Takes one connection from the listener without waiting, going on past skipped
    /// accepts (a signal, a connection reset before it was taken, one refused for want
    /// of fds), at most [`SKIPS_IN_A_ROW`]: more may wait, and an edge-triggered wait
    /// (a forking parent's) would not say so again.
    fn take(&self) -> Option<Conn> {
        for _ in 0..SKIPS_IN_A_ROW {
            match self.take_or_say() {
                Ok(Taken::Socket(accepted)) => return Some(conn_from_accepted(accepted)),
                Ok(Taken::Skipped) if !self.ctx.is_shutting_down() => {}
                Ok(_) | Err(()) => return None,
            }
        }
        None
    }

    /// [`take`](Self::take), saying why nothing was taken; a failure is logged and
    /// backed off from here.
    fn take_or_say(&self) -> Result<Taken, ()> {
        accept::accept_with_rules(self.ctx.listener_fd(), self.ctx.spare_fd()).map_err(|e| {
            if !self.ctx.is_shutting_down() {
                log::warn!("accept failed: {e}");
                crate::rt::sleep(BACK_OFF);
            }
        })
    }

    /// Marks a new connection with the drain flag and asks the hooks about it.
    pub(crate) fn admit(&self, mut conn: Conn) -> Option<Conn> {
        if let Flavor::Fed(_) = self.flavor {
            return Some(conn); // admitted by the source it was fed from
        }
        conn.set_drain_flag(self.ctx.shutdown.drain_flag());
        self.ctx.verify_request(&conn).then_some(conn)
    }
}

/// One `accept` with the crate's rules ([`accept::accept_with_rules`]), as a [`Conn`]:
/// `Ok(None)` when nothing was taken now.
pub(crate) fn accept_with_rules(listener: RawFd, spare: &SpareFd) -> io::Result<Option<Conn>> {
    accept::accept_with_rules(listener, spare).map(|taken| taken.socket().map(conn_from_accepted))
}

/// One `accept` on a listener sibling processes share ([`accept::accept_beside_others`]:
/// out of fds, the connection is left to them), as a [`Conn`].
pub(crate) fn accept_beside_others(listener: RawFd) -> io::Result<Option<Conn>> {
    accept::accept_beside_others(listener).map(|taken| taken.socket().map(conn_from_accepted))
}

/// What [`Source::try_next`] found.
#[derive(Debug)]
pub(crate) enum TryNext {
    /// A connection to serve.
    Conn(Conn),
    /// None waits: wait for the source's ready fd.
    Empty,
    /// None this time (refused for want of fds or by a hook, a signal, a failure backed
    /// off from), but more may wait: the ready fd may bring no new edge for them, so
    /// look again without waiting.
    Again,
}

/// Wraps an accepted socket, with the peer's address `accept` gave.
pub(crate) fn conn_from_accepted(accepted: accept::Accepted) -> Conn {
    let peer = match accepted.peer {
        Some(addr) => PeerAddr::Tcp(addr),
        None => PeerAddr::Unix(None),
    };
    Conn::from_fd(accepted.socket, peer)
}

/// Wraps an accepted or passed socket, with its peer's address.
pub(crate) fn conn_from(fd: OwnedFd) -> Conn {
    let peer = match SockRef::from(&fd)
        .peer_addr()
        .ok()
        .and_then(|a| a.as_socket())
    {
        Some(addr) => PeerAddr::Tcp(addr),
        None => PeerAddr::Unix(None),
    };
    Conn::from_fd(fd, peer)
}

fn count_wasted(seat: Seat<'_>) {
    if let Some((board, slot)) = seat {
        board.count_wasted_wakeup(slot);
    }
}

/// Waits up to the poll interval for the listener or the wake-up pipe; true if the
/// listener is readable.
fn wait_listener(ctx: &Context) -> bool {
    let [listener, wake] = wait_fds(&[ctx.listener_fd(), ctx.wake_fd()], ctx.poll_interval());
    if wake {
        pass_on_wake(ctx);
    }
    listener
}

/// Waits up to `timeout` for the wake-up pipe.
fn wait_wake(ctx: &Context, timeout: Duration) {
    if wait_fds(&[ctx.wake_fd()], timeout) == [true] {
        pass_on_wake(ctx);
    }
}

/// [`on_wake`] for threads that share the pipe (a pool's, a loop's): a shutdown
/// leaves the pipe readable, so every other waiter sees it at once too.
fn pass_on_wake(ctx: &Context) {
    on_wake(ctx);
    if ctx.is_shutting_down() {
        ctx.shutdown.wake();
    }
}

/// `poll(2)` on `fds` for reading; which are ready (none on a timeout or a signal).
fn wait_fds<const N: usize>(fds: &[RawFd; N], timeout: Duration) -> [bool; N] {
    let mut polled = fds.map(|fd| PollFd::new(borrow_fd(fd), PollFlags::POLLIN));
    // Rounded up, as mio and `rt::park::poll_fd` do: a poll interval under a
    // millisecond must not become a zero timeout, which an idle loop would spin on.
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
    if poll(&mut polled, timeout).is_err() {
        return [false; N];
    }
    polled.map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
}

/// The wake-up pipe fired: a shutdown request, a signal, or a freed slot.
pub(crate) fn on_wake(ctx: &Context) {
    ctx.shutdown.clear_wakeups();
    ctx.shutdown.take_stop_signals();
}

/// A forking parent's waits: the listener, the wake-up pipe and the hub on one mio
/// `Poll` (the parent stays single-threaded).
struct HubLoop {
    poll: Poll,
    events: Events,
    hub: HubServer,
    /// The poll's fds, closed in forked children while the loop runs.
    own_fds: [RawFd; 2],
}

impl std::fmt::Debug for HubLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubLoop").finish_non_exhaustive()
    }
}

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
/// Tokens from here on belong to the hub.
const HUB_FIRST: usize = 2;

impl HubLoop {
    fn new(ctx: &Context, mut hub: HubServer) -> io::Result<Mutex<HubLoop>> {
        let poll = Poll::new()?;
        let (listener, wake) = (ctx.listener_fd(), ctx.wake_fd());
        let registry = poll.registry();
        registry.register(&mut SourceFd(&wake), WAKE, Interest::READABLE)?;
        registry.register(&mut SourceFd(&listener), LISTENER, Interest::READABLE)?;
        hub.register(registry, HUB_FIRST)?;
        let own_fds = [poll.as_raw_fd(), listener];
        own_fds.iter().for_each(|&fd| fork::close_in_child(fd));
        Ok(Mutex::new(HubLoop {
            poll,
            events: Events::with_capacity(1024),
            hub,
            own_fds,
        }))
    }

    /// One wait of at most `timeout` (sooner for a hub deadline), serving the hub;
    /// true if the listener fired (edge-triggered: the caller accepts until empty).
    fn wait(&mut self, ctx: &Context, timeout: Duration) -> bool {
        let timeout = self.hub.next_deadline().map_or(timeout, |d| {
            d.saturating_duration_since(Instant::now()).min(timeout)
        });
        if self.poll.poll(&mut self.events, Some(timeout)).is_err() {
            self.events.clear();
        }
        let mut listener = false;
        for event in self.events.iter() {
            match event.token() {
                LISTENER => listener = true,
                WAKE => on_wake(ctx),
                token => self.hub.on_event(self.poll.registry(), token, event),
            }
        }
        self.hub.expire_timeouts(self.poll.registry());
        listener
    }
}

impl Drop for HubLoop {
    fn drop(&mut self) {
        self.hub.close(self.poll.registry());
        self.own_fds
            .iter()
            .for_each(|&fd| fork::forget_in_child(fd));
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    use super::wait_fds;

    /// A wait under a millisecond waits (at least its time, as `poll` promises): it was
    /// truncated to a zero timeout, and a loop with such a poll interval spun idle.
    #[test]
    fn a_wait_under_a_millisecond_still_waits() {
        let (read, _write) = nix::unistd::pipe().unwrap();
        let start = Instant::now();
        let [ready] = wait_fds(&[read.as_raw_fd()], Duration::from_micros(500));
        assert!(!ready, "nothing was written");
        assert!(start.elapsed() >= Duration::from_micros(500));
    }
}
