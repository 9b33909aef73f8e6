//! [`ServerBuilder`]: the server's settings, checked at start-up.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::handler::MakeHandler;
use crate::mixin::MixIn;
use crate::server::socket_file::SocketFile;
use crate::server::upgrade::{Wanted, take_inherited};
use crate::server::{
    ConfigCheck, Context, DefaultHooks, Hooks, IntoBindAddr, Listener, LoopConfig, Server,
    StartError,
};

/// Where the listener comes from.
#[derive(Debug)]
enum Source {
    None,
    Tcp(String),
    Unix(PathBuf),
    Listener(Listener),
}

/// Builds a [`Server`]; every setting has a default that just works.
#[derive(Debug)]
pub struct ServerBuilder<M: MixIn> {
    mixin: M,
    source: Source,
    backlog: i32,
    reuse_port: bool,
    handle_signals: bool,
    tcp_nodelay: bool,
    poll_interval: Duration,
    shutdown_timeout: Duration,
    timeout: Option<Duration>,
    hooks: Option<BoxedHooks>,
}

/// The user's hooks (a wrapper so the builder stays `Debug`).
struct BoxedHooks(Box<dyn Hooks>);

impl std::fmt::Debug for BoxedHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

impl<M: MixIn> ServerBuilder<M> {
    /// The default listen backlog: well above the historical 128, so a burst of
    /// connects (a thousand comet clients) is not dropped before the loop accepts.
    pub const DEFAULT_BACKLOG: i32 = 4096;

    pub(crate) fn new(mixin: M) -> ServerBuilder<M> {
        ServerBuilder {
            mixin,
            source: Source::None,
            backlog: Self::DEFAULT_BACKLOG,
            reuse_port: false,
            handle_signals: true,
            tcp_nodelay: true,
            poll_interval: Duration::from_millis(500),
            shutdown_timeout: Duration::from_secs(10),
            timeout: None,
            hooks: None,
        }
    }

    /// Listens on a TCP address: a string (`"127.0.0.1:0"`, `"[::1]:8080"`,
    /// `"localhost:80"`), a `SocketAddr` or an `(ip, port)` pair; see [`IntoBindAddr`].
    ///
    /// The address `"systemd"` takes the socket passed by socket activation instead
    /// ([`Listener::from_systemd`]: TCP or Unix, `LISTEN_PID` and `LISTEN_FDS` checked),
    /// so a program that takes its address from the command line is socket-activated
    /// by being given `systemd`. A graceful stop then only stops accepting (systemd
    /// keeps the socket, with the clients waiting in its backlog, for the next start);
    /// a socket bound here is shut down at once, so new clients are refused.
    ///
    /// A program started again by a `Preforked` master's binary upgrade (`SIGUSR2`)
    /// takes the socket the old master passed instead of binding, whatever the
    /// source, provided it matches (the same Unix path; the same IP and port, port 0
    /// matching any): see [`Preforked`](crate::Preforked)'s signal table.
    pub fn bind(mut self, addr: impl IntoBindAddr) -> Self {
        self.source = Source::Tcp(addr.into_bind_addr());
        self
    }

