//! [`Listener`]: a bound TCP or Unix-domain listening socket, made here or inherited
//! through socket activation.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use socket2::{Domain, SockRef, Socket, Type};

use crate::conn::{Conn, PeerAddr};
use crate::sys::activation;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address (IPv4 or IPv6).
    Tcp(SocketAddr),
    /// A Unix-domain socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A listening socket, TCP or Unix-domain. Every fd it makes is close-on-exec.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix-domain listener.
    Unix {
        /// The listener.
        listener: UnixListener,
        /// The socket file (`@name` for an abstract socket, empty for an unnamed one).
        path: PathBuf,
        /// Whether the server removes `path` when it closes: true for a socket bound
        /// here, false for an inherited one, whose file belongs to whoever made it.
        remove_on_close: bool,
    },
}

/// The sockets taken from a service manager, by fd and socket inode: it keeps its own
/// copy of each, which a graceful stop must leave listening (see
/// [`from_service_manager`]). The inode tells a later socket that reuses the fd
/// number of a closed one apart from it.
static ACTIVATED: Mutex<Vec<(RawFd, u64)>> = Mutex::new(Vec::new());

/// The inode number of the socket (or file) open at `fd`.
fn inode(fd: RawFd) -> Option<u64> {
    nix::sys::stat::fstat(crate::sys::borrow_fd(fd))
        .ok()
        .map(|stat| stat.st_ino)
}

/// Records `fds` as sockets taken from a service manager.
fn record_activated(fds: impl IntoIterator<Item = RawFd>) {
    let mut activated = ACTIVATED.lock().unwrap_or_else(PoisonError::into_inner);
    for fd in fds {
        if let Some(inode) = inode(fd) {
            activated.push((fd, inode));
        }
    }
}

/// Whether `fd` is a socket this process took by socket activation (or took over from
/// an old master that had, in a binary upgrade).
pub(crate) fn from_service_manager(fd: RawFd) -> bool {
    let Some(inode) = inode(fd) else {
        return false;
    };
    ACTIVATED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&(fd, inode))
}

