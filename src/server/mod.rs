//! [`Server`]: binds a listener, holds the handler and the mix-in, and runs the loop.
//!
//! socketserver's contract, in Rust:
//!
//! - methods for the caller: [`Server::builder`] … [`build`](ServerBuilder::build),
//!   [`serve_forever`](Server::serve_forever), [`handle_request`](Server::handle_request),
//!   [`shutdown_handle`](Server::shutdown_handle), [`server_close`](Server::server_close);
//! - methods that may be overridden: the [`Hooks`] (`verify_request`, `handle_error`,
//!   `handle_timeout`, `service_actions`);
//! - methods for derived classes: the [`MixIn`] trait and the [`Context`] it is given
//!   (`get_request`, `verify_request`, `finish_request`, `reject_request`).

mod bind_addr;
mod builder;
mod context;
mod error;
mod hooks;
mod listener;
pub(crate) mod session;
mod shutdown;
mod socket_file;
pub(crate) mod source;
mod upgrade;

use std::io;
use std::sync::Arc;

pub use bind_addr::IntoBindAddr;
pub use builder::ServerBuilder;
pub use context::Context;
pub(crate) use context::LoopConfig;
pub use error::{ConfigCheck, ConfigError, StartError};
pub use hooks::{DefaultHooks, Hooks};
pub(crate) use listener::from_service_manager;
pub use listener::{ListenAddr, Listener};
pub use shutdown::ShutdownHandle;

use crate::mixin::MixIn;
use crate::sys::signal;
use nix::sys::signal::Signal;
use socket_file::SocketFile;

/// How often [`Server::handle_request`] looks again for room in a model at its cap.
const AT_CAPACITY_RECHECK: std::time::Duration = std::time::Duration::from_millis(10);

/// A server: a listener, a handler and a concurrency model.
///
/// ```no_run
/// use mixserve::{Server, Threading};
/// use mixserve::http::{Http, Request, Response};
///
/// let app = |_req: &mut Request| Response::text(200, "hello\n");
/// let mut server = Server::builder(Threading::new())
///     .bind("127.0.0.1:8000")
///     .build(Http::new(app))?;
/// server.serve_forever()?; // until SIGTERM, SIGINT or a ShutdownHandle
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Server<M: MixIn> {
    /// What the mix-in is given: listener, handler, hooks, shutdown state.
    ctx: Arc<Context>,
    /// The concurrency model.
    mixin: M,
    /// Whether SIGTERM/SIGINT/SIGQUIT stop this server.
    handle_signals: bool,
    /// The signal handlers installed by `build`, so a signal sent as soon as the
    /// server can be seen listening is held for the loop, not acted on by its default
    /// action; `serve_forever` takes them over and removes them when it returns.
    signals: Option<signal::SignalRegistration>,
    /// The process that bound the listener (only it removes a Unix socket file).
    owner_pid: u32,
    /// The Unix socket file to remove when the server closes, if any.
    socket_file: Option<SocketFile>,
}

impl<M: MixIn> Server<M> {
    /// Starts building a server with the given model.
    pub fn builder(mixin: M) -> ServerBuilder<M> {
        ServerBuilder::new(mixin)
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self.ctx.listener().local_addr()? {
            ListenAddr::Tcp(addr) => Ok(addr),
            ListenAddr::Unix(_) => Err(io::Error::other(
                "a Unix-domain listener has no socket address",
            )),
        }
    }

    /// The address the server listens on, TCP or Unix.
    pub fn listen_addr(&self) -> io::Result<ListenAddr> {
        self.ctx.listener().local_addr()
    }

    /// The mix-in, e.g. to read its statistics after `serve_forever` returned.
    pub fn mixin(&self) -> &M {
        &self.mixin
    }

