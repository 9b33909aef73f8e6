//! A job queue on `Channel`: producers post jobs, workers long-poll for them; the same
//! code under every model.
//!
//! ```text
//! cargo run --example jobs -- --mixin forking
//! curl -d 'task=resize&arg=cat.jpg&arg=200' localhost:8000/jobs   # queued
//! curl localhost:8000/work              # resize cat.jpg 200 (waits up to 20 s for one)
//! curl localhost:8000/                  # jobs still queued
//! ```
//!
//! Each job goes to exactly one worker, oldest first. The queue is created in `main`,
//! before the server starts, so every worker process of `forking`/`preforked` shares it
//! (a `static` queue would be one per process). A poller waits at most `--poll-secs`:
//! a client that left frees its worker by then. A job handed to a poller that left is
//! lost with its answer, so make jobs safe to post again.

#[path = "common/seconds.rs"]
mod seconds;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mixserve::http::{Http, Request, Response};
use mixserve::spec::ModelArgs;
use mixserve::sync::{Channel, WaitError};

/// A job: the task and its arguments. Composite types cross the hub field by field.
type Job = (String, Vec<String>);

#[derive(Debug, Parser)]
#[command(about = "A job queue: POST /jobs (task, arg...), GET /work, GET /")]
struct Cli {
    #[command(flatten)]
    model: ModelArgs,
    /// Where to listen (port 0 picks a free port; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// How long one /work waits for a job before answering 204, in seconds above 0.
    #[arg(long = "poll-secs", value_name = "SECS", default_value = "20")]
    #[arg(value_parser = seconds::positive_seconds)]
    poll: Duration,
}

fn jobs(queue: &Channel<Job>, poll: Duration, req: &mut Request) -> Response {
    match (req.method(), req.path()) {
        ("POST", "/jobs") => {
            let form = req.form().unwrap_or_default();
            let Some(task) = form.get("task").filter(|t| !t.is_empty()) else {
                return Response::text(400, "which task? send task=...\n");
            };
            let args = form.get_all("arg").map(str::to_owned).collect();
            match queue.send((task.to_owned(), args)) {
                Ok(()) => Response::text(202, "queued\n"),
                Err(error) => Response::text(503, format!("{error}\n")),
            }
        }
        ("GET", "/work") => match queue.recv_timeout(poll) {
            Ok((task, args)) => Response::text(200, format!("{task} {}\n", args.join(" "))),
            Err(WaitError::TimedOut) => Response::status(204),
            Err(error) => {
                Response::text(503, format!("{error}\n")).with_header("Connection", "close")
            }
        },
        ("GET", "/") => Response::text(200, format!("{}\n", queue.len())),
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
    let queue: Channel<Job> = Channel::new(); // before the server starts
    let poll = cli.poll;
    let app = Http::new(move |req: &mut Request| jobs(&queue, poll, req));
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
