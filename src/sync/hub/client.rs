//! A worker's side of the hub. On a coroutine of a scheduled loop every call goes over
//! the loop's one shared connection (see `mux`); on a plain thread a call is one
//! request and one reply over a pooled connection of its own, as here.
//!
//! Every exchange has a deadline: the request must be written within
//! [`EXCHANGE_TIMEOUT`], and the reply must come within it too, except for a wait,
//! whose reply may take as long as the wait (plus [`WAIT_GRACE`] when it has a
//! timeout). Connecting never blocks a coroutine's loop: the socket is non-blocking and
//! a full backlog is retried after a short park. Each thread keeps at most
//! [`MAX_IDLE`] idle connections and closes those idle longer than [`IDLE_FOR`].

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};

use crate::conn::{Conn, PeerAddr};
use crate::rt::park;
use crate::sync::hub::protocol::{self, NO_TIMEOUT, Request, op};
use crate::sync::hub::server::HUB_ADDR;
use crate::sync::lock;

/// Idle connections a thread keeps for its next calls.
pub(crate) const MAX_IDLE: usize = 4;
/// An idle connection unused this long is closed.
pub(crate) const IDLE_FOR: Duration = Duration::from_secs(30);
/// Longest time to connect, write a request, or get the reply to a non-wait request.
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after a wait's own timeout its reply may still come.
pub(crate) const WAIT_GRACE: Duration = Duration::from_secs(5);
/// How long to park before connecting again when the hub's backlog is full.
pub(super) const CONNECT_RETRY: Duration = Duration::from_millis(5);

thread_local! {
    /// Idle connections to the hub, with when each was last used. Per thread: a
    /// connection registered with one thread's coroutine loop must not be used from
    /// another.
    static POOL: RefCell<Vec<(Conn, Instant)>> = const { RefCell::new(Vec::new()) };
}

/// Numbers this process's calls; added to the process's [`incarnation`] it makes the
/// id a retry repeats.
static NEXT_CALL: AtomicU64 = AtomicU64::new(0);
/// This process's call-id base, and the pid it was made for (a forked child, whose
/// memory starts as a copy of its parent's, makes its own).
static INCARNATION: Mutex<(u32, u64)> = Mutex::new((0, 0));

/// A number unlikely to repeat across the processes a hub serves, even when the kernel
/// reuses a pid: a mix (splitmix64) of the pid and the wall clock in nanoseconds.
fn incarnation() -> u64 {
    let pid = std::process::id();
    let mut base = lock(&INCARNATION);
    if base.0 != pid {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut z = (u64::from(pid) << 32 ^ nanos).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        *base = (pid, z ^ (z >> 31));
    }
    base.1
}

/// Drops inherited pooled and shared connections (they belong to the parent).
pub(crate) fn forget_pool() {
    POOL.with(|pool| pool.borrow_mut().clear());
    super::mux::forget();
}

/// Sends one request and waits for its reply: `(status, payload)`. The wait blocks in
/// the caller's model (thread or coroutine). A request that fails on a reused
/// connection is sent once more on a fresh one; a send, also when a fresh connection
/// failed. A repeated send carries the same id, which the hub does not act on twice.
pub(crate) fn call(
    op: u8,
    object: u64,
    deadline: Option<Instant>,
    payload: &[u8],
) -> Result<(u8, Vec<u8>), String> {
    let timeout_ms = deadline.map_or(NO_TIMEOUT, |d| {
        d.saturating_duration_since(Instant::now())
            .as_millis()
            .min(NO_TIMEOUT as u128 - 1) as u64
    });
    let id = incarnation().wrapping_add(NEXT_CALL.fetch_add(1, Ordering::Relaxed));
    crate::status::count(crate::status::Counter::HubRoundTrips);
    let request = Request {
        op,
        object,
        id,
        timeout_ms,
        payload,
    };
    let reply_by = if op::is_wait(op) {
        deadline.map(|d| d + WAIT_GRACE)
    } else {
        Some(Instant::now() + EXCHANGE_TIMEOUT)
    };
    if crate::rt::in_coroutine() {
        return super::mux::call(&request, reply_by);
    }
    let frame = protocol::encode_request(&request);
    // A send may always be asked again (the hub answers a repeated id from its log);
    // anything else only when a pooled connection turned out stale.
    let retry_any_failure = op::is_send(op);
    if let Some(mut conn) = take_idle() {
        match exchange(&mut conn, &frame, id, reply_by) {
            Ok(reply) => return finish(conn, &request, reply),
            Err(e) if e.kind() == io::ErrorKind::TimedOut && !retry_any_failure => {
                return Err(format!("hub did not answer in time: {e}"));
            }
            // The wait ended because its client left (see `watch::wait_readable`):
            // asked again, it would wait once more for nobody.
            Err(e)
                if e.kind() == io::ErrorKind::ConnectionAborted
                    && crate::sync::watch::remote_wait_client_left() =>
            {
                return Err(format!("hub call: {e}"));
            }
            // A stale connection: try again on a fresh one.
            Err(_) => {}
        }
    }
    let mut conn = connect()?;
    match exchange(&mut conn, &frame, id, reply_by) {
        Ok(reply) => return finish(conn, &request, reply),
        Err(e) if !retry_any_failure => return Err(format!("hub connection: {e}")),
        Err(_) => {}
    }
    let mut conn = connect()?;
    let reply =
        exchange(&mut conn, &frame, id, reply_by).map_err(|e| format!("hub connection: {e}"))?;
    finish(conn, &request, reply)
}