    /// The server's context, for a unit test that drives a model's parts by hand.
    #[cfg(test)]
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// A handle that stops [`serve_forever`](Self::serve_forever) from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.ctx.shutdown_handle()
    }

    /// A handle on the live counters, readable from any thread while the server runs
    /// (under `Forking` and `Preforked` they live in shared memory, so they cover every
    /// process); see [`status`](crate::status).
    pub fn status(&self) -> crate::status::StatusHandle {
        self.ctx.status()
    }

    /// Serves until shut down (a [`ShutdownHandle`], or SIGTERM/SIGINT when signal
    /// handling is on), then drains: stops listening (new connects are refused at once;
    /// a second `serve_forever` listens again), lets in-flight connections finish
    /// and answers pending waiters, forcing what is left after the shutdown timeout.
    /// A second SIGINT (Ctrl-C twice), or SIGQUIT, skips the wait.
    ///
    /// The handlers are in place from [`build`](ServerBuilder::build) on, so a stop
    /// signal sent as soon as the server listens is not lost: `serve_forever` acts on
    /// it at once. They are removed when it returns (a program's Ctrl-C works again).
    /// Under every model but `Preforked`, SIGUSR2 (binary upgrade) and SIGHUP (replace
    /// the workers) are logged and ignored.
    pub fn serve_forever(&mut self) -> io::Result<()> {
        let _signals = match self.signals.take() {
            Some(signals) => Some(signals),
            None => register_signals(&self.ctx, self.handle_signals)?,
        };
        if self.mixin.name() != "preforked" {
            self.ctx.shutdown.set_single_process(self.mixin.name());
        }
        // Only a preforked master reports ready to the master that started it.
        if crate::sys::upgrade::awaiting_ready() && self.mixin.name() != "preforked" {
            crate::sys::upgrade::decline();
            let error = io::Error::other(format!(
                "started by a binary upgrade, but the {} model cannot take over from a \
                 preforked master (only Preforked reports ready); the old master serves on",
                self.mixin.name()
            ));
            log::error!("{error}");
            return Err(error);
        }
        self.ctx.scope().set_model(self.mixin.name());
        self.ctx.set_status_model(self.mixin.name());
        self.ctx.scope().set_max_blocked(self.mixin.max_blocked());
        self.listen_again();
        self.ctx.shutdown.prepare_drain();
        let result = self.mixin.serve_forever(&self.ctx);
        self.ctx.shutdown.reset();
        result
    }

    /// A listener an earlier `serve_forever` stopped listens again.
    fn listen_again(&mut self) {
        if self.ctx.shutdown.reopen() && self.socket_file.is_some() {
            // A Unix listener listens again on a new socket, so on a new file.
            self.socket_file = SocketFile::of(self.ctx.listener());
        }
    }

    /// Waits for one connection and processes it with the mix-in (socketserver's
    /// `handle_request`). Waits at most the builder's `timeout`, calling
    /// [`Hooks::handle_timeout`] if none came.
    ///
    /// It does not look at signals: the handlers `build` installed are removed, and a
    /// stop signal they held since is raised again, to the program's own disposition.
    pub fn handle_request(&mut self) -> io::Result<()> {
        if let Some(signals) = self.signals.take() {
            signals.release_redelivering(&STOP_SIGNALS);
        }
        self.listen_again();
        let deadline = self.ctx.config.timeout.map(crate::deadline::from_now);
        self.ctx.scope().set_model(self.mixin.name());
        self.ctx.set_status_model(self.mixin.name());
        self.ctx.scope().set_max_blocked(self.mixin.max_blocked());
        self.ctx.listener().set_nonblocking(true)?;
        // A model at its cap (`Threading::max_threads`) takes no connection until one
        // of its handlers ends, as under `serve_forever`.
        while !self.mixin.can_accept() {
            self.mixin.service_actions(&self.ctx);
            if self.mixin.can_accept() {
                break;
            }
            if deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
                self.ctx.handle_timeout();
                return Ok(());
            }
            std::thread::sleep(AT_CAPACITY_RECHECK);
        }
        loop {
            if let Some(conn) = self.ctx.get_request()? {
                if self.ctx.verify_request(&conn) {
                    self.mixin.process_request(&self.ctx, conn)?;
                }
                self.mixin.service_actions(&self.ctx);
                return Ok(());
            }
            match crate::rt::park::poll_fd(
                self.ctx.listener_fd(),
                crate::rt::Interest::Readable,
                deadline,
            ) {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    self.ctx.handle_timeout();
                    return Ok(());
                }
                other => other?,
            }
        }
    }

    /// Closes the server: stops any remaining work of the mix-in and closes the
    /// listener (removing a Unix socket file). Dropping the server does the same.
    pub fn server_close(self) {}
}

/// The signals that stop a server.
const STOP_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT];

/// Installs the handlers of a server with signal handling `on`: the stop signals,
/// SIGCHLD (a forking parent reaps), and SIGUSR2 and SIGHUP (a preforked master acts
/// on them, any other model logs and ignores them instead of dying).
fn register_signals(ctx: &Context, on: bool) -> io::Result<Option<signal::SignalRegistration>> {
    if !on {
        return Ok(None);
    }
    let mut wanted = STOP_SIGNALS.to_vec();
    wanted.extend([Signal::SIGCHLD, Signal::SIGUSR2, Signal::SIGHUP]);
    signal::register(ctx.shutdown.signal_fd(), &wanted).map(Some)
}

impl<M: MixIn> Drop for Server<M> {
    fn drop(&mut self) {
        // The signal handlers go before the context that owns their self-pipe (fields
        // drop in order, `ctx` first): a signal in between would write to a closed
        // pipe's fd number, which another thread may have reused.
        drop(self.signals.take());
        self.mixin.server_close(&self.ctx);
        // A socket file another master serves now (a binary upgrade) stays.
        if std::process::id() == self.owner_pid && !crate::sys::upgrade::listener_shared() {
            if let Some(file) = &self.socket_file {
                file.remove();
            }
        }
    }
}
