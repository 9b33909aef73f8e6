//! Reading a worker's connection and serving its requests: many calls may be open on
//! one connection at once, each named by its id; `CANCEL` withdraws one.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::Token;

use super::{HubServer, put_back};
use crate::sync::WaitError;
use crate::sync::hub::peer::{NOTIFY_HEADROOM, ReadOutcome};
use crate::sync::hub::protocol::{self, NO_TIMEOUT, Request, op, status};
use crate::sync::hub::sends::Seen;
use crate::sync::registry;

/// Bytes read from a peer at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Reads from one peer per readiness event or pending turn (1 MiB; one read in unit
/// tests, which check the bound: a test loop's turn then reads twice, the event's and
/// the pending one's).
#[cfg(not(test))]
const READS_PER_TURN: usize = 16;
#[cfg(test)]
const READS_PER_TURN: usize = 1;
/// Entries of finished timed waits the deadline heap may hold beyond twice the live
/// ones before they are swept.
const STALE_DEADLINES_KEPT: usize = 256;

impl HubServer {
    /// Reads and serves complete requests, at most [`READS_PER_TURN`] reads (the rest
    /// on the next turn: a worker writing without pause must not hold the master's
    /// loop from the others); false when the connection is finished.
    pub(super) fn read(&mut self, token: Token) -> bool {
        let mut buf = vec![0u8; READ_CHUNK];
        for _ in 0..READS_PER_TURN {
            let Some(peer) = self.peers.get_mut(&token) else {
                return true;
            };
            match peer.read_some(&mut buf) {
                ReadOutcome::Data => {
                    if !self.serve_frames(token) {
                        return false;
                    }
                }
                ReadOutcome::Drained => return true,
                ReadOutcome::Closed => return false,
            }
        }
        if !self.read_pending.contains(&token) {
            self.read_pending.push(token);
        }
        true
    }

    /// Serves every complete frame in the peer's input; false on a malformed one.
    fn serve_frames(&mut self, token: Token) -> bool {
        let mut at = 0;
        let healthy = loop {
            let Some(peer) = self.peers.get_mut(&token) else {
                return false;
            };
            let len = match protocol::complete_frame(&peer.input[at..]) {
                Ok(Some(len)) => len,
                Ok(None) => break true,
                Err(()) => {
                    log::warn!(
                        "hub: worker {} sent an oversized frame; closing it",
                        peer.pid
                    );
                    break false;
                }
            };
            let body = peer.input[at + 4..at + 4 + len].to_vec();
            at += 4 + len;
            if !self.serve(token, &body) {
                if let Some(peer) = self.peers.get(&token) {
                    log::warn!(
                        "hub: worker {} sent a malformed frame; closing it",
                        peer.pid
                    );
                }
                break false;
            }
        };
        if let Some(peer) = self.peers.get_mut(&token) {
            peer.input.drain(..at);
        }
        healthy
    }

    /// Serves one request; false on a malformed one.
    fn serve(&mut self, token: Token, body: &[u8]) -> bool {
        let Some(request) = protocol::decode_request(body) else {
            return false;
        };
        if !(op::BROADCAST_WAIT..=op::CANCEL).contains(&request.op) {
            return false;
        }
        let cap = self.max_outstanding;
        let Some(peer) = self.peers.get_mut(&token) else {
            return false;
        };
        match request.op {
            op::CHANNEL_ACK => {
                peer.held.remove(&request.id);
                return true;
            }
            op::CANCEL => {
                self.cancel(token, request.id);
                return true;
            }
            _ => {}
        }
        if peer.pending.contains_key(&request.id) || peer.held.contains_key(&request.id) {
            // An id still open on this connection used again: the worker is broken.
            return false;
        }
        if op::is_send(request.op) {
            match self.sends.begin(request.id, token) {
                // A retry of a send that already happened: the same answer again.
                Seen::Answered(frame) => {
                    if !peer.queue_short(frame.to_vec()) {
                        // Far behind its replies: the retry times out and comes again,
                        // or the stall check closes the peer.
                        log::warn!("hub: worker {} is far behind its replies", peer.pid);
                    }
                    return true;
                }
                // A retry of one being served: it gets that one's reply.
                Seen::InProgress => return true,
                Seen::New => {}
            }
        }
        let full = peer.outstanding() >= cap;
        let reply = self.reply_to(token, request.op, request.object, request.id);
        if full {
            let why = format!("too many calls open on one hub connection (at most {cap})");
            reply.send(status::ERROR, why.as_bytes());
            return true;
        }
        self.serve_call(token, &request, reply);
        true
    }

