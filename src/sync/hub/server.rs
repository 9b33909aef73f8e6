//! [`HubServer`]: the master's side of the hub, driven by the master's mio loop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::sync::hub::protocol::{self, NO_TIMEOUT, status};
use crate::sync::lock;
use crate::sync::redis::driver as redis;
use crate::sync::registry;
use crate::sync::wire::Wire;
use crate::sync::{ServerScope, WaitError};
use crate::sys::fork;

/// The address workers connect to: set when a hub binds, inherited by forked workers.
pub(crate) static HUB_ADDR: Mutex<Option<String>> = Mutex::new(None);

/// Replies waiting to be written, by connection token.
type Outbox = Arc<Mutex<Vec<(Token, Vec<u8>)>>>;

/// A pending reply to a worker, completed later when the object releases the waiter.
#[derive(Debug)]
pub(crate) struct RemoteReply {
    outbox: Outbox,
    token: Token,
    scope: usize,
}

impl RemoteReply {
    /// The server the waiting worker belongs to.
    pub(crate) fn scope(&self) -> usize {
        self.scope
    }

    /// Sends a wait's result.
    pub(crate) fn complete<T: Wire>(self, result: Result<T, WaitError>) {
        match result {
            Ok(value) => {
                let mut payload = Vec::new();
                value.encode(&mut payload);
                self.send(status::OK, &payload);
            }
            Err(error) => self.send(protocol::status_of(&error), error.to_string().as_bytes()),
        }
    }

    /// Sends a reply frame.
    pub(crate) fn send(self, status: u8, payload: &[u8]) {
        let frame = protocol::encode_reply(status, payload);
        lock(&self.outbox).push((self.token, frame));
    }
}

/// Counters the master's model reads to decide whether every worker is blocked.
#[derive(Debug, Clone, Default)]
pub struct HubStatus {
    blocked: Arc<AtomicUsize>,
}

impl HubStatus {
    /// Worker connections with a wait pending in the hub right now.
    pub fn blocked_clients(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }
}

/// One worker connection.
#[derive(Debug)]
struct HubConn {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// The wait this connection's worker is blocked in: (object, waiter key).
    pending: Option<(u32, u64)>,
    /// The worker process on the other end (`SO_PEERCRED`).
    pid: Option<u32>,
}

/// The master's side of the hub: a listener and its worker connections, registered in
/// the master's loop. The master stays single-threaded.
#[derive(Debug)]
pub struct HubServer {
    listener: UnixListener,
    conns: HashMap<Token, HubConn>,
    outbox: Outbox,
    /// Remote waits with a timeout: (deadline, connection, object, key).
    deadlines: BinaryHeap<Reverse<(Instant, usize, u32, u64)>>,
    status: HubStatus,
    /// The server whose workers this hub serves.
    scope: Arc<ServerScope>,
    listener_token: Token,
    next_token: usize,
    /// The abstract socket name workers dial.
    name: String,
}

static HUB_SERIAL: AtomicUsize = AtomicUsize::new(0);

