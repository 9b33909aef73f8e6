//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`). Not a stable API.
//!
//! Each parser is fed its input as a list of pieces, one `fill_buf` at a time as a socket
//! would deliver it, and reports its framing decision as a comparable value, so a
//! target can check that every split of the same bytes decides the same way. The
//! limits are small ([`limits`]) so that a fuzzer reaches each of them.

use std::io::{self, BufRead, Read};

use crate::http::HttpConfig;
use crate::http::fuzz_seams::{
    Failure, Framing, Head, HeadAssembler, Progress, RangeAnswer, Reject, parse_head, parse_range,
    read_chunked,
};
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

/// A head an earlier request on the connection left, for the next one to be parsed
/// into. Not emptied: parsing into it must empty it.
fn earlier_head() -> Head {
    let earlier = b"PUT /earlier?x=1 HTTP/1.0\r\nHost: earlier\r\nContent-Length: 5\r\n\
        Trailer: X-T\r\nCookie: c=1\r\n\r\n";
    parse_head(earlier, 4).unwrap_or_default()
}

/// What a parsed head says, comparable.
fn parsed_head(parsed: Result<Head, Reject>) -> Result<ParsedHead, u16> {
    parsed.map_err(|r| r.status).map(|head| ParsedHead {
        framing: Framing::of(&head.headers, head.version)
            .map(|framing| format!("{framing:?}"))
            .map_err(|r| r.status),
        request_line: (head.method, head.target, head.version),
        headers: head.headers,
    })
}

/// Reads a request head from `reader` into `head` as a connection does (the same
/// [`HeadAssembler`]): empty lines before it skipped, a head that came in one piece
/// parsed where it lies, one in pieces from the accumulated copy.
fn read_request_head(reader: &mut Pieces<'_>, config: &HttpConfig, mut head: Head) -> HeadOutcome {
    let mut raw = Vec::new();
    let mut assembler = HeadAssembler::new(&mut raw, &mut head);
    loop {
        let available = match reader.fill_buf() {
            Ok([]) | Err(_) => return HeadOutcome::Incomplete,
            Ok(available) => available,
        };
        match assembler.take(available, config) {
            Err(reject) => return HeadOutcome::Refused(reject.status),
            Ok(Progress::More(used)) => {
                assert!(used > 0, "the head reader took nothing of {available:?}");
                reader.consume(used);
            }
            Ok(Progress::Done(used, outcome)) => {
                assert!(
                    assembler.head_len() <= config.max_head_bytes,
                    "head over its limit"
                );
                reader.consume(used);
                return HeadOutcome::Complete(reader.consumed, parsed_head(outcome.map(|()| head)));
            }
        }
    }
}

/// Reads a request head fed as `pieces`, with [`limits`], as a connection does.
pub fn request_head(pieces: &[&[u8]]) -> HeadOutcome {
    let config = limits();
    let kept = read_request_head(&mut Pieces::new(pieces), &config, earlier_head());
    let fresh = read_request_head(&mut Pieces::new(pieces), &config, Head::default());
    assert_eq!(
        kept, fresh,
        "a head parsed into kept storage reads as a fresh one"
    );
    kept
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

/// What a `Range` header (its value's bytes, as a client sent them) asks of a
/// `size`-byte body: `None` for the whole body (`200`), `Some(None)` for nothing
/// satisfiable (`416`), `Some(Some((start, len)))` for one part (`206`).
pub fn range(header: &[u8], size: u64) -> Option<Option<(u64, u64)>> {
    let header = std::str::from_utf8(header).ok();
    match parse_range(header, size) {
        RangeAnswer::Whole => None,
        RangeAnswer::Unsatisfiable => Some(None),
        RangeAnswer::Part { start, len } => Some(Some((start, len))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `request_head` fuzz target's checks over its stored corpus: a head that
    /// came whole (parsed in place) and the same bytes split anywhere or fed byte by
    /// byte (parsed from the accumulated copy) decide the same.
    #[test]
    fn the_request_head_corpus_decides_the_same_however_split() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request_head");
        let mut complete = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            let whole = request_head(&[&data]);
            complete += usize::from(matches!(whole, HeadOutcome::Complete(_, Ok(_))));
            for at in 0..=data.len() {
                let (a, b) = data.split_at(at);
                assert_eq!(request_head(&[a, b]), whole, "split at {at}: {data:?}");
            }
            let bytes: Vec<&[u8]> = data.chunks(1).collect();
            assert_eq!(request_head(&bytes), whole, "byte by byte: {data:?}");
        }
        assert!(complete > 0, "the corpus holds heads that parse");
    }
}
