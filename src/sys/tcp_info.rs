//! `TCP_INFO`: what the kernel knows about a TCP connection's timing.

use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Time since the kernel last received data on `socket` — for a connection that has sent
/// nothing yet, time since its handshake completed (the kernel starts the clock then),
/// so it includes the time spent in the listen queue. `None` for a non-TCP socket.
pub(crate) fn since_last_data(socket: BorrowedFd<'_>) -> Option<Duration> {
    // SAFETY: `tcp_info` is plain old data; all-zero bytes are a valid value.
    let mut info: libc::tcp_info = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes and `len` holds `info`'s size; the
    // kernel writes at most `len` bytes. `socket` is open for the call (borrowed).
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    let filled = len as usize >= mem::offset_of!(libc::tcp_info, tcpi_last_data_recv) + 4;
    (result == 0 && filled).then(|| Duration::from_millis(u64::from(info.tcpi_last_data_recv)))
}
