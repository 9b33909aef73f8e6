//! HTTP/1.1 adapter: serve an [`HttpHandler`] application over any concurrency model.
//!
//! [`Http`] is a [`MakeHandler`]: give it to a server like any other handler factory.
//! Each connection gets an [`HttpConnection`], which reads requests with `httparse`
//! under the framing rules and limits of [`HttpConfig`], calls the application once per
//! request, and writes its [`Response`]. Keep-alive, pipelining (answered in order),
//! `Content-Length` and chunked bodies both ways, `Expect: 100-continue` and `HEAD` are
//! handled here; the application sees a complete [`Request`] and returns a [`Response`].
//! An application that wants the body as it arrives (large uploads) says so with
//! [`HttpHandler::streams_body`] — or is written as a [`Streaming`] closure — and reads
//! it from a [`BodyReader`]; the limits and the whole-body deadline still hold.
//!
//! Bad input gets a short error answer and a closed connection: `400` for malformed or
//! ambiguous framing, `408` for a slow head or body, `413` for a body over the limit,
//! `414` for a long request line, `417` for an unknown expectation, `431` for oversized
//! or too many header fields, `501` for a transfer coding other than `chunked`, `505`
//! for an HTTP version other than 1.0 and 1.1. A panicking application gets a `500`,
//! and the server carries on.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//! use mixserve::http::{Http, Request, Response};
//! use mixserve::{Conn, Handler, MakeHandler};
//!
//! let app = Http::new(|req: &mut Request| match req.path() {
//!     "/" => Response::text(200, "hello"),
//!     _ => Response::status(404),
//! });
//!
//! // Drive one connection by hand; a server does this for every accepted socket.
//! let (mut client, server) = UnixStream::pair()?;
//! client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
//! let mut conn = Conn::from_unix(server)?;
//! let mut handler = app.make_handler();
//! handler.setup(&mut conn)?;
//! handler.handle(&mut conn)?;
//! drop(conn);
//!
//! let mut answer = String::new();
//! client.read_to_string(&mut answer)?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(answer.ends_with("\r\n\r\nhello"));
//! # Ok::<(), std::io::Error>(())
//! ```

pub(crate) mod access_log;
mod body;
mod body_reader;
mod config;
mod connection;
mod date;
mod error;
mod file_type;
pub mod files;
mod head;
mod head_assembly;
#[cfg(test)]
mod head_split_tests;
mod headers;
mod interim;
#[cfg(feature = "serde")]
mod json;
mod linger;
mod params;
mod range;
mod request;
mod response;
mod response_fields;
mod streaming;
mod write;

/// The seams a protocol adapter ([`scgi`](crate::scgi)) builds on, named here so an
/// adapter never reaches into this module's files: body framing, the lingering close,
/// failure answers and the response writer.
pub(crate) mod seams {
    pub(crate) use super::body::{Framing, parse_length, read_length};
    pub(crate) use super::error::{Failure, peer_gone};
    pub(crate) use super::head::{is_token_char, is_valid_host};
    pub(crate) use super::linger::linger_close;
    pub(crate) use super::response_fields::is_value_byte;
    pub(crate) use super::streaming::streams_body_caught;
    pub(crate) use super::write::{Answering, Dialect, write_response};
}

/// What the fuzz targets drive (feature `fuzzing`, and the unit tests): the head
/// reader a connection uses, the head parser and the chunked decoder.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz_seams {
    pub(crate) use super::body::{Framing, read_chunked};
    pub(crate) use super::error::{Failure, Reject};
    pub(crate) use super::head::{Head, parse_head};
    pub(crate) use super::head_assembly::{HeadAssembler, Progress};
    pub(crate) use super::range::{RangeAnswer, parse_range};
}

use std::fmt;
use std::sync::Arc;

use std::io::Write;

use crate::conn::Conn;
use crate::handler::MakeHandler;
use crate::server::ConfigError;

pub use access_log::ACCESS_LOG_TARGET;
pub use body_reader::BodyReader;
pub use config::HttpConfig;
pub use connection::HttpConnection;
pub use headers::Headers;
#[cfg(feature = "serde")]
pub use json::JsonError;
pub use params::Params;
pub use request::{Request, Version};
pub use response::{Body, Response, reason_phrase};
pub use streaming::Streaming;

