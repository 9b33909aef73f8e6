//! [`HttpConnection`]: the per-connection keep-alive loop — read a head, read the body,
//! call the application, write the answer, and decide whether to go round again.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Instant;

use super::HttpHandler;
use super::body::{self, Framing};
use super::body_reader::BodyReader;
use super::config::HttpConfig;
use super::error::{Failure, Reject, peer_gone, read_failure};
use super::head::{self, Head};
use super::headers::Headers;
use super::interim::{ContinueFirst, send_continue};
use super::linger::{input_waiting, linger_close};
use super::request::{Request, Version};
use super::response::Response;
use super::streaming::streams_body_caught;
use super::write::{Answering, Dialect, write_response};
use crate::conn::Conn;
use crate::handler::{Handled, Handler};
use crate::rt::clock;

/// The [`Handler`] that [`Http`](super::Http) makes for each connection: serves
/// requests one after another (pipelined ones in order) until either side closes.
pub struct HttpConnection<A> {
    /// The application, shared by every connection.
    app: Arc<A>,
    /// Limits and timeouts, shared by every connection.
    config: Arc<HttpConfig>,
    /// The raw bytes of a request head that arrives in pieces, reused between requests.
    raw_head: Vec<u8>,
    /// The request being served, read in place: each head is parsed into the last
    /// one's storage, so a small request costs no heap allocation (see
    /// [`Head::recycle`](super::head::Head::recycle) for what is kept), and the request
    /// is never moved through the coroutine's stack (cold lines on a busy server).
    request: Request,
    /// "connection from PEER, ": the coroutine label's prefix, formatted on the first
    /// request rather than on every one.
    label: Option<String>,
    /// Requests begun on this connection.
    served: usize,
    /// When the connection began to idle, if [`Handler::handle_until_idle`] returned
    /// to wait for the next request without a stack: the next head's wait for its
    /// first byte still counts from there (a client trickling empty lines between
    /// requests cannot restart it).
    idle_since: Option<Instant>,
}

impl<A> fmt::Debug for HttpConnection<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConnection")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the application's handler came back with: its response, or the panic.
type Outcome = std::thread::Result<Response>;

/// What one round of the loop ended in.
enum Next {
    /// Serve the next request.
    KeepAlive,
    /// Close after lingering: input may be left unread (an error answer, a body the
    /// application did not read).
    Close,
    /// Close: the request was read whole and its client asked to close; linger only
    /// for input already here (requests it pipelined all the same).
    Done,
    /// Close at once: the peer is gone or timed out.
    Drop,
}

impl<A: HttpHandler> HttpConnection<A> {
    pub(crate) fn new(app: Arc<A>, config: Arc<HttpConfig>) -> HttpConnection<A> {
        HttpConnection {
            app,
            config,
            raw_head: Vec::new(),
            served: 0,
            idle_since: None,
            request: Request::empty(),
            label: None,
        }
    }

    /// Serves one request (`last`: the connection's last, answered with
    /// `Connection: close`); errors are socket errors worth reporting.
    ///
    /// Reading the request and writing the answer are functions of their own, not
    /// inlined here: this frame stays on a coroutine's stack while the handler runs,
    /// which for a long poll is as long as the client waits, and what it holds decides
    /// whether a parked waiter fits in one stack page (see `.ci/waiter-memory`).
    fn serve_one(&mut self, conn: &mut Conn, first: bool, last: bool) -> io::Result<Next> {
        let next = self.serve_request(conn, first, last);
        // Whichever way the request ended, it is emptied for the next one (its body
        // freed, its head's storage kept).
        self.request.recycle();
        next
    }

