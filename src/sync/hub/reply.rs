//! [`RemoteReply`]: the answer to one worker request, possibly completed later (a wait
//! released by a send), queued in the hub's outbox until its loop writes it.

use std::sync::{Arc, Mutex};

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
    pub(crate) payload: Vec<u8>,
}

/// One reply frame for one connection.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) token: Token,
    /// The call this frame answers.
    pub(crate) id: u64,
    pub(crate) frame: Vec<u8>,
    /// The `Channel` value this frame hands over, if any.
    pub(crate) held: Option<Held>,
    /// The id of the send this frame answers (kept to answer a retry the same way).
    pub(crate) send_id: Option<u64>,
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
}

impl RemoteReply {
    /// The server the waiting worker belongs to.
    pub(crate) fn scope(&self) -> usize {
        self.scope
    }

    /// Sends a wait's result.
    pub(crate) fn complete<T: Wire>(self, result: Result<T, WaitError>) {
        match result {
            Ok(value) => {
                let mut payload = Vec::new();
                value.encode(&mut payload);
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
                self.send(status::OK, &payload);
            }
            Err(error) => self.send(protocol::status_of(&error), error.to_string().as_bytes()),
        }
    }

    /// Sends a reply frame.
    pub(crate) fn send(self, status: u8, payload: &[u8]) {
        let held = (status == status::OK && op::takes_value(self.op)).then(|| Held {
            object: self.object,
            payload: payload.to_vec(),
        });
        let outgoing = Outgoing {
            token: self.token,
            id: self.id,
            frame: protocol::encode_reply(status, self.id, payload),
            held,
            send_id: op::is_send(self.op).then_some(self.id),
        };
        lock(&self.outbox).push(outgoing);
    }
}
