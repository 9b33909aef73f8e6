//! [`Listener`]: a bound TCP or Unix-domain listening socket.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use socket2::{Domain, Socket, Type};

use crate::conn::{Conn, PeerAddr};

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
    /// A Unix-domain listener; the server that bound it removes `path` when it closes.
    Unix {
        /// The listener.
        listener: UnixListener,
        /// The socket file.
        path: PathBuf,
    },
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

    /// Binds a Unix-domain listener at `path`, replacing a stale socket file.
    pub fn bind_unix(path: &Path, backlog: i32) -> io::Result<Listener> {
        if std::fs::symlink_metadata(path)
            .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            .unwrap_or(false)
        {
            std::fs::remove_file(path)?;
        }
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&socket2::SockAddr::unix(path)?)?;
        socket.listen(backlog)?;
        let listener = UnixListener::from(std::os::fd::OwnedFd::from(socket));
        Ok(Listener::Unix {
            listener,
            path: path.to_path_buf(),
        })
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
            Listener::Unix { listener, path } => Ok(Listener::Unix {
                listener: listener.try_clone()?,
                path: path.clone(),
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
