//! [`Response`]: status, header fields and a [`Body`] — bytes, a file or a stream.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};

use super::response_fields::{Field, Fields};

/// What a response carries after its head.
#[non_exhaustive]
pub enum Body {
    /// No body; sent with `Content-Length: 0` where the status allows a body, except
    /// to a `HEAD` (and in a 304), whose head says the length a `GET` would get only
    /// if a `Content-Length` field set on the response gives it.
    Empty,
    /// A body known in full; sent with `Content-Length`.
    Bytes(Vec<u8>),
    /// A body produced while sending; sent `chunked` to HTTP/1.1 clients (each read
    /// becomes one chunk and is flushed at once, so it suits long-polling and
    /// server-sent streams), and up to end of connection to HTTP/1.0 clients.
    Stream(Box<dyn Read + Send>),
    /// `len` bytes of a file from `offset`; sent with `Content-Length` by `sendfile(2)`
    /// (see [`Conn::send_file`](crate::Conn::send_file)). If the file turns out shorter
    /// than `len`, the body is cut short and the connection closes.
    File {
        /// The open file; closed when the response has been sent or dropped.
        file: File,
        /// Where the body starts in the file.
        offset: u64,
        /// How many bytes the body has.
        len: u64,
    },
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Body::Stream(_) => f.write_str("Stream(..)"),
            Body::File { offset, len, .. } => write!(f, "File({len} bytes from {offset})"),
        }
    }
}

/// A response: a status code, header fields and a [`Body`].
///
/// The adapter owns the framing: it writes `Content-Length` or `Transfer-Encoding`
/// and `Connection` itself and drops such fields set here, except that
/// `Connection: close` set here is honoured (the connection closes after this
/// response), and that an answer with [`Body::Empty`] to a `HEAD`, or a 304, keeps a
/// `Content-Length` set here (one decimal number): the length a `GET` would get. It
/// adds `Date` and `Server` unless set here.
///
/// ```
/// use mixserve::http::Response;
///
/// let ok = Response::text(200, "hello").with_header("Cache-Control", "no-store");
/// assert_eq!(ok.header("content-type"), Some("text/plain; charset=utf-8"));
///
/// let missing = Response::status(404);
/// assert_eq!(missing.status_code(), 404);
///
/// let streamed = Response::stream(200, std::io::Cursor::new(b"one chunk".to_vec()));
/// assert!(streamed.body_bytes().is_none());
/// ```
#[derive(Debug)]
pub struct Response {
    /// Status code, 100–999.
    status: u16,
    /// Header fields, in order; names as given. The crate's own (a `Content-Type` it
    /// knows) are borrowed: no allocation for them on every response.
    headers: Fields,
    /// What follows the head.
    body: Body,
}

impl Response {
    /// A response with status `status`, no header fields and no body.
    pub fn status(status: u16) -> Response {
        Response {
            status,
            headers: Fields::default(),
            body: Body::Empty,
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::typed(
            status,
            "text/plain; charset=utf-8",
            text.into().into_bytes(),
        )
    }

    /// A `text/html; charset=utf-8` response.
    pub fn html(status: u16, html: impl Into<String>) -> Response {
        Response::typed(status, "text/html; charset=utf-8", html.into().into_bytes())
    }

    /// [`bytes`](Self::bytes) with a `Content-Type` known when compiling.
    pub(crate) fn typed(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response::status(status)
            .with_content_type(Field::Borrowed(content_type))
            .with_body(Body::Bytes(body))
    }

    /// A response whose body is `body`, with the given `Content-Type`.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response::status(status)
            .with_content_type(Field::Owned(content_type.to_owned()))
            .with_body(Body::Bytes(body.into()))
    }

    /// A response whose body is read from `reader` while it is sent (see [`Body::Stream`]).
    pub fn stream(status: u16, reader: impl Read + Send + 'static) -> Response {
        Response::status(status).with_body(Body::Stream(Box::new(reader)))
    }

