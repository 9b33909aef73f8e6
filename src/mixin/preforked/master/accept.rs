//! The master's share of accepting: take what the listener holds and pass each
//! connection to a worker, as far as workers can take them this turn.

use super::Master;
use crate::mixin::preforked::Accept;
use crate::server::source::conn_from_accepted;
use crate::sys::accept::{Taken, accept_with_rules};

/// Accepts that took nothing (a connection refused at the fd limit or lost before it
/// was taken) the master goes on after in one turn, before its other work.
pub(super) const SKIPS_PER_TURN: usize = 64;

impl Master<'_> {
    /// Accepts while a worker can take the connection, and passes each one.
    pub(super) fn accept_and_pass(&mut self) {
        if !self.master_accepts {
            return;
        }
        let passed = matches!(self.plan.accept, Accept::Passed(_));
        let mut skipped = 0;
        self.skips_left_over = false;
        while self.listener_pending {
            if passed && self.dispatcher.ready_count() == 0 {
                return;
            }
            let taken = accept_with_rules(self.ctx.listener_fd(), self.ctx.spare_fd());
            let conn = match taken {
                Ok(Taken::Socket(accepted)) => {
                    let mut conn = conn_from_accepted(accepted);
                    conn.set_drain_flag(self.ctx.shutdown.drain_flag());
                    conn
                }
                Ok(Taken::Empty) => {
                    self.listener_pending = false;
                    return;
                }
                // None taken (one refused for want of fds, one lost before it was
                // taken, a signal), but more may wait, with no new edge to say so: go
                // on, a bounded number of times a turn (the rest of the loop's work,
                // reaping and signals, comes first; the listener stays pending).
                Ok(Taken::Skipped) if skipped < SKIPS_PER_TURN => {
                    skipped += 1;
                    continue;
                }
                Ok(Taken::Skipped) => {
                    self.skips_left_over = true;
                    return;
                }
                Err(e) => {
                    log::warn!("preforked: accept failed: {e}");
                    return;
                }
            };
            if !self.ctx.verify_request(&conn) {
                continue;
            }
            let taken = if passed {
                self.dispatcher.pass(&conn, &self.pool, &self.plan.board)
            } else {
                self.dispatcher
                    .pass_to_any(&conn, &self.pool, &self.plan.board)
            };
            drop(conn); // The master's copy closes at once, passed or not.
            if !taken {
                // No worker could take it (all died at once, or none can be sent an fd
                // now): the client sees a close. The rest wait in the backlog for the
                // next turn, rather than be accepted and closed too.
                log::warn!("preforked: no worker took a connection; closed it");
                return;
            }
        }
    }
}
