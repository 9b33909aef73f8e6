//! The concurrency models. [`MixIn`] is the trait; each model lives in its own file.
//!
//! | mix-in | who accepts | where the handler runs |
//! |---|---|---|
//! | [`Iterative`] | the loop | inline, one connection at a time |
//! | [`Threading`] | the loop | a new thread per connection |
//! | [`Forking`] | the loop (the parent process) | a new child process per connection |
//! | [`Scheduled`] | an accept coroutine per loop | a stackful coroutine per connection on a mio loop |
//! | [`Prethreaded`] | pool threads under a lock, or the loop handing off | a pool thread |
//! | [`Preforked`] | each worker's model (or the master, passing fds) | the worker's inner model — any of the above but `Forking`, or yours |
//!
//! # How models compose
//!
//! A model is one loop over a *connection source*. In one process the source is the
//! server's listener; in a [`Preforked`] worker it is the worker's share of the
//! connections (blocking `accept`, `accept` under a lock, its own `SO_REUSEPORT`
//! listener, or fds the master passes). The source owns the accept-side rules
//! (transient errors, `EMFILE`, wasted wake-ups, a stopping worker's leftovers), so a
//! model never knows where it runs, and `Preforked` runs any model — yours too — in
//! each worker, unchanged.
//!
//! - `serve_loop.rs` — the one loop ([`serve_accepting`], every model's default
//!   `serve_forever`) and the one drain every model ends with;
//! - `threads.rs` — the one thread bookkeeping (`Threading`, `Prethreaded`);
//! - `settings.rs` — the one constructor style: `X::new()`, then a method per setting;
//! - `boxed.rs` — `Box<dyn MixIn>` is a model (a model chosen at run time);
//! - `pool_stats.rs` — per-worker counters of the pools ([`PoolStats`]);
//! - one file or folder per model; `preforked/` holds the master, its worker table, fd
//!   dispatch and the worker process.

mod boxed;
mod forking;
mod iterative;
pub(crate) mod pool_stats;
mod preforked;
mod prethreaded;
mod scheduled;
mod serve_loop;
mod settings;
mod threading;
mod threads;

use std::io;
use std::sync::Arc;

use crate::conn::Conn;
use crate::server::{ConfigError, Context};

pub use forking::Forking;
pub use iterative::Iterative;
pub use pool_stats::{PoolStats, WorkerStats};
pub use preforked::{Accept, Dispatch, LockKind, Preforked};
pub use prethreaded::{PoolAccept, Prethreaded};
pub use scheduled::{Scheduled, ScheduledStats};
pub use serve_loop::serve_accepting;
pub use threading::Threading;

