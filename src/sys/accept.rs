//! An `accept` that a signal interrupts. std's `accept` retries `EINTR` itself, so a
//! worker blocked in it could never notice a stop signal; this one returns
//! `Interrupted` and lets the worker look at its stop flag. Also the crate's one set
//! of accept rules: which errors concern one connection only, and `EMFILE`.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use socket2::SockRef;

/// A connection `accept` took.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) socket: OwnedFd,
    /// The peer's address, as `accept` gave it (no `getpeername` needed); `None` for a
    /// Unix-domain peer.
    pub(crate) peer: Option<SocketAddr>,
}

/// Accepts one connection from `listener` (`accept4`, `SOCK_CLOEXEC`; the new socket
/// is blocking). Blocks if the listener does; `Interrupted` on a signal, `WouldBlock`
/// on an empty non-blocking listener.
pub(crate) fn accept(listener: RawFd) -> io::Result<Accepted> {
    let (socket, peer) = SockRef::from(&super::borrow_fd(listener)).accept()?;
    Ok(Accepted {
        socket: socket.into(),
        peer: peer.as_socket(),
    })
}

/// A spare fd, closed to make room when `accept` fails with `EMFILE`.
#[derive(Debug)]
pub(crate) struct SpareFd(Mutex<Option<File>>);

impl SpareFd {
    pub(crate) fn new() -> SpareFd {
        SpareFd(Mutex::new(File::open("/dev/null").ok()))
    }