/// Acknowledges a received `Channel` value and pools the connection. If the ack cannot
/// be sent the hub puts the value back, so it must not be used here.
fn finish(
    mut conn: Conn,
    request: &Request<'_>,
    reply: (u8, Vec<u8>),
) -> Result<(u8, Vec<u8>), String> {
    if reply.0 == protocol::status::OK && op::takes_value(request.op) {
        let ack = protocol::encode_request(&Request {
            op: op::CHANNEL_ACK,
            payload: &[],
            ..*request
        });
        conn.set_write_timeout(Some(EXCHANGE_TIMEOUT));
        if let Err(e) = conn.write_all(&ack).and_then(|()| conn.flush()) {
            return Err(format!(
                "hub connection lost before the value was acknowledged (the hub keeps it): {e}"
            ));
        }
    }
    give_back(conn);
    Ok(reply)
}

/// An idle connection of this thread, closing those idle too long.
fn take_idle() -> Option<Conn> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.retain(|(_, since)| since.elapsed() < IDLE_FOR);
        pool.pop().map(|(conn, _)| conn)
    })
}

/// Returns a connection to this thread's pool, unless it is full.
fn give_back(conn: Conn) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < MAX_IDLE {
            pool.push((conn, Instant::now()));
        }
    });
}

/// Connects to the hub without blocking the caller's loop: a full backlog (`EAGAIN`)
/// parks and tries again, up to [`EXCHANGE_TIMEOUT`].
fn connect() -> Result<Conn, String> {
    connect_hub().map(|fd| Conn::from_fd(fd, PeerAddr::Unix(None)))
}

/// Connects to the abstract socket `name`, as [`connect`] does.
#[cfg(test)]
fn connect_to(name: &str) -> Result<Conn, String> {
    connect_fd(name).map(|fd| Conn::from_fd(fd, PeerAddr::Unix(None)))
}

/// Connects a non-blocking socket to this process's hub, as [`connect`] does.
pub(super) fn connect_hub() -> Result<OwnedFd, String> {
    #[cfg(test)]
    if let Some(name) = TEST_HUB.with(|hub| hub.borrow().clone()) {
        return connect_fd(&name);
    }
    let name = lock(&HUB_ADDR)
        .clone()
        .ok_or("no hub: shared objects are used from a process whose master serves none")?;
    connect_fd(&name)
}

#[cfg(test)]
thread_local! {
    /// The hub this thread's calls go to in a test (tests bind hubs in parallel, and
    /// each binding sets the process-wide [`HUB_ADDR`]).
    pub(crate) static TEST_HUB: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Connects a non-blocking socket to the abstract socket `name`, as [`connect`] does.
fn connect_fd(name: &str) -> Result<OwnedFd, String> {
    let addr = UnixAddr::new_abstract(name.as_bytes()).map_err(|e| e.to_string())?;
    let give_up = Instant::now() + EXCHANGE_TIMEOUT;
    loop {
        let fd: OwnedFd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("hub socket: {e}"))?;
        match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => return check_owner(fd, name),
            Err(Errno::EAGAIN | Errno::EINTR) if Instant::now() < give_up => {
                drop(fd);
                park::park(Some(Instant::now() + CONNECT_RETRY));
            }
            Err(e) => return Err(format!("connect to hub: {e}")),
        }
    }
}

/// Keeps a connection to the hub `name` only if the process listening there is the one
/// the name says, under this process's user: the socket is abstract (no permissions),
/// so once the master is gone anyone may bind the name, and a worker finishing its
/// last request would hand that stranger its values and take its answers.
fn check_owner(fd: OwnedFd, name: &str) -> Result<OwnedFd, String> {
    let owner = crate::sync::hub::server::owner_of(name)
        .ok_or_else(|| format!("{name:?} is not a hub's name"))?;
    let credentials = socket::getsockopt(&fd, socket::sockopt::PeerCredentials)
        .map_err(|e| format!("hub peer credentials: {e}"))?;
    let (pid, uid) = (credentials.pid() as u32, credentials.uid());
    if pid != owner || uid != crate::sys::fork::effective_uid() {
        return Err(format!(
            "the hub's socket {name} is held by pid {pid} (uid {uid}), not by its master \
             {owner}: refused"
        ));
    }
    Ok(fd)
}