impl Listener {
    /// Binds a TCP listener with `SO_REUSEADDR` and the given backlog. IPv6 addresses
    /// listen on IPv6 only.
    pub fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        Ok(Listener::Tcp(socket.into()))
    }

    /// Binds a TCP listener with `SO_REUSEPORT` as well, so several processes can each
    /// have their own listener on one port (the kernel spreads connections among them).
    pub fn bind_tcp_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        Ok(Listener::Tcp(socket.into()))
    }

    /// Binds a Unix-domain listener at `path`, replacing a stale socket file (one
    /// that refuses connections). A socket file a live server accepts on is left alone:
    /// the bind fails with `AddrInUse`.
    ///
    /// Who may connect is the file's mode, which the process umask sets as for any
    /// file it creates (`0o777 & !umask`: under umask `0o002`, the whole group): put
    /// the socket in a directory only its clients can enter, or `chmod` the path
    /// before serving (a server that listens again later keeps the mode and owner).
    pub fn bind_unix(path: &Path, backlog: i32) -> io::Result<Listener> {
        if std::fs::symlink_metadata(path)
            .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            .unwrap_or(false)
        {
            // Only a stale socket file is removed: one that refuses connections.
            if crate::sys::accept::unix_socket_is_live(path)? {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another server is listening there", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&socket2::SockAddr::unix(path)?)?;
        socket.listen(backlog)?;
        let listener = UnixListener::from(std::os::fd::OwnedFd::from(socket));
        Ok(Listener::Unix {
            listener,
            path: path.to_path_buf(),
            remove_on_close: true,
        })
    }

    /// Takes the one listening socket a service manager passed by socket activation
    /// (systemd's `LISTEN_FDS` convention, as `sd_listen_fds` reads it): fd 3, when
    /// `LISTEN_PID` is this process and `LISTEN_FDS` is 1. `ServerBuilder::bind("systemd")`
    /// calls this. See [`all_from_systemd`](Self::all_from_systemd) for the checks.
    pub fn from_systemd() -> io::Result<Listener> {
        let mut listeners = Listener::all_from_systemd()?;
        match listeners.len() {
            1 => Ok(listeners.remove(0)),
            n => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("LISTEN_FDS={n}, but this server serves one socket"),
            )),
        }
    }

    /// Takes every listening socket a service manager passed (fds 3, 4, …), in order.
    ///
    /// `LISTEN_PID` must be this process and `LISTEN_FDS` a positive count; each fd
    /// must be an open stream socket in the listening state (`SO_ACCEPTCONN`), TCP or
    /// Unix-domain (told apart by `getsockname`). Each is made close-on-exec and
    /// blocking, like a listener bound here. The variables are removed from the
    /// environment (unless other threads already run, where that is unsound; a child
    /// would ignore them anyway, its pid not being `LISTEN_PID`). The sockets can be
    /// taken once per process; a Unix socket's file is left in place when the server
    /// closes, since the service manager made it. Every failure says which variable or
    /// fd was wrong, and closes the fds taken.
    ///
    /// In a program started again by a `Preforked` binary upgrade (`SIGUSR2`), which
    /// passes its socket the same way, this takes the old master's socket (its blocking
    /// flag left as the two masters share it) and the upgrade's readiness pipe, so a
    /// program that calls this whenever `LISTEN_FDS` is set upgrades as one that binds
    /// `"systemd"` does.
    pub fn all_from_systemd() -> io::Result<Vec<Listener>> {
        // First, while `LISTEN_PID` still names this process: taking the sockets
        // clears it, and the pipe would then be left open and never written.
        let upgraded = crate::sys::upgrade::take_from_environment()?;
        let listeners = Listener::take_passed(!upgraded)?;
        // After an upgrade, the manager's only if the old master had it from one.
        if !upgraded || crate::sys::upgrade::take_activated_mark() {
            record_activated(listeners.iter().map(AsRawFd::as_raw_fd));
        }
        Ok(listeners)
    }

    /// The one socket a binary upgrade passed (as socket activation does), left
    /// blocking or not as the old master has it: that flag lives on the socket both
    /// masters share. One the old master had from a service manager stays the
    /// manager's here too.
    pub(crate) fn from_upgrade() -> io::Result<Listener> {
        let mut listeners = Listener::take_passed(false)?;
        let activated = crate::sys::upgrade::take_activated_mark();
        match listeners.len() {
            1 => {
                if activated {
                    record_activated(listeners.iter().map(AsRawFd::as_raw_fd));
                }
                Ok(listeners.remove(0))
            }
            n => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an upgrade passes one socket, not {n}"),
            )),
        }
    }

    /// Takes the passed fds; `make_blocking`: as a listener bound here.
    fn take_passed(make_blocking: bool) -> io::Result<Vec<Listener>> {
        let count = passed_count()?;
        activation::take_passed_fds(count)?
            .into_iter()
            .zip(activation::FIRST_FD..)
            .map(|(fd, number)| {
                Listener::from_passed_fd(fd, make_blocking).map_err(|error| {
                    io::Error::new(error.kind(), format!("passed fd {number}: {error}"))
                })
            })
            .collect()
    }

    /// Checks that an inherited fd is a listening stream socket and wraps it.
    fn from_passed_fd(fd: OwnedFd, make_blocking: bool) -> io::Result<Listener> {
        let socket = Socket::from(fd);
        let kind = socket
            .r#type()
            .map_err(|error| match error.raw_os_error() {
                Some(libc::ENOTSOCK) => io::Error::new(io::ErrorKind::InvalidInput, "not a socket"),
                _ => error,
            })?;
        if kind != Type::STREAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a stream socket (datagram sockets are not served)",
            ));
        }
        if !socket.is_listener()? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a stream socket that is not listening (ListenStream= makes one that is)",
            ));
        }
        socket.set_cloexec(true)?;
        if make_blocking {
            socket.set_nonblocking(false)?;
        }
        let local = socket.local_addr()?;
        if local.is_ipv4() || local.is_ipv6() {
            return Ok(Listener::Tcp(socket.into()));
        }
        if !local.is_unix() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("address family {} is neither TCP nor Unix", local.family()),
            ));
        }
        let path = match (local.as_pathname(), local.as_abstract_namespace()) {
            (Some(path), _) => path.to_path_buf(),
            (None, Some(name)) => PathBuf::from(format!("@{}", String::from_utf8_lossy(name))),
            (None, None) => PathBuf::new(),
        };
        Ok(Listener::Unix {
            listener: UnixListener::from(OwnedFd::from(socket)),
            path,
            remove_on_close: false,
        })
    }

    /// The socket file the server removes when it closes: the path of a Unix listener
    /// bound here; `None` for TCP and for an inherited Unix socket.
    pub fn socket_file(&self) -> Option<&Path> {
        match self {
            Listener::Unix {
                path,
                remove_on_close: true,
                ..
            } => Some(path),
            _ => None,
        }
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map(ListenAddr::Tcp),
            Listener::Unix { path, .. } => Ok(ListenAddr::Unix(path.clone())),
        }
    }

    /// Switches between blocking and non-blocking `accept`. The flag lives on the open
    /// file description, so it is shared with every forked copy of the listener.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(listener) => listener.set_nonblocking(nonblocking),
            Listener::Unix { listener, .. } => listener.set_nonblocking(nonblocking),
        }
    }

    /// Sets `TCP_NODELAY` on a TCP listener; a no-op on a Unix-domain one. Linux copies
    /// the flag to every connection accepted afterwards, so it costs no call per
    /// connection. [`ServerBuilder::tcp_nodelay`](crate::ServerBuilder::tcp_nodelay)
    /// says why servers turn Nagle's algorithm off.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(listener) => SockRef::from(listener).set_tcp_nodelay(nodelay),
            Listener::Unix { .. } => Ok(()),
        }
    }

    /// Whether `TCP_NODELAY` is set (always false on a Unix-domain listener).
    pub fn nodelay(&self) -> io::Result<bool> {
        match self {
            Listener::Tcp(listener) => SockRef::from(listener).tcp_nodelay(),
            Listener::Unix { .. } => Ok(false),
        }
    }

    /// Accepts one connection (`accept4` with `SOCK_CLOEXEC`; the new socket is blocking).
    pub fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                Ok(Conn::from_fd(stream.into(), PeerAddr::Tcp(peer)))
            }
            Listener::Unix { listener, .. } => {
                let (stream, peer) = listener.accept()?;
                let peer = PeerAddr::Unix(peer.as_pathname().map(PathBuf::from));
                Ok(Conn::from_fd(stream.into(), peer))
            }
        }
    }

    /// A second handle on the same listening socket (for an accept thread or pool).
    pub fn try_clone(&self) -> io::Result<Listener> {
        match self {
            Listener::Tcp(listener) => listener.try_clone().map(Listener::Tcp),
            Listener::Unix {
                listener,
                path,
                remove_on_close,
            } => Ok(Listener::Unix {
                listener: listener.try_clone()?,
                path: path.clone(),
                remove_on_close: *remove_on_close,
            }),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(listener) => listener.as_raw_fd(),
            Listener::Unix { listener, .. } => listener.as_raw_fd(),
        }
    }
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Listener {
        Listener::Tcp(listener)
    }
}

