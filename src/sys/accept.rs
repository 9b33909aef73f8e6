//! An `accept` that a signal interrupts. std's `accept` retries `EINTR` itself, so a
//! worker blocked in it could never notice a stop signal; this one returns
//! `Interrupted` and lets the worker look at its stop flag.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{SockFlag, accept4};
use socket2::SockRef;

/// Accepts one connection from `listener` (`SOCK_CLOEXEC`; the new socket is
/// blocking). Blocks if the listener does; `Interrupted` on a signal, `WouldBlock` on
/// an empty non-blocking listener.
pub(crate) fn accept(listener: RawFd) -> io::Result<OwnedFd> {
    let fd = match accept4(listener, SockFlag::SOCK_CLOEXEC) {
        Ok(fd) => fd,
        Err(Errno::EAGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
        Err(errno) => return Err(errno.into()),
    };
    // SAFETY: accept4 returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `listener` was bound with `SO_REUSEPORT`.
pub(crate) fn has_reuseport(listener: RawFd) -> bool {
    SockRef::from(&super::borrow_fd(listener))
        .reuse_port()
        .unwrap_or(false)
}