/// Writes one request (call `id`) and reads its reply, by `reply_by` if given.
fn exchange(
    conn: &mut Conn,
    frame: &[u8],
    id: u64,
    reply_by: Option<Instant>,
) -> io::Result<(u8, Vec<u8>)> {
    conn.set_write_timeout(Some(EXCHANGE_TIMEOUT));
    conn.write_all(frame)?;
    conn.flush()?;
    conn.set_read_deadline(reply_by);
    // A handler's client that leaves ends the call; dropping this connection (never
    // pooled after an error) makes the hub cancel the wait.
    conn.wait_reply_unless_client_left(reply_by)?;
    let mut len = [0u8; 4];
    conn.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > protocol::MAX_FRAME {
        return Err(io::Error::other("bad reply frame"));
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body)?;
    conn.set_read_deadline(None);
    match protocol::decode_reply(&body) {
        Some((status, replied, payload)) if replied == id => Ok((status, payload.to_vec())),
        _ => Err(io::Error::other("bad reply frame")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn idle_conn() -> Conn {
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        Conn::from_fd(OwnedFd::from(ours), PeerAddr::Unix(None))
    }

    fn pooled() -> usize {
        POOL.with(|pool| pool.borrow().len())
    }

    #[test]
    fn the_pool_keeps_a_few_and_drops_stale_ones() {
        forget_pool();
        for _ in 0..MAX_IDLE + 3 {
            give_back(idle_conn());
        }
        assert_eq!(pooled(), MAX_IDLE);
        POOL.with(|pool| {
            for (_, since) in pool.borrow_mut().iter_mut() {
                *since = since.checked_sub(IDLE_FOR).expect("uptime over 30 s");
            }
        });
        assert!(take_idle().is_none(), "a stale connection was reused");
        assert_eq!(pooled(), 0);
    }

    /// An abstract socket listening on `name` with room for `backlog` connections.
    fn listening(name: &str, backlog: i32) -> OwnedFd {
        use nix::sys::socket::{Backlog, bind, listen};
        let addr = UnixAddr::new_abstract(name.as_bytes()).unwrap();
        let flags = SockFlag::SOCK_CLOEXEC;
        let listener = socket::socket(AddressFamily::Unix, SockType::Stream, flags, None).unwrap();
        bind(std::os::fd::AsRawFd::as_raw_fd(&listener), &addr).unwrap();
        listen(&listener, Backlog::new(backlog).unwrap()).unwrap();
        listener
    }

    /// A listener on the abstract socket `name` whose backlog is full (the next
    /// connect would block, or say `EAGAIN`), and the connections filling it.
    pub(crate) fn full_backlog(name: &str) -> (OwnedFd, Vec<OwnedFd>) {
        let listener = listening(name, 1);
        let addr = UnixAddr::new_abstract(name.as_bytes()).unwrap();
        let mut queued = Vec::new();
        loop {
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            let fd = socket::socket(AddressFamily::Unix, SockType::Stream, flags, None).unwrap();
            match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
                Ok(()) => queued.push(fd),
                Err(Errno::EAGAIN) => break,
                Err(e) => panic!("filling the backlog: {e}"),
            }
            assert!(queued.len() < 100, "the backlog never filled");
        }
        (listener, queued)
    }

    /// A socket bound under a hub's name by another process than the one the name
    /// says (here: the name says pid 1) is refused before a byte goes out.
    #[test]
    fn a_hub_name_held_by_another_process_is_refused() {
        let name = format!("mixserve-hub-1-test-impostor-{}", std::process::id());
        let _impostor = listening(&name, 8);
        let refused = connect_to(&name).expect_err("connected to an impostor");
        assert!(refused.contains("not by its master 1"), "{refused}");
        let ours = format!("mixserve-hub-{}-test-own", std::process::id());
        let _ours = listening(&ours, 8);
        assert!(connect_to(&ours).is_ok(), "refused its own master's hub");
    }

    #[test]
    fn connecting_to_a_full_backlog_parks_the_coroutine_not_its_loop() {
        let name = format!("mixserve-hub-{}-test-backlog", std::process::id());
        let (listener, queued) = full_backlog(&name);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // The loop runs on its own thread so that a connect blocking it fails the test
        // by timing out instead of hanging it.
        std::thread::spawn(move || {
            let mut runtime =
                crate::rt::Runtime::new(crate::rt::RuntimeConfig::default()).expect("runtime");
            let connected = std::rc::Rc::new(std::cell::Cell::new(false));
            let (flag, name) = (std::rc::Rc::clone(&connected), name.clone());
            runtime
                .spawn(move || flag.set(connect_to(&name).is_ok()))
                .expect("spawn");
            let listening = std::os::fd::AsRawFd::as_raw_fd(&listener);
            runtime
                .spawn(move || {
                    // Runs only if the connecting coroutine parked: makes room.
                    if let Ok(fd) = socket::accept(listening) {
                        let _ = nix::unistd::close(fd);
                    }
                })
                .expect("spawn");
            let _ = runtime.run();
            let _ = done_tx.send(connected.get());
            drop((listener, queued));
        });
        let connected = done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("connect blocked the coroutine loop");
        assert!(connected, "the connect never succeeded once there was room");
    }

    #[test]
    fn a_reply_that_never_comes_times_out() {
        let (ours, _silent_hub) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut conn = Conn::from_fd(OwnedFd::from(ours), PeerAddr::Unix(None));
        let by = Instant::now() + Duration::from_millis(50);
        let error = exchange(&mut conn, b"frame", 1, Some(by)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
