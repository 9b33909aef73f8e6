//! Request bodies: which framing a request uses, and reading it — `Content-Length`
//! or our own `chunked` decoder (extensions checked and ignored, trailers kept).

use std::io::{BufRead, Read};

use super::config::HttpConfig;
use super::error::{Failure, Reject, read_failure};
use super::headers::Headers;
use super::request::Version;
use super::response_fields::is_value_byte;

/// How the length of a request body is known (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes follow.
    Length(u64),
    /// A chunked body follows.
    Chunked,
}

impl Framing {
    /// Works out the framing from the header fields, refusing anything ambiguous:
    /// `Content-Length` with `Transfer-Encoding`, repeated or malformed lengths, codings
    /// other than a final `chunked` (501), and `Transfer-Encoding` in HTTP/1.0.
    pub(crate) fn of(headers: &Headers, version: Version) -> Result<Framing, Reject> {
        let has_length = headers.contains("content-length");
        if headers.contains("transfer-encoding") {
            if has_length {
                return Err(Reject::new(
                    400,
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            if version == Version::Http10 {
                return Err(Reject::new(400, "Transfer-Encoding in an HTTP/1.0 request"));
            }
            return transfer_coding(headers);
        }
        if !has_length {
            return Ok(Framing::None);
        }
        let mut lengths = headers.get_all("content-length");
        let (Some(value), None) = (lengths.next(), lengths.next()) else {
            return Err(Reject::new(400, "more than one Content-Length"));
        };
        parse_length(value).map(Framing::Length)
    }

    /// True when a body follows the head.
    pub(crate) fn has_body(self) -> bool {
        !matches!(self, Framing::None | Framing::Length(0))
    }
}

fn transfer_coding(headers: &Headers) -> Result<Framing, Reject> {
    let mut codings = headers
        .get_all("transfer-encoding")
        .flat_map(|value| value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
        .peekable();
    let mut any = false;
    while let Some(coding) = codings.next() {
        any = true;
        if !coding.eq_ignore_ascii_case(b"chunked") {
            return Err(Reject::new(501, "unsupported Transfer-Encoding"));
        }
        if codings.peek().is_some() {
            return Err(Reject::new(400, "chunked must be the last and only coding"));
        }
    }
    if !any {
        return Err(Reject::new(400, "empty Transfer-Encoding"));
    }
    Ok(Framing::Chunked)
}

/// Parses a `Content-Length` value: one or more ASCII digits, no sign, no overflow.
pub(crate) fn parse_length(value: &[u8]) -> Result<u64, Reject> {
    let bad = Reject::new(400, "malformed Content-Length");
    if value.is_empty() {
        return Err(bad);
    }
    value.iter().try_fold(0u64, |sum, &byte| {
        if !byte.is_ascii_digit() {
            return Err(bad);
        }
        sum.checked_mul(10)
            .and_then(|sum| sum.checked_add(u64::from(byte - b'0')))
            .ok_or(bad)
    })
}

/// Reads a body of exactly `length` bytes (already checked against the limit).
pub(crate) fn read_length<R: BufRead>(reader: &mut R, length: u64) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::with_capacity(usize::try_from(length).unwrap_or(0).min(64 * 1024));
    match reader.by_ref().take(length).read_to_end(&mut body) {
        Ok(n) if n as u64 == length => Ok(body),
        Ok(_) => Err(Failure::Close),
        Err(error) => Err(body_failure(error)),
    }
}

pub(crate) fn body_failure(error: std::io::Error) -> Failure {
    read_failure(
        error,
        Failure::Reject(Reject::new(408, "request body took too long")),
    )
}

/// Most bytes of chunk extensions (what follows a chunk's size on its line) one body
/// may carry, as hyper bounds them: they carry no data, and the line limit alone let a
/// client send megabytes of them around a one-byte body.
pub(crate) const MAX_CHUNK_EXTENSIONS: usize = 16 * 1024;

/// Decodes a chunked body, returning the data and the trailer fields.
pub(crate) fn read_chunked<R: BufRead>(
    reader: &mut R,
    config: &HttpConfig,
) -> Result<(Vec<u8>, Headers), Failure> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    let mut extensions = 0;
    loop {
        read_line(reader, config.max_header_line, &mut line)?;
        let size = parse_chunk_line(&line, &mut extensions)?;
        if size == 0 {
            break;
        }
        let room = config.max_body.saturating_sub(body.len()) as u64;
        if size > room {
            return Err(Reject::new(413, "request body too large").into());
        }
        let before = body.len();
        match reader.by_ref().take(size).read_to_end(&mut body) {
            Ok(n) if n as u64 == size => {}
            Ok(_) => return Err(Failure::Close),
            Err(error) => return Err(body_failure(error)),
        }
        debug_assert_eq!(body.len() - before, size as usize);
        let mut end = [0u8; 2];
        if let Err(error) = reader.read_exact(&mut end) {
            return Err(body_failure(error));
        }
        if &end != b"\r\n" {
            return Err(Reject::new(400, "chunk data not followed by CRLF").into());
        }
    }
    let trailers = read_trailers(reader, config, &mut line)?;
    Ok((body, trailers))
}

/// Reads one line ending in CRLF into `line` (without the CRLF), at most `limit` bytes.
pub(crate) fn read_line<R: BufRead>(
    reader: &mut R,
    limit: usize,
    line: &mut Vec<u8>,
) -> Result<(), Failure> {
    line.clear();
    loop {
        let available = reader.fill_buf().map_err(body_failure)?;
        if available.is_empty() {
            return Err(Failure::Close);
        }
        let (part, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], true),
            None => (available, false),
        };
        if line.len() + part.len() > limit.saturating_add(1) {
            return Err(Reject::new(400, "chunk or trailer line too long").into());
        }
        line.extend_from_slice(part);
        let used = part.len() + usize::from(done);
        reader.consume(used);
        if done {
            return match line.pop() {
                Some(b'\r') => Ok(()),
                _ => Err(Reject::new(400, "line not ended by CRLF").into()),
            };
        }
    }
}

