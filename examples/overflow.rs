//! A handler that overflows its stack on `GET /deep`: shows the message the crate prints
//! when a coroutine (`--mixin scheduled`, or preforked with `--inner scheduled`) runs
//! out of stack. Build it without `--release`: the recursion keeps a 1 KiB array in
//! every frame. `GET /thread` overflows a plain thread instead, which std reports.
//!
//! ```text
//! cargo run --example overflow -- --mixin scheduled
//! curl localhost:8000/deep          # the server dies; stderr says why
//! ```

use std::hint::black_box;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use mixserve::http::{Http, Request, Response};
use mixserve::spec::ModelArgs;

#[derive(Debug, Parser)]
#[command(about = "A server whose /deep recurses until the stack runs out")]
struct Cli {
    #[command(flatten)]
    model: ModelArgs,
    /// Where to listen (port 0 picks a free port; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
}

/// Recurses `depth` frames deep, each holding 1 KiB.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth as u8; 1024]);
    if depth == 0 {
        return 0;
    }
    recurse(depth - 1) + u64::from(frame[7])
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
    let app = |req: &mut Request| match req.path() {
        "/deep" => Response::text(200, format!("{}\n", recurse(black_box(1_000_000)))),
        "/thread" => {
            let thread = std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(|| recurse(black_box(1_000_000)));
            match thread.map(|t| t.join()) {
                Ok(Ok(sum)) => Response::text(200, format!("{sum}\n")),
                _ => Response::text(500, "the thread failed\n"),
            }
        }
        _ => Response::text(200, "try /deep\n"),
    };
    let mut server = match model.server(&cli.addr).build(Http::new(app)) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match server.listen_addr() {
        Ok(addr) => println!("listening on http://{addr}"),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    let _ = std::io::stdout().flush();
    match server.serve_forever() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
