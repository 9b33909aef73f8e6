//! Socket activation's OS side: owning the fds a service manager passed (3, 4, …), and
//! clearing the environment variables that announced them.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The first fd passed, by the `sd_listen_fds` convention.
pub(crate) const FIRST_FD: RawFd = 3;

/// The variables of the convention; `LISTEN_FDNAMES` is optional.
const VARIABLES: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Set once the passed fds have been taken: owning them twice would close them twice.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes ownership of the `count` fds from [`FIRST_FD`] on. Fails if they were taken
/// before in this process or if one is not open (then none is taken).
pub(crate) fn take_passed_fds(count: usize) -> io::Result<Vec<OwnedFd>> {
    let end = RawFd::try_from(count)
        .ok()
        .and_then(|n| n.checked_add(FIRST_FD))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "LISTEN_FDS is too large"))?;
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other(
            "the sockets passed by the service manager were already taken in this process",
        ));
    }
    for fd in FIRST_FD..end {
        // SAFETY: F_GETFD only reads the fd's flags; an fd that is not open gives EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "LISTEN_FDS={count}, but fd {fd} is not open: {}",
                    io::Error::last_os_error()
                ),
            ));
        }
    }
    let owned = (FIRST_FD..end)
        // SAFETY: each fd is open (checked above) and was passed to this process for it
        // to own; `TAKEN` makes sure this happens once, so nothing else owns them.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    Ok(owned)
}

/// Removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the environment, so
/// child processes do not see them; returns false (and leaves them) if the process
/// already runs other threads, where changing the environment is unsound. A child
/// that sees them still ignores them: its pid is not `LISTEN_PID`.
pub(crate) fn clear_variables() -> bool {
    if super::fork::thread_count() != Some(1) {
        return false;
    }
    for name in VARIABLES {
        // SAFETY: only this thread runs (checked just above, and it starts none in
        // between), so no other thread reads the environment while it changes.
        unsafe { std::env::remove_var(name) };
    }
    true
}
