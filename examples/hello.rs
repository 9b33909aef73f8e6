//! The throughput workload: `GET /` answers `hello`, on keep-alive connections;
//! `GET /bytes/N` answers N bytes (the UNP chapter 30 client's request); `POST /echo`
//! answers the body it got. `--protocol scgi` serves the same behind nginx.

mod common;
#[path = "common/protocol.rs"]
mod protocol;

use clap::Parser;
use mixserve::http::{HttpConfig, Request, Response};

#[derive(Debug, Parser)]
#[command(about = "Hello server: / answers hello, /bytes/N answers N bytes, POST /echo the body")]
struct Cli {
    #[command(flatten)]
    protocol: protocol::ProtocolArgs,
    #[command(flatten)]
    serve: common::ServeArgs,
}

/// Largest `/bytes/N` answered.
const MAX_BYTES: usize = 64 * 1024 * 1024;

fn hello(req: &mut Request) -> Response {
    if req.path() == "/echo" && req.method() == "POST" {
        return Response::bytes(200, "application/octet-stream", req.take_body());
    }
    if let Some(count) = req.path().strip_prefix("/bytes/") {
        return match count.parse::<usize>() {
            Ok(n) if n <= MAX_BYTES => {
                Response::bytes(200, "application/octet-stream", vec![b'x'; n])
            }
            _ => Response::text(400, format!("/bytes/N takes N from 0 to {MAX_BYTES}\n")),
        };
    }
    Response::text(200, "hello")
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The servers this workload is compared with keep a keep-alive connection open for
    // as long as the client does (hyper has no limit; the peer kit sets nginx's
    // `keepalive_requests` to 10 million): so does this one, unless
    // `--max-requests-per-connection` says otherwise. With the library's default of
    // 1000, wrk at c=50 reconnects about 230 times a second, which costs ~2 % of req/s.
    let mut config = HttpConfig::default();
    config.max_requests_per_connection = usize::MAX;
    protocol::serve_app(&cli.serve, &cli.protocol, hello, config)
}