    /// [`serve_one`](Self::serve_one), but for emptying the request afterwards.
    #[inline]
    fn serve_request(&mut self, conn: &mut Conn, first: bool, last: bool) -> io::Result<Next> {
        let (framing, streams) = match self.read_request(conn, first) {
            Ok(read) => read,
            Err(next) => return next,
        };
        let HttpConnection {
            app,
            config,
            request,
            label,
            ..
        } = self;
        let client_closes = !wants_keep_alive(request);
        let keep_alive = !client_closes && !last;
        let answering = Answering {
            dialect: Dialect::Http,
            version: request.version(),
            head_only: request.method() == "HEAD",
            keep_alive: keep_alive && !conn.draining(),
        };
        let label = label.get_or_insert_with(|| Request::connection_label(conn.peer_addr()));
        request.label_coroutine(label);
        crate::status::count(crate::status::Counter::Requests);
        // The answer to a request pipelined before this one goes out before this
        // handler runs, which may take long (a long poll). Nothing buffered: no call.
        if conn.flush().is_err() {
            return Ok(Next::Drop);
        }
        let (outcome, client_left, body_drained) = if let Some(interim) = streams {
            match call_streaming(&**app, config, conn, request, framing, interim) {
                Ok(called) => called,
                Err(next) => return next,
            }
        } else {
            // A handler may wait long (a long poll): it holds no read buffer meanwhile.
            conn.release_read_buffer();
            // Waits the application makes end when this client leaves (see `Conn::watch`).
            let app = &**app;
            let (outcome, left) =
                conn.watch_reporting(|| crate::rt::catch_handler_panic(|| app.handle(request)));
            (outcome, left, true)
        };
        if client_left {
            // Nobody is left to read the answer.
            return Ok(Next::Drop);
        }
        let answering = Answering {
            keep_alive: answering.keep_alive && body_drained && !conn.draining(),
            ..answering
        };
        let next = answer(config, conn, request, outcome, answering)?;
        // The request was read whole, and the client said it sends no more: the close
        // need not wait (a close of the server's choosing still lingers, for requests
        // a pipelining client may have in flight).
        Ok(match next {
            Next::Close if body_drained && client_closes => Next::Done,
            next => next,
        })
    }

    /// Reads a request's head and, unless the application streams it, its body;
    /// `Err` holds how the connection ends instead (nothing came, or a failure that
    /// has been answered). Also says whether the application streams the body
    /// (`Some`), and then whether its client waits for `100 Continue` (`Some(true)`).
    #[inline(never)]
    fn read_request(
        &mut self,
        conn: &mut Conn,
        first: bool,
    ) -> Result<(Framing, Option<bool>), io::Result<Next>> {
        let config = &*self.config;
        let request = &mut self.request;
        // Once per connection (again only if the application replaced the request).
        if request.peer_addr().is_none() {
            request.set_peer(conn.peer_addr().clone());
        }
        let idle_since = self.idle_since.take();
        let read = head::read_head(
            conn,
            config,
            &mut self.raw_head,
            first,
            idle_since,
            request.head_mut(),
        );
        match read {
            Ok(true) => {}
            Ok(false) => return Err(Ok(Next::Drop)),
            // A head refused after its request line was read (no `Host`, two) still
            // answers a `HEAD` with no content; a refused request line left no method.
            Err(failure) => {
                let head_only = request.method() == "HEAD";
                return Err(fail(config, conn, failure, head_only));
            }
        }
        let head_only = request.method() == "HEAD";
        let (framing, interim) = match begin_body(conn, config, request.head()) {
            Ok(begun) => begun,
            Err(failure) => return Err(fail(config, conn, failure, head_only)),
        };
        // A panic here is the application's too: a 500 after the answers to requests
        // pipelined before this one, which are still buffered.
        let Some(streams) = streams_body_caught(&*self.app, request, "HTTP") else {
            let reject = Reject::new(500, "internal server error");
            return Err(fail(config, conn, Failure::Reject(reject), head_only));
        };
        // With no body to read, the request keeps its empty one (and `begin_body` has
        // disarmed the deadlines already).
        if streams {
            return Ok((framing, Some(interim)));
        }
        if framing.has_body() {
            let read = send_continue(conn, interim).and_then(|()| read_body(conn, config, framing));
            match read {
                Ok((body, trailers)) => request.set_body(body, trailers),
                Err(failure) => return Err(fail(config, conn, failure, head_only)),
            }
        }
        Ok((framing, None))
    }
}

