//! [`Streaming`]: an application written as a closure that reads the request body as
//! it arrives.

use super::body::Framing;
use super::body_reader::BodyReader;
use super::config::HttpConfig;
use super::{HttpHandler, Request, Response};

/// Asks `app` whether it streams `request`'s body; `None` if that panicked (logged with
/// `adapter`, which then answers `500` like a panic in `handle`).
pub(crate) fn streams_body_caught<A: HttpHandler>(
    app: &A,
    request: &Request,
    adapter: &str,
) -> Option<bool> {
    let asked = crate::rt::catch_handler_panic(|| app.streams_body(request));
    if asked.is_err() {
        log::error!(
            "{adapter} handler's streams_body panicked on {} {}",
            request.method(),
            request.target()
        );
    }
    asked.ok()
}

/// Wraps `Fn(&mut Request, &mut BodyReader) -> Response` into an [`HttpHandler`] that
/// streams every request body (see [`HttpHandler::handle_streaming`]).
///
/// ```
/// use std::io::Read;
/// use mixserve::http::{BodyReader, HttpHandler, Request, Response, Streaming};
///
/// // Counts the bytes of an upload without keeping them.
/// let app = Streaming(|_req: &mut Request, body: &mut BodyReader<'_>| {
///     let mut chunk = [0u8; 8192];
///     let mut total = 0;
///     loop {
///         match body.read(&mut chunk) {
///             Ok(0) => return Response::text(200, format!("{total}\n")),
///             Ok(n) => total += n,
///             Err(_) => return Response::text(400, "bad body\n"),
///         }
///     }
/// });
/// // Called directly (no socket), it streams the request's buffered body.
/// let response = app.handle(&mut Request::new("POST", "/").with_body("hello"));
/// assert_eq!(response.body_bytes(), Some(&b"5\n"[..]));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Streaming<F>(pub F);

impl<F> HttpHandler for Streaming<F>
where
    F: Fn(&mut Request, &mut BodyReader<'_>) -> Response + Send + Sync + 'static,
{
    /// Without a connection (a test calling it directly): streams the request's
    /// buffered body.
    fn handle(&self, req: &mut Request) -> Response {
        let body = req.take_body();
        let config = HttpConfig {
            max_body: body.len(),
            ..HttpConfig::default()
        };
        let mut bytes = &body[..];
        let mut reader = BodyReader::new(&mut bytes, Framing::Length(body.len() as u64), &config);
        (self.0)(req, &mut reader)
    }

    fn streams_body(&self, req: &Request) -> bool {
        let _ = req;
        true
    }

    fn handle_streaming(&self, req: &mut Request, body: &mut BodyReader<'_>) -> Response {
        (self.0)(req, body)
    }
}
