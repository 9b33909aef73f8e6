//! The comet long-poll server: `GET /wait` blocks until someone calls `GET /notify`.
//!
//! ```text
//! cargo run --release --example comet -- --mixin threading
//! curl localhost:8000/wait &        # blocks
//! curl localhost:8000/              # 1 (waiting now)
//! curl localhost:8000/notify        # 1 (released); the waiter prints 1 too
//! ```
//!
//! With `--redis redis://127.0.0.1:6379` the broadcast lives on Redis instead, so a
//! `/notify` on any server started that way releases the waiters of all of them.
//!
//! The handler is plain blocking code and the same under every model; the
//! `Broadcast` it waits on is created before the server starts, so under process-based
//! models it lives in the master and every worker reaches it through the hub.

mod common;

use clap::Parser;
use mixserve::http::{Http, Request, Response};
use mixserve::sync::{Broadcast, WaitError};

#[derive(Debug, Parser)]
#[command(about = "Comet long-poll server: /wait blocks until /notify")]
struct Cli {
    #[command(flatten)]
    serve: common::ServeArgs,
    /// Share the broadcast with every server on this Redis (e.g. redis://127.0.0.1:6379).
    #[arg(long)]
    redis: Option<String>,
}

/// The seed's comet contract.
fn comet(news: &Broadcast<usize>, req: &Request) -> Response {
    let response = answer(news, req);
    if response.status_code() == 503 {
        // Give the worker back at once: a refused waiter has nothing more to ask.
        return response.with_header("Connection", "close");
    }
    response
}

fn answer(news: &Broadcast<usize>, req: &Request) -> Response {
    match req.path() {
        "/wait" => match news.wait() {
            Ok(released) => Response::text(200, released.to_string()),
            Err(WaitError::NoOtherWorker) => Response::text(
                503,
                "this model serves one connection at a time, so no /notify could ever come\n",
            ),
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
    let app = move |req: &mut Request| comet(&news, req);
    common::serve(&cli.serve, "http", Http::new(app))
}
