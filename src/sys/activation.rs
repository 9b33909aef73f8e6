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
/// before in this process or if one is not open (then none is taken, and a later call
/// may take them).
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
    if let Err(error) = check_open(end) {
        TAKEN.store(false, Ordering::SeqCst);
        return Err(error);
    }
    let owned = (FIRST_FD..end)
        // SAFETY: each fd is open (checked above) and was passed to this process for it
        // to own; `TAKEN` makes sure this happens once, so nothing else owns them.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    Ok(owned)
}

/// Checks that every fd from [`FIRST_FD`] up to `end` is open.
fn check_open(end: RawFd) -> io::Result<()> {
    for fd in FIRST_FD..end {
        // SAFETY: F_GETFD only reads the fd's flags; an fd that is not open gives EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "LISTEN_FDS={}, but fd {fd} is not open: {}",
                    end - FIRST_FD,
                    io::Error::last_os_error()
                ),
            ));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    /// Set in the child run of the test below.
    const CHILD: &str = "MIXSERVE_ACTIVATION_RETRY_CHILD";

    fn is_open(fd: RawFd) -> bool {
        // SAFETY: F_GETFD only reads the fd's flags; an fd that is not open gives EBADF.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    /// A call that finds a passed fd missing takes nothing: a later call, once the fd
    /// is there, takes them all instead of finding them "already taken".
    #[test]
    fn a_failed_take_leaves_the_fds_to_take() {
        if std::env::var_os(CHILD).is_none() {
            // Run in a child: the fds from 3 on, and the flag, are the whole process's.
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let socket_fd = socket.as_raw_fd();
            let mut command = std::process::Command::new(std::env::current_exe().unwrap());
            command
                .args([
                    "--exact",
                    "sys::activation::tests::a_failed_take_leaves_the_fds_to_take",
                ])
                .env(CHILD, "1");
            // SAFETY: between fork and exec the closure calls only fcntl, dup2 and close,
            // which are async-signal-safe, on an integer it captured.
            unsafe {
                command.pre_exec(move || {
                    let moved = libc::fcntl(socket_fd, libc::F_DUPFD_CLOEXEC, 20);
                    if moved < 0 || libc::dup2(moved, FIRST_FD) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    libc::close(FIRST_FD + 1);
                    Ok(())
                });
            }
            let status = command.status().unwrap();
            assert!(status.success(), "the child failed: {status:?}");
            return;
        }
        assert!(is_open(FIRST_FD) && !is_open(FIRST_FD + 1));
        let error = take_passed_fds(2).expect_err("fd 4 is not open");
        assert!(error.to_string().contains("fd 4 is not open"), "{error}");
        assert!(is_open(FIRST_FD), "fd 3 was closed");
        // SAFETY: dup2 gives fd 4 a copy of fd 3, both this test's.
        assert!(unsafe { libc::dup2(FIRST_FD, FIRST_FD + 1) } >= 0);
        let taken = take_passed_fds(2).expect("both fds are open now");
        assert_eq!(taken.len(), 2);
    }
}
