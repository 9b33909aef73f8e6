//! `--protocol http|scgi`: the same application spoken over HTTP to clients, or over
//! SCGI behind a front server's `scgi_pass` (see the README's "Behind nginx"); and
//! `--access-log`, one common-log-format line per request on stderr.
//!
//! Include it beside `common` with `#[path = "common/protocol.rs"] mod protocol;`.

use std::process::ExitCode;

use clap::Args;
use mixserve::http::{Http, HttpConfig, HttpHandler};
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
    // The examples' one logger, with the access lines when asked.
    common::init_logger(config.access_log);
    match args.protocol.as_str() {
        "http" => common::serve(serve, "http", Http::with_config(app, config)),
        "scgi" => common::serve(serve, "scgi", Scgi::with_config(app, config)),
        other => {
            eprintln!("error: unknown protocol {other:?}: choose http or scgi");
            ExitCode::from(2)
        }
    }
}