/// Calls the application's streaming handler with a reader of the body, then
/// drains what it left unread. Returns its outcome, whether the client left, and
/// whether the body was drained (the connection can be reused); `Err` holds how
/// the connection ends after a failure reading the body. With `interim`, the
/// `100 Continue` the client waits for goes out at the handler's first read: one
/// that answers without reading (a refusal by the head alone) never invites the
/// body, and its answer closes the connection instead of waiting for a body that
/// may never come.
#[inline(never)]
fn call_streaming<A: HttpHandler>(
    app: &A,
    config: &HttpConfig,
    conn: &mut Conn,
    request: &mut Request,
    framing: Framing,
    interim: bool,
) -> Result<(Outcome, bool, bool), io::Result<Next>> {
    // Watched as `handle` is; unread body bytes are no hang-up (see `Conn::watch`).
    let watch = conn.start_watch();
    let unsent = Cell::new(interim);
    let mut source = ContinueFirst {
        conn: &mut *conn,
        unsent: &unsent,
    };
    let mut body = BodyReader::new(&mut source, framing, config);
    let outcome = crate::rt::catch_handler_panic(|| app.handle_streaming(request, &mut body));
    let left = watch.client_left();
    drop(watch);
    let failure = body.take_failure();
    let drained = !left && failure.is_none() && !unsent.get() && body.drain();
    drop(body);
    conn.set_read_timeout(None);
    conn.set_read_deadline(None);
    if let Some(failure) = failure {
        return Err(fail(config, conn, failure, request.method() == "HEAD"));
    }
    Ok((outcome, left, drained))
}

/// Writes the application's answer (a `500` if it panicked) and logs the request.
#[inline(never)]
fn answer(
    config: &HttpConfig,
    conn: &mut Conn,
    request: &mut Request,
    outcome: Outcome,
    answering: Answering,
) -> io::Result<Next> {
    let response = match outcome {
        Ok(response) => response,
        Err(_) => {
            log::error!(
                "HTTP handler panicked on {} {}",
                request.method(),
                request.target()
            );
            let reject = Reject::new(500, "internal server error");
            return fail(config, conn, Failure::Reject(reject), answering.head_only);
        }
    };
    super::access_log::log_access(config, request, &response);
    // Not flushed here: reading the next head flushes before it waits, so answers
    // to pipelined requests that are already buffered go out together.
    let keep_alive = write_response(conn, response, answering, config)?;
    match keep_alive {
        true => Ok(Next::KeepAlive),
        false => Ok(Next::Close),
    }
}

/// Answers a failed request (or not), returning how the connection ends; the
/// answer to a `HEAD` (`head_only`) ends at its head, as every answer to one must.
#[cold]
#[inline(never)]
fn fail(
    config: &HttpConfig,
    conn: &mut Conn,
    failure: Failure,
    head_only: bool,
) -> io::Result<Next> {
    match failure {
        Failure::Close => Ok(Next::Drop),
        Failure::Io(error) => Err(error),
        Failure::Reject(reject) => {
            let response = Response::text(reject.status, format!("{}\n", reject.message));
            let answering = Answering {
                dialect: Dialect::Http,
                version: Version::Http11,
                head_only,
                keep_alive: false,
            };
            write_response(conn, response, answering, config)?;
            Ok(Next::Close)
        }
    }
}

