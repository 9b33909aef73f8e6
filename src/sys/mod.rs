//! Operating-system calls: the only place besides the coroutine switch where `unsafe`
//! lives. Each wrapper turns the C convention (`-1` and `errno`) into `io::Result`.
#![allow(unsafe_code)]

pub(crate) mod accept;
pub(crate) mod activation;
pub(crate) mod drain_signal;
pub(crate) mod exec;
pub(crate) mod fd_passing;
pub(crate) mod fork;
pub(crate) mod open_beneath;
pub(crate) mod pipe;
pub(crate) mod process_id;
pub(crate) mod process_lock;
pub(crate) mod sendfile;
pub(crate) mod shared_memory;
pub(crate) mod signal;
pub(crate) mod stack_guard;
pub(crate) mod stack_label;
pub(crate) mod tcp_info;
pub(crate) mod upgrade;
pub(crate) mod wake_signal;
pub(crate) mod worker_process;

use std::os::fd::{BorrowedFd, RawFd};

/// Borrows a raw fd for the length of one call.
///
/// Callers pass fds they own (a `Conn`'s socket, a listener) and keep them open for the
/// borrow, which never escapes the call that uses it.
pub(crate) fn borrow_fd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: every caller owns `fd` and keeps it open while the borrow is used (see doc).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// True when `fd` (owned by the caller) is readable now: one `poll(2)` that never waits.
#[cfg(test)]
pub(crate) fn readable_now(fd: RawFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(borrow_fd(fd), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Sends `slices` on the socket `fd` (owned by the caller) with `MSG_NOSIGNAL`: a peer
/// that is gone is `EPIPE`, never a `SIGPIPE` that would kill a program whose own
/// disposition for it is the default. One `sendmsg`, which may take part of the bytes.
pub(crate) fn send_nosignal(fd: RawFd, slices: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
    use nix::sys::socket::{MsgFlags, sendmsg};
    loop {
        match sendmsg::<()>(fd, slices, &[], MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            sent => return sent.map_err(std::io::Error::from),
        }
    }
}

/// Sends all of `bytes` on the socket `fd` (blocking, or bounded by its send timeout)
/// with `MSG_NOSIGNAL`; see [`send_nosignal`].
pub(crate) fn send_all_nosignal(fd: RawFd, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match send_nosignal(fd, &[std::io::IoSlice::new(bytes)])? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => bytes = &bytes[n..],
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// Set in the child run of the test below.
    const CHILD: &str = "MIXSERVE_SEND_NOSIGNAL_CHILD";

    #[test]
    fn a_send_to_a_gone_peer_is_an_error_even_under_the_default_sigpipe() {
        if std::env::var_os(CHILD).is_some() {
            // SAFETY: restoring a default disposition in this single-purpose child.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let (ours, theirs) = UnixStream::pair().unwrap();
            drop(theirs);
            let sent = super::send_nosignal(ours.as_raw_fd(), &[IoSlice::new(b"x")]);
            assert_eq!(sent.unwrap_err().raw_os_error(), Some(libc::EPIPE));
            return;
        }
        // Run in a child: with the default disposition a SIGPIPE would kill the process.
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::tests::a_send_to_a_gone_peer_is_an_error_even_under_the_default_sigpipe",
            ])
            .env(CHILD, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the child died: {status:?}");
    }
}
