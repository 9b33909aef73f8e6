//! Moving completed replies from the outbox to their connections: a `Channel` value
//! for a connection that is gone goes back to its channel, a send's reply is logged
//! (and given to the retries waiting for it), and a connection's output cap turns
//! replies past it into short errors.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use mio::Registry;

use super::{HubServer, put_back};
use crate::sync::hub::peer::MAX_OUTPUT;
use crate::sync::hub::protocol::{self, status};
use crate::sync::lock;

impl HubServer {
    /// Moves completed replies to their connections and writes them. A `Channel` value
    /// for a connection that is gone goes back to its channel.
    pub(super) fn flush_outbox(&mut self, registry: &Registry) {
        loop {
            let replies = std::mem::take(&mut *lock(&self.outbox));
            if replies.is_empty() {
                return;
            }
            // Each connection is written once per batch (a notify releases thousands of
            // waits on a few connections), not once per reply.
            let mut touched = HashSet::new();
            for mut reply in replies {
                if let Some(id) = reply.send_id {
                    let frame = reply.frame();
                    for token in self.sends.record(id, &frame) {
                        let Some(peer) = self.peers.get_mut(&token) else {
                            continue;
                        };
                        if peer.queue_short(frame.clone()) {
                            touched.insert(token);
                        } else {
                            self.drop_peer(registry, token);
                        }
                    }
                }
                let Some(peer) = self.peers.get_mut(&reply.token) else {
                    if let Some(held) = reply.held {
                        put_back(&held);
                    }
                    continue;
                };
                let was_wait = peer.pending.remove(&reply.id).is_some();
                if was_wait {
                    self.status.blocked().fetch_sub(1, Ordering::SeqCst);
                }
                let holds_value = reply.held.is_some();
                if let Some(held) = reply.held.take() {
                    if let Some(earlier) = peer.held.insert(reply.id, held) {
                        // Two calls with one id came in one read, before either reply
                        // was moved here: a broken worker, closed as `serve` closes
                        // one that reuses an open id. Both values go back.
                        log::warn!(
                            "hub: worker {} used call id {} twice; closing its connection",
                            peer.pid,
                            reply.id
                        );
                        put_back(&earlier);
                        self.drop_peer(registry, reply.token);
                        continue;
                    }
                }
                // A full queue is written out first. The frame is made once it fits.
                let len = reply.frame_len();
                let fits = peer.queued_room() >= len || peer.flush();
                if !fits {
                    // The write failed: the connection is gone.
                    self.drop_peer(registry, reply.token);
                    continue;
                }
                if peer.queued_room() >= len {
                    peer.queue(reply.frame());
                    touched.insert(reply.token);
                    continue;
                }
                // Still full: one release sent this connection more than its cap (a
                // large value to many waits). A wait, or a call handed a value, gets a
                // short error instead (the value goes back to its channel), not a closed
                // connection: its other waits would be made again and miss this
                // release. A peer that reads nothing is closed by the stall check.
                if was_wait || holds_value {
                    if let Some(held) = peer.held.remove(&reply.id) {
                        put_back(&held);
                    }
                    let why = format!(
                        "the hub's output to this worker is full ({} MiB): the reply was dropped",
                        MAX_OUTPUT >> 20
                    );
                    peer.queue_call_error(protocol::encode_reply(
                        status::ERROR,
                        reply.id,
                        why.as_bytes(),
                    ));
                    touched.insert(reply.token);
                } else if peer.queue_short(reply.frame()) {
                    // A call that opened nothing (a send's count, a length): its short
                    // reply itself goes past the cap, so a send that happened says so.
                    touched.insert(reply.token);
                } else {
                    log::warn!(
                        "hub: worker {} is far behind its replies ({} MiB queued); closing it",
                        peer.pid,
                        peer.queued() >> 20
                    );
                    self.drop_peer(registry, reply.token);
                }
            }
            for token in touched {
                self.write(registry, token);
            }
            // Putting a value back may have released another remote receiver.
        }
    }
}
