//! An `accept` that a signal interrupts. std's `accept` retries `EINTR` itself, so a
//! worker blocked in it could never notice a stop signal; this one returns
//! `Interrupted` and lets the worker look at its stop flag.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{SockFlag, accept4};
use socket2::SockRef;

use crate::conn::{Conn, PeerAddr};

/// Accepts one connection from `listener` (`SOCK_CLOEXEC`; the new socket is
/// blocking). Blocks if the listener does; `Interrupted` on a signal, `WouldBlock` on
/// an empty non-blocking listener.
pub(crate) fn accept(listener: RawFd) -> io::Result<Conn> {
    let fd = match accept4(listener, SockFlag::SOCK_CLOEXEC) {
        Ok(fd) => fd,
        Err(Errno::EAGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
        Err(errno) => return Err(errno.into()),
    };
    // SAFETY: accept4 returned a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(conn_from(fd))
}

/// Wraps a connected socket (accepted here or passed from another process).
pub(crate) fn conn_from(fd: OwnedFd) -> Conn {
    let peer = match SockRef::from(&fd)
        .peer_addr()
        .ok()
        .and_then(|a| a.as_socket())
    {
        Some(addr) => PeerAddr::Tcp(addr),
        None => PeerAddr::Unix(None),
    };
    Conn::from_fd(fd, peer)
}

/// Whether `listener` was bound with `SO_REUSEPORT`.
pub(crate) fn has_reuseport(listener: RawFd) -> bool {
    SockRef::from(&super::borrow_fd(listener))
        .reuse_port()
        .unwrap_or(false)
}
