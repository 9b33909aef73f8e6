//! Writing a response: the status line, our framing headers, then the body —
//! `Content-Length` bytes or file (the file by `sendfile`), or a stream sent chunked
//! (or to end of connection for HTTP/1.0 clients).

use std::fs::File;
use std::io::{self, Read, Write};

use super::config::HttpConfig;
use super::date::append_date_field;
use super::request::Version;
use super::response::{Body, Response, reason_phrase};
use super::response_fields::{Fields, is_framing_field};
use crate::conn::Conn;

/// Size of the buffer a streamed body is read into; at most one chunk per read.
const STREAM_BUFFER: usize = 16 * 1024;

/// How the status is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `HTTP/1.1 200 OK`, with `Date`, `Server` and `Connection` fields.
    Http,
    /// `Status: 200 OK`, as CGI and SCGI want: the front server adds the rest, and the
    /// response ends where the connection does.
    Cgi,
}

/// What the writer needs to know about the request being answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answering {
    /// Which status line to write.
    pub(crate) dialect: Dialect,
    /// The request's version: the status line's version, and chunked vs.
    /// close-delimited streams (an HTTP/1.0 client gets no chunked body).
    pub(crate) version: Version,
    /// A `HEAD` request: the head is sent as for `GET`, the body is not.
    pub(crate) head_only: bool,
    /// Whether the connection may stay open after this response.
    pub(crate) keep_alive: bool,
}

/// Writes `response` (not flushed unless streamed). Returns whether the connection
/// may stay open: false when asked to close, when an HTTP/1.0 stream ran to the end
/// of the connection, or when a chunked stream failed midway (its last chunk is
/// missing, which the client sees as an incomplete message). A stream that fails
/// midway with no framing of its own (HTTP/1.0, SCGI) would look complete when the
/// connection closes: a TCP connection is reset instead (a Unix-domain peer, such as
/// nginx's `scgi_pass unix:`, still sees the end: no reset exists there), and this
/// returns `ConnectionAborted`.
pub(crate) fn write_response(
    conn: &mut Conn,
    response: Response,
    answering: Answering,
    config: &HttpConfig,
) -> io::Result<bool> {
    let (mut status, fields, body) = response.into_parts();
    // A 1xx is interim, never an answer: a client would wait on for the final one and
    // take the next request's answer for it.
    if !(200..=999).contains(&status) {
        log::warn!("handler returned status {status} as its answer; sending 500");
        status = 500;
    }
    let mut keep_alive = answering.keep_alive && !fields.marks().close;
    let body_allowed = !(status < 200 || status == 204 || status == 304);
    let body = if body_allowed { body } else { Body::Empty };
    let chunked = matches!(body, Body::Stream(_)) && answering.version == Version::Http11;
    if matches!(body, Body::Stream(_)) && !chunked {
        keep_alive = false;
    }

    conn.append_to_output(|head| {
        write_head(
            head,
            HeadParts {
                status,
                fields: &fields,
                body: &body,
                body_allowed,
                chunked,
                keep_alive,
            },
            answering,
            config,
        )
    })?;

    if answering.head_only {
        return Ok(keep_alive);
    }
    match body {
        Body::Empty => Ok(keep_alive),
        Body::Bytes(bytes) => conn.write_all(&bytes).map(|()| keep_alive),
        Body::Stream(mut reader) => {
            let complete = write_stream(conn, &mut *reader, chunked)?;
            Ok(keep_alive && complete)
        }
        Body::File { file, offset, len } => {
            let complete = write_file(conn, &file, offset, len)?;
            Ok(keep_alive && complete)
        }
    }
}

/// What the head of one response says, besides what [`Answering`] says.
struct HeadParts<'a> {
    status: u16,
    fields: &'a Fields,
    body: &'a Body,
    body_allowed: bool,
    chunked: bool,
    keep_alive: bool,
}