/// An HTTP application: turns each [`Request`] into a [`Response`].
///
/// One value serves every connection of every thread (and, under a forking model, is
/// copied into each process), so it is `Send + Sync`; keep per-request state on the
/// stack. `handle` may block (for a long-poll, say): under the scheduled model only its
/// coroutine waits.
///
/// **What is shared depends on the model.** Under `forking` and `preforked` each
/// connection is served in a worker *process*: the application, every `static`, atomic,
/// `Mutex` and `LazyLock` in it is that process's own copy, so a counter one worker
/// bumps is not seen by another, and the master never sees it. Only the crate's shared
/// objects ([`Broadcast`](crate::sync::Broadcast), [`Channel`](crate::sync::Channel)),
/// created *before* the server starts and moved into the application, are one object
/// for every worker (they are served by the master through the hub). Under the thread
/// models and `scheduled`, statics and `Arc<Mutex<_>>` are shared as usual; write the
/// application with the shared objects and it behaves the same under all of them.
///
/// Any `Fn(&mut Request) -> Response` closure is an `HttpHandler`; a struct implements
/// it when it carries configuration:
///
/// ```
/// use mixserve::http::{HttpHandler, Request, Response};
///
/// struct Greeter {
///     greeting: String,
/// }
///
/// impl HttpHandler for Greeter {
///     fn handle(&self, req: &mut Request) -> Response {
///         let name = req.query().unwrap_or("world");
///         Response::text(200, format!("{}, {name}!", self.greeting))
///     }
/// }
///
/// let app = Greeter { greeting: "Hello".into() };
/// let response = app.handle(&mut Request::new("GET", "/?you"));
/// assert_eq!(response.body_bytes(), Some(&b"Hello, you!"[..]));
/// ```
pub trait HttpHandler: Send + Sync + 'static {
    /// Answers one request. The body is already read; a panic here becomes a `500`
    /// and closes the connection.
    fn handle(&self, req: &mut Request) -> Response;

    /// Whether this request's body is read by the handler as it arrives
    /// ([`handle_streaming`](Self::handle_streaming)) rather than buffered whole
    /// before [`handle`](Self::handle) — the default. Called once the head is read
    /// (method, target, header fields and peer are known; the body is empty).
    fn streams_body(&self, req: &Request) -> bool {
        let _ = req;
        false
    }

    /// Answers a request whose body streams: read it from `body` (a [`Read`]
    /// that decodes `chunked` as it goes, with the body limit and whole-body deadline
    /// enforced). Body bytes left unread are thrown away before the next request on
    /// the connection (or, past a small amount, the connection closes after the
    /// answer). A body that breaks a limit while this reads it is answered by the
    /// server (`413`, `408`, `400`), whatever this returns. One that breaks it only
    /// as the server throws the unread rest away, after this returned, gets the answer
    /// this returned, with the connection closed after it. The default reads nothing
    /// and calls `handle`.
    ///
    /// Watched like `handle` (see [`Conn::watch`](crate::Conn::watch)): a shared-object
    /// wait made here ends with `WaitError::ClientGone` when the client closes or resets
    /// the connection. Body bytes not read yet are no hang-up; a half-close is.
    ///
    /// [`Read`]: std::io::Read
    fn handle_streaming(&self, req: &mut Request, body: &mut BodyReader<'_>) -> Response {
        let _ = body;
        self.handle(req)
    }
}

impl<F> HttpHandler for F
where
    F: Fn(&mut Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, req: &mut Request) -> Response {
        self(req)
    }
}

/// Serves an [`HttpHandler`] over HTTP/1.1: the [`MakeHandler`] to give a server.
pub struct Http<A> {
    /// The application, shared by every connection.
    app: Arc<A>,
    /// Limits and timeouts, shared by every connection.
    config: Arc<HttpConfig>,
}

impl<A: HttpHandler> Http<A> {
    /// Serves `app` with the default [`HttpConfig`].
    pub fn new(app: A) -> Http<A> {
        Http::with_config(app, HttpConfig::default())
    }

    /// Serves `app` with the given limits and timeouts, once [`HttpConfig::check`] passes
    /// them: the constructor for a configuration read at start-up.
    ///
    /// ```
    /// use mixserve::http::{Http, HttpConfig, Request, Response};
    ///
    /// let mut config = HttpConfig::default();
    /// config.server_name = Some("mixserve\r\nX-Injected: yes".into());
    /// let refusal = Http::try_with_config(|_: &mut Request| Response::status(204), config)
    ///     .unwrap_err();
    /// assert_eq!(refusal.setting, "server_name");
    /// ```
    pub fn try_with_config(app: A, config: HttpConfig) -> Result<Http<A>, ConfigError> {
        config.check()?;
        Ok(Http {
            app: Arc::new(app),
            config: Arc::new(config),
        })
    }

    /// Serves `app` with the given limits and timeouts.
    ///
    /// # Panics
    ///
    /// If [`HttpConfig::check`] refuses `config` (a `server_name` with a line break
    /// would be written into every response's head). A configuration that comes from
    /// outside the program should go through [`try_with_config`](Self::try_with_config).
    pub fn with_config(app: A, config: HttpConfig) -> Http<A> {
        Http::try_with_config(app, config).unwrap_or_else(|refusal| panic!("{refusal}"))
    }

    /// The limits and timeouts in use.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }
}

impl<A> fmt::Debug for Http<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<A: HttpHandler> MakeHandler for Http<A> {
    type Handler = HttpConnection<A>;

    fn make_handler(&self) -> HttpConnection<A> {
        HttpConnection::new(Arc::clone(&self.app), Arc::clone(&self.config))
    }

    /// Every worker is busy and none can be added: `503` and close.
    fn reject(&self, conn: &mut Conn) {
        let busy = Response::text(503, "server busy: every worker is waiting\n")
            .with_header("Retry-After", "1");
        let answering = write::Answering {
            dialect: write::Dialect::Http,
            version: Version::Http11,
            head_only: false,
            keep_alive: false,
        };
        let _ = write::write_response(conn, busy, answering, &self.config);
        let _ = conn.flush();
    }
}
