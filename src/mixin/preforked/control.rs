//! Reading a worker's control socket in the master: a bounded share per turn, so a
//! worker that writes without pause cannot hold the master's loop.

use std::os::fd::RawFd;

/// Control bytes the master reads from one worker per turn: a worker sends one
/// `READY` per connection it asks for, and a `GROW` now and then; one that writes more
/// (handler code writing to a stale fd number) must not hold the master's loop.
pub(super) const CONTROL_BYTES_PER_TURN: usize = 256;

/// How a turn's reading of a control socket ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ControlRead {
    /// Everything there was is read.
    Drained,
    /// The turn's share is read; there may be more.
    More,
    /// The worker's end closed.
    Closed,
}

/// Reads at most [`CONTROL_BYTES_PER_TURN`] from the non-blocking control socket `fd`,
/// giving each byte to `on_byte`.
pub(super) fn read_control(fd: RawFd, mut on_byte: impl FnMut(u8)) -> ControlRead {
    let mut buf = [0u8; 64];
    let mut left = CONTROL_BYTES_PER_TURN;
    while left > 0 {
        let want = left.min(buf.len());
        match nix::unistd::read(crate::sys::borrow_fd(fd), &mut buf[..want]) {
            Ok(0) => return ControlRead::Closed,
            Ok(n) => {
                buf[..n].iter().for_each(|&byte| on_byte(byte));
                left -= n;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return ControlRead::Drained,
        }
    }
    ControlRead::More
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::{CONTROL_BYTES_PER_TURN, ControlRead, read_control};

    #[test]
    fn a_worker_that_floods_its_control_socket_gets_a_bounded_turn() {
        let (master, mut worker) = UnixStream::pair().unwrap();
        master.set_nonblocking(true).unwrap();
        worker
            .write_all(&[b'r'; 4 * CONTROL_BYTES_PER_TURN])
            .unwrap();
        let mut seen = 0;
        for _ in 0..4 {
            let read = read_control(master.as_raw_fd(), |_| seen += 1);
            assert_eq!(read, ControlRead::More);
        }
        assert_eq!(seen, 4 * CONTROL_BYTES_PER_TURN);
        assert_eq!(
            read_control(master.as_raw_fd(), |_| {}),
            ControlRead::Drained
        );
        drop(worker);
        assert_eq!(
            read_control(master.as_raw_fd(), |_| {}),
            ControlRead::Closed
        );
    }
}
