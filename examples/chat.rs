//! A long-poll chat room on `Broadcast`: the same code under every model.
//!
//! ```text
//! cargo run --example chat -- --mixin preforked --inner scheduled
//! curl localhost:8000/listen                           # waits for the next line (25 s)
//! curl -d 'who=ann&text=hello' localhost:8000/say      # 1: one listener got it
//! ```
//!
//! The room is created in `main`, before the server starts, so under `forking` and
//! `preforked` it lives in the master and every worker process reaches the same room.
//! A listener waits at most `--poll-secs` and then gets `204`, so a client that left
//! frees its worker within that time; a live client simply asks again.

#[path = "common/seconds.rs"]
mod seconds;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mixserve::http::{Http, Request, Response};
use mixserve::spec::ModelArgs;
use mixserve::sync::{Broadcast, WaitError};

/// One line said in the room: (who, text). Tuples of strings cross the hub as they are.
type Line = (String, String);

#[derive(Debug, Parser)]
#[command(about = "A long-poll chat room: GET /listen, POST /say (who, text), GET /")]
struct Cli {
    #[command(flatten)]
    model: ModelArgs,
    /// Where to listen (port 0 picks a free port; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// How long one /listen waits before answering 204, in seconds above 0 (the client
    /// then asks again).
    #[arg(long = "poll-secs", value_name = "SECS", default_value = "25")]
    #[arg(value_parser = seconds::positive_seconds)]
    poll: Duration,
}

fn chat(room: &Broadcast<Line>, poll: Duration, req: &mut Request) -> Response {
    match (req.method(), req.path()) {
        ("GET", "/listen") => match room.wait_timeout(poll) {
            Ok((who, text)) => Response::text(200, format!("{who}: {text}\n")),
            Err(WaitError::TimedOut) => Response::status(204),
            // Shutting down, or no worker left for a sender: close, free the worker.
            Err(error) => {
                Response::text(503, format!("{error}\n")).with_header("Connection", "close")
            }
        },
        ("POST", "/say") => {
            let form = req.form().unwrap_or_default();
            let Some(text) = form.get("text").filter(|t| !t.is_empty()) else {
                return Response::text(400, "say what? send text=...\n");
            };
            let who = form.get("who").unwrap_or("someone").to_owned();
            match room.send((who, text.to_owned())) {
                Ok(heard) => Response::text(200, format!("{heard}\n")),
                Err(error) => Response::text(503, format!("{error}\n")),
            }
        }
        ("GET", "/") => Response::text(200, format!("{}\n", room.waiting())),
        _ => Response::status(404),
    }
}

fn main() -> ExitCode {
    // Warnings (the pool's supervision) on by default; RUST_LOG for more.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let model = match cli.model.build() {
        Ok(model) => model,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let room: Broadcast<Line> = Broadcast::new(); // before the server starts
    let poll = cli.poll;
    let app = Http::new(move |req: &mut Request| chat(&room, poll, req));
    let mut server = match model.server(&cli.addr).build(app) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Ok(addr) = server.listen_addr() {
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    }
    match server.serve_forever() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