/// Reads `LISTEN_PID` and `LISTEN_FDS` (then removes them): how many fds were passed to
/// this process.
fn passed_count() -> io::Result<usize> {
    let pid = std::env::var("LISTEN_PID");
    let fds = std::env::var("LISTEN_FDS");
    if (pid.is_ok() || fds.is_ok()) && !activation::clear_variables() {
        log::debug!("LISTEN_* left in the environment: other threads are running");
    }
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let fds = fds.map_err(|_| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "not socket-activated: LISTEN_FDS is not set (start from a systemd socket unit, \
             or bind an address)",
        )
    })?;
    let pid = pid.map_err(|_| {
        invalid("LISTEN_FDS is set but LISTEN_PID is not: whose sockets are they?".into())
    })?;
    let this = std::process::id();
    if pid.trim().parse::<u32>().ok() != Some(this) {
        return Err(invalid(format!(
            "LISTEN_PID={pid} is not this process ({this}): the sockets were passed to another"
        )));
    }
    match fds.trim().parse::<usize>() {
        Ok(count) if count > 0 => Ok(count),
        _ => Err(invalid(format!(
            "LISTEN_FDS={fds} is not a positive count of sockets"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_that_reuses_an_activated_fd_number_is_not_the_managers() {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = first.as_raw_fd();
        record_activated([fd]);
        assert!(from_service_manager(fd));
        drop(first);
        // New sockets until one takes the number (the lowest free one, unless another
        // test's thread took it meanwhile): none of them is the manager's.
        let mut later = Vec::new();
        let mut reused = false;
        for _ in 0..64 {
            let socket = TcpListener::bind("127.0.0.1:0").unwrap();
            assert!(!from_service_manager(socket.as_raw_fd()));
            reused = socket.as_raw_fd() == fd;
            later.push(socket);
            if reused {
                break;
            }
        }
        if !reused {
            eprintln!("SKIPPED the reuse case: no new socket took fd {fd} in 64 tries");
        }
    }
}
