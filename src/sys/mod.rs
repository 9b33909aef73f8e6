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
pub(crate) fn readable_now(fd: RawFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(borrow_fd(fd), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}