/// Parses `chunk-size [ chunk-ext ]`: 1 to 16 hex digits, then nothing or
/// `;`-led extensions free of control characters, whose length is added to
/// `extensions` (the body's total so far, at most [`MAX_CHUNK_EXTENSIONS`]).
pub(crate) fn parse_chunk_line(line: &[u8], extensions: &mut usize) -> Result<u64, Reject> {
    let bad = Reject::new(400, "malformed chunk size");
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    // At most 16 digits, leading zeros included (as Go): zeros would otherwise carry
    // as much padding as an extension, uncounted.
    if digits == 0 || digits > 16 {
        return Err(bad);
    }
    let (hex, rest) = line.split_at(digits);
    let size = hex.iter().try_fold(0u64, |sum, &byte| {
        let digit = char::from(byte).to_digit(16).ok_or(bad)?;
        sum.checked_mul(16)
            .and_then(|sum| sum.checked_add(u64::from(digit)))
            .ok_or(bad)
    })?;
    // Only blanks (space, tab) may come before an extension: not a bare CR, which a
    // front end that ends lines at CR would frame differently.
    let rest = trim_blanks_start(rest);
    let valid = match rest.first() {
        None => true,
        Some(b';') => rest.iter().all(|&b| is_value_byte(b)),
        Some(_) => false,
    };
    if !valid {
        return Err(bad);
    }
    *extensions += line.len() - digits;
    if *extensions > MAX_CHUNK_EXTENSIONS {
        return Err(Reject::new(400, "too many chunk extensions"));
    }
    Ok(size)
}

/// `bytes` without the spaces and tabs it starts with.
fn trim_blanks_start(bytes: &[u8]) -> &[u8] {
    let blanks = bytes
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &bytes[blanks..]
}

/// `bytes` without the spaces and tabs around it (HTTP's optional whitespace; a CR or
/// a form feed stays, for the control-byte check to refuse).
fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let bytes = trim_blanks_start(bytes);
    let blanks = bytes
        .iter()
        .rev()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &bytes[..bytes.len() - blanks]
}

