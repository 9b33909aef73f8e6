//! [`Preforked`]: a master process and a pool of worker processes forked before any
//! connection arrives (UNP §30.6–30.9, Apache's prefork, gunicorn).
//!
//! - `mod.rs` — the configuration: [`Preforked`], [`Accept`], [`LockKind`],
//!   [`Dispatch`];
//! - `master.rs` — the master's single-threaded loop: signals, the hub, the listener
//!   when the master accepts, worker pipes;
//! - `pool.rs` — the worker table: spawn, reap, respawn with back-off, growth,
//!   heartbeat, graceful replacement;
//! - `dispatch.rs` — `Accept::Passed`: which ready worker gets the next connection;
//! - `upgrade.rs` — the binary upgrade (`SIGUSR2`) from the old master's side;
//! - `worker.rs` — a worker process from fork to `_exit`: it runs the inner model's
//!   own `serve_forever` over the worker's share of the connections
//!   ([`source::worker`](crate::server::source::worker)).

mod backoff;
mod budget;
mod control;
mod dispatch;
mod master;
mod plan;
mod pool;
mod upgrade;
mod worker;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::conn::Conn;
use crate::mixin::pool_stats::{PoolStats, Scoreboard};
use crate::mixin::settings::settings;
use crate::mixin::{Iterative, MixIn};
use crate::server::{ConfigCheck, ConfigError, Context};

/// Who accepts connections in a [`Preforked`] pool, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accept {
    /// Every worker blocks in `accept` on the listener it inherited (UNP row 2). The
    /// listener is put in blocking mode for the whole run (`O_NONBLOCK` lives on the
    /// open file description, shared by every worker); Linux wakes one worker per
    /// connection, so there is no thundering herd.
    Shared,
    /// A worker takes a lock, accepts one connection, releases the lock (UNP rows
    /// 3–4): only one worker sleeps in `accept` at a time.
    Locked(LockKind),
    /// Each worker has its own `SO_REUSEPORT` listener and the kernel spreads
    /// connections among them. The server's listener must be bound with
    /// `SO_REUSEPORT` too ([`ServerBuilder::reuse_port`](crate::ServerBuilder::reuse_port),
    /// or a listener from [`Listener::bind_tcp_reuseport`](crate::Listener::bind_tcp_reuseport));
    /// the master accepts what the kernel gives it and passes it to a worker. A
    /// worker that dies (or is replaced) loses what waits in its own queue — a
    /// kernel limit (`net.ipv4.tcp_migrate_req` lifts it). Because each worker has its
    /// own queue, the reserve rule applies per worker: a wait that would take the
    /// worker's last free slot fails at once (`503`; every wait, with an
    /// `Iterative` inner model, which a warning says at start-up), since a
    /// notify the kernel hashed to that worker could not be served.
    ReusePort,
    /// The master accepts and passes each connection's fd (`SCM_RIGHTS`) over a
    /// socketpair to a worker that said it is ready (UNP row 5).
    Passed(Dispatch),
}

/// The lock around `accept` in [`Accept::Locked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockKind {
    /// A POSIX record lock (`fcntl(F_SETLKW)`) on an unnamed file (UNP §30.7). The
    /// kernel releases it when its holder dies.
    File,
    /// A robust process-shared pthread mutex in shared memory (UNP §30.8). A holder
    /// that dies leaves it "owner dead" and the next worker recovers it.
    SharedMutex,
}

/// Which ready worker gets the next connection under [`Accept::Passed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Dispatch {
    /// The worker that said "ready" first (UNP's choice, and the seed's).
    #[default]
    FirstReady,
    /// The next ready worker after the one served last, in slot order.
    RoundRobin,
    /// The ready worker that has served the fewest connections so far.
    LeastBusy,
}