    /// In a child forked from the process that made it: closes the spare, which the
    /// child never accepts with (a worker makes its own).
    pub(crate) fn close_in_child(&self) {
        drop(self.0.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// Out of fds: frees the spare, accepts the waiting connection with it and closes
    /// it at once (the client sees a reset, not a hang), then takes the spare back.
    /// Linux finds a free fd before it looks at the queue, so at the limit `accept`
    /// fails with `EMFILE` on an empty queue too, and only this `accept` tells whether
    /// anything waited: `Skipped` (one refused, or this accept was interrupted or lost
    /// its connection: look again), `Empty` (none waited), or `Err` when it fails
    /// otherwise (no spare to free, another thread took its number, no memory):
    /// nothing is known about the queue.
    fn refuse_one(&self, listener: RawFd, cause: &io::Error) -> io::Result<Taken> {
        let mut spare = self.0.lock().unwrap_or_else(|e| e.into_inner());
        drop(spare.take());
        let refused = match accept(listener) {
            Ok(accepted) => {
                abort(&accepted.socket);
                log::warn!("accept: {cause}; refused one connection");
                Ok(Taken::Skipped)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Taken::Empty),
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_transient(&e) => {
                Ok(Taken::Skipped)
            }
            Err(e) => Err(e),
        };
        *spare = File::open("/dev/null").ok();
        refused
    }
}

/// What one `accept` with the crate's rules gave.
#[derive(Debug)]
pub(crate) enum Taken {
    /// A connection.
    Socket(Accepted),
    /// None waits (`EAGAIN`), or none could be taken and the spare fd found none
    /// waiting: on an edge-triggered poll, the next edge says when to look again.
    Empty,
    /// None taken this time (a signal, a connection reset before it was taken, one
    /// refused for want of fds), but more may wait: look again without waiting.
    Skipped,
}

impl Taken {
    /// The connection, if one was taken.
    pub(crate) fn socket(self) -> Option<Accepted> {
        match self {
            Taken::Socket(accepted) => Some(accepted),
            Taken::Empty | Taken::Skipped => None,
        }
    }
}

/// One `accept` with the crate's rules; `Err` only for failures the caller must back
/// off from.
pub(crate) fn accept_with_rules(listener: RawFd, spare: &SpareFd) -> io::Result<Taken> {
    match accept_beside_others(listener) {
        Err(e) if is_out_of_fds(&e) => match spare.refuse_one(listener, &e) {
            // `Empty`: nothing waited, and a loop that looked again at once would spin
            // on `EMFILE` until an fd is freed.
            Ok(taken) => Ok(taken),
            // Not even the spare could take it: a connection may wait, and a loop
            // polling the listener (level-triggered) would see it ready at once and
            // spin; the caller backs off instead.
            Err(_) => Err(e),
        },
        other => other,
    }
}

/// One `accept` on a listener other processes accept on too (a preforked pool's
/// shared listener, which blocks), with the crate's rules but one: out of fds, no
/// connection is refused. A sibling with room takes it, as nginx's workers do; the
/// error goes to the caller, which backs off. (A blocking `accept` with the spare fd
/// freed would wait for the next client just to reset it.)
pub(crate) fn accept_beside_others(listener: RawFd) -> io::Result<Taken> {
    match accept(listener) {
        Ok(accepted) => Ok(Taken::Socket(accepted)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Taken::Empty),
        Err(e) if e.kind() == io::ErrorKind::Interrupted || is_transient(&e) => Ok(Taken::Skipped),
        Err(e) => Err(e),
    }
}

/// Errors from `accept` that concern only the connection being accepted (it was reset
/// before we took it, or the network dropped it): try the next one.
pub(crate) fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// Whether an `accept` failed for want of fds or memory (not for the connection).
pub(crate) fn is_out_of_fds(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Closes `fd` with a reset (`SO_LINGER` 0), so the client is not left hanging.
fn abort(fd: &OwnedFd) {
    let _ = SockRef::from(fd).set_linger(Some(std::time::Duration::ZERO));
}

/// Stops `listener` listening: connections in its backlog are reset, new connects are
/// refused, `accept` fails. The socket stays open (its fd number is not reused);
/// [`listen_again`] restores it.
pub(crate) fn stop_listening(listener: RawFd) -> io::Result<()> {
    SockRef::from(&super::borrow_fd(listener)).shutdown(std::net::Shutdown::Read)
}

/// Makes a listener stopped by [`stop_listening`] listen again (a TCP listener bound to
/// port 0 gets a new port). A Unix-domain socket keeps its shutdown for good (`listen`
/// does not clear it): a new socket, bound to the same path, takes over its fd number.
pub(crate) fn listen_again(listener: RawFd, backlog: i32) -> io::Result<()> {
    let fd = super::borrow_fd(listener);
    let old = SockRef::from(&fd);
    let local = old.local_addr()?;
    if !local.is_unix() {
        return old.listen(backlog);
    }
    let Some(path) = local.as_pathname() else {
        return Err(io::Error::other(
            "an abstract or unnamed Unix socket cannot listen again after a shutdown",
        ));
    };
    if unix_socket_is_live(path)? {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{}: another server listens there now", path.display()),
        ));
    }
    // The new file gets the old one's mode and owner (a program may have opened it
    // to a front end's user after binding).
    let old_file = std::fs::symlink_metadata(path).ok();
    let is_socket =
        |m: &std::fs::Metadata| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type());
    if old_file.as_ref().is_some_and(|m| !is_socket(m)) {
        // Someone put something else there since: not ours to remove.
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{}: no longer a socket file; left alone", path.display()),
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let fresh = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    fresh.bind(&socket2::SockAddr::unix(path)?)?;
    if let Some(old) = old_file {
        use nix::fcntl::AT_FDCWD;
        use nix::sys::stat::{FchmodatFlags, Mode, fchmodat};
        use std::os::unix::fs::MetadataExt;
        // Neither call follows a symbolic link: one swapped in for the new socket (by
        // whoever may write its directory) must not pass the mode and owner on to its
        // target. A link's own mode cannot change: fchmodat refuses, and says so.
        let mode = Mode::from_bits_truncate(old.mode() & 0o7777);
        let kept = fchmodat(AT_FDCWD, path, mode, FchmodatFlags::NoFollowSymlink)
            .map_err(io::Error::from)
            .and_then(|()| std::os::unix::fs::lchown(path, Some(old.uid()), Some(old.gid())));
        if let Err(e) = kept {
            log::warn!(
                "{}: cannot give the new socket file the old one's mode and owner: {e}",
                path.display()
            );
        }
    }
    fresh.listen(backlog)?;
    fresh.set_nonblocking(
        nix::fcntl::fcntl(super::borrow_fd(listener), nix::fcntl::FcntlArg::F_GETFL)
            .is_ok_and(|flags| flags & libc::O_NONBLOCK != 0),
    )?;
    // SAFETY: both fds are open: `fresh` is owned here and `listener` by the server,
    // which keeps owning the number (now naming the new socket); dup3 closes the old
    // socket atomically, so the number is never free for another thread to take.
    if unsafe { libc::dup3(fresh.as_raw_fd(), listener, libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `listener` is a Unix-domain socket.
pub(crate) fn is_unix(listener: RawFd) -> bool {
    SockRef::from(&super::borrow_fd(listener))
        .local_addr()
        .is_ok_and(|addr| addr.is_unix())
}

/// True if something accepts connections on the Unix socket file `path`. The probe
/// never blocks: a full backlog (`EAGAIN`) also means a live server.
pub(crate) fn unix_socket_is_live(path: &std::path::Path) -> io::Result<bool> {
    let probe = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&socket2::SockAddr::unix(path)?) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `listener` was bound with `SO_REUSEPORT`.
pub(crate) fn has_reuseport(listener: RawFd) -> bool {
    SockRef::from(&super::borrow_fd(listener))
        .reuse_port()
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    const CHILD: &str = "MIXSERVE_ACCEPT_OUT_OF_FDS_CHILD";

    /// Sets the soft open-files limit to `limit`.
    fn set_nofile(limit: u64) {
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct it is given, which lives
        // here; setrlimit reads it.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut current), 0);
            current.rlim_cur = limit.min(current.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &current), 0);
        }
    }

    #[test]
    fn out_of_fds_beside_others_leaves_the_connection_queued_and_returns_at_once() {
        if std::env::var_os(CHILD).is_none() {
            // Run in a child: the fd limit is the whole process's.
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "sys::accept::tests::out_of_fds_beside_others_leaves_the_connection_queued_and_returns_at_once"])
                .env(CHILD, "1")
                .status()
                .unwrap();
            assert!(status.success(), "the child failed: {status:?}");
            return;
        }
        // A blocking listener, as a preforked pool's shared one, with a client queued.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let before = crate::sys::fd_passing::open_files_limit().unwrap();
        // The lowest free fd number: every lower one is taken, so a limit there leaves
        // none free.
        let lowest_free = File::open("/dev/null").unwrap().as_raw_fd();
        set_nofile(lowest_free as u64);
        let taken = accept_beside_others(listener.as_raw_fd());
        set_nofile(before);
        let error = taken.expect_err("no fd was free");
        assert!(is_out_of_fds(&error), "{error}");
        // Not refused: the client is still queued, for a sibling (here, a later accept).
        let (mut served, _) = listener.accept().unwrap();
        served.write_all(b"served").unwrap();
        let mut answer = [0; 6];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"served");
    }
}
