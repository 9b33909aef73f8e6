//! The hub's frames. Request: `len:u32 op:u8 object:u64 id:u64 timeout_ms:u64 payload`;
//! reply: `len:u32 status:u8 id:u64 payload` (little-endian; `len` counts what follows
//! it). A reply carries the id of the request it answers, so one connection carries
//! many calls at once (a scheduled worker multiplexes every coroutine's calls over one
//! connection): replies come in the order the calls end, not the order they were made.
//! At most [`MAX_OUTSTANDING`] calls (waits pending plus values not yet acknowledged)
//! may be open on one connection; past that a call is answered with an error.
//!
//! A call is withdrawn with [`op::CANCEL`] and its id (no reply): a pending wait stops
//! waiting, and a `Channel` value already handed over for it and not acknowledged goes
//! back to the head of its queue. Closing the connection withdraws every call on it.
//!
//! `id` names one call of one worker process (a per-process random base plus a counter,
//! so a recycled pid does not repeat ids): a send retried on a fresh connection carries
//! the same id, and the hub answers it from its log instead of sending twice. A worker that received a `Channel` value answers with
//! [`op::CHANNEL_ACK`] (no reply); until then the hub holds the value, and puts it back
//! at the head of the queue if the connection fails.

use crate::sync::WaitError;

/// Operations a worker asks of the hub.
pub(crate) mod op {
    pub(crate) const BROADCAST_WAIT: u8 = 1;
    pub(crate) const BROADCAST_SEND: u8 = 2;
    pub(crate) const BROADCAST_WAITING: u8 = 3;
    pub(crate) const CHANNEL_SEND: u8 = 4;
    pub(crate) const CHANNEL_RECV: u8 = 5;
    pub(crate) const CHANNEL_TRY_RECV: u8 = 6;
    pub(crate) const CHANNEL_LEN: u8 = 7;
    pub(crate) const BROADCAST_SEND_COUNT: u8 = 8;
    /// The worker has the value of its last `CHANNEL_RECV`/`CHANNEL_TRY_RECV`; no reply.
    pub(crate) const CHANNEL_ACK: u8 = 9;
    /// Withdraws the call with this id (a wait whose client left, a reply that came
    /// too late); no reply.
    pub(crate) const CANCEL: u8 = 10;

    /// True for the operations whose effect a retry must not repeat.
    pub(crate) fn is_send(op: u8) -> bool {
        matches!(op, CHANNEL_SEND | BROADCAST_SEND | BROADCAST_SEND_COUNT)
    }

    /// True for the operations that wait (their reply may take as long as the wait).
    pub(crate) fn is_wait(op: u8) -> bool {
        matches!(op, BROADCAST_WAIT | CHANNEL_RECV)
    }

    /// True for the operations whose OK reply carries a `Channel` value the worker acks.
    pub(crate) fn takes_value(op: u8) -> bool {
        matches!(op, CHANNEL_RECV | CHANNEL_TRY_RECV)
    }
}

/// Reply statuses.
pub(crate) mod status {
    pub(crate) const OK: u8 = 0;
    pub(crate) const CLOSED: u8 = 1;
    pub(crate) const TIMED_OUT: u8 = 2;
    pub(crate) const EMPTY: u8 = 3;
    pub(crate) const ERROR: u8 = 4;
    pub(crate) const NO_WORKER: u8 = 5;
}

/// `timeout_ms` meaning "no timeout".
pub(crate) const NO_TIMEOUT: u64 = u64::MAX;

/// A frame larger than this is a protocol error: the peer sending it is closed.
pub(crate) const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Calls one connection may have open at once (pending waits plus `Channel` values
/// not yet acknowledged).
pub(crate) const MAX_OUTSTANDING: usize = 1 << 16;

/// Reply header bytes after `len`: status, id.
pub(crate) const REPLY_HEAD: usize = 1 + 8;

/// Request header bytes after `len`: op, object, id, timeout.
pub(crate) const REQUEST_HEAD: usize = 1 + 8 + 8 + 8;

/// The largest encoded value a worker can send through the hub (and receive from it):
/// what fits in one frame after the request header. A larger value is refused at the
/// sender with [`SendError::TooLarge`](crate::sync::SendError::TooLarge).
pub const MAX_VALUE_BYTES: usize = MAX_FRAME - REQUEST_HEAD;

/// A parsed request.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) op: u8,
    pub(crate) object: u64,
    pub(crate) id: u64,
    pub(crate) timeout_ms: u64,
    pub(crate) payload: &'a [u8],
}

