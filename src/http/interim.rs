//! `100 Continue`: the interim answer a client that sent `Expect: 100-continue` waits
//! for before it sends the body. It goes out only once the body is about to be read,
//! so an application that answers by the head alone never invites a body.

use std::cell::Cell;
use std::io::{self, BufRead, Read, Write};

use super::error::{Failure, peer_gone};
use crate::conn::Conn;

/// `HTTP/1.1 100 Continue`, sent before the body is read when the client waits for it
/// (`interim`).
pub(super) fn send_continue(conn: &mut Conn, interim: bool) -> Result<(), Failure> {
    if !interim {
        return Ok(());
    }
    write_continue(conn).map_err(|error| {
        if peer_gone(error.kind()) {
            Failure::Close
        } else {
            Failure::Io(error)
        }
    })
}

fn write_continue(conn: &mut Conn) -> io::Result<()> {
    conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    conn.flush()
}

/// The connection under a streamed body: sends the `100 Continue` still `unsent` before
/// the first read.
pub(super) struct ContinueFirst<'c> {
    pub(super) conn: &'c mut Conn,
    pub(super) unsent: &'c Cell<bool>,
}

impl ContinueFirst<'_> {
    fn send_unsent(&mut self) -> io::Result<()> {
        if self.unsent.get() {
            write_continue(self.conn)?;
            self.unsent.set(false);
        }
        Ok(())
    }
}

impl Read for ContinueFirst<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.send_unsent()?;
        self.conn.read(buf)
    }
}

impl BufRead for ContinueFirst<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.send_unsent()?;
        self.conn.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.conn.consume(amount);
    }
}
