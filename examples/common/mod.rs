//! What every example shares: the command line that picks a model, and the start-up.

pub mod seconds;
mod user_model;

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use mixserve::MakeHandler;
use mixserve::spec::{ExtraModels, ModelArgs};

/// Picks the concurrency model (`mixserve::spec::ModelArgs`: `--mixin`, `--workers`,
/// `--accept`, `--inner`, ...), the address and the server's options.
#[derive(Debug, Args)]
#[command(mut_arg("inner", |arg| arg.help(INNER_HELP)))]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Where to listen (port 0 picks a free port; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: String,
    /// preforked, prethreaded: print the per-worker table when the server stops.
    #[arg(long)]
    pub stats: bool,
    /// How long a graceful stop waits for in-flight connections, waiters' `503`s among
    /// them, in seconds above 0 (default 10; SIGQUIT stops without waiting).
    #[arg(long, value_name = "SECS", value_parser = seconds::positive_seconds)]
    pub shutdown_timeout: Option<std::time::Duration>,
}

/// `--inner`'s help, with the examples' own model named.
const INNER_HELP: &str = "preforked: the model each worker runs — iterative (the default), threading, \
     scheduled (up to 10 000 connections each), prethreaded, or user (a model written outside \
     the crate, see examples/common/user_model.rs)";

/// The examples' own models, beside the crate's: `user` (see `user_model.rs`), a
/// model written outside the crate, as `--mixin user` or `--inner user`.
pub fn extra_models() -> ExtraModels {
    ExtraModels::new().with("user", user_model::UserThreads::default)
}

/// What the examples print about stopping (every model's signal table says the same).
pub const STOP_BANNER: &str =
    "Ctrl-C or SIGTERM stops gracefully (waiters get 503), a second Ctrl-C or SIGQUIT at once";

/// Installs the examples' one logger on stderr: `RUST_LOG` honoured, warnings (the
/// pool's supervision: worker exits, back-offs, refusals) on by default; with
/// `access_log`, the `mixserve::access` lines too, printed bare. The first call wins.
pub fn init_logger(access_log: bool) {
    let env = env_logger::Env::default().default_filter_or("warn");
    let mut builder = env_logger::Builder::from_env(env);
    if access_log {
        builder.filter_module("mixserve::access", log::LevelFilter::Info);
    }
    builder.format(|out, record| {
        if record.target() == "mixserve::access" {
            writeln!(out, "{}", record.args())
        } else {
            let pid = std::process::id();
            let (level, target) = (record.level(), record.target());
            writeln!(out, "[{level} {target} {pid}] {}", record.args())
        }
    });
    let _ = builder.try_init();
}

/// Builds the server, prints `listening on SCHEME://ADDR` as the first line, and serves
/// until SIGTERM or SIGINT (see [`STOP_BANNER`]); with `--stats`, prints the per-worker table afterwards.
pub fn serve<H: MakeHandler>(args: &ServeArgs, scheme: &str, make_handler: H) -> ExitCode {
    init_logger(false);
    let mut model = match args.model.build_with(&extra_models()) {
        Ok(model) => model,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let stats = model.stats.take();
    let name = model.mixin.name();
    // With `--accept reuseport` the listener is bound with SO_REUSEPORT.
    let mut builder = model.server(&args.addr);
    if let Some(timeout) = args.shutdown_timeout {
        builder = builder.shutdown_timeout(timeout);
    }
    let mut server = match builder.build(make_handler) {
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
    eprintln!("serving with the {name} model; {STOP_BANNER}");
    let result = server.serve_forever();
    if let (true, Some(stats)) = (args.stats, stats) {
        print!("{}", stats.table());
        let _ = std::io::stdout().flush();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
