//! Passing a connection's fd to another process over a Unix socketpair (`SCM_RIGHTS`).
//!
//! The receiver asks for `MSG_CMSG_CLOEXEC`, so a passed fd is never leaked into an
//! `exec`; it checks `MSG_CTRUNC` (a control buffer too small drops fds silently) and
//! closes any fd beyond the one it expected, so nothing leaks on a malformed message.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// Room for this many fds in the receive buffer: more than the one ever sent, so an
/// unexpected extra fd is received (and closed) rather than truncated.
const FD_ROOM: usize = 4;

/// Sends one byte `tag` with `fd` attached. Blocks until the socket takes it; retried
/// on `EINTR`; `MSG_NOSIGNAL` turns a gone receiver into `EPIPE`.
pub(crate) fn send_fd(socket: RawFd, tag: u8, fd: RawFd) -> io::Result<()> {
    let mut data = [tag];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid empty header; the pointers set below point
    // into `iov` and `control`, which outlive the sendmsg call.
    let mut header: libc::msghdr = unsafe { mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = space as _;
    // SAFETY: the control buffer holds CMSG_SPACE(one fd) bytes, so the first header
    // exists and its data has room for one fd.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    loop {
        // SAFETY: `header` describes valid buffers (see above).
        let sent = unsafe { libc::sendmsg(socket, &header, libc::MSG_NOSIGNAL) };
        match Errno::result(sent) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Whether a failed [`send_fd`] may succeed later on the same socket: its queue is full
/// (`EAGAIN`), or the kernel is short of memory or of room for fds in flight. Anything
/// else (`EPIPE`, `ECONNRESET`: the peer closed) is for good.
pub(crate) fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EAGAIN | libc::ENOBUFS | libc::ENOMEM | libc::ETOOMANYREFS)
    )
}

/// What one receive brought.
#[derive(Debug)]
pub(crate) enum Received {
    /// The peer closed its end.
    Closed,
    /// A byte, with the fd attached to it if any.
    Message(u8, Option<OwnedFd>),
}

/// Receives one byte and at most one fd (close-on-exec). Blocks unless the socket is
/// non-blocking (then `WouldBlock`); a signal interrupts the wait (`Interrupted`), so
/// a worker can look at its stop flag. `Ok` always means a byte was taken; its fd is
/// `None` when the kernel could not install it (a truncated control buffer, as at the
/// open-file limit), and fds past the first are closed.
pub(crate) fn recv_fd(socket: RawFd) -> io::Result<Received> {
    let mut data = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: pure size computation.
    let space = unsafe { libc::CMSG_SPACE((FD_ROOM * mem::size_of::<RawFd>()) as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: zeroed msghdr is valid; pointers set below outlive the call.
    let mut header: libc::msghdr = unsafe { mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = space as _;
    let received = {
        // SAFETY: `header` describes valid buffers.
        let n = unsafe { libc::recvmsg(socket, &mut header, libc::MSG_CMSG_CLOEXEC) };
        Errno::result(n)?
    };
    let fds = take_fds(&header);
    if received == 0 {
        return Ok(Received::Closed);
    }
    if header.msg_flags & libc::MSG_CTRUNC != 0 {
        // The byte is taken; its fd is not (this process is out of fds, or the sender
        // attached more than fits): the message came, without a usable fd.
        return Ok(Received::Message(data[0], None));
    }
    Ok(Received::Message(data[0], fds.into_iter().next()))
}

/// Every fd in the `SCM_RIGHTS` messages of `header`, owned (so extras close on drop).
fn take_fds(header: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `header` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within
    // msg_controllen, and each SCM_RIGHTS payload holds (len - CMSG_LEN(0)) / 4 fds
    // that the kernel installed in this process, which nothing else owns yet.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..payload / mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    fds
}

/// A connected pair of Unix stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((a, b))
}

/// Writes one byte without blocking (`MSG_DONTWAIT | MSG_NOSIGNAL`); a full socket or
/// a gone peer is reported, never waited for.
pub(crate) fn send_byte(socket: RawFd, byte: u8) -> io::Result<()> {
    loop {
        match nix::sys::socket::send(
            socket,
            &[byte],
            nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Whether `fd` (the caller's) has `O_NONBLOCK` set on its open file description.
pub(crate) fn is_nonblocking(fd: RawFd) -> io::Result<bool> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(super::borrow_fd(fd), FcntlArg::F_GETFL)?;
    Ok(OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK))
}

/// Sets or clears `O_NONBLOCK` on `fd` (which the caller owns).
pub(crate) fn set_nonblocking(fd: &impl AsRawFd, nonblocking: bool) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let borrowed = super::borrow_fd(fd.as_raw_fd());
    let flags = OFlag::from_bits_truncate(fcntl(borrowed, FcntlArg::F_GETFL)?);
    let flags = if nonblocking {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    fcntl(borrowed, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// Fds open in this process now (`/proc/self/fd`), or `guess` when that cannot be read.
pub(crate) fn open_fds_now(guess: usize) -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(guess, |dir| dir.count())
}

/// The soft limit on open files of this process (`RLIMIT_NOFILE`), if it can be read.
pub(crate) fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given, which lives here.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (result == 0).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn an_fd_crosses_with_its_tag_and_close_on_exec() {
        let (a, b) = socketpair().unwrap();
        let (mut left, right) = UnixStream::pair().unwrap();
        send_fd(a.as_raw_fd(), b'c', right.as_raw_fd()).unwrap();
        drop(right);
        let Received::Message(tag, Some(fd)) = recv_fd(b.as_raw_fd()).unwrap() else {
            panic!("no fd");
        };
        assert_eq!(tag, b'c');
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        let mut passed = UnixStream::from(fd);
        passed.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        left.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        drop(a);
        assert!(matches!(recv_fd(b.as_raw_fd()).unwrap(), Received::Closed));
    }

    #[test]
    fn a_message_whose_fds_do_not_fit_is_taken_without_them() {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        let (a, b) = socketpair().unwrap();
        let pairs: Vec<_> = (0..FD_ROOM + 4)
            .map(|_| UnixStream::pair().unwrap())
            .collect();
        let fds: Vec<RawFd> = pairs.iter().map(|(left, _)| left.as_raw_fd()).collect();
        let iov = [std::io::IoSlice::new(b"c")];
        let rights = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(a.as_raw_fd(), &iov, &rights, MsgFlags::empty(), None).unwrap();
        let received = recv_fd(b.as_raw_fd()).unwrap();
        assert!(matches!(received, Received::Message(b'c', None)));
    }
}
