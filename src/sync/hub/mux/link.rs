//! [`Link`]: one open connection to the hub shared by a loop's coroutines — the bytes
//! queued for it, the bytes read from it, and who drives it now.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::sync::hub::protocol::{self, MAX_FRAME, Request, op};

/// Request bytes a loop may queue for the hub before a call is refused.
pub(crate) const MAX_OUTPUT: usize = 2 * MAX_FRAME;

/// Bytes read from the hub at a time (on the heap: coroutine stacks are small).
const READ_CHUNK: usize = 64 * 1024;

/// One connection to the hub and its buffers.
#[derive(Debug)]
pub(super) struct Link {
    stream: UnixStream,
    /// Which connection of this loop it is (calls made on a link that broke fail).
    pub(super) generation: u64,
    /// Request bytes not yet written, at most [`MAX_OUTPUT`].
    output: Vec<u8>,
    /// Bytes ever queued and ever written: a frame that ends at `queued` is in the
    /// kernel once `written` reaches that count.
    queued: u64,
    written: u64,
    /// Reply bytes read and not yet dispatched: at most one frame and one chunk.
    input: Vec<u8>,
    /// The buffer each read goes to (kept: a driver reads at every reply).
    chunk: Vec<u8>,
    /// The call whose coroutine reads replies and waits for the socket now.
    pub(super) driver: Option<u64>,
}

/// Why a link cannot be used any more.
pub(super) type Broken = String;

impl Link {
    pub(super) fn new(fd: OwnedFd, generation: u64) -> Link {
        Link {
            stream: UnixStream::from(fd),
            generation,
            output: Vec::new(),
            queued: 0,
            written: 0,
            input: Vec::new(),
            chunk: Vec::new(),
            driver: None,
        }
    }

    pub(super) fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// True while queued bytes wait for the socket to take them.
    pub(super) fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// True once every byte queued up to `mark` is written.
    pub(super) fn written_through(&self, mark: u64) -> bool {
        self.written >= mark
    }

    /// Queues one request frame; the count of bytes queued so far (the frame is out
    /// once [`written_through`](Self::written_through) it). Refused past [`MAX_OUTPUT`].
    pub(super) fn queue(&mut self, frame: &[u8]) -> Result<u64, String> {
        if self.output.len() + frame.len() > MAX_OUTPUT {
            return Err(format!(
                "the hub connection's output queue is full ({MAX_OUTPUT} bytes): the hub \
                 does not read"
            ));
        }
        self.output.extend_from_slice(frame);
        self.queued += frame.len() as u64;
        Ok(self.queued)
    }

    /// Queues a frame that withdraws call `id` (see [`op::CANCEL`]); dropped when the
    /// queue is full, which only a hub that stopped reading causes.
    pub(super) fn queue_cancel(&mut self, id: u64) {
        let frame = protocol::encode_request(&Request {
            op: op::CANCEL,
            object: 0,
            id,
            timeout_ms: protocol::NO_TIMEOUT,
            payload: &[],
        });
        let _ = self.queue(&frame);
    }

    /// Writes what the socket takes now.
    pub(super) fn flush(&mut self) -> Result<(), Broken> {
        while !self.output.is_empty() {
            match crate::sys::send_nosignal(self.fd(), &[io::IoSlice::new(&self.output)]) {
                Ok(0) => return Err("the hub connection takes no more bytes".into()),
                Ok(n) => {
                    self.output.drain(..n);
                    self.written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("hub connection: {e}")),
            }
        }
        Ok(())
    }

    /// Reads everything the socket has now and hands each reply to `dispatch`:
    /// `(status, id, payload)`.
    pub(super) fn read(
        &mut self,
        dispatch: impl FnMut(&mut Link, u8, u64, Vec<u8>),
    ) -> Result<(), Broken> {
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.resize(READ_CHUNK, 0);
        let result = self.read_into(&mut chunk, dispatch);
        self.chunk = chunk;
        result
    }

    fn read_into(
        &mut self,
        chunk: &mut [u8],
        mut dispatch: impl FnMut(&mut Link, u8, u64, Vec<u8>),
    ) -> Result<(), Broken> {
        loop {
            match self.stream.read(chunk) {
                Ok(0) => return Err("the hub closed the connection".into()),
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("hub connection: {e}")),
            }
            let mut at = 0;
            loop {
                let len = match protocol::complete_frame(&self.input[at..]) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(()) => return Err("bad reply frame from the hub".into()),
                };
                let body = &self.input[at + 4..at + 4 + len];
                let (status, id, payload) =
                    protocol::decode_reply(body).ok_or("bad reply frame from the hub")?;
                let payload = payload.to_vec();
                at += 4 + len;
                dispatch(self, status, id, payload);
            }
            self.input.drain(..at);
        }
    }
}
