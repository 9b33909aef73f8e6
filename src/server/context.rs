//! [`Context`]: what a mix-in is given — the listener, the handler chain, the hooks and
//! the shutdown state. socketserver calls this "the server"; mix-ins call its methods.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::conn::Conn;
use crate::handler::{Handled, MakeHandler};
use crate::server::hooks::Hooks;
use crate::server::listener::Listener;
use crate::server::session::{HandlerSession, Session};
use crate::server::shutdown::ShutdownState;
use crate::server::source::accept_with_rules;
use crate::server::source::worker::WorkerSeat;
use crate::status::{Counter, StatusBoard, StatusHandle};
use crate::sync::ServerScope;
use crate::sys::accept::SpareFd;

/// The handler chain with its type erased, so mix-ins need not be generic over it.
pub(crate) trait Service: Send + Sync {
    fn serve(&self, conn: &mut Conn) -> io::Result<()>;
    /// A new connection's handler, to serve in turns.
    fn start(&self) -> Box<dyn Session>;
    fn reject(&self, conn: &mut Conn);
}

impl<F: MakeHandler> Service for F {
    fn start(&self) -> Box<dyn Session> {
        Box::new(HandlerSession::new(self.make_handler()))
    }

    fn serve(&self, conn: &mut Conn) -> io::Result<()> {
        let mut session = HandlerSession::new(self.make_handler());
        let served = session.whole(conn);
        session.end(conn, served)
    }

    fn reject(&self, conn: &mut Conn) {
        self.reject(conn);
    }
}

/// Tunables shared by every model's loop.
#[derive(Debug, Clone)]
pub(crate) struct LoopConfig {
    /// How often an idle loop wakes for `service_actions` (socketserver's `poll_interval`).
    pub(crate) poll_interval: Duration,
    /// How long a graceful shutdown waits for in-flight connections before forcing them.
    pub(crate) shutdown_timeout: Duration,
    /// `handle_request`'s wait for one connection (`None`: for ever).
    pub(crate) timeout: Option<Duration>,
    /// The listen backlog (to listen again after a stop closed the listener).
    pub(crate) backlog: i32,
    /// The server made its listening socket (or took it over in a binary upgrade), so
    /// a stop may shut it down to refuse new clients at once. A socket from systemd or
    /// from the application is shared with its maker: shut down, it would stay dead
    /// for them too (systemd fails the socket unit on its hang-up).
    pub(crate) owns_listener: bool,
}

