//! The comet long-poll server: `GET /wait` blocks until someone calls `GET /notify`.
//!
//! ```text
//! cargo run --release --example comet -- --mixin threading
//! curl localhost:8000/wait &        # blocks
//! curl localhost:8000/              # 1 (waiting now)
//! curl localhost:8000/notify        # 1 (released); the waiter prints 1 too
//! ```
//!
//! A waiter whose client hangs up is released at once (the HTTP adapter watches the
//! connection) and answered by closing. `--wait-limit SECS` bounds a wait: at the limit
//! the waiter gets `204 No Content` and polls again.
//!
//! With `--redis redis://127.0.0.1:6379` the broadcast lives on Redis instead, so a
//! `/notify` on any server started that way releases the waiters of all of them.
//!
//! The handler is plain blocking code and the same under every model; the
//! `Broadcast` it waits on is created before the server starts, so under process-based
//! models it lives in the master and every worker reaches it through the hub.

mod common;
#[path = "common/protocol.rs"]
mod protocol;

use clap::Parser;
use std::time::Duration;

use mixserve::http::{HttpConfig, Request, Response};
use mixserve::sync::{Broadcast, WaitError};

#[derive(Debug, Parser)]
#[command(about = "Comet long-poll server: /wait blocks until /notify")]
struct Cli {
    #[command(flatten)]
    protocol: protocol::ProtocolArgs,
    #[command(flatten)]
    serve: common::ServeArgs,
    /// Longest a `/wait` may last, in seconds above 0 (answered `204 No Content`); no
    /// limit when absent.
    #[arg(long, value_name = "SECS", value_parser = common::seconds::positive_seconds)]
    wait_limit: Option<Duration>,
    /// Time allowed for a whole request body, in seconds (`HttpConfig::body_deadline`).
    #[arg(long, value_name = "SECS", value_parser = common::seconds::seconds)]
    body_deadline: Option<Duration>,
    /// Share the broadcast with every server on this Redis (e.g. redis://127.0.0.1:6379).
    #[arg(long)]
    redis: Option<String>,
}

/// The seed's comet contract.
fn comet(news: &Broadcast<usize>, limit: Option<Duration>, req: &Request) -> Response {
    let response = answer(news, limit, req);
    if response.status_code() == 503 {
        // Give the worker back at once: a refused waiter has nothing more to ask.
        return response.with_header("Connection", "close");
    }
    response
}

fn answer(news: &Broadcast<usize>, limit: Option<Duration>, req: &Request) -> Response {
    match req.path() {
        "/wait" => match limit.map_or_else(|| news.wait(), |limit| news.wait_timeout(limit)) {
            Ok(released) => Response::text(200, released.to_string()),
            Err(WaitError::TimedOut) => Response::status(204),
            // The client hung up: the adapter closes the connection without writing this.
            Err(WaitError::ClientGone) => Response::status(499),
            // Names the model and its limit: "the iterative model serves one connection
            // at a time, ...", "the preforked model lets at most 3 handlers wait ...".
            Err(error @ WaitError::NoOtherWorker { .. }) => {
                Response::text(503, format!("{error}\n"))
            }
            Err(WaitError::Closed) => Response::text(503, "server shutting down\n"),
            Err(error) => Response::text(500, format!("{error}\n")),
        },
        "/notify" => match news.send_count() {
            Ok(released) => Response::text(200, released.to_string()),
            Err(error) => Response::text(503, format!("{error}\n")),
        },
        _ => Response::text(200, news.waiting().to_string()),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let news = match &cli.redis {
        None => Broadcast::new(),
        Some(url) => match mixserve::sync::Redis::connect(url) {
            Ok(redis) => redis.broadcast("comet"),
            Err(error) => {
                eprintln!("comet: {error}");
                return std::process::ExitCode::from(2);
            }
        },
    };
    // Its waiters show in `--status-path` (read through the hub in forked workers).
    mixserve::status::watch_broadcast("news", &news);
    let mut config = HttpConfig::default();
    if let Some(deadline) = cli.body_deadline {
        config.body_deadline = deadline;
    }
    let limit = cli.wait_limit;
    let app = move |req: &mut Request| comet(&news, limit, req);
    protocol::serve_app(&cli.serve, &cli.protocol, app, config)
}
