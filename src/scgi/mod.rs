//! SCGI adapter: serve the same [`HttpHandler`] behind a front server's `scgi_pass`.
//!
//! [`Scgi`] is a [`MakeHandler`]. Each connection carries one request: a netstring of
//! CGI variables (`CONTENT_LENGTH` first, `SCGI` = `1`), then the body. The application
//! sees it as a [`Request`] — method from `REQUEST_METHOD`, target from `REQUEST_URI`
//! (or `SCRIPT_NAME` + `PATH_INFO` + `QUERY_STRING`), `HTTP_*` variables as header
//! fields (`HTTP_USER_AGENT` → `user-agent`; one passed more than once, as nginx before
//! 1.23 passes a repeated field, as repeated fields), `CONTENT_TYPE` (unless empty) and
//! `CONTENT_LENGTH` too but not the client's own framing fields, which the front end
//! undid (`HTTP_CONTENT_LENGTH`, `HTTP_CONTENT_TYPE`, `HTTP_TRANSFER_ENCODING`), and
//! the peer from `REMOTE_ADDR`/`REMOTE_PORT`. What the HTTP adapter's parser would
//! refuse gets `Status: 400` here too: an `HTTP_HOST` it would refuse, a method that
//! is not a token, a target or field value with a control character, a header
//! variable not spelled as CGI spells them (`HTTP_` and token characters other than
//! lower-case letters and `-`: so `HTTP_Host` cannot pass the `Host` check); more
//! than `max_headers` header variables get `Status: 431`. The answer is written CGI-style,
//! `Status: 200 OK` then the header fields and the body, and the connection closes.
//!
//! A malformed netstring or variable block gets `Status: 400`, a block over
//! `max_head_bytes` `Status: 431` (nginx passes either on, where a bare close would be
//! its 502), and one the stream ends inside a close with no answer; a body over [`HttpConfig::max_body`] gets `Status: 413`; a panicking application
//! `Status: 500`. The limits of [`HttpConfig`] apply: `max_head_bytes` to the netstring,
//! `header_timeout` to reading it (from the connection's establishment), `body_timeout`,
//! `body_deadline` and `write_timeout` as for HTTP.
//!
//! ```
//! use mixserve::http::{Request, Response};
//! use mixserve::scgi::Scgi;
//!
//! let app = Scgi::new(|req: &mut Request| Response::text(200, req.path().to_owned()));
//! # let _ = app;
//! ```

mod checks;
pub(crate) mod netstring;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::conn::{Conn, PeerAddr};
use crate::handler::{Handler, MakeHandler};
use crate::http::seams::{
    Answering, Dialect, Failure, Framing, is_valid_host, linger_close, peer_gone, read_length,
    streams_body_caught, write_response,
};
use crate::http::{BodyReader, Headers, HttpConfig, HttpHandler, Request, Response, Version};
use crate::server::ConfigError;

use netstring::{Malformed, parse_variables, read_netstring};

/// Serves an [`HttpHandler`] over SCGI: the [`MakeHandler`] to give a server.
pub struct Scgi<A> {
    /// The application, shared by every connection.
    app: Arc<A>,
    /// Limits and timeouts, shared by every connection.
    config: Arc<HttpConfig>,
}

impl<A: HttpHandler> Scgi<A> {
    /// Serves `app` with the default limits.
    pub fn new(app: A) -> Scgi<A> {
        Scgi::with_config(app, HttpConfig::default())
    }

    /// Serves `app` with the given limits and timeouts, once [`HttpConfig::check`] passes
    /// them: the constructor for a configuration read at start-up.
    pub fn try_with_config(app: A, config: HttpConfig) -> Result<Scgi<A>, ConfigError> {
        config.check()?;
        Ok(Scgi {
            app: Arc::new(app),
            config: Arc::new(config),
        })
    }

    /// Serves `app` with the given limits and timeouts.
    ///
    /// # Panics
    ///
    /// If [`HttpConfig::check`] refuses `config`; a configuration that comes from outside
    /// the program should go through [`try_with_config`](Self::try_with_config).
    pub fn with_config(app: A, config: HttpConfig) -> Scgi<A> {
        Scgi::try_with_config(app, config).unwrap_or_else(|refusal| panic!("{refusal}"))
    }
}

