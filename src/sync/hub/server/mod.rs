//! [`HubServer`]: the master's side of the hub, driven by the master's mio loop.
//!
//! Bounds: only trusted peers are read ([`Trust`]); a frame is at most `MAX_FRAME`
//! bytes and a peer's input holds at most one frame and one read; replies queued for a
//! peer are capped ([`MAX_OUTPUT`](super::peer::MAX_OUTPUT): past it a call is answered
//! with a short error), and a peer that stops reading them (takes less than 64 KiB,
//! and not all) for [`WRITE_STALL`](super::peer::WRITE_STALL) is closed, as is one
//! that stops inside a frame for [`FRAME_STALL`](super::peer::FRAME_STALL); a
//! connection has at most [`MAX_OUTSTANDING`](super::protocol::MAX_OUTSTANDING) calls
//! open (past that a call is answered with an error); a worker holds at most
//! [`per_worker_limit`](super::peer::per_worker_limit) connections, and the hub at most
//! what the master's open-file limit leaves room for (`connections_room`); a connection
//! with nothing open on it for [`PEER_IDLE`](super::peer::PEER_IDLE) is closed. A malformed or
//! oversized frame closes that peer only: its pending waits are cancelled and the
//! `Channel` values it had not acknowledged are put back at the head of their queues.
//!
//! A connection is read while waits on it are pending: a scheduled worker multiplexes
//! all its coroutines' calls over one connection, and each reply names its call.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::UnixListener;
use mio::{Interest, Registry, Token};

use crate::sync::ServerScope;
use crate::sync::hub::peer::{
    FRAME_STALL, PEER_IDLE, Peer, Refusals, Trust, WRITE_STALL, connections_room, per_worker_limit,
};
use crate::sync::hub::protocol::{op, status};
use crate::sync::hub::reply::{Outbox, RemoteReply};
use crate::sync::hub::sends::SendLog;
use crate::sync::hub::status::HubStatus;
use crate::sync::lock;
use crate::sync::redis::driver as redis;
use crate::sync::registry;
use crate::sys::fork;

mod accept;
mod outbox;
mod serve;

/// The address workers connect to: set when a hub binds, inherited by forked workers.
pub(crate) static HUB_ADDR: Mutex<Option<String>> = Mutex::new(None);

/// A hub's abstract name is this, the pid of the process that binds it, `-` and a serial.
const NAME_PREFIX: &str = "mixserve-hub-";

/// The pid a hub's name says owns it (`None`: not a hub's name). A worker checks the
/// process listening there is that one: after the master died, anyone could bind it.
pub(crate) fn owner_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    rest.split_once('-')?.0.parse().ok()
}

/// After an accept failed for lack of fds or memory, try again this much later (the
/// listener is edge-triggered: the connections left in the backlog raise no new event).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// How often the hub looks for connections that stopped reading their replies.
const STALL_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The master's side of the hub: a listener and its worker connections, registered in
/// the master's loop. The master stays single-threaded.
#[derive(Debug)]
pub struct HubServer {
    listener: UnixListener,
    peers: HashMap<Token, Peer>,
    /// Connections per worker pid.
    per_pid: HashMap<u32, usize>,
    per_worker_limit: usize,
    /// Connections the master can hold (see `connections_room`).
    room: usize,
    /// Calls one connection may have open (`MAX_OUTSTANDING`; lowered by tests).
    max_outstanding: usize,
    trust: Trust,
    outbox: Outbox,
    /// Remote waits with a timeout: (deadline, connection, call id).
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// When to accept again: after running out of fds, or at once when a turn took
    /// its most connections.
    accept_retry: Option<Instant>,
    /// When to look next for connections that stopped reading their replies, or
    /// that nothing was open on for [`PEER_IDLE`].
    stall_check_at: Instant,
    /// [`PEER_IDLE`] (lowered by tests).
    peer_idle: Duration,
    /// Connections that used their turn's read budget with bytes maybe left: read on
    /// the next turn (edge-triggered readiness will not say so again).
    read_pending: Vec<Token>,
    sends: SendLog,
    /// Refused connections, logged at most once a second.
    refusals: Refusals,
    status: HubStatus,
    /// The server whose workers this hub serves.
    scope: Arc<ServerScope>,
    listener_token: Token,
    next_token: usize,
    /// The abstract socket name workers dial.
    name: String,
    /// Accepts that fail as if out of fds (tests only).
    #[cfg(test)]
    failing_accepts: usize,
}

static HUB_SERIAL: AtomicUsize = AtomicUsize::new(0);

impl HubServer {
    /// Binds a hub on a fresh abstract Unix socket and makes it the address this
    /// process's workers will use. `scope` tags the server it serves.
    pub(crate) fn bind(scope: Arc<ServerScope>) -> io::Result<HubServer> {
        HubServer::bind_trusting(scope, Trust::workers())
    }

