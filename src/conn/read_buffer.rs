//! Connection read buffers, held only while a connection has something to read into.
//!
//! A [`Conn`](super::Conn) takes its buffer on its first read and gives it back whenever
//! nothing is buffered and it is about to wait for long: idle between requests, or while
//! its handler waits (a comet waiter). Ten thousand parked waiters then hold no read
//! buffers at all. Given-back buffers are kept per thread, a few of them, for the next
//! connection to read, so a busy keep-alive loop reuses the same few buffers instead of
//! asking the allocator each time.

use std::cell::RefCell;

use super::BUFFER_SIZE;

/// Most spare buffers kept per thread; more are freed.
const SPARE_MAX: usize = 16;

thread_local! {
    /// Buffers given back and not yet taken again.
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// Buffers taken on this thread minus buffers given back on it.
    static HELD: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

/// A read buffer of [`BUFFER_SIZE`] bytes: a spare one, or a fresh one.
pub(super) fn take() -> Box<[u8]> {
    #[cfg(test)]
    HELD.with(|held| held.set(held.get() + 1));
    SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0; BUFFER_SIZE].into_boxed_slice())
}

/// Gives a buffer back: kept as a spare, or freed when there are enough spares.
pub(super) fn give(buffer: Box<[u8]>) {
    #[cfg(test)]
    HELD.with(|held| held.set(held.get() - 1));
    if buffer.len() != BUFFER_SIZE {
        return;
    }
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_MAX {
            spare.push(buffer);
        }
    });
}

/// Buffers taken on this thread and not given back on it.
#[cfg(test)]
pub(crate) fn held_on_this_thread() -> isize {
    HELD.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::{BufRead, Read, Write};
    use std::net::Shutdown;
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;
    use std::sync::Arc;

    use super::*;
    use crate::Conn;
    use crate::handler::Handler;
    use crate::http::{HttpConfig, HttpConnection, Request, Response};
    use crate::rt::{Runtime, RuntimeConfig};

    #[test]
    fn a_connection_holds_a_buffer_only_while_bytes_are_buffered() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut conn = Conn::from_unix(server).unwrap();
        assert!(!conn.holds_read_buffer(), "nothing read yet");
        client.write_all(b"abcdef").unwrap();
        assert_eq!(conn.fill_buf().unwrap(), b"abcdef");
        conn.consume(2);
        conn.release_read_buffer();
        assert!(conn.holds_read_buffer(), "four bytes still buffered");
        assert_eq!(conn.buffered(), b"cdef");
        conn.consume(4);
        conn.release_read_buffer();
        assert!(!conn.holds_read_buffer());
        assert_eq!(conn.buffered(), b"");
        client.write_all(b"gh").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut rest = String::new();
        conn.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "gh", "reading takes a buffer again");
        assert_eq!(conn.buffer_capacity(), BUFFER_SIZE);
    }

    #[test]
    fn a_read_parked_with_nothing_buffered_holds_no_buffer() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let before = held_on_this_thread();
        let started = Rc::new(Cell::new(false));
        let read = Rc::new(RefCell::new(String::new()));
        let held_while_parked = Rc::new(Cell::new(None));
        let (started_a, read_a) = (Rc::clone(&started), Rc::clone(&read));
        runtime
            .spawn(move || {
                let mut conn = Conn::from_unix(server).unwrap();
                started_a.set(true);
                conn.read_line(&mut read_a.borrow_mut()).unwrap();
            })
            .unwrap();
        let held = Rc::clone(&held_while_parked);
        runtime
            .spawn(move || {
                for _ in 0..1000 {
                    if started.get() {
                        break;
                    }
                    crate::rt::yield_now();
                }
                // The reader found nothing and parked.
                held.set(Some(held_on_this_thread() - before));
                client.write_all(b"hi\n").unwrap();
            })
            .unwrap();
        runtime.run().unwrap();
        assert_eq!(held_while_parked.get(), Some(0));
        assert_eq!(*read.borrow(), "hi\n");
        assert_eq!(held_on_this_thread(), before);
    }

    #[test]
    fn an_http_handler_runs_without_a_read_buffer() {
        let (mut client, server) = UnixStream::pair().unwrap();
        client
            .write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut conn = Conn::from_unix(server).unwrap();
        let before = held_on_this_thread();
        let app = move |_: &mut Request| {
            // A long poll would wait here: the connection's buffer is back.
            Response::text(200, format!("{}", held_on_this_thread() - before))
        };
        let mut handler = HttpConnection::new(Arc::new(app), Arc::new(HttpConfig::default()));
        handler.handle(&mut conn).unwrap();
        drop(conn);
        assert_eq!(held_on_this_thread(), before, "given back on drop");
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.ends_with("\r\n\r\n0"), "{answer}");
    }

    #[test]
    fn spares_are_reused_and_bounded() {
        let first = take();
        let address = first.as_ptr();
        give(first);
        let again = take();
        assert_eq!(again.as_ptr(), address, "the spare is taken again");
        let many: Vec<_> = (0..SPARE_MAX + 4).map(|_| take()).collect();
        assert_eq!(held_on_this_thread(), SPARE_MAX as isize + 5);
        many.into_iter().for_each(give);
        give(again);
        assert_eq!(held_on_this_thread(), 0);
        assert_eq!(SPARE.with(|spare| spare.borrow().len()), SPARE_MAX);
    }
}
