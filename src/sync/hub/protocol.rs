//! The hub's frames. Request: `len:u32 op:u8 object:u32 timeout_ms:u64 payload`;
//! reply: `len:u32 status:u8 payload` (little-endian; `len` counts what follows it).

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

/// A frame larger than this is a protocol error (values are small messages).
pub(crate) const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Request header bytes after `len`: op, object, timeout.
pub(crate) const REQUEST_HEAD: usize = 1 + 4 + 8;

/// A parsed request.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) op: u8,
    pub(crate) object: u32,
    pub(crate) timeout_ms: u64,
    pub(crate) payload: &'a [u8],
}

pub(crate) fn encode_request(op: u8, object: u32, timeout_ms: u64, payload: &[u8]) -> Vec<u8> {
    let len = (REQUEST_HEAD + payload.len()) as u32;
    let mut frame = Vec::with_capacity(4 + len as usize);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.push(op);
    frame.extend_from_slice(&object.to_le_bytes());
    frame.extend_from_slice(&timeout_ms.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Parses one request body (after `len`).
pub(crate) fn decode_request(body: &[u8]) -> Option<Request<'_>> {
    if body.len() < REQUEST_HEAD {
        return None;
    }
    Some(Request {
        op: body[0],
        object: u32::from_le_bytes(body[1..5].try_into().ok()?),
        timeout_ms: u64::from_le_bytes(body[5..13].try_into().ok()?),
        payload: &body[REQUEST_HEAD..],
    })
}

pub(crate) fn encode_reply(status: u8, payload: &[u8]) -> Vec<u8> {
    let len = (1 + payload.len()) as u32;
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.push(status);
    frame.extend_from_slice(payload);
    frame
}

/// The reply for a wait that ended without a value.
pub(crate) fn status_of(error: &WaitError) -> u8 {
    match error {
        WaitError::Closed => status::CLOSED,
        WaitError::TimedOut => status::TIMED_OUT,
        WaitError::NoOtherWorker => status::NO_WORKER,
        WaitError::Hub(_) | WaitError::ClientGone => status::ERROR,
    }
}

/// Splits the first complete frame off `buf`: `Some(body length)` when `buf` holds
/// `len` and the whole body; `Err` for an oversized frame.
pub(crate) fn complete_frame(buf: &[u8]) -> Result<Option<usize>, ()> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(());
    }
    Ok((buf.len() >= 4 + len).then_some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let frame = encode_request(op::CHANNEL_SEND, 7, 250, b"abc");
        let len = complete_frame(&frame).unwrap().unwrap();
        let request = decode_request(&frame[4..4 + len]).unwrap();
        assert_eq!(
            (request.op, request.object, request.timeout_ms),
            (op::CHANNEL_SEND, 7, 250)
        );
        assert_eq!(request.payload, b"abc");
    }

    #[test]
    fn partial_and_oversized_frames() {
        let frame = encode_reply(status::OK, b"xy");
        assert_eq!(complete_frame(&frame[..frame.len() - 1]), Ok(None));
        assert_eq!(complete_frame(&u32::MAX.to_le_bytes()), Err(()));
        assert!(decode_request(&[1, 2]).is_none());
    }
}