    /// A response whose body is the whole of `file`, sent by `sendfile(2)` with the
    /// `Content-Length` its metadata gives now. Fails on a file that is not a regular
    /// file (a pipe or a device has no length to announce).
    ///
    /// ```no_run
    /// use mixserve::http::Response;
    ///
    /// let page = std::fs::File::open("index.html")?;
    /// let response = Response::file(200, "text/html; charset=utf-8", page)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn file(status: u16, content_type: &str, file: File) -> io::Result<Response> {
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Response::file needs a regular file",
            ));
        }
        let body = Body::File {
            file,
            offset: 0,
            len: metadata.len(),
        };
        Ok(Response::status(status)
            .with_content_type(Field::Owned(content_type.to_owned()))
            .with_body(body))
    }

    /// A streamed response whose body is the items of `chunks`, each sent as it comes.
    pub fn chunks<I>(status: u16, chunks: I) -> Response
    where
        I: IntoIterator<Item = Vec<u8>>,
        I::IntoIter: Send + 'static,
    {
        let reader = ChunkReader {
            chunks: chunks.into_iter(),
            current: Vec::new(),
            position: 0,
        };
        Response::stream(status, reader)
    }

    /// Adds a header field (a name may repeat). A field whose name is not a token, or
    /// whose value holds a line break or another control character (tab excepted), is
    /// dropped here with a warning: it is neither listed nor sent.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers
            .push(Field::Owned(name.into()), Field::Owned(value.into()));
        self
    }

    /// Adds a `Content-Type` field, its name not allocated.
    fn with_content_type(mut self, content_type: Field) -> Response {
        self.headers
            .push(Field::Borrowed("Content-Type"), content_type);
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: Body) -> Response {
        self.body = body;
        self
    }

    /// The status code.
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// All header fields, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter()
    }

    /// The body, when it is held in memory (`Some(b"")` for no body, `None` for a
    /// stream or a file).
    pub fn body_bytes(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Empty => Some(&[]),
            Body::Bytes(bytes) => Some(bytes),
            Body::Stream(_) | Body::File { .. } => None,
        }
    }

    /// The body, for the access log.
    pub(crate) fn body(&self) -> &Body {
        &self.body
    }

    /// Splits the response into status, header fields and body, for the writer.
    pub(crate) fn into_parts(self) -> (u16, Fields, Body) {
        (self.status, self.headers, self.body)
    }
}

/// The standard reason phrase of `status`, or `""` for codes without one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// A `Read` over an iterator of byte vectors; each read returns at most one item.
struct ChunkReader<I> {
    chunks: I,
    current: Vec<u8>,
    position: usize,
}

impl<I: Iterator<Item = Vec<u8>>> Read for ChunkReader<I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position >= self.current.len() {
            match self.chunks.next() {
                Some(chunk) => {
                    self.current = chunk;
                    self.position = 0;
                }
                None => return Ok(0),
            }
        }
        let rest = self.current.get(self.position..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.position += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order_past_the_first() {
        let response = Response::text(200, "x")
            .with_header("X-One", "1")
            .with_header("x-two", "2");
        let fields: Vec<(&str, &str)> = response.headers().collect();
        assert_eq!(
            fields,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("X-One", "1"),
                ("x-two", "2"),
            ]
        );
        assert_eq!(response.header("X-TWO"), Some("2"));
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let (_, parts, _) = response.into_parts();
        assert_eq!(parts.iter().count(), 3);
        assert_eq!(Response::status(204).headers().count(), 0);
    }

    #[test]
    fn debug_lists_the_fields_as_the_vec_of_fields_did() {
        let response = Response::text(200, "x").with_header("X-One", "1");
        let debug = format!("{response:?}");
        assert!(
            debug.contains(
                r#"headers: [("Content-Type", "text/plain; charset=utf-8"), ("X-One", "1")]"#
            ),
            "{debug}"
        );
        assert!(format!("{:?}", Response::status(204)).contains("headers: []"));
    }

    #[test]
    fn a_repeated_field_keeps_every_value_and_the_first_answers_a_lookup() {
        let response = Response::status(200)
            .with_header("Set-Cookie", "a=1")
            .with_header("set-cookie", "b=2")
            .with_header("SET-COOKIE", "c=3");
        let values: Vec<&str> = response.headers().map(|(_, value)| value).collect();
        assert_eq!(values, ["a=1", "b=2", "c=3"]);
        assert_eq!(response.header("Set-Cookie"), Some("a=1"));
        assert_eq!(response.header("Cookie"), None);
    }
}