/// A master process and a pool of pre-forked workers, each running any model.
///
/// Each worker runs the [`inner`](Preforked::inner) model — any [`MixIn`]: `Iterative`
/// by default (UNP rows 2–5), `Threading` (Apache's worker MPM), `Scheduled` (nginx,
/// gunicorn+gevent), `Prethreaded`, or your own — with its own `serve_forever`, over
/// the worker's share of the connections ([`accept`](Preforked::accept) says how the
/// workers share them). The model does not know it runs in a worker. `Forking` is the
/// one exception: a worker has a watchdog thread, and a process with threads must not
/// fork.
///
/// The master forks [`workers`](Preforked::workers) processes before serving, then
/// runs one single-threaded loop: it reaps and respawns workers, grows the pool when
/// every worker is busy — up to [`max_workers`](Preforked::max_workers), capped at
/// start to half the workers the master's `RLIMIT_NOFILE` can supervise (about 2 fds
/// per worker plus 64 spare; the other half lets a SIGHUP run the replacements beside
/// the old workers; a warning says so, and too few fds for `workers` is a start-up
/// error) — serves the shared
/// objects ([`Broadcast`](crate::sync::Broadcast), [`Channel`](crate::sync::Channel))
/// to the workers through the hub, and handles signals:
///
/// | signal | effect |
/// |---|---|
/// | SIGTERM | graceful: stop accepting, finish in-flight connections, answer pending waiters, exit; workers left after the shutdown timeout are killed |
/// | SIGINT (Ctrl-C) | the first graceful, as SIGTERM (workers, which get it from the terminal too, finish what they hold); a second one fast |
/// | SIGQUIT | fast: kill the workers and exit |
/// | SIGHUP | replace every worker: new ones start, old ones finish what they hold and exit; a wait they hold stays until the next notify releases it (or is answered `503` just before the shutdown timeout). Old and new together stay within the master's open-file budget: replacements that do not fit beside the old workers start as those exit (logged) |
/// | SIGTTIN / SIGTTOU | one worker more (up to `max_workers`; beyond, logged and ignored) / less (an idle worker that holds no waiter is retired first; a retired worker keeps its waiters as on SIGHUP) |
/// | SIGUSR2 | upgrade the binary: start it again on the same listening socket; once the new master's workers serve, drain as on SIGTERM (pending waiters get `503`) and exit — see below |
///
/// nginx's master reads TERM/INT as fast and QUIT as graceful, HUP as "reload the
/// configuration", and leaves the old master running after USR2 until told (WINCH,
/// QUIT); gunicorn's arbiter reads TERM as graceful, INT/QUIT as quick, and also has
/// TTIN/TTOU and USR2 (then TERM to the old master). Here the old master goes by
/// itself once the new one is ready. WINCH and USR1 are not handled.
///
/// **Binary upgrade (SIGUSR2).** The master starts `argv[0]` again — resolved as a
/// shell would (a path, relative to the directory the process started in, or a name
/// on `PATH`) at each upgrade, so a binary installed over the old file is the one that
/// runs (`/proc/self/exe` would name the old, deleted one) — with the same arguments
/// and environment, the listening socket on fd 3 (`LISTEN_FDS=1`, `LISTEN_PID`: the
/// systemd convention) and a readiness pipe's write end on fd 4
/// (`MIXSERVE_UPGRADE_READY_FD=4`; `MIXSERVE_UPGRADE_OLD_MASTER` names the old
/// master); every other fd is close-on-exec. In the new
/// process, [`ServerBuilder::build`](crate::ServerBuilder::build) takes the passed
/// socket instead of binding, provided it matches what the program asks for (the same
/// Unix path; the same IP and port, port 0 matching any). The new master writes
/// "ready" once every one of its workers serves; the old master then drains and
/// exits. While the socket is shared neither master shuts it down (which would stop it
/// for both) nor removes its socket file, and the old master's workers close their
/// copies without touching it: no connection is refused or reset during the overlap.
/// A new binary that cannot be executed, exits, or is not ready within
/// [`upgrade_timeout`](Preforked::upgrade_timeout) is stopped (SIGTERM, SIGKILL 10 s
/// later) and reaped, the failure is logged, and the old master serves on. The new
/// master is the old one's child, never in its worker table: no stop or kill meant for
/// the workers reaches it. A second SIGUSR2 during an upgrade, or one to a new master
/// that is not ready yet, is ignored (logged). A master stopped (SIGTERM, SIGINT,
/// SIGQUIT) while its new master starts leaves that one running on the socket, as
/// nginx's does (logged): it serves alone once ready. The
/// new binary must use the same kind of accept mode — workers accept
/// ([`Accept::Shared`], [`Accept::Locked`]) or the master does ([`Accept::Passed`]) —
/// since the listener's blocking flag is shared by both masters; it refuses to start
/// otherwise. [`Accept::ReusePort`] refuses SIGUSR2 (logged): each worker's own
/// `SO_REUSEPORT` queue is reset when the worker closes it, unless
/// `net.ipv4.tcp_migrate_req=1`.
///
/// One worker is always kept free of shared-object waits: when `max_workers` workers
/// could all block in `/wait`, the last free one answers further waits with `503`.
/// The pool degrades, it never dies of its own failures: a worker that cannot be
/// started (`fork`, `socketpair` or a registration failing: `EMFILE`, `EAGAIN`,
/// `ENOMEM`) or that dies while starting is logged with the reason, counted
/// ([`PoolStats`]: restarts, spawn failures, back-offs) and retried after an
/// exponential back-off (100 ms doubling, at most 10 s; per slot, reset only when that
/// slot's own worker serves), while the others serve. Only a pool none of whose
/// workers ever started gives up, with an error. Worker exits, respawns, back-offs
/// and refusals to grow are logged (`log` crate, with the pid and the reason).
///
/// When the master dies, workers that share its listener shut it down at once (a new
/// connection is refused instead of queued for nobody), then drain: idle keep-alive
/// connections close at once, requests in hand finish.
///
/// **Heartbeat.** A worker's watchdog beats every second while the worker's *serving
/// loop is alive*, which means one of: the model came back to its source since the
/// last beat (asked for its next connection, or waited for room), a thread of the
/// worker is blocked waiting for a connection now, or a handler is parked in a
/// shared-object wait (`Broadcast::wait`, `Channel::recv`: a long wait is not a stuck
/// handler). Per inner model: `Iterative` — the one thread returns to its source
/// after each connection, so a handler that runs (or blocks outside a shared wait)
/// longer than the [`heartbeat_timeout`](Preforked::heartbeat_timeout) gets its
/// worker killed and replaced; `Prethreaded`, `Threading` and `Scheduled` — the
/// worker's serving loop keeps coming back while handler threads or coroutines run
/// (it waits for room, hands connections over, or watches for a stop while the pool's
/// threads accept), so a stuck handler there holds a thread or its loop but not the
/// heartbeat, even when every thread of a `Prethreaded` pool is stuck (as with
/// gunicorn's threaded workers; the scheduled model's own stall detector reports a
/// coroutine that blocks its loop). While a worker drains (after a stop), its drain loop's turns beat
/// too: the shutdown timeout bounds the drain, not the heartbeat (except under
/// `Iterative`, whose one thread runs the handler it drains). A frozen worker (SIGSTOP)
/// stops beating in every model. Keep the timeout above the longest handler run outside
/// shared waits.
///
/// ```no_run
/// use mixserve::Server;
/// use mixserve::http::{Http, Request, Response};
/// use mixserve::mixin::{Accept, LockKind, Preforked};
/// use mixserve::Threading;
///
/// let model = Preforked::new()
///     .accept(Accept::Locked(LockKind::SharedMutex))
///     .workers(4)
///     .max_workers(64)
///     .inner(Threading::new().max_threads(16));
/// let stats = model.stats();
/// let app = |_req: &mut Request| Response::text(200, "hello\n");
/// let mut server = Server::builder(model).bind("127.0.0.1:8000").build(Http::new(app))?;
/// server.serve_forever()?;
/// print!("{}", stats.table());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Preforked {
    /// Who accepts.
    accept: Accept,
    /// The model each worker runs.
    inner: Box<dyn MixIn>,
    /// Workers to keep running.
    workers: usize,
    /// The pool grows up to this many when every worker is busy.
    max_workers: usize,
    /// A worker retires after this many connections (plus jitter).
    max_requests: Option<u64>,
    /// Up to this many extra connections, at random per worker, so workers do not
    /// all retire at once.
    max_requests_jitter: u64,
    /// A worker silent this long is killed.
    heartbeat_timeout: Duration,
    /// A new master started by `SIGUSR2` not ready within this is stopped.
    upgrade_timeout: Duration,
    /// Per-worker counters and states, shared with the workers (`None` if the
    /// mapping failed: the model then refuses to start).
    board: Option<Arc<Scoreboard>>,
}

