//! A small server for the hub's own tests, and a stranger that knocks on its hub.
//!
//! ```text
//! cargo run --example hub_probe -- --mixin forking        # serve
//! cargo run --example hub_probe -- --probe mixserve-hub-PID-0   # knock
//! ```
//!
//! Routes: `/recv` waits for a job; `/send?JOB` queues one; `/len` counts them;
//! `/big?BYTES` tries to queue a job of that size; `/late` makes a `Broadcast` inside the
//! handler (too late to share); `/nap?MS` queues the job `napping`, then sleeps in
//! `poll(2)` (which no `SA_RESTART` restarts) and answers `slept`, or `interrupted` if
//! a signal reached the handler; `/spin` never returns (a stuck handler). Every error answers with its message. With
//! `--own-child` it starts a process of its own first and says, at the end, whether
//! the server left that child's exit status alone.

mod common;

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mixserve::http::{Http, Request, Response};
use mixserve::sync::{Broadcast, Channel, SendError};

#[derive(Debug, Parser)]
#[command(about = "Hub test server, or a stranger knocking on a hub")]
struct Cli {
    #[command(flatten)]
    serve: common::ServeArgs,
    /// Instead of serving: connect to this abstract hub socket, ask one question and
    /// print `answered`, `refused` or `unreachable`.
    #[arg(long)]
    probe: Option<String>,
    /// Start a child process of the program's own (`true`) before serving, and print
    /// whether its exit status was still there to collect afterwards.
    #[arg(long)]
    own_child: bool,
}

fn answer(jobs: &Channel<String>, req: &Request) -> Response {
    let query = req.query().unwrap_or("").to_string();
    match req.path() {
        "/recv" => match jobs.recv() {
            Ok(job) => Response::text(200, job),
            Err(error) => Response::text(503, format!("{error}\n")),
        },
        "/send" => match jobs.send(query) {
            Ok(()) => Response::text(200, "queued\n"),
            Err(error) => Response::text(503, format!("{error}\n")),
        },
        "/big" => match jobs.send("x".repeat(query.parse().unwrap_or(0))) {
            Ok(()) => Response::text(200, "queued\n"),
            Err(error @ SendError::TooLarge { .. }) => Response::text(413, format!("{error}\n")),
            Err(error) => Response::text(503, format!("{error}\n")),
        },
        "/len" => Response::text(200, jobs.len().to_string()),
        "/nap" => {
            if let Err(error) = jobs.send("napping".into()) {
                return Response::text(503, format!("{error}\n"));
            }
            let millis: u16 = query.parse().unwrap_or(0);
            match nix::poll::poll(&mut [], nix::poll::PollTimeout::from(millis)) {
                Err(nix::errno::Errno::EINTR) => Response::text(200, "interrupted"),
                _ => Response::text(200, "slept"),
            }
        }
        "/late" => {
            let late: Broadcast<u64> = Broadcast::new();
            match late.wait_timeout(Duration::from_millis(1)) {
                Err(error) => Response::text(500, format!("{error}\n")),
                Ok(_) => Response::text(200, "no error\n"),
            }
        }
        // A handler stuck for good: its worker's heartbeat stops (supervision tests).
        "/spin" => loop {
            std::hint::spin_loop();
        },
        _ => Response::text(404, "no such route\n"),
    }
}

/// Asks the hub `name` how many wait on object 0, as a stranger would: `answered`,
/// `refused` (connected, then closed unanswered) or `unreachable`.
fn probe(name: &str) -> std::io::Result<&'static str> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let Ok(mut stream) = UnixStream::connect_addr(&addr) else {
        return Ok("unreachable");
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // len, op BROADCAST_WAITING, object, call id, no timeout.
    let mut frame = 25u32.to_le_bytes().to_vec();
    frame.push(3);
    frame.extend_from_slice(&0u64.to_le_bytes());
    frame.extend_from_slice(&1u64.to_le_bytes());
    frame.extend_from_slice(&u64::MAX.to_le_bytes());
    let _ = stream.write_all(&frame);
    let mut head = [0u8; 5];
    Ok(match stream.read_exact(&mut head) {
        Ok(()) => "answered",
        Err(_) => "refused",
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(name) = &cli.probe {
        return match probe(name) {
            Ok(verdict) => {
                println!("{verdict}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("probe failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut own_child = if cli.own_child {
        match std::process::Command::new("true").spawn() {
            Ok(child) => Some(child),
            Err(e) => {
                eprintln!("error: cannot start `true`: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let jobs: Channel<String> = Channel::new();
    let app = move |req: &mut Request| answer(&jobs, req);
    let code = common::serve(&cli.serve, "http", Http::new(app));
    if let Some(child) = own_child.as_mut() {
        match child.wait() {
            Ok(status) => println!("own child: {status}"),
            Err(e) => println!("own child: reaped by someone else ({e})"),
        }
    }
    code
}