/// How connections are accepted and where the handler runs.
///
/// # The contract
///
/// [`Server::serve_forever`](crate::Server::serve_forever) calls
/// [`serve_forever`](MixIn::serve_forever) once. Its default, [`serve_accepting`], is
/// the loop every model uses: it takes connections from the server's source (the
/// listener, or a preforked worker's share) while [`can_accept`](MixIn::can_accept)
/// says there is room, calls [`process_request`](MixIn::process_request) for each
/// verified connection, and calls [`service_actions`](MixIn::service_actions) on every
/// turn. On shutdown it stops accepting, answers pending waiters, waits (up to the
/// server's shutdown timeout) while [`in_flight`](MixIn::in_flight) is above zero, and
/// finally calls [`server_close`](MixIn::server_close), which must leave no thread
/// unjoined and no child unreaped.
///
/// A model where someone else accepts (a scheduler's accept coroutine, a pool's
/// threads, a preforked master) overrides `serve_forever` whole.
///
/// `process_request` decides *where* the handler runs: it must eventually call
/// [`Context::finish_request`] with the connection, on whichever thread or process it
/// picks. A process-based model's child must never return into the parent's loop.
///
/// Whatever the model, it also runs inside each worker of a [`Preforked`] pool
/// ([`Preforked::inner`]): there `serve_forever` is called with the worker's context,
/// and the loop takes the worker's share of the connections.
///
/// # Implementing it
///
/// A model that serves each connection inline but stops after a fixed number:
///
/// ```
/// use std::io;
/// use std::sync::Arc;
/// use mixserve::{Conn, Context, MixIn};
///
/// #[derive(Debug)]
/// struct Limited {
///     left: usize,
/// }
///
/// impl MixIn for Limited {
///     fn name(&self) -> &'static str {
///         "limited"
///     }
///
///     fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
///         ctx.finish_request(conn); // inline, like Iterative
///         self.left -= 1;
///         if self.left == 0 {
///             ctx.shutdown_handle().shutdown();
///         }
///         Ok(())
///     }
/// }
///
/// let handler = || mixserve::handler::from_fn(|conn: &mut Conn| {
///     use std::io::Write;
///     conn.write_all(b"bye\n")
/// });
/// let mut server = mixserve::Server::builder(Limited { left: 1 })
///     .bind("127.0.0.1:0")
///     .handle_signals(false)
///     .build(handler)?;
/// let addr = server.local_addr()?;
/// let client = std::thread::spawn(move || {
///     let mut reply = String::new();
///     let mut stream = std::net::TcpStream::connect(addr)?;
///     std::io::Read::read_to_string(&mut stream, &mut reply).map(|_| reply)
/// });
/// server.serve_forever()?;
/// assert_eq!(client.join().unwrap()?, "bye\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The same model runs inside every worker of a preforked pool, unchanged (here each
/// worker stops after one connection and the master starts a fresh one). A pool's
/// master forks, so it must be the process's only thread: the client is a second
/// process, this program run again, which stops the master with SIGTERM once served.
///
/// ```standalone_crate
/// # use std::io;
/// # use std::sync::Arc;
/// # use mixserve::{Conn, Context, MixIn};
/// # #[derive(Debug)]
/// # struct Limited {
/// #     left: usize,
/// # }
/// # impl MixIn for Limited {
/// #     fn name(&self) -> &'static str {
/// #         "limited"
/// #     }
/// #     fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
/// #         ctx.finish_request(conn);
/// #         self.left -= 1;
/// #         if self.left == 0 {
/// #             ctx.shutdown_handle().shutdown();
/// #         }
/// #         Ok(())
/// #     }
/// # }
/// use std::io::Read;
/// use std::process::Command;
/// use mixserve::mixin::{Accept, Dispatch, Preforked};
///
/// if let Ok(addr) = std::env::var("LIMITED_CLIENT_OF") {
///     // The master ends gracefully only if the reply is right.
///     let mut reply = String::new();
///     let read = std::net::TcpStream::connect(addr).and_then(|mut s| s.read_to_string(&mut reply));
///     let signal = if read.is_ok() && reply == "bye\n" { "-TERM" } else { "-KILL" };
///     let master = std::os::unix::process::parent_id().to_string();
///     Command::new("kill").args([signal, &master]).status()?;
///     return Ok(());
/// }
/// let model = Preforked::new()
///     .accept(Accept::Passed(Dispatch::FirstReady))
///     .workers(2)
///     .inner(Limited { left: 1 });
/// let stats = model.stats();
/// let handler = || mixserve::handler::from_fn(|conn: &mut Conn| {
///     use std::io::Write;
///     conn.write_all(b"bye\n")
/// });
/// let mut server = mixserve::Server::builder(model).bind("127.0.0.1:0").build(handler)?;
/// Command::new(std::env::current_exe()?)
///     .env("LIMITED_CLIENT_OF", server.local_addr()?.to_string())
///     .spawn()?; // the master reaps it with its workers
/// server.serve_forever()?;
/// let served: u64 = stats.workers().iter().map(|worker| worker.requests).sum();
/// assert_eq!(served, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait MixIn: Send + 'static {
    /// A short lower-case name for logs and command lines (`"threading"`).
    fn name(&self) -> &'static str;

    /// Checks the model's configuration; an error stops the server at start-up.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Runs the server until shutdown. The default is [`serve_accepting`].
    fn serve_forever(&mut self, ctx: &Arc<Context>) -> io::Result<()> {
        serve_accepting(self, ctx)
    }

    /// Runs the handler for one accepted connection, somewhere.
    fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()>;

    /// Housekeeping on every turn of the loop: join finished threads, reap children.
    fn service_actions(&mut self, ctx: &Arc<Context>) {
        let _ = ctx;
    }

    /// Whether another connection may start now (false at a worker cap).
    fn can_accept(&self) -> bool {
        true
    }

    /// How many handlers may block in a shared-object wait at once (`None`: no
    /// limit). A model with `N` workers says `N - 1`: a wait that would take the last
    /// free worker fails at once (HTTP: `503`), so a notify can always be served.
    fn max_blocked(&self) -> Option<usize> {
        None
    }

    /// Connections still being served (threads running, children alive).
    fn in_flight(&self) -> usize {
        0
    }

    /// Ends whatever is still running after the graceful wait, and joins or reaps it.
    fn server_close(&mut self, ctx: &Arc<Context>) {
        let _ = ctx;
    }
}
