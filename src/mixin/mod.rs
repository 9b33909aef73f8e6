//! The concurrency models. [`MixIn`] is the trait; each model lives in its own file.
//!
//! | mix-in | who accepts | where the handler runs |
//! |---|---|---|
//! | [`Iterative`] | the main thread | inline, one connection at a time |
//! | [`Threading`] | the main thread | a new thread per connection |
//! | [`Forking`] | the parent process | a new child process per connection |
//! | [`Scheduled`] | an accept coroutine | a stackful coroutine per connection on a mio loop |
//! | [`Preforked`] | pre-forked workers (or the master, passing fds) | the worker process, inline or on a thread |
//! | [`Prethreaded`] | pool threads under a lock, or the main thread handing off | a pool thread |

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
/// [`serve_forever`](MixIn::serve_forever) once. Its default is the loop of every model
/// whose parent accepts ([`serve_accepting`]): it waits for the listener, accepts while
/// [`can_accept`](MixIn::can_accept) says there is room, calls
/// [`process_request`](MixIn::process_request) for each verified connection, and calls
/// [`service_actions`](MixIn::service_actions) on every turn. On shutdown it stops
/// accepting, answers pending waiters, waits (up to the server's shutdown timeout) while
/// [`in_flight`](MixIn::in_flight) is above zero, and finally calls
/// [`server_close`](MixIn::server_close), which must leave no thread unjoined and no
/// child unreaped.
///
/// A model where someone else accepts (children of a preforked pool, a scheduler's
/// accept coroutine) overrides `serve_forever` whole.
///
/// `process_request` decides *where* the handler runs: it must eventually call
/// [`Context::finish_request`] with the connection, on whichever thread or process it
/// picks. A process-based model's child must never return into the parent's loop.
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
