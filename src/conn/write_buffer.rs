//! Connection write buffers, held only while a connection has output to send.
//!
//! A [`Conn`](super::Conn) takes a buffer when it first has bytes to send and gives it
//! back once a flush has sent them all: between requests, and while its handler waits
//! (a comet waiter), a connection holds none. A busy keep-alive loop so writes every
//! answer into the same few buffers, still in the CPU's cache, instead of one per
//! connection: with a thousand connections, a thousand buffers would each be cold when
//! their next answer is written.

use std::cell::RefCell;

/// Most spare buffers kept per thread; more are freed.
const SPARE_MAX: usize = 16;
/// Capacity of a new buffer: a typical answer's head and small body fit.
const INITIAL_CAPACITY: usize = 2048;
/// Buffers that grew larger than this (a large body written through the buffer) are
/// freed rather than kept as spares.
const KEEP_MAX: usize = 64 * 1024;

thread_local! {
    /// Buffers given back and not yet taken again, all empty.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty write buffer: a spare one, or a fresh one.
pub(super) fn take() -> Vec<u8> {
    SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(INITIAL_CAPACITY))
}

/// Gives a buffer back (its content is dropped): kept as a spare, or freed when there
/// are enough spares or it grew large.
pub(super) fn give(mut buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > KEEP_MAX {
        return;
    }
    buffer.clear();
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_MAX {
            spare.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::Conn;

    #[test]
    fn a_connection_holds_a_write_buffer_only_while_output_is_pending() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut conn = Conn::from_unix(server).unwrap();
        assert!(!conn.holds_write_buffer(), "nothing written yet");
        conn.write_all(b"hello").unwrap();
        assert!(conn.holds_write_buffer(), "output pending");
        conn.flush().unwrap();
        assert!(!conn.holds_write_buffer(), "all sent: given back");
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
    }

    #[test]
    fn spares_are_reused_and_large_ones_freed() {
        let mut buffer = take();
        buffer.extend_from_slice(b"left over");
        let address = buffer.as_ptr();
        give(buffer);
        let again = take();
        assert!(again.is_empty(), "a spare comes back empty");
        assert_eq!(again.as_ptr(), address, "the spare is reused");
        give(Vec::with_capacity(KEEP_MAX + 1));
        assert!(take().capacity() <= KEEP_MAX, "a large buffer is not kept");
    }
}