/// The server as a mix-in sees it. Shared (`Arc`) with every thread a mix-in starts;
/// forked children inherit a copy.
pub struct Context {
    /// The listening socket (shared with a preforked worker's context; a worker
    /// whose master accepts has closed its copy of the fd and never uses it).
    listener: Arc<Listener>,
    /// Makes and runs one handler per connection.
    service: Arc<dyn Service>,
    /// The user's hooks.
    hooks: Arc<dyn Hooks>,
    /// Stop flag, drain flag and the loop's wake-up pipe.
    pub(crate) shutdown: Arc<ShutdownState>,
    /// What the shared objects know of this server.
    scope: Arc<ServerScope>,
    /// Loop tunables.
    pub(crate) config: LoopConfig,
    /// A spare fd, closed to make room when `accept` fails with `EMFILE`.
    spare_fd: SpareFd,
    /// In a preforked worker: its place in the pool, where its connections come from.
    worker: Option<Arc<WorkerSeat>>,
    /// The live counters, shared by every process of the server.
    status: Arc<StatusBoard>,
    /// This process's row on them (0, or a preforked worker's own).
    status_row: usize,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Context {
    /// The listener closes with the context (its last owner in this process): a
    /// [`ShutdownHandle`](crate::server::ShutdownHandle) kept longer must not act on
    /// the fd number, which the next socket may take.
    fn drop(&mut self) {
        self.shutdown.forget_listener();
    }
}

impl Context {
    pub(crate) fn new(
        listener: Listener,
        service: Box<dyn Service>,
        hooks: Box<dyn Hooks>,
        config: LoopConfig,
    ) -> io::Result<Context> {
        let shutdown = Arc::new(ShutdownState::new(
            listener.as_raw_fd(),
            config.backlog,
            config.owns_listener,
        )?);
        let status = Arc::new(StatusBoard::new()?);
        status.word(0, Counter::Pid).store(
            u64::from(std::process::id()),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(Context {
            listener: Arc::new(listener),
            service: Arc::from(service),
            hooks: Arc::from(hooks),
            scope: ServerScope::new(shutdown.drain_flag()),
            shutdown,
            config,
            spare_fd: SpareFd::new(),
            worker: None,
            status,
            status_row: 0,
        })
    }

    /// The context of a preforked worker's model, made in the worker after the fork:
    /// the same listener, handler, hooks and shared objects; its own shutdown state
    /// (the master's wake-up pipe is not the worker's), sharing the drain flag the
    /// shared objects look at; and the worker's seat, which makes its source.
    pub(crate) fn for_worker(&self, seat: Arc<WorkerSeat>) -> io::Result<Context> {
        let status_row = StatusBoard::worker_row(seat.slot);
        self.status.worker_started(status_row, std::process::id());
        Ok(Context {
            listener: Arc::clone(&self.listener),
            service: Arc::clone(&self.service),
            hooks: Arc::clone(&self.hooks),
            shutdown: Arc::new(ShutdownState::sharing_drain(self.shutdown.drain_flag())?),
            scope: Arc::clone(&self.scope),
            config: self.config.clone(),
            spare_fd: SpareFd::new(),
            worker: Some(seat),
            status: Arc::clone(&self.status),
            status_row,
        })
    }

    /// The worker's seat, when this is a preforked worker's context.
    pub(crate) fn worker_seat(&self) -> Option<Arc<WorkerSeat>> {
        self.worker.clone()
    }

    /// The spare fd of this process, for `EMFILE`.
    pub(crate) fn spare_fd(&self) -> &SpareFd {
        &self.spare_fd
    }

    /// The listening socket.
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// Accepts one connection: `Ok(None)` when none is waiting on a non-blocking
    /// listener. When the process is out of fds (`EMFILE`), the connection is accepted
    /// with a reserved fd and closed at once, so the loop neither spins nor leaves the
    /// client hanging; when even that fails (no reserved fd, no memory), the error is
    /// returned, and the caller should back off before it tries again.
    pub fn get_request(&self) -> io::Result<Option<Conn>> {
        let mut conn = accept_with_rules(self.listener_fd(), &self.spare_fd)?;
        if let Some(conn) = conn.as_mut() {
            conn.set_drain_flag(self.shutdown.drain_flag());
        }
        Ok(conn)
    }

    /// Asks the hooks whether to serve a connection (socketserver `verify_request`). A
    /// hook that panics refuses the connection it looked at (logged): it costs no
    /// accept loop, pool thread or master, whichever runs it.
    pub fn verify_request(&self, conn: &Conn) -> bool {
        let peer = conn.peer_addr();
        let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.hooks.verify_request(peer)
        }));
        asked.unwrap_or_else(|_| {
            log::error!("the verify_request hook panicked on {peer}; connection refused");
            false
        })
    }

    /// Runs the handler on `conn` (`setup`, `handle`, `finish`), reports any error
    /// through the hooks, then closes the connection (socketserver `finish_request`
    /// followed by `shutdown_request`).
    pub fn finish_request(&self, mut conn: Conn) {
        self.serve_connection(&mut conn);
    }

    /// Runs the handler on `conn` and reports any error, leaving the connection open:
    /// for a mix-in that must do something between the handler's end and the close
    /// (e.g. stop tracking the socket before its fd number can be reused).
    ///
    /// A panicking handler is caught here and reported through `handle_error` like any
    /// other error of its connection, and a panicking `handle_error` is caught and
    /// logged, so this never unwinds: a model's bookkeeping (thread counts, tracked
    /// sockets, worker slots) never outlives its connection.
    pub fn serve_connection(&self, conn: &mut Conn) {
        // A thread of its own is this server's only while it serves: a caller's thread
        // (`Iterative`, `handle_request`) is no handler's once the server is gone. A
        // loop's coroutines share their thread's marks, all of one server: kept.
        let _marks = (!crate::rt::in_coroutine()).then(ThreadMarks::save);
        self.begin_connection(conn);
        let served = crate::rt::catch_handler_panic(|| self.service.serve(conn));
        self.end_connection(conn, served);
    }

    /// [`serve_connection`](Context::serve_connection) in turns, on a loop's coroutine
    /// (whose thread's marks stay this server's): runs the handler of `session` (made
    /// on the first turn) until it ends, then reports as `serve_connection` does and
    /// returns `None`; or until it idles between requests, and returns how long it may
    /// wait for the client's next bytes (see
    /// [`Handler::handle_until_idle`](crate::Handler::handle_until_idle)). The caller
    /// then calls again once the client sent some, or calls
    /// [`end_idle_connection`](Context::end_idle_connection).
    pub(crate) fn serve_turn(
        &self,
        conn: &mut Conn,
        session: &mut Option<Box<dyn Session>>,
    ) -> Option<Duration> {
        let session = match session {
            Some(session) => session,
            None => {
                self.begin_connection(conn);
                session.insert(self.service.start())
            }
        };
        let served = crate::rt::catch_handler_panic(|| match session.turn(conn) {
            Ok(Handled::Idle(timeout)) => Ok(Some(timeout)),
            Ok(_) => session.end(conn, Ok(())).map(|()| None),
            Err(error) => session.end(conn, Err(error)).map(|()| None),
        });
        let served = match served {
            Ok(Ok(Some(timeout))) => return Some(timeout),
            Ok(result) => Ok(result.map(drop)),
            Err(panic) => Err(panic),
        };
        self.end_connection(conn, served);
        None
    }

    /// Ends a connection whose handler idled (see [`serve_turn`](Context::serve_turn))
    /// and whose client sent nothing more in time, or whose server began to drain: the
    /// handler's `finish`, then the report.
    pub(crate) fn end_idle_connection(&self, conn: &mut Conn, session: &mut dyn Session) {
        let served = crate::rt::catch_handler_panic(|| session.end(conn, Ok(())));
        self.end_connection(conn, served);
    }

    /// The start of a connection's service: its thread's (or coroutine's) marks, its
    /// label and its counts.
    fn begin_connection(&self, conn: &Conn) {
        crate::sync::scope::enter(&self.scope);
        crate::status::enter(&self.status, self.status_row);
        crate::rt::set_label(format_args!("connection from {}", conn.peer_addr()));
        self.count(Counter::Connections);
        self.count(Counter::InFlight);
    }

    /// The end of a connection's service: counts, and the error reported if `served`
    /// holds one (a panic included); never unwinds.
    fn end_connection(&self, conn: &Conn, served: std::thread::Result<io::Result<()>>) {
        self.status.sub(self.status_row, Counter::InFlight);
        self.report_loop_counts();
        let result = served.unwrap_or_else(|panic| {
            Err(io::Error::other(format!(
                "the handler panicked: {}",
                panic_message(&panic)
            )))
        });
        if let Err(error) = result {
            let peer = conn.peer_addr();
            let reported = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.hooks.handle_error(peer, &error)
            }));
            if let Err(panic) = reported {
                log::error!(
                    "the handle_error hook panicked on {error} from {peer}: {}",
                    panic_message(&panic)
                );
            }
        }
        if let Some(seat) = &self.worker {
            seat.served();
        }
    }

    /// Answers a connection the server cannot serve now (every worker is busy and
    /// none can be added): HTTP handlers send `503`, others just close.
    pub fn reject_request(&self, mut conn: Conn) {
        self.count(Counter::Refused);
        self.service.reject(&mut conn);
        let _ = conn.flush();
    }

    /// A handle on the server's live counters (see [`status`](crate::status)).
    pub fn status(&self) -> StatusHandle {
        StatusHandle::new(Arc::clone(&self.status))
    }

    /// Adds this process's loop stalls and naps since the last report to its status row.
    pub(crate) fn report_loop_counts(&self) {
        crate::status::report_loop_counts(&self.status, self.status_row);
    }

    /// Adds one to `counter` on this process's status row.
    pub(crate) fn count(&self, counter: Counter) {
        self.status.add(self.status_row, counter, 1);
    }

    /// Records the model's name for the live status.
    pub(crate) fn set_status_model(&self, model: &'static str) {
        self.status.set_model(model);
    }

    /// Reports an error from the accepting side.
    pub fn handle_error(&self, conn: &Conn, error: &io::Error) {
        self.hooks.handle_error(conn.peer_addr(), error);
    }

    /// Runs the user's per-turn hook.
    pub fn service_actions(&self) {
        self.hooks.service_actions();
    }

    /// Runs the user's timeout hook.
    pub fn handle_timeout(&self) {
        self.hooks.handle_timeout();
    }

    /// True once a shutdown was requested (by a handle or a signal).
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_requested()
    }

    /// How often an idle loop should wake for housekeeping.
    pub fn poll_interval(&self) -> Duration {
        self.config.poll_interval
    }

    /// How long a graceful shutdown waits for in-flight work before forcing it.
    pub fn shutdown_timeout(&self) -> Duration {
        self.config.shutdown_timeout
    }

    /// The fd that becomes readable when the server should look at its shutdown flag.
    pub fn wake_fd(&self) -> RawFd {
        self.shutdown.wake_fd()
    }

    /// The server as the shared objects see it: how many handlers are blocked in a
    /// wait, and how many may be.
    pub fn scope(&self) -> &Arc<ServerScope> {
        &self.scope
    }

    /// A handle that stops the server from any thread.
    pub fn shutdown_handle(&self) -> crate::server::ShutdownHandle {
        crate::server::ShutdownHandle {
            state: Arc::clone(&self.shutdown),
        }
    }

    /// The raw fd of the listening socket.
    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

/// The message of a caught panic.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text payload".into())
}

/// What a thread serves (its server's scope and live-status row), put back on drop.
struct ThreadMarks {
    scope: Option<Arc<ServerScope>>,
    status: crate::status::Serving,
}

impl ThreadMarks {
    fn save() -> ThreadMarks {
        ThreadMarks {
            scope: crate::sync::scope::serving(),
            status: crate::status::serving(),
        }
    }
}

impl Drop for ThreadMarks {
    fn drop(&mut self) {
        crate::sync::scope::restore(self.scope.take());
        crate::status::restore(self.status.take());
    }
}