impl HubServer {
    /// Binds a hub on a fresh abstract Unix socket and makes it the address this
    /// process's workers will use. `scope` tags the server it serves.
    pub(crate) fn bind(scope: Arc<ServerScope>) -> io::Result<HubServer> {
        let name = format!(
            "mixserve-hub-{}-{}",
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
            conns: HashMap::new(),
            outbox: Arc::default(),
            deadlines: BinaryHeap::new(),
            status: HubStatus::default(),
            scope,
            listener_token: Token(0),
            next_token: 0,
            name,
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

    /// The earliest remote-wait deadline, for the loop's poll timeout.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let hub = self
            .deadlines
            .peek()
            .map(|Reverse((deadline, ..))| *deadline);
        hub.into_iter().chain(redis::next_deadline()).min()
    }

    /// Handles a readiness event for one of the hub's tokens.
    pub(crate) fn on_event(&mut self, registry: &Registry, token: Token, event: &Event) {
        if redis::owns(token) {
            redis::on_event(registry, token);
        } else if token == self.listener_token {
            self.accept(registry);
        } else if (event.is_readable() || event.is_read_closed() || event.is_error())
            && !self.read(token)
        {
            self.drop_conn(registry, token);
        }
        if event.is_writable() && !redis::owns(token) {
            self.write(registry, token);
        }
        redis::pump(registry);
        self.flush_outbox(registry);
    }

    fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    fork::close_in_child(stream.as_raw_fd());
                    let pid = nix::sys::socket::getsockopt(
                        &stream,
                        nix::sys::socket::sockopt::PeerCredentials,
                    )
                    .ok()
                    .map(|credentials| credentials.pid() as u32);
                    let conn = HubConn {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        pending: None,
                        pid,
                    };
                    self.conns.insert(token, conn);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        log::warn!("hub accept: {e}");
                    }
                    return;
                }
            }
        }
    }

    /// Reads and serves complete requests; false when the connection is finished.
    fn read(&mut self, token: Token) -> bool {
        let Some(conn) = self.conns.get_mut(&token) else {
            return true;
        };
        let mut buf = [0u8; 4096];
        let open = loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => conn.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break false,
            }
        };
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return false;
            };
            let len = match protocol::complete_frame(&conn.input) {
                Ok(Some(len)) => len,
                Ok(None) => return open,
                Err(()) => return false,
            };
            let body: Vec<u8> = conn.input.drain(..4 + len).skip(4).collect();
            if !self.serve(token, &body) {
                return false;
            }
        }
    }

    /// Serves one request; false on a malformed one.
    fn serve(&mut self, token: Token, body: &[u8]) -> bool {
        let Some(request) = protocol::decode_request(body) else {
            return false;
        };
        let reply = self.reply_to(token);
        let Some(object) = registry::get(request.object) else {
            reply.send(status::ERROR, b"no such shared object");
            return true;
        };
        let deadline = (request.timeout_ms != NO_TIMEOUT)
            .then(|| Instant::now() + Duration::from_millis(request.timeout_ms));
        // A draining server answers new waits at once; a wait that would block the
        // last free worker is refused (see ServerScope).
        let refuse = if self.scope.is_draining() {
            Some(WaitError::Closed)
        } else if deadline.is_none() && self.status.blocked_clients() >= self.scope.max_blocked() {
            Some(WaitError::NoOtherWorker)
        } else {
            None
        };
        if let Some(key) = object.serve(request.op, request.payload, reply, refuse) {
            if let Some(conn) = self.conns.get_mut(&token) {
                conn.pending = Some((request.object, key));
                self.status.blocked.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(deadline) = deadline {
                self.deadlines
                    .push(Reverse((deadline, token.0, request.object, key)));
            }
        }
        true
    }

    fn reply_to(&self, token: Token) -> RemoteReply {
        RemoteReply {
            outbox: Arc::clone(&self.outbox),
            token,
            scope: self.scope.tag(),
        }
    }

    /// Moves completed replies to their connections and writes them.
    fn flush_outbox(&mut self, registry: &Registry) {
        let replies = std::mem::take(&mut *lock(&self.outbox));
        for (token, frame) in replies {
            if let Some(conn) = self.conns.get_mut(&token) {
                if conn.pending.take().is_some() {
                    self.status.blocked.fetch_sub(1, Ordering::SeqCst);
                }
                conn.output.extend_from_slice(&frame);
                self.write(registry, token);
            }
        }
    }

    fn write(&mut self, registry: &Registry, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        while !conn.output.is_empty() {
            match conn.stream.write(&conn.output) {
                Ok(n) => {
                    conn.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_conn(registry, token);
                    return;
                }
            }
        }
    }

    /// Times out remote waits whose deadline passed.
    pub(crate) fn expire_timeouts(&mut self, registry: &Registry) {
        let now = Instant::now();
        while let Some(Reverse((deadline, token, object, key))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let token = Token(token);
            let still_pending = self
                .conns
                .get(&token)
                .is_some_and(|c| c.pending == Some((object, key)));
            if still_pending && registry::get(object).is_some_and(|o| o.cancel(key)) {
                self.reply_to(token).send(status::TIMED_OUT, b"timed out");
            }
        }
        redis::pump(registry);
        self.flush_outbox(registry);
    }

    /// A worker went away: cancel its pending wait and close the socket.
    fn drop_conn(&mut self, registry: &Registry, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            if let Some((object, key)) = conn.pending.take() {
                self.status.blocked.fetch_sub(1, Ordering::SeqCst);
                if let Some(object) = registry::get(object) {
                    object.cancel(key);
                }
            }
            let _ = registry.deregister(&mut conn.stream);
            fork::forget_in_child(conn.stream.as_raw_fd());
        }
    }

    /// Answers pending waits (`Closed`) and closes every connection and the listener.
    pub(crate) fn close(&mut self, registry: &Registry) {
        registry::close_scope(self.scope.tag());
        self.flush_outbox(registry);
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            self.drop_conn(registry, token);
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
        for (&token, conn) in &self.conns {
            let Some((object, key)) = conn.pending else {
                continue;
            };
            if conn.pid.is_some_and(|pid| pids.contains(&pid))
                && registry::get(object).is_some_and(|o| o.cancel(key))
            {
                closed.push(token);
            }
        }
        for token in closed {
            self.reply_to(token)
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

impl Drop for HubServer {
    /// Forgets the hub's fds for future forks and withdraws its address, also when the
    /// loop that hosted it ended early without `close`.
    fn drop(&mut self) {
        for conn in self.conns.values() {
            fork::forget_in_child(conn.stream.as_raw_fd());
        }
        fork::forget_in_child(self.listener.as_raw_fd());
        let mut addr = lock(&HUB_ADDR);
        if addr.as_deref() == Some(self.name.as_str()) {
            *addr = None;
        }
    }
}