/// Reads trailer fields up to the blank line that ends the chunked body. They are
/// bounded as a head is: `max_headers` fields, `max_header_line` bytes each, and
/// `max_head_bytes` in all (they stay with the request while its handler runs).
pub(crate) fn read_trailers<R: BufRead>(
    reader: &mut R,
    config: &HttpConfig,
    line: &mut Vec<u8>,
) -> Result<Headers, Failure> {
    let mut trailers = Headers::new();
    let mut total = 0usize;
    loop {
        read_line(reader, config.max_header_line, line)?;
        if line.is_empty() {
            return Ok(trailers);
        }
        if trailers.len() >= config.max_headers {
            return Err(Reject::new(431, "too many trailer fields").into());
        }
        total = total.saturating_add(line.len() + 2);
        if total > config.max_head_bytes {
            return Err(Reject::new(431, "trailer fields too large").into());
        }
        let bad = Reject::new(400, "malformed trailer field");
        let colon = line.iter().position(|&b| b == b':').ok_or(bad)?;
        let (name, value) = line.split_at(colon);
        let value = trim_blanks(value.get(1..).unwrap_or_default());
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return Err(bad.into());
        }
        if !value.iter().all(|&b| is_value_byte(b)) {
            return Err(bad.into());
        }
        let name = String::from_utf8_lossy(name).into_owned();
        trailers.append(name, value.to_vec());
    }
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(fields: &[(&str, &str)], version: Version) -> Result<Framing, u16> {
        let mut headers = Headers::new();
        for (name, value) in fields {
            headers.append(*name, *value);
        }
        Framing::of(&headers, version).map_err(|r| r.status)
    }

    fn chunked(input: &[u8]) -> Result<(Vec<u8>, Headers), u16> {
        let config = HttpConfig {
            max_body: 32,
            ..HttpConfig::default()
        };
        read_chunked(&mut &input[..], &config).map_err(|failure| match failure {
            Failure::Reject(reject) => reject.status,
            Failure::Close => 0,
            Failure::Io(_) => 1,
        })
    }

    #[test]
    fn framing_rules() {
        let v11 = Version::Http11;
        assert_eq!(framing(&[], v11), Ok(Framing::None));
        assert_eq!(
            framing(&[("Content-Length", "12")], v11),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "Chunked")], v11),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing(
                &[("content-length", "1"), ("transfer-encoding", "chunked")],
                v11
            ),
            Err(400)
        );
        assert_eq!(
            framing(&[("Content-Length", "1"), ("Content-Length", "1")], v11),
            Err(400)
        );
        assert_eq!(framing(&[("Content-Length", "1, 1")], v11), Err(400));
        assert_eq!(framing(&[("Content-Length", "1x")], v11), Err(400));
        assert_eq!(framing(&[("Content-Length", "+1")], v11), Err(400));
        assert_eq!(framing(&[("Content-Length", "")], v11), Err(400));
        assert_eq!(
            framing(&[("Content-Length", "99999999999999999999")], v11),
            Err(400)
        );
        assert_eq!(framing(&[("Transfer-Encoding", "gzip")], v11), Err(501));
        assert_eq!(
            framing(&[("Transfer-Encoding", "gzip, chunked")], v11),
            Err(501)
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked, chunked")], v11),
            Err(400)
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked")], Version::Http10),
            Err(400)
        );
    }

    #[test]
    fn chunked_decodes_with_extensions_and_trailers() {
        let (body, trailers) =
            chunked(b"5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-Sum: 1 \r\n\r\n").unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(trailers.get("x-sum"), Some("1"));
        assert_eq!(
            chunked(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap().0,
            b"0123456789"
        );
    }

    #[test]
    fn trailers_are_bounded_in_bytes_as_a_head_is() {
        let config = HttpConfig {
            max_head_bytes: 1024,
            ..HttpConfig::default()
        };
        let trailers = |fields: usize, value: usize| {
            let mut input = b"1\r\nx\r\n0\r\n".to_vec();
            for i in 0..fields {
                input.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(value)).as_bytes());
            }
            input.extend_from_slice(b"\r\n");
            read_chunked(&mut &input[..], &config).map_err(|failure| match failure {
                Failure::Reject(reject) => reject.status,
                _ => 0,
            })
        };
        // Ten fields of about 100 bytes fit in 1 KiB; twenty do not, though each line
        // and the field count stay within their own limits.
        assert_eq!(trailers(9, 100).map(|(_, t)| t.len()), Ok(9));
        assert_eq!(trailers(20, 100).map(|(_, t)| t.len()), Err(431));
    }

    #[test]
    fn chunked_rejects_bad_framing() {
        assert_eq!(chunked(b"zz\r\n").unwrap_err(), 400);
        assert_eq!(chunked(b"5 zz\r\nhello\r\n0\r\n\r\n").unwrap_err(), 400);
        assert_eq!(chunked(b"10000000000000000\r\n").unwrap_err(), 400);
        assert_eq!(chunked(b"5\nhello\r\n0\r\n\r\n").unwrap_err(), 400);
        assert_eq!(chunked(b"5\r\nhelloXX0\r\n\r\n").unwrap_err(), 400);
        assert_eq!(chunked(b"0\r\nbad trailer\r\n\r\n").unwrap_err(), 400);
        // A bare CR is no blank: a front end ending lines at CR would frame it otherwise.
        assert_eq!(chunked(b"5\r\r\nhello\r\n0\r\n\r\n").unwrap_err(), 400);
        assert_eq!(chunked(b"5\r;x\r\nhello\r\n0\r\n\r\n").unwrap_err(), 400);
        assert_eq!(chunked(b"0\r\nX: a\r\r\n\r\n").unwrap_err(), 400);
        assert!(chunked(b"5 \t;x=1\r\nhello\r\n0\r\nX: \ta \r\n\r\n").is_ok());
        assert_eq!(chunked(b"21\r\n").unwrap_err(), 413);
        assert_eq!(chunked(b"5\r\nhel").unwrap_err(), 0);
    }
}