impl<A> fmt::Debug for Scgi<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scgi")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<A: HttpHandler> MakeHandler for Scgi<A> {
    type Handler = ScgiConnection<A>;

    fn make_handler(&self) -> ScgiConnection<A> {
        ScgiConnection {
            app: Arc::clone(&self.app),
            config: Arc::clone(&self.config),
        }
    }
}

/// The [`Handler`] that [`Scgi`] makes for each connection: one request, one answer.
pub struct ScgiConnection<A> {
    /// The application, shared by every connection.
    app: Arc<A>,
    /// Limits and timeouts, shared by every connection.
    config: Arc<HttpConfig>,
}

impl<A> fmt::Debug for ScgiConnection<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScgiConnection")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<A: HttpHandler> Handler for ScgiConnection<A> {
    fn setup(&mut self, conn: &mut Conn) -> io::Result<()> {
        conn.set_write_timeout(self.config.write_timeout);
        Ok(())
    }

    fn handle(&mut self, conn: &mut Conn) -> io::Result<()> {
        match self.serve(conn) {
            Err(error) if peer_gone(error.kind()) || error.kind() == io::ErrorKind::TimedOut => {
                Ok(())
            }
            other => other,
        }
    }
}

impl<A: HttpHandler> ScgiConnection<A> {
    fn serve(&mut self, conn: &mut Conn) -> io::Result<()> {
        let config = &*self.config;
        conn.set_read_deadline_after_start(config.header_timeout);
        let mut block = Vec::new();
        let parsed = read_netstring(conn, config.max_head_bytes, &mut block)?
            .and_then(|()| parse_variables(&block));
        let (variables, length) = match parsed {
            Ok(parsed) => parsed,
            Err(malformed) => return refuse(conn, config, malformed),
        };
        if let Err((status, why)) = checks::check_variables(&variables, config) {
            let response = Response::text(status, format!("{why}\n"));
            return answer(conn, config, response, false);
        }
        let (mut request, head_only) = build_request(&variables, conn.peer_addr());
        if !has_valid_host(&variables) {
            // The same guarantee as over HTTP: a `Host` an application may build a URL
            // or pick a directory from (a front end may pass on more than we accept).
            let response = Response::text(400, "invalid Host field\n");
            return answer(conn, config, response, head_only);
        }
        if length > config.max_body as u64 {
            return answer(
                conn,
                config,
                Response::text(413, "request body too large\n"),
                head_only,
            );
        }
        conn.set_read_deadline(Some(crate::deadline::from_now(config.body_deadline)));
        conn.set_read_timeout(Some(config.body_timeout));
        let app = &*self.app;
        let Some(streams) = streams_body_caught(app, &request, "SCGI") else {
            let response = Response::text(500, "internal server error\n");
            return answer(conn, config, response, head_only);
        };
        if !streams {
            match read_length(conn, length) {
                Ok(body) => request = request.with_body(body),
                Err(failure) => return fail(conn, config, failure, head_only),
            }
            conn.set_read_timeout(None);
        }
        let label = request.peer_addr().map(Request::connection_label);
        request.label_coroutine(label.as_deref().unwrap_or_default());
        crate::status::count(crate::status::Counter::Requests);
        let (outcome, client_left) = if streams {
            // One request per connection: what the handler leaves unread is not drained.
            // Watched as `handle` is; unread body bytes are no hang-up.
            let watch = conn.start_watch();
            let mut body = BodyReader::new(conn, Framing::Length(length), config);
            let outcome =
                crate::rt::catch_handler_panic(|| app.handle_streaming(&mut request, &mut body));
            let left = watch.client_left();
            drop(watch);
            if let Some(failure) = body.take_failure() {
                return fail(conn, config, failure, head_only);
            }
            conn.set_read_timeout(None);
            (outcome, left)
        } else {
            // Waits the application makes end when the front end drops this request.
            conn.watch_reporting(|| crate::rt::catch_handler_panic(|| app.handle(&mut request)))
        };
        if client_left {
            return Ok(());
        }
        let response = match outcome {
            Ok(response) => response,
            Err(_) => {
                log::error!(
                    "SCGI handler panicked on {} {}",
                    request.method(),
                    request.target()
                );
                Response::text(500, "internal server error\n")
            }
        };
        crate::http::access_log::log_access(config, &request, &response);
        answer(conn, config, response, head_only)
    }
}