/// Checks the framing the head announces against the limits and `Expect`, and arms
/// the body's deadlines (per read, and for the whole body: a trickle cannot keep it
/// open). Says whether the client waits for `100 Continue` before it sends the body,
/// which is read next, by [`read_body`] or by a streaming handler (each sends the
/// `100` first, see [`send_continue`]).
fn begin_body(
    conn: &mut Conn,
    config: &HttpConfig,
    head: &Head,
) -> Result<(Framing, bool), Failure> {
    let framing = Framing::of(&head.headers, head.version)?;
    if let Framing::Length(length) = framing
        && length > config.max_body as u64
    {
        return Err(Reject::new(413, "request body too large").into());
    }
    let mut interim = false;
    if let Some(expect) = head.headers.get_bytes("expect") {
        if !expect.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
            return Err(Reject::new(417, "unsupported expectation").into());
        }
        // Only an HTTP/1.1 client waits for it, and only if a body is to come.
        interim = head.version == Version::Http11 && framing.has_body();
    }
    if framing.has_body() {
        // Earlier answers must be out before we wait for this body.
        conn.flush()
            .map_err(|error| read_failure(error, Failure::Close))?;
    }
    if framing.has_body() {
        conn.set_read_deadline(Some(crate::deadline::from_now(config.body_deadline)));
        conn.set_read_timeout(Some(config.body_timeout));
    } else {
        // Nothing to read: the head's deadline must not limit a streaming handler.
        conn.set_read_deadline(None);
        conn.set_read_timeout(None);
    }
    Ok((framing, interim))
}

/// Reads the whole body (the buffered default), then disarms the body's deadlines.
fn read_body(
    conn: &mut Conn,
    config: &HttpConfig,
    framing: Framing,
) -> Result<(Vec<u8>, Headers), Failure> {
    let read = match framing {
        Framing::None => (Vec::new(), Headers::new()),
        Framing::Length(length) => (body::read_length(conn, length)?, Headers::new()),
        Framing::Chunked => body::read_chunked(conn, config)?,
    };
    conn.set_read_timeout(None);
    conn.set_read_deadline(None);
    Ok(read)
}

/// HTTP/1.1 stays open unless `Connection: close`; HTTP/1.0 only on `keep-alive`, and
/// `close` wins over it (RFC 9112 §9.3).
fn wants_keep_alive(request: &Request) -> bool {
    let headers = request.headers();
    let closes = headers.has_token("connection", "close");
    match request.version() {
        Version::Http11 => !closes,
        Version::Http10 => !closes && headers.has_token("connection", "keep-alive"),
    }
}

impl<A: HttpHandler> Handler for HttpConnection<A> {
    fn setup(&mut self, conn: &mut Conn) -> io::Result<()> {
        conn.set_write_timeout(self.config.write_timeout);
        Ok(())
    }

    fn handle(&mut self, conn: &mut Conn) -> io::Result<()> {
        self.serve_requests(conn, false).map(drop)
    }

    fn handle_until_idle(&mut self, conn: &mut Conn) -> io::Result<Handled> {
        self.serve_requests(conn, true)
    }
}

impl<A: HttpHandler> HttpConnection<A> {
    /// Serves requests until the connection ends, or, if it `may_idle`, until it waits
    /// for a next request with nothing buffered (`Handled::Idle`; the next call serves
    /// what came meanwhile).
    fn serve_requests(&mut self, conn: &mut Conn, may_idle: bool) -> io::Result<Handled> {
        loop {
            let resumed = self.idle_since.is_some();
            if may_idle && !resumed && self.served > 0 && conn.buffered().is_empty() {
                // Answers to earlier requests go out before the connection idles.
                if let Err(error) = conn.flush() {
                    return quietly(Err(error)).map(|()| Handled::Done);
                }
                self.idle_since = Some(clock::now());
                return Ok(Handled::Idle(self.config.idle_timeout));
            }
            self.served += 1;
            let last = self.served >= self.config.max_requests_per_connection;
            let next = self.serve_one(conn, self.served == 1, last);
            let result = match next {
                Ok(Next::KeepAlive) => continue,
                Ok(Next::Drop) => conn.flush(),
                Ok(Next::Close) => linger_close(conn, &self.config),
                Ok(Next::Done) if input_waiting(conn) => linger_close(conn, &self.config),
                Ok(Next::Done) => conn.flush().and_then(|()| conn.shutdown(Shutdown::Write)),
                Err(error) => Err(error),
            };
            return quietly(result).map(|()| Handled::Done);
        }
    }
}

/// `result`, with the errors of a client that went away or stalled taken as the end.
fn quietly(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(error) if peer_gone(error.kind()) || error.kind() == io::ErrorKind::TimedOut => Ok(()),
        other => other,
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
