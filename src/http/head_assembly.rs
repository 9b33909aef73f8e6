//! Finding where a request head ends in bytes as a connection buffers them.
//!
//! [`HeadScanner`] looks at bytes as they arrive and stops at the blank line that ends
//! the head, so bytes after it (a body, a pipelined request) stay in the connection's
//! buffer. It enforces the request-line, field-line, field-count and total limits
//! before anything is parsed, so the head buffer never grows past `max_head_bytes`.
//! [`HeadAssembler`] adds what comes before and after: the empty lines a client may send
//! first, and the copy of a head that arrives in pieces; `read_head` and the fuzz seam
//! both drive it, so they read heads the same way.

use super::config::HttpConfig;
use super::error::Reject;
use super::head::{Head, SPARE_RAW_HEAD, parse_head_into};
use crate::rt;

/// Finds the end of a head in bytes fed piecewise, checking the size limits.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    /// Bytes in the current line so far, line end excluded.
    line_len: usize,
    /// True while the current line's last byte is a `\r` (which may start its end).
    ends_in_cr: bool,
    /// Lines completed: 0 while in the request line.
    lines: usize,
    /// Bytes fed so far.
    total: usize,
}

impl HeadScanner {
    /// Number of header field lines seen (complete head: all of them).
    pub(crate) fn field_lines(&self) -> usize {
        self.lines.saturating_sub(1)
    }

    /// Feeds the next bytes; returns how many of them complete the head, if it ends in
    /// `chunk`. The caller keeps the rest for later.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        config: &HttpConfig,
    ) -> Result<Option<usize>, Reject> {
        let mut rest = chunk;
        let mut used = 0;
        while !rest.is_empty() {
            let (content, ends_line) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], true),
                None => (rest, false),
            };
            if let Some(&last) = content.last() {
                self.ends_in_cr = last == b'\r';
                self.line_len += content.len();
            }
            self.total += content.len() + usize::from(ends_line);
            self.check_sizes(config)?;
            if !ends_line {
                return Ok(None);
            }
            used += content.len() + 1;
            rest = &rest[content.len() + 1..];
            let blank = self.line_len == 0 || (self.line_len == 1 && self.ends_in_cr);
            if blank && self.lines > 0 {
                return Ok(Some(used));
            }
            if blank {
                return Err(Reject::new(400, "empty request line"));
            }
            self.lines += 1;
            self.line_len = 0;
            self.ends_in_cr = false;
            if self.field_lines() > config.max_headers {
                return Err(Reject::new(431, "too many header fields"));
            }
        }
        Ok(None)
    }

    fn check_sizes(&self, config: &HttpConfig) -> Result<(), Reject> {
        // A line's own limit counts its content; a trailing `\r` is part of the line end
        // (a line ended by a bare `\n` has none to discount).
        let content = self.line_len - usize::from(self.ends_in_cr);
        if self.lines == 0 {
            if content > config.max_request_line {
                return Err(Reject::new(414, "request line too long"));
            }
        } else if content > config.max_header_line {
            return Err(Reject::new(431, "header field too long"));
        }
        if self.total > config.max_head_bytes {
            let status = if self.lines == 0 { 414 } else { 431 };
            return Err(Reject::new(status, "request head too large"));
        }
        Ok(())
    }
}

/// Assembles one request head from bytes as a connection buffers them: skips the empty
/// lines a client may send before the request line (RFC 9112 §2.2), finds the end of
/// the head under the size limits ([`HeadScanner`]), and parses it — where it lies when
/// it came in one piece, else from the raw copy. [`read_head`] drives it from a
/// connection and the fuzz targets from pieces of bytes, so both parse the same way.
#[derive(Debug)]
pub(crate) struct HeadAssembler<'a> {
    /// Where the head ends, and its limits.
    scanner: HeadScanner,
    /// The raw bytes of a head that arrives in pieces (kept up to `SPARE_RAW_HEAD`).
    raw: &'a mut Vec<u8>,
    /// Where the head is parsed into (emptied first, its storage reused).
    parsed: &'a mut Head,
    /// Empty-line bytes skipped before the request line, bounded by `max_head_bytes`.
    skipped: usize,
    /// The last byte skipped was a `\r`, whose `\n` has not come yet.
    cr_pending: bool,
}

