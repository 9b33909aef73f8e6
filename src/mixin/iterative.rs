//! [`Iterative`]: one connection at a time, on the thread that accepts.

use std::io;
use std::sync::Arc;

use crate::conn::Conn;
use crate::mixin::MixIn;
use crate::server::Context;

/// Serves one connection at a time, inline on the accepting thread — UNP's iterative
/// server, the baseline every other model is measured against.
///
/// No two handlers ever run at once, so a handler that waits for *another connection*
/// (a comet `Broadcast::wait`) could never be released: such a wait fails at once with
/// [`WaitError::NoOtherWorker`](crate::sync::WaitError::NoOtherWorker), which the comet
/// example answers with `503`, instead of hanging the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Iterative;

impl Iterative {
    /// The iterative model.
    pub fn new() -> Iterative {
        Iterative
    }
}

impl MixIn for Iterative {
    fn name(&self) -> &'static str {
        "iterative"
    }

    fn process_request(&mut self, ctx: &Arc<Context>, conn: Conn) -> io::Result<()> {
        ctx.finish_request(conn);
        Ok(())
    }

    fn max_blocked(&self) -> Option<usize> {
        Some(0)
    }
}
