//! [`BodyReader`]: a request body read as it arrives — `Content-Length` counted down,
//! `chunked` decoded chunk by chunk — with the body limit and the whole-body deadline
//! enforced while the handler reads (see [`HttpHandler::streams_body`]).
//!
//! [`HttpHandler::streams_body`]: super::HttpHandler::streams_body

use std::fmt;
use std::io::{self, BufRead, Read};

use super::body::{self, Framing};
use super::config::HttpConfig;
use super::error::{Failure, Reject};
use super::headers::Headers;

/// Most unread body bytes thrown away so the connection can serve another request;
/// past it the connection closes after the answer.
const DRAIN_LIMIT: u64 = 256 * 1024;

/// Where the decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes of a `Content-Length` body are still to come.
    Length(u64),
    /// Inside a chunk with this many bytes left (`first`: no chunk came yet, so no
    /// CRLF ends a previous one).
    Chunk { left: u64, first: bool },
    /// The whole body (and any trailer) is read.
    Done,
    /// Reading failed; every further read fails too.
    Failed,
}

/// The body of the request in hand, read from the connection as it arrives. It
/// implements [`Read`]: `read` returns `Ok(0)` at the body's end. A body over
/// [`HttpConfig::max_body`], one slower than [`HttpConfig::body_deadline`], or bad
/// chunked framing makes `read` fail; the server then answers `413`, `408` or `400`
/// itself (whatever the handler returned) and closes the connection.
pub struct BodyReader<'a> {
    stream: &'a mut (dyn BufRead + 'a),
    config: &'a HttpConfig,
    state: State,
    /// Body bytes handed out so far.
    read: u64,
    /// Bytes of chunk extensions so far (bounded per body).
    extensions: usize,
    /// Trailer fields of a chunked body, once it is read to its end.
    trailers: Headers,
    /// Why reading failed, for the server's answer.
    failure: Option<Failure>,
}

impl fmt::Debug for BodyReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyReader")
            .field("state", &self.state)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl<'a> BodyReader<'a> {
    /// A reader of a body framed as `framing` (a `Content-Length` already checked
    /// against the limit).
    pub(crate) fn new(
        stream: &'a mut (dyn BufRead + 'a),
        framing: Framing,
        config: &'a HttpConfig,
    ) -> BodyReader<'a> {
        let state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Length(length) => State::Length(length),
            Framing::Chunked => State::Chunk {
                left: 0,
                first: true,
            },
        };
        BodyReader {
            stream,
            config,
            state,
            read: 0,
            extensions: 0,
            trailers: Headers::new(),
            failure: None,
        }
    }

    /// Body bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// True once the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer fields of a chunked body (empty until its end is read).
    pub fn trailers(&self) -> &Headers {
        &self.trailers
    }

    /// Reads the rest of the body into a `Vec` (the buffered convenience).
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        self.read_to_end(&mut body)?;
        Ok(body)
    }

    /// After the handler: why reading failed, if it did.
    pub(crate) fn take_failure(&mut self) -> Option<Failure> {
        self.failure.take()
    }

    /// Throws away what the handler left unread, so the next request's head comes
    /// next. False when that is impossible (a failure, or more than a small amount
    /// left): the connection must close after the answer.
    pub(crate) fn drain(&mut self) -> bool {
        let mut scratch = [0u8; 8192];
        let start = self.read;
        while self.state != State::Done {
            if self.read - start > DRAIN_LIMIT {
                return false;
            }
            if self.read(&mut scratch).is_err() {
                return false;
            }
        }
        true
    }

    fn fail(&mut self, failure: Failure) -> io::Error {
        let error = match &failure {
            Failure::Reject(reject) if reject.status == 408 => {
                io::Error::new(io::ErrorKind::TimedOut, reject.message)
            }
            Failure::Reject(reject) => io::Error::new(io::ErrorKind::InvalidData, reject.message),
            Failure::Close => io::Error::from(io::ErrorKind::UnexpectedEof),
            Failure::Io(error) => io::Error::new(error.kind(), error.to_string()),
        };
        self.failure = Some(failure);
        self.state = State::Failed;
        error
    }

    /// At a chunk boundary: reads the CRLF ending the previous chunk and the next
    /// chunk's size line (or, at the last chunk, the trailers).
    fn next_chunk(&mut self, first: bool) -> Result<(), Failure> {
        if !first {
            let mut end = [0u8; 2];
            self.stream
                .read_exact(&mut end)
                .map_err(body::body_failure)?;
            if &end != b"\r\n" {
                return Err(Reject::new(400, "chunk data not followed by CRLF").into());
            }
        }
        let mut line = Vec::new();
        body::read_line(&mut self.stream, self.config.max_header_line, &mut line)?;
        let size = body::parse_chunk_line(&line, &mut self.extensions)?;
        if size == 0 {
            self.trailers = body::read_trailers(&mut self.stream, self.config, &mut line)?;
            self.state = State::Done;
            return Ok(());
        }
        if size > (self.config.max_body as u64).saturating_sub(self.read) {
            return Err(Reject::new(413, "request body too large").into());
        }
        self.state = State::Chunk {
            left: size,
            first: false,
        };
        Ok(())
    }

    /// Reads at most `left` bytes of body data.
    fn read_data(&mut self, buf: &mut [u8], left: u64) -> Result<usize, Failure> {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match self.stream.read(&mut buf[..want]) {
            Ok(0) => Err(Failure::Close),
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(error) => Err(body::body_failure(error)),
        }
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let step = match self.state {
                State::Done => return Ok(0),
                State::Failed => {
                    return Err(io::Error::other("the request body could not be read"));
                }
                State::Length(left) => self.read_data(buf, left).map(|n| {
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    Some(n)
                }),
                State::Chunk { left: 0, first } => self.next_chunk(first).map(|()| None),
                State::Chunk { left, .. } => self.read_data(buf, left).map(|n| {
                    self.state = State::Chunk {
                        left: left - n as u64,
                        first: false,
                    };
                    Some(n)
                }),
            };
            match step {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(failure) => return Err(self.fail(failure)),
            }
        }
    }
}