/// What [`HeadAssembler::take`] made of the bytes it was shown.
#[derive(Debug)]
pub(crate) enum Progress {
    /// Consume this many bytes (at least one); the head has not ended.
    More(usize),
    /// Consume this many bytes: the head ended with them, and was parsed (into the
    /// assembler's head) or refused.
    Done(usize, Result<(), Reject>),
}

impl<'a> HeadAssembler<'a> {
    /// Starts a head: `raw` is emptied (its storage kept), `parsed` is parsed into.
    pub(crate) fn new(raw: &'a mut Vec<u8>, parsed: &'a mut Head) -> HeadAssembler<'a> {
        raw.clear();
        HeadAssembler {
            scanner: HeadScanner::default(),
            skipped: 0,
            cr_pending: false,
            raw,
            parsed,
        }
    }

    /// Looks at `available` (what is buffered, not empty) and says how much of it to
    /// consume. `Err`: the limits refused the head before it ended (nothing consumed).
    pub(crate) fn take(
        &mut self,
        available: &[u8],
        config: &HttpConfig,
    ) -> Result<Progress, Reject> {
        if self.raw.is_empty() {
            let skip = self.empty_lines(available)?;
            if skip > 0 {
                self.skipped += skip;
                if self.skipped > config.max_head_bytes {
                    return Err(Reject::new(
                        400,
                        "too many empty lines before the request line",
                    ));
                }
                return Ok(Progress::More(skip));
            }
        }
        let Some(used) = self.scanner.feed(available, config)? else {
            self.raw.extend_from_slice(available);
            return Ok(Progress::More(available.len()));
        };
        let fields = self.scanner.field_lines();
        let bytes = if self.raw.is_empty() {
            // The usual case: the whole head came in one read, and is parsed in place.
            &available[..used]
        } else {
            self.raw.extend_from_slice(&available[..used]);
            &self.raw[..]
        };
        // On the scheduler's stack: the parser's frames are the deepest a request
        // reaches, and on the coroutine's own stack they would touch a second page
        // that a waiting client then keeps (4 KiB more per comet waiter).
        let parsed = &mut *self.parsed;
        let outcome = rt::on_scheduler_stack(|| parse_head_into(bytes, fields, parsed));
        if self.raw.capacity() > SPARE_RAW_HEAD {
            *self.raw = Vec::new();
        }
        Ok(Progress::Done(used, outcome))
    }

    /// True once bytes of the head itself came: before that, the connection still
    /// waits for a request (empty lines do not start one), and a timeout or a drain
    /// closes it without an answer.
    pub(crate) fn begun(&self) -> bool {
        !self.raw.is_empty() || self.scanner.total > 0
    }

    /// How many bytes at the start of `available` are empty lines to skip: a client
    /// may send CRLF before a request line, or after a body (RFC 9112 §2.2). A line end
    /// is `\r\n` or `\n`; a `\r` followed by anything else is refused (§2.2: a bare CR
    /// is invalid). A `\r` that ends `available` is skipped, its `\n` expected next.
    fn empty_lines(&mut self, available: &[u8]) -> Result<usize, Reject> {
        let mut skip = 0;
        loop {
            match (self.cr_pending, available.get(skip)) {
                (true, Some(b'\n')) => self.cr_pending = false,
                (true, Some(_)) => return Err(Reject::new(400, "bare CR before the request line")),
                (true, None) | (false, None) => return Ok(skip),
                (false, Some(b'\n')) => {}
                (false, Some(b'\r')) => self.cr_pending = true,
                (false, Some(_)) => return Ok(skip),
            }
            skip += 1;
        }
    }

    /// Bytes of the head seen so far, the empty lines before it not counted.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn head_len(&self) -> usize {
        self.scanner.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces`, one read each, until a head ends or is refused: that outcome
    /// (or `More(0)` when every byte was taken), and whether a head began.
    fn assemble(pieces: &[&[u8]]) -> (Result<Progress, Reject>, bool) {
        let (mut raw, mut head) = (Vec::new(), Head::default());
        let mut assembler = HeadAssembler::new(&mut raw, &mut head);
        let config = HttpConfig::default();
        for piece in pieces {
            let mut piece = *piece;
            while !piece.is_empty() {
                match assembler.take(piece, &config) {
                    Ok(Progress::More(used)) => piece = &piece[used..],
                    other => return (other, assembler.begun()),
                }
            }
        }
        (Ok(Progress::More(0)), assembler.begun())
    }

    #[test]
    fn empty_lines_before_a_head_are_skipped_and_do_not_begin_it() {
        for pieces in [
            &[&b"\r\n\n\r\n"[..]][..],
            &[b"\r", b"\n\r", b"\n"],
            &[b"\n", b"\n"],
        ] {
            let (progress, begun) = assemble(pieces);
            assert!(matches!(progress, Ok(Progress::More(_))), "{pieces:?}");
            assert!(!begun, "{pieces:?} began a head");
        }
        let (progress, begun) = assemble(&[b"\r\n\r", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert!(
            matches!(progress, Ok(Progress::Done(_, Ok(())))),
            "{progress:?}"
        );
        assert!(begun);
        let (_, begun) = assemble(&[b"\r\nGE"]);
        assert!(begun, "the request line's first bytes begin the head");
    }

    #[test]
    fn a_bare_cr_before_the_request_line_is_refused() {
        for pieces in [
            &[&b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"[..]][..],
            &[b"\r\n\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"],
            &[b"\r", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"],
        ] {
            let (progress, _) = assemble(pieces);
            let Err(reject) = progress else {
                panic!("{pieces:?} was taken: {progress:?}");
            };
            assert_eq!(reject.status, 400, "{pieces:?}");
        }
    }

    fn scan(input: &[u8], config: &HttpConfig) -> Result<Option<usize>, Reject> {
        HeadScanner::default().feed(input, config)
    }

    #[test]
    fn finds_the_end_and_leaves_the_rest() {
        let config = HttpConfig::default();
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
        assert_eq!(scan(input, &config), Ok(Some(input.len() - 9)));
        assert_eq!(scan(b"GET / HTTP/1.0\n\nrest", &config), Ok(Some(16)));
    }

    #[test]
    fn finds_the_end_fed_byte_by_byte() {
        let config = HttpConfig::default();
        let input = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
        let mut scanner = HeadScanner::default();
        for (i, byte) in input.iter().enumerate() {
            let found = scanner.feed(std::slice::from_ref(byte), &config).unwrap();
            assert_eq!(found.is_some(), i == input.len() - 1, "at byte {i}");
        }
        assert_eq!(scanner.field_lines(), 2);
    }

    #[test]
    fn limits_map_to_their_statuses() {
        let config = HttpConfig {
            max_request_line: 10,
            max_header_line: 10,
            max_headers: 2,
            max_head_bytes: 60,
            ..HttpConfig::default()
        };
        let status = |input: &[u8]| scan(input, &config).map_err(|r| r.status);
        assert_eq!(status(b"GET /0123456789 HTTP/1.1"), Err(414));
        assert_eq!(status(b"GET / H\r\nName: 0123456789"), Err(431));
        assert_eq!(status(b"GET / H\r\nA: 1\r\nB: 2\r\nC: 3\r\n"), Err(431));
        assert_eq!(status(b"GET / H\r\nA: 1\r\nB: 2\r\n\r\n"), Ok(Some(23)));
        // The limit is the line's content, whichever line end it has.
        assert_eq!(status(b"GET /01234 HTTP/1.1\r\n"), Err(414));
        assert_eq!(status(b"GET /01234\r\n\r\n"), Ok(Some(14)));
        assert_eq!(status(b"GET /012345\n"), Err(414));
        assert_eq!(status(b"GET /01234\n\n"), Ok(Some(12)));
        assert_eq!(status(b"GET / H\nNam: 012345\n"), Err(431));
        assert_eq!(status(b"GET / H\nNam: 01234\n\n"), Ok(Some(20)));
        let long = HttpConfig {
            max_head_bytes: 20,
            ..HttpConfig::default()
        };
        assert_eq!(
            HeadScanner::default().feed(b"GET / H\r\nA: 123456789\r\n", &long),
            Err(Reject::new(431, "request head too large"))
        );
    }
}
