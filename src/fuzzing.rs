//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`). Not a stable API.
//!
//! Each parser is fed its input as a list of pieces, one `fill_buf` at a time as a socket
//! would deliver it, and reports its framing decision as a comparable value, so a
//! target can check that every split of the same bytes decides the same way. The
//! limits are small ([`limits`]) so that a fuzzer reaches each of them.

use std::io::{self, BufRead, Read};

use crate::http::HttpConfig;
use crate::http::fuzz_seams::{Failure, Framing, HeadScanner, parse_head, read_chunked};
use crate::http::{Headers, Version};
use crate::scgi::netstring::{parse_variables, read_netstring};

/// Small limits, so inputs of a few KiB reach every one of them.
pub fn limits() -> HttpConfig {
    HttpConfig {
        max_request_line: 256,
        max_header_line: 256,
        max_headers: 16,
        max_head_bytes: 1024,
        max_body: 2048,
        ..HttpConfig::default()
    }
}

/// A reader that hands out one piece per `fill_buf`, as a socket delivers segments.
#[derive(Debug)]
pub struct Pieces<'a> {
    pieces: &'a [&'a [u8]],
    index: usize,
    offset: usize,
    /// Bytes consumed so far.
    pub consumed: usize,
}

impl<'a> Pieces<'a> {
    /// Reads `pieces` in order.
    pub fn new(pieces: &'a [&'a [u8]]) -> Pieces<'a> {
        Pieces {
            pieces,
            index: 0,
            offset: 0,
            consumed: 0,
        }
    }
}

impl BufRead for Pieces<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.index < self.pieces.len() && self.offset == self.pieces[self.index].len() {
            self.index += 1;
            self.offset = 0;
        }
        Ok(match self.pieces.get(self.index) {
            Some(piece) => &piece[self.offset..],
            None => &[],
        })
    }

    fn consume(&mut self, amount: usize) {
        if let Some(piece) = self.pieces.get(self.index) {
            let amount = amount.min(piece.len() - self.offset);
            self.offset += amount;
            self.consumed += amount;
        }
    }
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// A parsed head, as far as framing goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHead {
    /// Method, target and version.
    pub request_line: (String, String, Version),
    /// The header fields.
    pub headers: Headers,
    /// How the body is framed (`Err`: the status the framing rules refuse with).
    pub framing: Result<String, u16>,
}

/// What the head reader decided about a stream of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadOutcome {
    /// The head ended after this many bytes and parsed (or was refused with a status).
    Complete(usize, Result<ParsedHead, u16>),
    /// The limits refused the head with this status before it ended.
    Refused(u16),
    /// The input ended inside the head.
    Incomplete,
}

/// Scans and parses a request head fed as `pieces`, with [`limits`].
pub fn request_head(pieces: &[&[u8]]) -> HeadOutcome {
    let config = limits();
    let mut scanner = HeadScanner::default();
    let mut head = Vec::new();
    let mut before = 0;
    for piece in pieces {
        match scanner.feed(piece, &config) {
            Err(reject) => return HeadOutcome::Refused(reject.status),
            Ok(Some(used)) => {
                head.extend_from_slice(&piece[..used]);
                assert!(head.len() <= config.max_head_bytes, "head over its limit");
                let parsed = parse_head(&head, scanner.field_lines()).map_err(|r| r.status);
                let parsed = parsed.map(|head| ParsedHead {
                    framing: Framing::of(&head.headers, head.version)
                        .map(|framing| format!("{framing:?}"))
                        .map_err(|r| r.status),
                    request_line: (head.method, head.target, head.version),
                    headers: head.headers,
                });
                return HeadOutcome::Complete(before + used, parsed);
            }
            Ok(None) => {
                head.extend_from_slice(piece);
                before += piece.len();
            }
        }
    }
    HeadOutcome::Incomplete
}

/// Decodes a chunked body fed as `pieces`, with [`limits`]: `Ok((body, trailers, bytes
/// consumed))`, or `Err` with the refusing status (0: the input ended early).
pub fn chunked_body(pieces: &[&[u8]]) -> Result<(Vec<u8>, Headers, usize), u16> {
    let config = limits();
    let mut reader = Pieces::new(pieces);
    match read_chunked(&mut reader, &config) {
        Ok((body, trailers)) => {
            assert!(body.len() <= config.max_body, "body over its limit");
            Ok((body, trailers, reader.consumed))
        }
        Err(Failure::Reject(reject)) => Err(reject.status),
        Err(Failure::Close | Failure::Io(_)) => Err(0),
    }
}

/// An SCGI header block: its variables and body length, and bytes consumed.
pub type ScgiHead = (Vec<(Vec<u8>, Vec<u8>)>, u64, usize);

/// Reads an SCGI header block fed as `pieces` (at most [`limits`]' `max_head_bytes`):
/// `Err("netstring")` / `Err("variables")` for the two kinds of refusal.
pub fn scgi_head(pieces: &[&[u8]]) -> Result<ScgiHead, &'static str> {
    let config = limits();
    let mut reader = Pieces::new(pieces);
    let mut block = Vec::new();
    match read_netstring(&mut reader, config.max_head_bytes, &mut block) {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => return Err("netstring"),
    }
    assert!(block.len() <= config.max_head_bytes, "block over its limit");
    let (variables, length) = parse_variables(&block).map_err(|_| "variables")?;
    let variables = variables
        .into_iter()
        .map(|(name, value)| (name.to_vec(), value.to_vec()))
        .collect();
    Ok((variables, length, reader.consumed))
}
