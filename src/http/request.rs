//! [`Request`]: one HTTP request as the application sees it, and its [`Version`].

use std::fmt;

use super::head::Head;
use super::headers::Headers;
use crate::conn::PeerAddr;

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// `HTTP/1.0`: the connection closes after the response unless the client asks
    /// for keep-alive.
    Http10,
    /// `HTTP/1.1`: connections are kept alive unless either side says `close`.
    Http11,
}

impl Version {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request, with its body already read (and de-chunked) within the configured limit.
///
/// The adapter builds it from the wire; tests of an application can build one directly:
///
/// ```
/// use mixserve::http::{HttpHandler, Request, Response};
///
/// let app = |req: &mut Request| Response::text(200, format!("{} {}", req.method(), req.path()));
///
/// let mut req = Request::new("POST", "/items?page=2").with_body("x=1");
/// assert_eq!(req.query(), Some("page=2"));
/// let response = app.handle(&mut req);
/// assert_eq!(response.status_code(), 200);
/// assert_eq!(response.body_bytes(), Some(&b"POST /items"[..]));
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, the target as sent (e.g. `/path?query`), the version and the header
    /// fields; a connection parses each request's head into its last one's storage.
    head: Head,
    /// Trailer fields that followed a chunked body.
    trailers: Headers,
    /// The body, de-chunked.
    body: Vec<u8>,
    /// The client's address, when known.
    peer: Option<PeerAddr>,
}

impl Request {
    /// A request with no headers and no body, `HTTP/1.1`, from no known peer.
    pub fn new(method: impl Into<String>, target: impl Into<String>) -> Request {
        Request {
            head: Head {
                method: method.into(),
                target: target.into(),
                version: Version::Http11,
                headers: Headers::new(),
            },
            trailers: Headers::new(),
            body: Vec::new(),
            peer: None,
        }
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Request {
        self.head.headers.append(name, value);
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the protocol version.
    pub fn with_version(mut self, version: Version) -> Request {
        self.head.version = version;
        self
    }

    /// Sets the client's address.
    pub fn with_peer(mut self, peer: PeerAddr) -> Request {
        self.peer = Some(peer);
        self
    }

    /// An empty request, for a connection to read its requests into (see
    /// [`head_mut`](Self::head_mut) and [`recycle`](Self::recycle)).
    pub(crate) fn empty() -> Request {
        Request {
            head: Head::default(),
            trailers: Headers::new(),
            body: Vec::new(),
            peer: None,
        }
    }

    /// The parsed head.
    pub(crate) fn head(&self) -> &Head {
        &self.head
    }

    /// The parsed head, for the connection to read the next request into.
    pub(crate) fn head_mut(&mut self) -> &mut Head {
        &mut self.head
    }

    /// Sets the client's address, in place.
    pub(crate) fn set_peer(&mut self, peer: PeerAddr) {
        self.peer = Some(peer);
    }

    /// Empties the request once it is answered, for the connection's next one: the
    /// head keeps its storage (see [`Head::recycle`]); body and trailers are freed,
    /// as they were when each request was a value of its own; the peer stays.
    pub(crate) fn recycle(&mut self) {
        self.head.recycle();
        self.trailers = Headers::new();
        self.body = Vec::new();
    }

    /// Replaces the header fields.
    pub(crate) fn with_headers(mut self, headers: Headers) -> Request {
        self.head.headers = headers;
        self
    }

    /// Sets the body and the trailer fields that followed it, in place (the request
    /// is not moved: it is a few hundred bytes).
    pub(crate) fn set_body(&mut self, body: Vec<u8>, trailers: Headers) {
        self.body = body;
        self.trailers = trailers;
    }

    /// The method, e.g. `GET`; case-sensitive as HTTP says.
    pub fn method(&self) -> &str {
        &self.head.method
    }

    /// The request target as sent: usually `/path?query`, possibly an absolute URL or `*`.
    pub fn target(&self) -> &str {
        &self.head.target
    }

    /// The target up to `?`, not percent-decoded.
    pub fn path(&self) -> &str {
        // A byte search: `?` is ASCII, so the split is on a character boundary.
        match self.head.target.bytes().position(|b| b == b'?') {
            Some(at) => &self.head.target[..at],
            None => &self.head.target,
        }
    }

    /// The target after `?`, if there is one; not percent-decoded.
    pub fn query(&self) -> Option<&str> {
        self.head.target.split_once('?').map(|(_, query)| query)
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// All header fields.
    pub fn headers(&self) -> &Headers {
        &self.head.headers
    }

    /// The first value of header `name` (any case), if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name)
    }

    /// Trailer fields sent after a chunked body (empty otherwise).
    pub fn trailers(&self) -> &Headers {
        &self.trailers
    }

    /// The body (empty when none was sent).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body out, leaving it empty.
    pub fn take_body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.body)
    }

    /// The client's address, when known.
    pub fn peer_addr(&self) -> Option<&PeerAddr> {
        self.peer.as_ref()
    }

    /// Names the running coroutine after this request — `connection` (who it is from,
    /// formatted once per connection by the caller), method and path — in the stall
    /// warning and the stack-overflow message (see [`rt::set_label`](crate::rt::set_label));
    /// does nothing off a coroutine.
    pub(crate) fn label_coroutine(&self, connection: &str) {
        crate::rt::set_label_parts(&[connection, &self.head.method, " ", self.path()]);
    }

    /// The label prefix [`label_coroutine`](Self::label_coroutine) takes for requests
    /// from `peer`.
    pub(crate) fn connection_label(peer: &PeerAddr) -> String {
        format!("connection from {peer}, ")
    }
}