/// Answers a header block refused (nginx passes the status on, where a bare close
/// would be its 502), or closes when the stream ended with nobody to answer.
fn refuse(conn: &mut Conn, config: &HttpConfig, malformed: Malformed) -> io::Result<()> {
    match malformed.answer() {
        Some((status, why)) => answer(
            conn,
            config,
            Response::text(status, format!("{why}\n")),
            false,
        ),
        None => Ok(()),
    }
}

/// Answers a body that could not be read (or closes quietly); to a `HEAD`, the head
/// alone.
fn fail(conn: &mut Conn, config: &HttpConfig, failure: Failure, head_only: bool) -> io::Result<()> {
    match failure {
        Failure::Io(error) => Err(error),
        Failure::Reject(reject) => {
            let response = Response::text(reject.status, format!("{}\n", reject.message));
            answer(conn, config, response, head_only)
        }
        Failure::Close => Ok(()),
    }
}

/// Writes the CGI-style answer and closes.
fn answer(
    conn: &mut Conn,
    config: &HttpConfig,
    response: Response,
    head_only: bool,
) -> io::Result<()> {
    let answering = Answering {
        dialect: Dialect::Cgi,
        version: Version::Http10,
        head_only,
        keep_alive: false,
    };
    write_response(conn, response, answering, config)?;
    linger_close(conn, config)
}

/// Whether `HTTP_HOST`, if sent, is a `Host` the HTTP adapter would accept.
fn has_valid_host(variables: &[(&[u8], &[u8])]) -> bool {
    variables
        .iter()
        .filter(|(name, _)| *name == b"HTTP_HOST")
        .all(|(_, value)| is_valid_host(value))
}

/// Builds the request from the CGI variables; also says whether it is a `HEAD`.
fn build_request(variables: &[(&[u8], &[u8])], conn_peer: &PeerAddr) -> (Request, bool) {
    let text = |name: &str| {
        variables
            .iter()
            .find(|(key, _)| *key == name.as_bytes())
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };
    let method = text("REQUEST_METHOD").unwrap_or_else(|| String::from("GET"));
    let target = text("REQUEST_URI").unwrap_or_else(|| {
        let mut target = text("SCRIPT_NAME").unwrap_or_default();
        target.push_str(&text("PATH_INFO").unwrap_or_default());
        if let Some(query) = text("QUERY_STRING").filter(|q| !q.is_empty()) {
            target.push('?');
            target.push_str(&query);
        }
        if target.is_empty() {
            String::from("/")
        } else {
            target
        }
    });
    let version = match text("SERVER_PROTOCOL").as_deref() {
        Some("HTTP/1.0") => Version::Http10,
        _ => Version::Http11,
    };
    let mut headers = Headers::new();
    for &(name, value) in variables {
        let field = match name {
            // Empty: the client sent none (nginx's `scgi_params` pass `$content_type`).
            b"CONTENT_TYPE" if value.is_empty() => continue,
            b"CONTENT_TYPE" => String::from("content-type"),
            b"CONTENT_LENGTH" => String::from("content-length"),
            // The body's framing as the client sent it, which the front end undid:
            // `CONTENT_LENGTH` and `CONTENT_TYPE` say what comes. Passed on, a chunked
            // upload would read `content-length` and `transfer-encoding: chunked`.
            b"HTTP_CONTENT_LENGTH" | b"HTTP_CONTENT_TYPE" | b"HTTP_TRANSFER_ENCODING" => {
                continue;
            }
            _ => match name.strip_prefix(b"HTTP_") {
                // `HTTP_` alone names no header.
                Some(rest) if !rest.is_empty() => String::from_utf8_lossy(rest)
                    .to_ascii_lowercase()
                    .replace('_', "-"),
                _ => continue,
            },
        };
        headers.append(field, value.to_vec());
    }
    let remote = text("REMOTE_ADDR").and_then(|addr| addr.parse::<IpAddr>().ok());
    let port = text("REMOTE_PORT").and_then(|port| port.parse::<u16>().ok());
    let peer = match remote {
        Some(ip) => PeerAddr::Tcp(SocketAddr::new(ip, port.unwrap_or(0))),
        None => conn_peer.clone(),
    };
    let head_only = method == "HEAD";
    let request = Request::new(method, target)
        .with_version(version)
        .with_headers(headers)
        .with_peer(peer);
    (request, head_only)
}
