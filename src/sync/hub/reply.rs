//! [`RemoteReply`]: the answer to one worker request, possibly completed later (a wait
//! released by a send), queued in the hub's outbox until its loop writes it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use mio::Token;

use crate::sync::WaitError;
use crate::sync::hub::protocol::{self, op, status};
use crate::sync::lock;
use crate::sync::wire::Wire;

/// Replies waiting to be written.
pub(crate) type Outbox = Arc<Mutex<Vec<Outgoing>>>;

/// A `Channel` value released to a worker, kept until the worker acknowledges it.
#[derive(Debug)]
pub(crate) struct Held {
    /// The object it came from.
    pub(crate) object: u64,
    /// The value's wire form.
    pub(crate) payload: Arc<[u8]>,
}

/// One reply for one connection. Its frame is made only when the connection has room
/// for it: a release to many waits shares one encoded value among all their replies,
/// so the outbox holds the value once, not once per wait.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) token: Token,
    /// The call this reply answers.
    pub(crate) id: u64,
    status: u8,
    payload: Arc<[u8]>,
    /// The `Channel` value this reply hands over, if any.
    pub(crate) held: Option<Held>,
    /// The id of the send this reply answers (kept to answer a retry the same way).
    pub(crate) send_id: Option<u64>,
}

impl Outgoing {
    /// The reply frame's length in bytes.
    pub(crate) fn frame_len(&self) -> usize {
        protocol::reply_frame_len(self.payload.len())
    }

    /// The reply frame.
    pub(crate) fn frame(&self) -> Vec<u8> {
        protocol::encode_reply(self.status, self.id, &self.payload)
    }
}

/// A pending reply to a worker, completed later when the object releases the waiter.
#[derive(Debug)]
pub(crate) struct RemoteReply {
    pub(super) outbox: Outbox,
    pub(super) token: Token,
    pub(super) scope: usize,
    /// The request answered: its operation, object and id.
    pub(super) op: u8,
    pub(super) object: u64,
    pub(super) id: u64,
    /// When the worker's wait times out. The hub's timer answers it then if the object
    /// still has it; one that was away (in a Redis batch) is answered when it is back.
    pub(super) deadline: Option<Instant>,
    /// Set once the reply is in the outbox.
    sent: bool,
}

/// A reply dropped by a panic (the application's `Clone` or `Wire::encode` of a value,
/// run by the hub's loop) answers an error: its worker would otherwise wait for it
/// until its timeout, or for ever. Dropped otherwise, it answers nothing: the hub drops
/// the reply of a wait it cancels, and answers for itself.
impl Drop for RemoteReply {
    fn drop(&mut self) {
        if !self.sent && std::thread::panicking() {
            let why = "the hub's loop panicked serving this call";
            self.push(status::ERROR, Arc::from(why.as_bytes()));
        }
    }
}

impl RemoteReply {
    /// The reply to call `id` (operation `op` on `object`) of connection `token`.
    pub(super) fn new(outbox: &Outbox, token: Token, scope: usize, call: (u8, u64, u64)) -> Self {
        let (op, object, id) = call;
        RemoteReply {
            outbox: Arc::clone(outbox),
            token,
            scope,
            op,
            object,
            id,
            deadline: None,
            sent: false,
        }
    }

    /// The server the waiting worker belongs to.
    pub(crate) fn scope(&self) -> usize {
        self.scope
    }

    /// Whether the wait's deadline has passed by `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| deadline <= now)
    }

    /// Sends a wait's result.
    pub(crate) fn complete<T: Wire>(self, result: Result<T, WaitError>) {
        match result {
            Ok(value) => self.complete_encoded(encode_shared(&value)),
            Err(error) => self.fail(&error),
        }
    }

    /// Sends a wait's error.
    pub(crate) fn fail(self, error: &WaitError) {
        self.send(protocol::status_of(error), error.to_string().as_bytes());
    }

    /// Sends a wait's value, encoded already (once for every wait a release answers).
    pub(crate) fn complete_encoded(self, payload: Arc<[u8]>) {
        if payload.len() > protocol::MAX_VALUE_BYTES {
            // Only a value sent inside the master (or taken from Redis) can be
            // this large; with the reply's head it might not fit in a frame,
            // which the worker would take for a broken connection.
            let why = format!(
                "a value of {} bytes exceeds the hub's limit of {} bytes; it was dropped",
                payload.len(),
                protocol::MAX_VALUE_BYTES
            );
            log::error!("hub: {why}");
            self.send(status::ERROR, why.as_bytes());
            return;
        }
        self.send_shared(status::OK, payload);
    }

    /// Sends a reply.
    pub(crate) fn send(self, status: u8, payload: &[u8]) {
        self.send_shared(status, Arc::from(payload));
    }

    fn send_shared(mut self, status: u8, payload: Arc<[u8]>) {
        self.push(status, payload);
    }

    fn push(&mut self, status: u8, payload: Arc<[u8]>) {
        self.sent = true;
        let held = (status == status::OK && op::takes_value(self.op)).then(|| Held {
            object: self.object,
            payload: Arc::clone(&payload),
        });
        let outgoing = Outgoing {
            token: self.token,
            id: self.id,
            status,
            payload,
            held,
            send_id: op::is_send(self.op).then_some(self.id),
        };
        lock(&self.outbox).push(outgoing);
    }
}

/// A value's wire form, to share among the replies of one release.
pub(crate) fn encode_shared<T: Wire>(value: &T) -> Arc<[u8]> {
    let mut payload = Vec::new();
    value.encode(&mut payload);
    Arc::from(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::waiters::{WaitList, Waiter};

    /// A release to many workers' waits holds its value once, however many replies
    /// wait in the outbox: 10,000 comet waits and a 1 MiB value would otherwise need
    /// 10 GiB before any connection's cap applies.
    #[test]
    fn a_release_encodes_its_value_once_for_every_workers_wait() {
        let outbox: Outbox = Arc::default();
        let mut waits: WaitList<String> = WaitList::new();
        for id in 0..100 {
            let call = (op::BROADCAST_WAIT, 1, id);
            let reply = RemoteReply::new(&outbox, Token(id as usize % 3), 0, call);
            waits.push(Waiter::Remote(reply));
        }
        let value = "x".repeat(64 * 1024);
        assert_eq!(waits.release_all(&value), 100);
        let replies = lock(&outbox);
        assert_eq!(replies.len(), 100);
        assert!(
            replies
                .iter()
                .all(|reply| Arc::ptr_eq(&reply.payload, &replies[0].payload)),
            "a copy of the value per reply"
        );
        let frame = replies[7].frame();
        assert_eq!(frame.len(), replies[7].frame_len());
        let body = &frame[4..];
        assert_eq!(
            protocol::decode_reply(body),
            Some((status::OK, 7, value.as_bytes()))
        );
    }
}