    pub(crate) fn bind_trusting(scope: Arc<ServerScope>, trust: Trust) -> io::Result<HubServer> {
        let name = format!(
            "{NAME_PREFIX}{}-{}",
            std::process::id(),
            HUB_SERIAL.fetch_add(1, Ordering::SeqCst)
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let std_listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
        std_listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(std_listener);
        fork::close_in_child(listener.as_raw_fd());
        *lock(&HUB_ADDR) = Some(name.clone());
        Ok(HubServer {
            listener,
            peers: HashMap::new(),
            per_pid: HashMap::new(),
            per_worker_limit: per_worker_limit(),
            room: connections_room(),
            max_outstanding: crate::sync::hub::protocol::MAX_OUTSTANDING,
            trust,
            outbox: Arc::default(),
            deadlines: BinaryHeap::new(),
            accept_retry: None,
            read_pending: Vec::new(),
            stall_check_at: Instant::now(),
            peer_idle: PEER_IDLE,
            sends: SendLog::default(),
            refusals: Refusals::default(),
            status: HubStatus::default(),
            scope,
            listener_token: Token(0),
            next_token: 0,
            name,
            #[cfg(test)]
            failing_accepts: 0,
        })
    }

    /// The counters the model reads.
    pub fn status(&self) -> HubStatus {
        self.status.clone()
    }

    /// Registers the listener with the loop; the hub uses tokens from `first` on.
    pub(crate) fn register(&mut self, registry: &Registry, first: usize) -> io::Result<()> {
        self.listener_token = Token(first);
        self.next_token = first + 1;
        registry.register(&mut self.listener, self.listener_token, Interest::READABLE)?;
        // Redis-backed objects of this process are driven by this loop from now on.
        redis::host(registry);
        Ok(())
    }

    /// The earliest remote-wait deadline (or accept retry), for the loop's poll timeout.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let wait = self
            .deadlines
            .peek()
            .map(|Reverse((deadline, ..))| *deadline);
        let unread = (!self.read_pending.is_empty()).then(Instant::now);
        [wait, self.accept_retry, redis::next_deadline(), unread]
            .into_iter()
            .flatten()
            .min()
    }

    /// Keeps the fds of `workers` workers' control sockets out of the connections the
    /// hub may hold (one per worker slot; the hub is bound before any worker exists).
    pub(crate) fn reserve_for_workers(&mut self, workers: usize) {
        self.room = self
            .room
            .saturating_sub(workers)
            .max(2 * crate::sync::hub::peer::NOTIFY_HEADROOM);
    }

    /// Handles a readiness event for one of the hub's tokens.
    pub(crate) fn on_event(&mut self, registry: &Registry, token: Token, event: &Event) {
        if redis::owns(token) {
            redis::on_event(registry, token);
        } else if token == self.listener_token {
            self.accept(registry);
        } else if event.is_readable() || event.is_read_closed() || event.is_error() {
            // What reading queued itself (a retried send's logged reply) is written
            // now: no writable edge may come for a socket that stayed writable.
            if self.read(token) {
                self.write(registry, token);
            } else {
                self.drop_peer(registry, token);
            }
        } else if event.is_writable() {
            self.write(registry, token);
        }
        redis::pump(registry);
        self.flush_outbox(registry);
    }

    fn reply_to(&self, token: Token, op: u8, object: u64, id: u64) -> RemoteReply {
        RemoteReply::new(&self.outbox, token, self.scope.tag(), (op, object, id))
    }

    fn write(&mut self, registry: &Registry, token: Token) {
        let Some(peer) = self.peers.get_mut(&token) else {
            return;
        };
        if !peer.flush() {
            self.drop_peer(registry, token);
        }
    }

