//! `sendfile(2)` that never raises `SIGPIPE`, and a guard that makes a socket
//! non-blocking for the length of a call.
//!
//! `send` takes `MSG_NOSIGNAL`; `sendfile` has no such flag, so a peer that closed makes
//! the kernel raise `SIGPIPE` at the calling thread, whose default action kills the
//! process. A Rust `main` sets `SIGPIPE` to "ignore" before it runs (std does this
//! unless built with `-Zon-broken-pipe`), but the crate does not rely on that: a host
//! process written in C, or one that restored the default, would die on a client
//! that went away. Instead each call blocks `SIGPIPE` for the calling thread only
//! (`pthread_sigmask`), and when the call fails or sends less than asked, takes any
//! `SIGPIPE` it left pending (`sigtimedwait` with a zero timeout) before unblocking. This is the
//! technique of libcurl and OpenSSL's callers; it changes no process-wide state. If the
//! thread had `SIGPIPE` blocked already, its owner manages it and nothing is consumed.

use std::io;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

/// Linux transfers at most this many bytes in one `sendfile` call.
pub(crate) const MAX_CHUNK: usize = 0x7fff_f000;

/// One `sendfile` of up to `count` bytes of `file`, from `*offset` (advanced by what
/// was sent), to `socket`; `EPIPE` instead of `SIGPIPE` when the peer is gone.
pub(crate) fn sendfile(
    socket: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut i64,
    count: usize,
) -> Result<usize, Errno> {
    let pipe = SigSet::from(Signal::SIGPIPE);
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&pipe), Some(&mut previous))?;
    let result = nix::sys::sendfile::sendfile64(socket, file, Some(offset), count.min(MAX_CHUNK));
    if !previous.contains(Signal::SIGPIPE) {
        // A short transfer can leave a SIGPIPE too: sendfile to a socket runs as a
        // splice, whose later chunk can hit the closed peer (raising SIGPIPE) after
        // earlier chunks went out, and then reports the bytes sent, not EPIPE.
        let whole = count.min(MAX_CHUNK);
        if result.is_err() || result.is_ok_and(|sent| sent < whole) {
            take_pending_sigpipe(&pipe);
        }
        // Unblocking what was blocked a moment ago cannot fail with a valid set.
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&pipe), None);
    }
    result
}

/// Consumes a `SIGPIPE` pending for this thread, without waiting if there is none.
fn take_pending_sigpipe(pipe: &SigSet) {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: `pipe` is a valid initialised sigset, `zero` a valid timespec, and a
        // null info pointer is allowed; the call only dequeues a blocked signal.
        let taken = unsafe { libc::sigtimedwait(pipe.as_ref(), std::ptr::null_mut(), &zero) };
        if taken >= 0 || Errno::last() != Errno::EINTR {
            return;
        }
    }
}

/// Sets or clears `O_NONBLOCK` on the socket's open file description; returns whether
/// it was set before, so the caller can restore it.
fn set_nonblocking(socket: BorrowedFd<'_>, nonblocking: bool) -> Result<bool, Errno> {
    let flags = OFlag::from_bits_retain(fcntl(socket, FcntlArg::F_GETFL)?);
    let was = flags.contains(OFlag::O_NONBLOCK);
    if was != nonblocking {
        let flags = if nonblocking {
            flags | OFlag::O_NONBLOCK
        } else {
            flags - OFlag::O_NONBLOCK
        };
        fcntl(socket, FcntlArg::F_SETFL(flags))?;
    }
    Ok(was)
}

/// Puts a socket in non-blocking mode (when asked) until dropped, then restores it.
#[derive(Debug)]
pub(crate) struct NonBlockingFor<'a> {
    /// The socket.
    fd: BorrowedFd<'a>,
    /// Whether to clear `O_NONBLOCK` on drop (this guard set it).
    restore: bool,
}

impl<'a> NonBlockingFor<'a> {
    pub(crate) fn set(fd: BorrowedFd<'a>, nonblocking: bool) -> io::Result<NonBlockingFor<'a>> {
        let restore = nonblocking && !set_nonblocking(fd, true)?;
        Ok(NonBlockingFor { fd, restore })
    }
}

impl Drop for NonBlockingFor<'_> {
    fn drop(&mut self) {
        if self.restore {
            let _ = set_nonblocking(self.fd, false);
        }
    }
}
