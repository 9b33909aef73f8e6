//! Writing a response: the status line, our framing headers, then the body —
//! `Content-Length` bytes or file (the file by `sendfile`), or a stream sent chunked
//! (or to end of connection for HTTP/1.0 clients).

use std::fs::File;
use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::time::SystemTime;

use super::config::HttpConfig;
use super::date::http_date;
use super::request::Version;
use super::response::{Body, Response, reason_phrase};
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
/// of the connection, or when a stream failed midway (the body is then cut short,
/// which the client sees as an incomplete message).
pub(crate) fn write_response(
    conn: &mut Conn,
    response: Response,
    answering: Answering,
    config: &HttpConfig,
) -> io::Result<bool> {
    let (mut status, fields, body) = response.into_parts();
    if !(100..=999).contains(&status) {
        log::warn!("handler returned status {status}; sending 500");
        status = 500;
    }
    let mut keep_alive = answering.keep_alive
        && !fields.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("connection")
                && value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"))
        });
    let body_allowed = !(status < 200 || status == 204 || status == 304);
    let body = if body_allowed { body } else { Body::Empty };
    let chunked = matches!(body, Body::Stream(_)) && answering.version == Version::Http11;
    if matches!(body, Body::Stream(_)) && !chunked {
        keep_alive = false;
    }

    let http = answering.dialect == Dialect::Http;
    let mut head = Vec::with_capacity(256);
    let reason = reason_phrase(status);
    let _ = match answering.dialect {
        Dialect::Http => write!(head, "{} {status} {reason}\r\n", answering.version),
        Dialect::Cgi => write!(head, "Status: {status} {reason}\r\n"),
    };
    let mut has_date = false;
    let mut has_server = false;
    for (name, value) in &fields {
        if is_framing_field(name) {
            continue;
        }
        if !valid_field(name, value) {
            log::warn!("dropping response header field {name:?} with invalid characters");
            continue;
        }
        has_date |= name.eq_ignore_ascii_case("date");
        has_server |= name.eq_ignore_ascii_case("server");
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if let (true, false, Some(server)) = (http, has_server, &config.server_name) {
        let _ = write!(head, "Server: {server}\r\n");
    }
    if http && config.send_date && !has_date {
        let _ = write!(head, "Date: {}\r\n", http_date(SystemTime::now()));
    }
    match &body {
        Body::Bytes(bytes) => {
            let _ = write!(head, "Content-Length: {}\r\n", bytes.len());
        }
        Body::File { len, .. } => {
            let _ = write!(head, "Content-Length: {len}\r\n");
        }
        Body::Empty if body_allowed => head.extend_from_slice(b"Content-Length: 0\r\n"),
        Body::Stream(_) if chunked => head.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Body::Empty | Body::Stream(_) => {}
    }
    if !http {
        // CGI has no connection header: the response ends with the connection.
    } else if !keep_alive {
        head.extend_from_slice(b"Connection: close\r\n");
    } else if answering.version == Version::Http10 {
        head.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"\r\n");
    conn.write_all(&head)?;

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
    let mut buffer = vec![0u8; STREAM_BUFFER];
    loop {
        let read = panic::catch_unwind(AssertUnwindSafe(|| reader.read(&mut buffer)));
        let data = match read {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => match buffer.get(..n) {
                Some(data) => data,
                None => return Ok(false),
            },
            Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(error)) => {
                log::warn!("response body stream failed: {error}");
                return Ok(false);
            }
            Err(_) => {
                log::error!("response body stream panicked");
                return Ok(false);
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

/// Fields the writer sets itself.
fn is_framing_field(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection"]
        .iter()
        .any(|field| name.eq_ignore_ascii_case(field))
}

/// A field name must be a token; a value must not hold control characters (no CR/LF,
/// so no response splitting), tabs excepted.
fn valid_field(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}
