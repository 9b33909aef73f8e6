//! [`Session`]: one connection's handler served in turns, for a model that holds a
//! connection idle between requests without a stack (see
//! [`Handler::handle_until_idle`]).

use std::io::{self, Write};

use crate::conn::Conn;
use crate::handler::{Handled, Handler};

/// A connection's handler, with its type erased, served in turns.
pub(crate) trait Session {
    /// One turn: [`setup`](Handler::setup) first (on the first turn), then
    /// [`handle_until_idle`](Handler::handle_until_idle).
    fn turn(&mut self, conn: &mut Conn) -> io::Result<Handled>;

    /// After the last turn, also one that failed: [`finish`](Handler::finish), then
    /// the flush. The first error of `served`, `finish` and the flush is returned.
    fn end(&mut self, conn: &mut Conn, served: io::Result<()>) -> io::Result<()>;
}

/// A [`Session`] of handler `H`.
pub(crate) struct HandlerSession<H> {
    handler: H,
    set_up: bool,
}

impl<H: Handler> HandlerSession<H> {
    pub(crate) fn new(handler: H) -> HandlerSession<H> {
        HandlerSession {
            handler,
            set_up: false,
        }
    }

    /// The whole connection in one call, for the models that serve it so:
    /// [`setup`](Handler::setup), then [`handle`](Handler::handle). [`end`](Session::end)
    /// comes next, as after the last turn.
    pub(crate) fn whole(&mut self, conn: &mut Conn) -> io::Result<()> {
        self.set_up = true;
        self.handler.setup(conn)?;
        self.handler.handle(conn)
    }
}

impl<H: Handler> Session for HandlerSession<H> {
    fn turn(&mut self, conn: &mut Conn) -> io::Result<Handled> {
        if !self.set_up {
            self.set_up = true;
            self.handler.setup(conn)?;
        }
        self.handler.handle_until_idle(conn)
    }

    fn end(&mut self, conn: &mut Conn, served: io::Result<()>) -> io::Result<()> {
        let finished = self.handler.finish(conn);
        // Flushed whatever happened: a handler that wrote its refusal and then failed
        // meant the client to read it.
        let flushed = conn.flush();
        served.and(finished).and(flushed)
    }
}
