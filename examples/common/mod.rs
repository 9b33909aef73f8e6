//! What every example shares: the command line that picks a model, and the start-up.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use mixserve::{Forking, Iterative, MakeHandler, MixIn, Scheduled, Server, Threading};

/// Picks the concurrency model and the address.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model: iterative, threading, forking or scheduled.
    #[arg(long, default_value = "threading")]
    pub mixin: String,
    /// Where to listen (port 0 picks a free port; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: String,
    /// threading: at most this many connection threads; forking: children;
    /// scheduled: live connections.
    #[arg(long)]
    pub max_workers: Option<usize>,
}

/// The model named on the command line.
pub fn mixin(args: &ServeArgs) -> Result<Box<dyn MixIn>, String> {
    Ok(match args.mixin.as_str() {
        "iterative" => Box::new(Iterative::new()),
        "threading" => {
            let model = Threading::new();
            Box::new(match args.max_workers {
                Some(max) => model.max_threads(max),
                None => model,
            })
        }
        "forking" => {
            let model = Forking::new();
            Box::new(match args.max_workers {
                Some(max) => model.max_children(max),
                None => model,
            })
        }
        "scheduled" => {
            let model = Scheduled::new();
            Box::new(match args.max_workers {
                Some(max) => model.max_connections(max),
                None => model,
            })
        }
        other => {
            return Err(format!(
                "unknown mix-in {other:?}: choose iterative, threading, forking or scheduled"
            ));
        }
    })
}

/// Builds the server, prints `listening on SCHEME://ADDR` as the first line, and serves
/// until SIGTERM or SIGINT.
pub fn serve<H: MakeHandler>(args: &ServeArgs, scheme: &str, make_handler: H) -> ExitCode {
    let model = match mixin(args) {
        Ok(model) => model,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let name = model.name();
    let mut server = match Server::builder(model)
        .bind(args.addr.as_str())
        .build(make_handler)
    {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match server.listen_addr() {
        Ok(addr) => println!("listening on {scheme}://{addr}"),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    let _ = std::io::stdout().flush();
    eprintln!("serving with the {name} model; stop with Ctrl-C");
    match server.serve_forever() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