/// Appends the status line, the application's fields, ours (`Server`, `Date`,
/// framing, `Connection`) and the blank line to `head`, with no formatting machinery:
/// a small answer's head is most of its cost.
fn write_head(head: &mut Vec<u8>, parts: HeadParts<'_>, answering: Answering, config: &HttpConfig) {
    let http = answering.dialect == Dialect::Http;
    let status = parts.status;
    match (answering.dialect, answering.version, status) {
        // The most common line, in one copy.
        (Dialect::Http, Version::Http11, 200) => head.extend_from_slice(b"HTTP/1.1 200 OK\r\n"),
        (dialect, version, status) => {
            match dialect {
                Dialect::Http => head.extend_from_slice(version.as_str().as_bytes()),
                Dialect::Cgi => head.extend_from_slice(b"Status:"),
            }
            head.push(b' ');
            push_decimal(head, u64::from(status));
            head.push(b' ');
            head.extend_from_slice(reason_phrase(status).as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    // Every field is valid already (checked when added); only the framing ones,
    // which are ours to write, are left out.
    let marks = parts.fields.marks();
    for (name, value) in parts.fields {
        if marks.framing && is_framing_field(name) {
            continue;
        }
        push_field(head, name.as_bytes(), value.as_bytes());
    }
    if let (true, false, Some(server)) = (http, marks.server, &config.server_name) {
        push_field(head, b"Server", server.as_bytes());
    }
    if http && config.send_date && !marks.date {
        append_date_field(head);
    }
    let length = match parts.body {
        Body::Bytes(bytes) => Some(bytes.len() as u64),
        Body::File { len, .. } => Some(*len),
        // An answer with no body of its own to a `HEAD`, or a 304, says the length
        // the `GET`'s body would have only if the application gave it (RFC 9110
        // §8.6); a 204 has none.
        Body::Empty if (answering.head_only && parts.body_allowed) || status == 304 => marks
            .framing
            .then(|| declared_length(parts.fields))
            .flatten(),
        Body::Empty if parts.body_allowed => Some(0),
        Body::Empty | Body::Stream(_) => None,
    };
    if let Some(length) = length {
        head.extend_from_slice(b"Content-Length: ");
        push_decimal(head, length);
        head.extend_from_slice(b"\r\n");
    } else if parts.chunked {
        head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if !http {
        // CGI has no connection header: the response ends with the connection.
    } else if !parts.keep_alive {
        head.extend_from_slice(b"Connection: close\r\n");
    } else if answering.version == Version::Http10 {
        head.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

/// The application's own `Content-Length` field, if it is one decimal number.
fn declared_length(fields: &Fields) -> Option<u64> {
    let (_, value) = fields
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))?;
    let value = value.trim_matches([' ', '\t']);
    let digits =
        !value.is_empty() && value.len() <= 19 && value.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| value.parse().ok()).flatten()
}

/// Appends `name: value` and the line end.
fn push_field(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Sends a file body after the buffered head, corked so the head and the first bytes
/// of the file share packets; `Ok(false)` if the file ended before `len` bytes.
fn write_file(conn: &mut Conn, file: &File, offset: u64, len: u64) -> io::Result<bool> {
    let corked = conn.set_cork(true).is_ok();
    let sent = conn.send_file(file, offset, len);
    if corked {
        let _ = conn.set_cork(false);
    }
    let sent = sent?;
    if sent < len {
        log::warn!("file body ended after {sent} of {len} bytes; closing the connection");
    }
    Ok(sent == len)
}

/// Sends a stream, one chunk per read, flushing each; `Ok(false)` if the stream failed
/// or panicked (the terminating chunk is then left out).
fn write_stream(conn: &mut Conn, reader: &mut dyn Read, chunked: bool) -> io::Result<bool> {
    // The head goes out before the first read, which may wait long (a server-sent
    // event stream, a long poll): the client learns the status meanwhile.
    conn.flush()?;
    let failed = |conn: &mut Conn| {
        if chunked {
            return Ok(false);
        }
        conn.reset_on_close();
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the response body stream failed midway",
        ))
    };
    let mut buffer = vec![0u8; STREAM_BUFFER];
    loop {
        // Watched as `handle` is: a stream that waits on a shared object between
        // chunks (an event stream) ends its wait when the client leaves.
        let (read, left) =
            conn.watch_reporting(|| crate::rt::catch_handler_panic(|| reader.read(&mut buffer)));
        if left {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client left during the response stream",
            ));
        }
        let data = match read {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => match buffer.get(..n) {
                Some(data) => data,
                None => {
                    log::error!("response body stream said it read {n} bytes into less");
                    return failed(conn);
                }
            },
            Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(error)) => {
                log::warn!("response body stream failed: {error}");
                return failed(conn);
            }
            Err(_) => {
                log::error!("response body stream panicked");
                return failed(conn);
            }
        };
        if chunked {
            write!(conn, "{:x}\r\n", data.len())?;
            conn.write_all(data)?;
            conn.write_all(b"\r\n")?;
        } else {
            conn.write_all(data)?;
        }
        conn.flush()?;
    }
    if chunked {
        conn.write_all(b"0\r\n\r\n")?;
    }
    Ok(true)
}