    /// Binds a TCP address of [`bind`](Self::bind) with `SO_REUSEPORT` as well (off by
    /// default), as `Preforked` with `Accept::ReusePort` needs: each worker binds its
    /// own listener on the port. Nothing else changes: the backlog, the error naming
    /// the address that failed, a binary upgrade's port check.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Listens on a Unix-domain socket at `path` (a stale socket file is replaced; the
    /// umask sets who may connect, see [`Listener::bind_unix`]).
    pub fn bind_unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Source::Unix(path.into());
        self
    }

    /// Serves an already bound and listening socket. A graceful stop shuts it down,
    /// as one bound here, so new clients are refused at once; one taken by
    /// [`Listener::from_systemd`] stays the service manager's: the stop only stops
    /// accepting.
    pub fn listener(mut self, listener: impl Into<Listener>) -> Self {
        self.source = Source::Listener(listener.into());
        self
    }

    /// Sets the listen backlog (default [`DEFAULT_BACKLOG`](Self::DEFAULT_BACKLOG); the
    /// kernel caps it at `net.core.somaxconn`).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Whether SIGTERM and SIGINT (graceful; a second SIGINT fast) and SIGQUIT (fast)
    /// stop the server
    /// (default: on). The handler only writes a byte to the loop's self-pipe. It is
    /// installed by [`build`](Self::build), so a signal sent as soon as the server
    /// listens waits for [`serve_forever`](Server::serve_forever).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Whether TCP connections have Nagle's algorithm off (`TCP_NODELAY`; default: on,
    /// as nginx, Go's net/http and hyper do). Set on the listener, from which Linux
    /// copies it to each accepted socket; a Unix-domain listener ignores it.
    ///
    /// With Nagle on, a small write waits while an earlier one is unacknowledged, and
    /// clients delay their acknowledgements by up to 40 ms: a streamed response written
    /// in several pieces stalls that long per piece on a keep-alive connection. Turn it
    /// off only for a protocol that writes many tiny pieces and never waits for an
    /// answer between them.
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.tcp_nodelay = on;
        self
    }

    /// How often an idle loop wakes for `service_actions` (default 500 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long a graceful shutdown waits for in-flight connections (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long [`Server::handle_request`] waits for a connection (default: for ever).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Installs the user's [`Hooks`].
    pub fn hooks(mut self, hooks: impl Hooks) -> Self {
        self.hooks = Some(BoxedHooks(Box::new(hooks)));
        self
    }

    /// Checks the settings, binds the listener and returns the server, ready to serve.
    pub fn build<H: MakeHandler>(self, make_handler: H) -> Result<Server<M>, StartError> {
        // A socket file made for this server goes with a start that fails.
        let mut made = Unstarted(match &self.source {
            Source::Listener(listener) => SocketFile::of(listener),
            _ => None,
        });
        self.mixin.validate()?;
        let check = ConfigCheck("server");
        check.at_least("backlog", usize::try_from(self.backlog).unwrap_or(0), 1)?;
        let polls = !self.poll_interval.is_zero();
        check.require("poll_interval", polls, "must be above zero")?;
        if matches!(self.source, Source::None) {
            return Err(StartError::NoAddress);
        }
        // Once: it takes the upgrade's variables out of the environment.
        let upgrading = upgrading()?;
        let listener = match self.source {
            Source::None => return Err(StartError::NoAddress),
            source if upgrading => inherited(source)?,
            Source::Tcp(addr) if addr == "systemd" => {
                Listener::from_systemd().map_err(|source| StartError::Bind { addr, source })?
            }
            Source::Tcp(addr) => bind_tcp(&addr, self.backlog, self.reuse_port)?,
            Source::Unix(path) => {
                Listener::bind_unix(&path, self.backlog).map_err(|source| StartError::Bind {
                    addr: format!("unix:{}", path.display()),
                    source,
                })?
            }
            Source::Listener(listener) => listener,
        };
        if made.0.is_none() && !crate::sys::upgrade::listener_shared() {
            made.0 = SocketFile::of(&listener);
        }
        listener.set_nodelay(self.tcp_nodelay)?;
        // A socket from a service manager stays its: a stop only stops accepting.
        let owns_listener = !super::listener::from_service_manager(listener.as_raw_fd());
        let hooks = self
            .hooks
            .map_or_else(|| Box::new(DefaultHooks) as Box<dyn Hooks>, |h| h.0);
        let config = LoopConfig {
            poll_interval: self.poll_interval,
            shutdown_timeout: self.shutdown_timeout,
            timeout: self.timeout,
            backlog: self.backlog,
            owns_listener,
        };
        let ctx = Context::new(listener, Box::new(make_handler), hooks, config)?;
        // Before the caller can print the address: a supervisor that signals as soon
        // as the server listens reaches the handler, never the default action.
        let signals = super::register_signals(&ctx, self.handle_signals)?;
        made.0 = None;
        let socket_file = SocketFile::of(ctx.listener());
        Ok(Server {
            ctx: Arc::new(ctx),
            mixin: self.mixin,
            handle_signals: self.handle_signals,
            signals,
            owner_pid: std::process::id(),
            socket_file,
        })
    }
}

/// The socket file of a server not started yet: removed if the start fails. (One an
/// upgrade took over stays: the old master serves on it.)
struct Unstarted(Option<SocketFile>);

impl Drop for Unstarted {
    fn drop(&mut self) {
        if let Some(file) = &self.0 {
            file.remove();
        }
    }
}

/// Whether this process was started by a binary upgrade (then it listens on the
/// socket the old master passed, see [`super::upgrade`]).
fn upgrading() -> Result<bool, StartError> {
    crate::sys::upgrade::take_from_environment().map_err(|source| StartError::Bind {
        addr: "the socket passed by an upgrade".into(),
        source,
    })
}

/// The socket the old master passed, in place of `source`.
fn inherited(source: Source) -> Result<Listener, StartError> {
    let (wanted, addr) = match &source {
        Source::Tcp(addr) => (Wanted::Tcp(addr), addr.clone()),
        Source::Unix(path) => (Wanted::Unix(path), format!("unix:{}", path.display())),
        Source::Listener(listener) => (Wanted::Listener(listener), "a listener".into()),
        Source::None => return Err(StartError::NoAddress),
    };
    take_inherited(wanted).map_err(|source| StartError::Bind { addr, source })
}

/// Resolves `addr` and binds the first address that works (with `SO_REUSEPORT` too if
/// `reuse_port`).
fn bind_tcp(addr: &str, backlog: i32, reuse_port: bool) -> Result<Listener, StartError> {
    let candidates: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|source| StartError::Resolve {
            addr: addr.to_string(),
            source,
        })?
        .collect();
    let mut last = None;
    for candidate in candidates {
        let bound = if reuse_port {
            Listener::bind_tcp_reuseport(candidate, backlog)
        } else {
            Listener::bind_tcp(candidate, backlog)
        };
        match bound {
            Ok(listener) => return Ok(listener),
            Err(source) => {
                last = Some(StartError::Bind {
                    addr: candidate.to_string(),
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| StartError::Resolve {
        addr: addr.to_string(),
        source: std::io::Error::other("no addresses"),
    }))
}