impl std::fmt::Debug for Preforked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preforked")
            .field("accept", &self.accept)
            .field("inner", &self.inner.name())
            .field("workers", &self.workers)
            .field("max_workers", &self.max_workers)
            .finish_non_exhaustive()
    }
}

settings!(Preforked {
    /// Sets how many workers run (at least 1).
    fn workers(workers: usize) { workers = workers }
    /// Sets how far the pool may grow when every worker is busy (at least `workers`).
    fn max_workers(max: usize) { max_workers = max }
    /// Sets who accepts connections, and how (default [`Accept::Shared`]).
    fn accept(accept: Accept) { accept = accept }
    /// Sets the model each worker runs (default [`Iterative`]): any [`MixIn`] but
    /// `Forking`. Each worker gets its own copy, made by the fork.
    fn inner(inner: impl MixIn) { inner = Box::new(inner) }
    /// Sets how long a worker may stay silent before it is killed as hung.
    fn heartbeat_timeout(timeout: Duration) { heartbeat_timeout = timeout }
    /// Sets how long a new master started by `SIGUSR2` may take to report that its
    /// workers serve before it is stopped and this master serves on (default
    /// [`DEFAULT_UPGRADE_TIMEOUT`](Preforked::DEFAULT_UPGRADE_TIMEOUT)).
    fn upgrade_timeout(timeout: Duration) { upgrade_timeout = timeout }
});

