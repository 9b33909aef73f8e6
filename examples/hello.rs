//! The throughput workload: `GET /` answers `Hello, world!`, on keep-alive connections;
//! `GET /bytes/N` answers N bytes (the UNP chapter 30 client's request); `POST /echo`
//! answers the body it got. `--protocol scgi` serves the same behind nginx.
//!
//! `GET /` is the peer kit's hello, as every peer there answers it: `200`, `text/plain`,
//! `Hello, world!`, with `Date` and `Content-Length` and no `Server` field — the fields
//! tokio+hyper sends, 115 bytes like its answer. So a comparison measures the servers,
//! not the size of their heads: wrk's cost per response grows with its length (the
//! library's default `Server: mixserve` and `charset` make 139 bytes, which cost ~1.5 %
//! of req/s in the pinned c=50 row, where wrk's core is the bottleneck).

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

/// What `GET /` answers.
const HELLO: &str = "Hello, world!";

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
    Response::bytes(200, "text/plain", HELLO)
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
    // tokio+hyper, the reference of the pinned rows, sends no `Server` field.
    config.server_name = None;
    protocol::serve_app(&cli.serve, &cli.protocol, hello, config)
}
