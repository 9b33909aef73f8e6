//! `--protocol http|scgi`: the same application spoken over HTTP to clients, or over
//! SCGI behind a front server's `scgi_pass` (see the README's "Behind nginx");
//! `--access-log`, one common-log-format line per request on stderr; and
//! `--status-path /_status`, the live status (Prometheus text) answered before the app.
//!
//! Include it beside `common` with `#[path = "common/protocol.rs"] mod protocol;`.

use std::process::ExitCode;

use clap::Args;
use mixserve::http::{BodyReader, Http, HttpConfig, HttpHandler, Request, Response};
use mixserve::scgi::Scgi;

use crate::common::{self, ServeArgs};

/// Picks the wire protocol and the access log.
#[derive(Debug, Args)]
pub struct ProtocolArgs {
    /// http (clients connect directly) or scgi (behind nginx's scgi_pass).
    #[arg(long, default_value = "http")]
    pub protocol: String,
    /// Log one line per request in the common log format, on stderr.
    #[arg(long)]
    pub access_log: bool,
    /// Answer GET requests for this path with the live status (Prometheus text format),
    /// before the application sees them.
    #[arg(long, value_name = "PATH")]
    pub status_path: Option<String>,
    /// Close a keep-alive connection after this many requests (default: the example's
    /// own; the library's is 1000, as nginx's `keepalive_requests`).
    #[arg(long, value_name = "N")]
    pub max_requests_per_connection: Option<usize>,
}

/// Serves `app` over the protocol `--protocol` names, with the model `--mixin` names and
/// `config` (plus `--access-log`).
pub fn serve_app<A: HttpHandler>(
    serve: &ServeArgs,
    args: &ProtocolArgs,
    app: A,
    mut config: HttpConfig,
) -> ExitCode {
    config.access_log |= args.access_log;
    if let Some(max) = args.max_requests_per_connection {
        config.max_requests_per_connection = max;
    }
    // The examples' one logger, with the access lines when asked.
    common::init_logger(config.access_log);
    let app = WithStatus {
        path: args.status_path.clone(),
        app,
    };
    let served = match args.protocol.as_str() {
        "http" => Http::try_with_config(app, config).map(|http| common::serve(serve, "http", http)),
        "scgi" => Scgi::try_with_config(app, config).map(|scgi| common::serve(serve, "scgi", scgi)),
        other => {
            eprintln!("error: unknown protocol {other:?}: choose http or scgi");
            return ExitCode::from(2);
        }
    };
    served.unwrap_or_else(|refusal| {
        eprintln!("error: invalid configuration: {refusal}");
        ExitCode::from(2)
    })
}

/// The application, with `--status-path` answered first.
struct WithStatus<A> {
    path: Option<String>,
    app: A,
}

impl<A: HttpHandler> HttpHandler for WithStatus<A> {
    fn handle(&self, req: &mut Request) -> Response {
        if self.path.as_deref() != Some(req.path()) {
            return self.app.handle(req);
        }
        match mixserve::status::current() {
            Some(status) => Response::bytes(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                status.snapshot().prometheus(),
            ),
            None => Response::text(503, "no live status outside a server\n"),
        }
    }

    fn streams_body(&self, req: &Request) -> bool {
        self.path.as_deref() != Some(req.path()) && self.app.streams_body(req)
    }

    fn handle_streaming(&self, req: &mut Request, body: &mut BodyReader<'_>) -> Response {
        self.app.handle_streaming(req, body)
    }
}