impl Preforked {
    /// Default number of workers.
    pub const DEFAULT_WORKERS: usize = 4;
    /// Default growth limit (Apache's `MaxRequestWorkers`).
    pub const DEFAULT_MAX_WORKERS: usize = 256;
    /// The largest `max_workers` accepted (slots are reserved for replacements too).
    pub const MAX_WORKERS: usize = 512;
    /// Default heartbeat timeout.
    pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default time a new master started by `SIGUSR2` has to get ready.
    pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);

    /// A pool of [`DEFAULT_WORKERS`](Self::DEFAULT_WORKERS) iterative workers, each
    /// blocking in `accept` on the shared listener ([`Accept::Shared`]).
    pub fn new() -> Preforked {
        // Two slots per worker, so a full pool can be replaced (SIGHUP) side by side.
        let board = Scoreboard::new(2 * Preforked::MAX_WORKERS)
            .ok()
            .map(Arc::new);
        Preforked {
            accept: Accept::Shared,
            inner: Box::new(Iterative::new()),
            workers: Preforked::DEFAULT_WORKERS,
            max_workers: Preforked::DEFAULT_MAX_WORKERS,
            max_requests: None,
            max_requests_jitter: 0,
            heartbeat_timeout: Preforked::DEFAULT_HEARTBEAT_TIMEOUT,
            upgrade_timeout: Preforked::DEFAULT_UPGRADE_TIMEOUT,
            board,
        }
    }

    /// Retires each worker after `max` connections plus up to `jitter` more (chosen
    /// at random per worker); the master starts a fresh one.
    pub fn max_requests(mut self, max: u64, jitter: u64) -> Preforked {
        self.max_requests = Some(max);
        self.max_requests_jitter = jitter;
        self
    }

    /// A handle on the per-worker counters, readable after the server has been built
    /// with this model (and after `serve_forever` returned).
    pub fn stats(&self) -> PoolStats {
        PoolStats::new(self.board.clone())
    }

    /// Says at start-up what the configuration cannot serve: under `ReusePort` each
    /// worker takes only its own queue, so the reserve rule counts one worker's model
    /// alone, and an inner model that lets no handler block (`Iterative`) refuses every
    /// wait (`503`). A request that needs another request to end it
    /// (comet's `/wait` and `/notify`) cannot be served, however many workers run.
    fn warn_if_every_wait_is_refused(&self) {
        if self.accept == Accept::ReusePort && self.inner.max_blocked() == Some(0) {
            log::warn!(
                "preforked: with Accept::ReusePort each worker takes only its own queue, and \
                 its inner model ({}) lets no handler wait: every wait will be refused \
                 (503), since the request that would end it may be queued \
                 behind it; run threading or scheduled inside the workers to serve waits",
                self.inner.name()
            );
        }
    }

    /// Connections the whole pool can hold at once, for `max_blocked`: what one
    /// worker's model holds (its `max_blocked` plus the one kept free) per worker.
    fn capacity(&self) -> Option<usize> {
        let per_worker = self.inner.max_blocked()?.saturating_add(1);
        Some(per_worker.saturating_mul(self.max_workers))
    }
}

impl MixIn for Preforked {
    fn name(&self) -> &'static str {
        "preforked"
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.inner.validate()?;
        let check = ConfigCheck(self.name());
        check.within("workers", self.workers, 1..=Preforked::MAX_WORKERS)?;
        let most = Preforked::MAX_WORKERS;
        check.within("max_workers", self.max_workers, self.workers..=most)?;
        check.require(
            "max_requests",
            self.max_requests != Some(0),
            "must be above 0",
        )?;
        let beats = self.heartbeat_timeout >= Duration::from_secs(2);
        check.require("heartbeat_timeout", beats, "must be at least 2 s")?;
        check.require("stats", self.board.is_some(), "cannot map the scoreboard")?;
        let forks = self.inner.name() == "forking";
        check.require("inner", !forks, "cannot fork: a worker has threads")
    }

    fn serve_forever(&mut self, ctx: &Arc<Context>) -> io::Result<()> {
        self.warn_if_every_wait_is_refused();
        master::run(self, ctx)
    }

    fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
        // Only `Server::handle_request` comes here: serve inline, as `Iterative` would.
        ctx.finish_request(conn);
        Ok(())
    }

    fn max_blocked(&self) -> Option<usize> {
        self.capacity().map(|n| n.saturating_sub(1))
    }
}
