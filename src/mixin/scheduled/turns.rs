//! A connection under `Scheduled`, served in turns: when its handler idles between
//! requests (see [`Handler::handle_until_idle`](crate::Handler::handle_until_idle)),
//! the connection waits for its client's next bytes as an epoll entry and a timer,
//! its coroutine's stack back in the pool (see `rt::idle_then`). The next request runs
//! on whichever stack the loop used last, still in the CPU's cache.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::serve_loop::Tracked;
use crate::conn::{Conn, IdleOver};
use crate::rt::{self, Resume, clock};
use crate::server::Context;
use crate::server::session::Session;

/// One connection and its handler, between turns.
pub(super) struct Turns {
    // Field order is drop order: untracked first, then the handler, then the socket
    // closes (an fd number still tracked is always open).
    _tracked: Tracked,
    session: Option<Box<dyn Session>>,
    conn: Conn,
    ctx: Arc<Context>,
    /// The idle wait in progress: when it began (by the loop's clock) and its timeout.
    idle: Option<(Instant, Duration)>,
}

impl Turns {
    pub(super) fn new(ctx: Arc<Context>, conn: Conn, tracked: Tracked) -> Box<Turns> {
        Box::new(Turns {
            _tracked: tracked,
            session: None,
            conn,
            ctx,
            idle: None,
        })
    }
}

impl Resume for Turns {
    fn resume(self: Box<Turns>) {
        serve(self);
    }
}

/// Serves `turns` until its connection ends, or until it waits idle without a stack
/// (then this runs again, on a new coroutine body, when the wait ends).
pub(super) fn serve(mut turns: Box<Turns>) {
    loop {
        let wait = match turns.idle.take() {
            Some((since, timeout)) => match turns.conn.idle_over(since, timeout) {
                Ok(IdleOver::Input) => None,
                Ok(IdleOver::Again(left)) => {
                    turns.idle = Some((since, timeout));
                    Some(left)
                }
                Ok(IdleOver::Close) | Err(_) => return end(turns),
            },
            None => {
                let Turns {
                    ctx, conn, session, ..
                } = &mut *turns;
                let timeout = ctx.serve_turn(conn, session);
                let timeout = match timeout {
                    Some(timeout) => timeout,
                    None => return,
                };
                // What the handler wrote goes out first; input that came with no edge
                // to say so is served at once.
                if conn.flush().is_err() {
                    return end(turns);
                }
                match conn.input_before_idle() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(_) => return end(turns),
                }
                conn.release_read_buffer();
                turns.idle = Some((clock::now(), timeout));
                Some(timeout)
            }
        };
        let Some(wait) = wait else {
            continue;
        };
        let fd = turns.conn.as_raw_fd();
        match rt::idle_then(fd, wait, turns) {
            Ok(()) => return,
            // No wait without a stack here: wait on this one (`idle_over` then tells
            // what ended it).
            Err(back) => {
                turns = back;
                let _ = turns.conn.wait_idle(wait);
            }
        }
    }
}

/// Ends an idle connection: the handler's `finish` and the report, then the close.
fn end(mut turns: Box<Turns>) {
    let Turns {
        ctx, conn, session, ..
    } = &mut *turns;
    if let Some(session) = session {
        ctx.end_idle_connection(conn, &mut **session);
    }
}