    /// Times out remote waits whose deadline passed, and accepts again after a failure.
    pub(crate) fn expire_timeouts(&mut self, registry: &Registry) {
        let now = Instant::now();
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept(registry);
        }
        for token in std::mem::take(&mut self.read_pending) {
            if self.read(token) {
                self.write(registry, token);
            } else {
                self.drop_peer(registry, token);
            }
        }
        while let Some(Reverse((deadline, token, id))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let token = Token(token);
            let Some(&(object, key)) = self.peers.get(&token).and_then(|p| p.pending.get(&id))
            else {
                continue;
            };
            // The reply removes the wait from `pending` when it is moved to the peer.
            if registry::get(object).is_some_and(|o| o.cancel(key)) {
                self.reply_to(token, op::BROADCAST_WAIT, object, id)
                    .send(status::TIMED_OUT, b"timed out");
            }
        }
        // A scan of every connection, so once a second (the stall limit is 30 s), not
        // on every turn: thread-based workers hold a connection per waiting client.
        let (mut stalled, mut idle) = (Vec::new(), Vec::new());
        if self.stall_check_at <= now {
            self.stall_check_at = now + STALL_CHECK_EVERY;
            for (&token, peer) in &self.peers {
                if peer.stalled(now) {
                    stalled.push((token, "took under 64 KiB of its replies", WRITE_STALL));
                } else if peer.frame_stalled(now) {
                    stalled.push((token, "sent no more of a frame begun", FRAME_STALL));
                } else if peer.idle(now, self.peer_idle) {
                    idle.push(token);
                }
            }
        }
        for (token, what, limit) in stalled {
            let pid = self.peers.get(&token).map_or(0, |peer| peer.pid);
            log::warn!("hub: worker {pid} {what} for {limit:?}; closing it");
            self.drop_peer(registry, token);
        }
        // Nothing is lost: a worker that calls on it next finds it closed and calls
        // again on a fresh connection.
        for token in idle {
            self.drop_peer(registry, token);
        }
        redis::pump(registry);
        self.flush_outbox(registry);
    }

    /// A worker went away (or broke the protocol): cancel its pending waits, take back
    /// the values it never acknowledged, and close the socket.
    fn drop_peer(&mut self, registry: &Registry, token: Token) {
        let Some(mut peer) = self.peers.remove(&token) else {
            return;
        };
        if let Some(count) = self.per_pid.get_mut(&peer.pid) {
            *count -= 1;
            if *count == 0 {
                self.per_pid.remove(&peer.pid);
            }
        }
        for (_, (object, key)) in peer.pending.drain() {
            self.status.blocked().fetch_sub(1, Ordering::SeqCst);
            if let Some(object) = registry::get(object) {
                object.cancel(key);
            }
        }
        for (_, held) in peer.held.drain() {
            put_back(&held);
        }
        let _ = registry.deregister(&mut peer.stream);
        fork::forget_in_child(peer.stream.as_raw_fd());
    }

    /// Answers pending waits (`Closed`) and closes every connection and the listener.
    pub(crate) fn close(&mut self, registry: &Registry) {
        registry::close_scope(self.scope.tag());
        self.flush_outbox(registry);
        let tokens: Vec<Token> = self.peers.keys().copied().collect();
        for token in tokens {
            self.drop_peer(registry, token);
        }
        let _ = registry.deregister(&mut self.listener);
        redis::unhost(Some(registry));
    }

    /// Answers `Closed` to the waits pending for the worker processes `pids` (workers
    /// being replaced or retired), so their clients get an answer before the workers
    /// go, not a reset.
    pub(crate) fn answer_waiters_of(&mut self, registry: &Registry, pids: &[u32]) {
        if pids.is_empty() {
            return;
        }
        let mut closed = Vec::new();
        for (&token, peer) in &self.peers {
            if !pids.contains(&peer.pid) {
                continue;
            }
            for (&id, &(object, key)) in &peer.pending {
                if registry::get(object).is_some_and(|o| o.cancel(key)) {
                    closed.push((token, object, id));
                }
            }
        }
        for (token, object, id) in closed {
            self.reply_to(token, op::BROADCAST_WAIT, object, id)
                .send(status::CLOSED, b"worker stopping");
        }
        self.flush_outbox(registry);
    }

    /// Answers pending waits of this hub's server with `Closed`, keeping connections.
    pub(crate) fn close_waiters(&mut self, registry: &Registry) {
        registry::close_scope(self.scope.tag());
        self.flush_outbox(registry);
    }
}

#[cfg(test)]
impl HubServer {
    /// The abstract socket name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Connections open now.
    pub(crate) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Makes the next `n` accepts fail as if the process were out of fds.
    pub(crate) fn fail_accepts(&mut self, n: usize) {
        self.failing_accepts = n;
    }

    /// Lowers the per-worker connection limit.
    pub(crate) fn set_per_worker_limit(&mut self, limit: usize) {
        self.per_worker_limit = limit;
    }

    /// Lowers the cap on the reply bytes queued for each connection open now.
    pub(crate) fn set_output_cap(&mut self, cap: usize) {
        self.peers.values_mut().for_each(|peer| peer.set_cap(cap));
    }

    /// Lowers the time after which a connection with nothing open is closed.
    pub(crate) fn set_peer_idle(&mut self, idle: Duration) {
        self.peer_idle = idle;
    }

    /// Lowers the connections the master can hold.
    pub(crate) fn set_room(&mut self, room: usize) {
        self.room = room;
    }

    /// The connections the master can hold.
    pub(crate) fn room(&self) -> usize {
        self.room
    }

    /// Entries in the deadline heap, live or stale.
    pub(crate) fn deadline_entries(&self) -> usize {
        self.deadlines.len()
    }

    /// Lowers the cap on calls open per connection.
    pub(crate) fn set_max_outstanding(&mut self, cap: usize) {
        self.max_outstanding = cap;
    }
}

/// Gives a value a worker never acknowledged back to its channel.
pub(super) fn put_back(held: &super::reply::Held) {
    if let Some(object) = registry::get(held.object) {
        object.put_back(&held.payload);
    }
}

impl Drop for HubServer {
    /// Forgets the hub's fds for future forks and withdraws its address, also when the
    /// loop that hosted it ended early without `close`.
    fn drop(&mut self) {
        for peer in self.peers.values() {
            fork::forget_in_child(peer.stream.as_raw_fd());
        }
        fork::forget_in_child(self.listener.as_raw_fd());
        let mut addr = lock(&HUB_ADDR);
        if addr.as_deref() == Some(self.name.as_str()) {
            *addr = None;
        }
    }
}
