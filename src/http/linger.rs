//! Closing a connection politely: the write side first, then reading (and throwing
//! away) what the client still sends, for a while, so that closing with unread bytes
//! does not reset the connection and cut the answer.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use super::config::HttpConfig;
use crate::conn::Conn;

/// Closes politely: send what is buffered, shut the write side, then read and discard
/// what the client still sends until it closes too, for at most `linger`, so the answer
/// is not lost to a reset. Bounded by time alone, as nginx's lingering close is: a cap
/// on bytes would end it while an upload refused with `413` is still arriving, and
/// closing with unread bytes sends the reset it is there to avoid.
pub(crate) fn linger_close(conn: &mut Conn, config: &HttpConfig) -> io::Result<()> {
    conn.flush()?;
    conn.shutdown(Shutdown::Write)?;
    conn.set_read_timeout(None);
    let end = crate::deadline::from_now(config.linger);
    conn.set_read_deadline(Some(end));
    let mut scratch = [0u8; 16 * 1024];
    let mut unyielded = 0;
    // The time is checked here too: a read that finds bytes waiting returns them without
    // looking at the deadline, so a client sending faster than this reads would
    // otherwise hold it for ever.
    loop {
        match conn.read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => unyielded += n,
        }
        if Instant::now() >= end {
            break;
        }
        // A read with bytes waiting does not park either: the other coroutines of a
        // scheduled loop get their turn now and then.
        if unyielded >= LINGER_YIELD_BYTES && crate::rt::in_coroutine() {
            crate::rt::yield_now();
            unyielded = 0;
        }
    }
    Ok(())
}

/// Whether the client sent more than the requests answered: bytes buffered, or waiting
/// on the socket now (read without waiting, and thrown away: the connection closes).
pub(super) fn input_waiting(conn: &mut Conn) -> bool {
    if !conn.buffered().is_empty() {
        return true;
    }
    conn.set_read_timeout(None);
    conn.set_read_deadline(Some(Instant::now()));
    let mut byte = [0u8; 1];
    matches!(conn.read(&mut byte), Ok(1..))
}

/// Bytes a lingering close on a coroutine reads before it lets the others run.
const LINGER_YIELD_BYTES: usize = 256 * 1024;