/// Encodes one request frame.
pub(crate) fn encode_request(request: &Request<'_>) -> Vec<u8> {
    let len = (REQUEST_HEAD + request.payload.len()) as u32;
    let mut frame = Vec::with_capacity(4 + len as usize);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.push(request.op);
    frame.extend_from_slice(&request.object.to_le_bytes());
    frame.extend_from_slice(&request.id.to_le_bytes());
    frame.extend_from_slice(&request.timeout_ms.to_le_bytes());
    frame.extend_from_slice(request.payload);
    frame
}

/// Parses one request body (after `len`); `None` if it is too short.
pub(crate) fn decode_request(body: &[u8]) -> Option<Request<'_>> {
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
    };
    Some(Request {
        op: *body.first()?,
        object: word(1)?,
        id: word(9)?,
        timeout_ms: word(17)?,
        payload: body.get(REQUEST_HEAD..)?,
    })
}

/// The length of a reply frame with `payload_len` bytes of payload.
pub(crate) fn reply_frame_len(payload_len: usize) -> usize {
    4 + REPLY_HEAD + payload_len
}

/// Encodes one reply frame: the status of call `id`, and its payload.
pub(crate) fn encode_reply(status: u8, id: u64, payload: &[u8]) -> Vec<u8> {
    let len = (REPLY_HEAD + payload.len()) as u32;
    let mut frame = Vec::with_capacity(4 + len as usize);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.push(status);
    frame.extend_from_slice(&id.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Parses one reply body (after `len`): `(status, id, payload)`; `None` if too short.
pub(crate) fn decode_reply(body: &[u8]) -> Option<(u8, u64, &[u8])> {
    let id = u64::from_le_bytes(body.get(1..REPLY_HEAD)?.try_into().ok()?);
    Some((body[0], id, &body[REPLY_HEAD..]))
}

/// The reply for a wait that ended without a value.
pub(crate) fn status_of(error: &WaitError) -> u8 {
    match error {
        WaitError::Closed => status::CLOSED,
        WaitError::TimedOut => status::TIMED_OUT,
        WaitError::NoOtherWorker { .. } => status::NO_WORKER,
        WaitError::Hub(_) | WaitError::ClientGone => status::ERROR,
    }
}

/// Splits the first complete frame off `buf`: `Some(body length)` when `buf` holds
/// `len` and the whole body; `Err` for an empty or oversized frame.
pub(crate) fn complete_frame(buf: &[u8]) -> Result<Option<usize>, ()> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(());
    }
    Ok((buf.len() >= 4 + len).then_some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let frame = encode_request(&Request {
            op: op::CHANNEL_SEND,
            object: 7,
            id: 9,
            timeout_ms: 250,
            payload: b"abc",
        });
        let len = complete_frame(&frame).unwrap().unwrap();
        let request = decode_request(&frame[4..4 + len]).unwrap();
        assert_eq!(
            (request.op, request.object, request.id, request.timeout_ms),
            (op::CHANNEL_SEND, 7, 9, 250)
        );
        assert_eq!(request.payload, b"abc");
    }

    #[test]
    fn partial_and_oversized_frames() {
        let frame = encode_reply(status::OK, 5, b"xy");
        let len = complete_frame(&frame).unwrap().unwrap();
        assert_eq!(
            decode_reply(&frame[4..4 + len]),
            Some((status::OK, 5, &b"xy"[..]))
        );
        assert!(decode_reply(&[status::OK, 1, 2]).is_none());
        assert_eq!(complete_frame(&frame[..frame.len() - 1]), Ok(None));
        assert_eq!(complete_frame(&u32::MAX.to_le_bytes()), Err(()));
        assert_eq!(complete_frame(&0u32.to_le_bytes()), Err(()));
        assert!(decode_request(&[1, 2]).is_none());
    }
}