    /// Hands a well-formed call to its object; a wait becomes pending on the peer.
    fn serve_call(
        &mut self,
        token: Token,
        request: &Request<'_>,
        mut reply: crate::sync::hub::RemoteReply,
    ) {
        let Some(object) = registry::get(request.object) else {
            reply.send(status::ERROR, b"no such shared object");
            return;
        };
        let deadline = (request.timeout_ms != NO_TIMEOUT)
            .then(|| crate::deadline::from_now(Duration::from_millis(request.timeout_ms)));
        reply.deadline = deadline;
        // A draining server answers new waits at once; a wait that would block the
        // last free worker is refused (see ServerScope).
        let refuse = if self.scope.is_draining() {
            Some(WaitError::Closed)
        } else if self.peers.len() + NOTIFY_HEADROOM > self.room {
            // The reserve rule at the master's fds: no more handlers may wait than its
            // open-file limit leaves room for beside a notify (`503`, as the rule says).
            self.refusals.note(&format!(
                "waits refused: the master holds {} hub connections, near its open-file \
                 limit (raise `ulimit -n`)",
                self.peers.len()
            ));
            Some(WaitError::NoOtherWorker {
                model: match self.scope.no_other_worker() {
                    WaitError::NoOtherWorker { model, .. } => model,
                    _ => "preforked",
                },
                max_waiting: self.room.saturating_sub(NOTIFY_HEADROOM),
            })
        } else if self.status.blocked_clients() >= self.scope.max_blocked() {
            Some(self.scope.no_other_worker())
        } else {
            None
        };
        // The object runs the application's code (a value's `Clone`, `Wire`): a panic
        // there fails this call (the reply answers an error as it drops) and the
        // waiters it was releasing, not the loop every worker depends on.
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            object.serve(request.op, request.payload, reply, refuse)
        }));
        let served = served.unwrap_or_else(|_| {
            log::error!("hub: serving a worker's call panicked (a value's Clone or Wire::encode?)");
            None
        });
        if let Some(key) = served {
            if let Some(peer) = self.peers.get_mut(&token) {
                peer.pending.insert(request.id, (request.object, key));
                self.status.blocked().fetch_add(1, Ordering::SeqCst);
            }
            if let Some(deadline) = deadline {
                self.deadlines
                    .push(Reverse((deadline, token.0, request.id)));
                self.drop_stale_deadlines();
            }
        }
    }

    /// A wait answered or withdrawn before its deadline leaves its entry in the heap
    /// until the deadline passes (hours, for a long timeout). Once such entries
    /// outnumber the live ones, they go, so a peer that waits and cancels in a loop
    /// cannot grow the heap without end; each sweep is paid for by the pushes since.
    fn drop_stale_deadlines(&mut self) {
        let live = self.status.blocked_clients();
        if self.deadlines.len() <= 2 * live + STALE_DEADLINES_KEPT {
            return;
        }
        let peers = &self.peers;
        self.deadlines.retain(|Reverse((_, token, id))| {
            peers
                .get(&Token(*token))
                .is_some_and(|peer| peer.pending.contains_key(id))
        });
    }

    /// Withdraws call `id` of a peer: a pending wait stops (no reply is sent), a value
    /// handed over and not acknowledged goes back to its channel. A wait released in
    /// the meantime keeps its reply, already on its way; the worker cancels again when
    /// that reply reaches it, which puts a value back.
    fn cancel(&mut self, token: Token, id: u64) {
        let Some(peer) = self.peers.get_mut(&token) else {
            return;
        };
        if let Some(&(object, key)) = peer.pending.get(&id) {
            if registry::get(object).is_none_or(|o| o.cancel(key)) {
                peer.pending.remove(&id);
                self.status.blocked().fetch_sub(1, Ordering::SeqCst);
            }
        } else if let Some(held) = peer.held.remove(&id) {
            put_back(&held);
        }
    }
}
