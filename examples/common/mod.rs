//! What every example shares: the command line that picks a model, and the start-up.

mod user_model;

use std::io::Write;
use std::net::ToSocketAddrs;
use std::process::ExitCode;

use clap::Args;
use mixserve::mixin::{Accept, Dispatch, LockKind, PoolAccept, PoolStats};
use mixserve::{
    Forking, Iterative, Listener, MakeHandler, MixIn, Preforked, Prethreaded, Scheduled, Server,
    ServerBuilder, Threading,
};

/// Picks the concurrency model and the address.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model: iterative, threading, forking, scheduled, preforked or prethreaded.
    #[arg(long, default_value = "threading")]
    pub mixin: String,
    /// Where to listen (port 0 picks a free port; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: String,
    /// threading: at most this many connection threads; forking: children;
    /// scheduled: live connections; preforked: the pool's growth limit (workers);
    /// prethreaded: the pool's growth limit (threads).
    #[arg(long)]
    pub max_workers: Option<usize>,
    /// preforked: worker processes to start.
    #[arg(long, default_value_t = Preforked::DEFAULT_WORKERS)]
    pub workers: usize,
    /// preforked: shared, locked, locked-mutex, reuseport, passed, passed-round-robin
    /// or passed-least-busy; prethreaded: locked or handoff.
    #[arg(long)]
    pub accept: Option<String>,
    /// preforked: the model each worker runs — iterative, threading, scheduled,
    /// prethreaded (with --threads and, for its hand-over, --inner-accept), or user
    /// (a model written outside the crate, see `examples/common/user_model.rs`).
    #[arg(long, default_value = "iterative")]
    pub inner: String,
    /// preforked with --inner prethreaded: locked or handoff.
    #[arg(long)]
    pub inner_accept: Option<String>,
    /// prethreaded: threads to start (the pool grows up to --max-workers).
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
    /// preforked, prethreaded: print the per-worker table when the server stops.
    #[arg(long)]
    pub stats: bool,
    /// preforked: kill a worker whose heartbeat is silent this many seconds.
    #[arg(long)]
    pub heartbeat_timeout: Option<u64>,
    /// preforked: retire a worker after this many connections (plus up to 10% jitter).
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// How long a graceful stop waits for in-flight connections, in seconds (default 10).
    #[arg(long)]
    pub shutdown_timeout: Option<u64>,
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

/// Live connections per worker under `--inner scheduled`.
const INNER_SCHEDULED_CONNECTIONS: usize = 10_000;

/// The model named on the command line, with its statistics handle if it has one.
pub fn mixin(args: &ServeArgs) -> Result<(Box<dyn MixIn>, Option<PoolStats>), String> {
    if args.mixin != "preforked" {
        return model(&args.mixin, args.accept.as_deref(), args.max_workers, args);
    }
    let (inner, _) = model(&args.inner, args.inner_accept.as_deref(), None, args)
        .map_err(|e| format!("--inner: {e}"))?;
    let inner = match (args.inner.as_str(), inner) {
        // Coroutines per worker: many, so one worker holds thousands of waiters.
        ("scheduled", _) => Box::new(Scheduled::new().max_connections(INNER_SCHEDULED_CONNECTIONS)),
        (_, inner) => inner,
    };
    let model = Preforked::new()
        .accept(preforked_accept(args.accept.as_deref())?)
        .workers(args.workers)
        .max_workers(args.max_workers.unwrap_or(Preforked::DEFAULT_MAX_WORKERS))
        .inner(inner);
    let model = match args.heartbeat_timeout {
        Some(secs) => model.heartbeat_timeout(std::time::Duration::from_secs(secs)),
        None => model,
    };
    let model = match args.max_requests {
        Some(max) => model.max_requests(max, max / 10),
        None => model,
    };
    let stats = model.stats();
    Ok((Box::new(model), Some(stats)))
}

/// One model by name (`max` is `--max-workers` for a top-level model).
fn model(
    name: &str,
    accept: Option<&str>,
    max: Option<usize>,
    args: &ServeArgs,
) -> Result<(Box<dyn MixIn>, Option<PoolStats>), String> {
    let model: Box<dyn MixIn> = match name {
        "iterative" => Box::new(Iterative::new()),
        "user" => Box::new(user_model::UserThreads::default()),
        "threading" => {
            let model = Threading::new();
            Box::new(match max {
                Some(max) => model.max_threads(max),
                None => model,
            })
        }
        "forking" => {
            let model = Forking::new();
            Box::new(match max {
                Some(max) => model.max_children(max),
                None => model,
            })
        }
        "scheduled" => {
            let model = Scheduled::new();
            Box::new(match max {
                Some(max) => model.max_connections(max),
                None => model,
            })
        }
        "prethreaded" => {
            let accept = match accept.unwrap_or("locked") {
                "locked" => PoolAccept::Locked,
                "handoff" => PoolAccept::Handoff,
                other => return Err(format!("prethreaded: unknown --accept {other:?}")),
            };
            let model = Prethreaded::new()
                .threads(args.threads)
                .accept(accept)
                .max_threads(max.unwrap_or(Prethreaded::DEFAULT_MAX_THREADS));
            let stats = model.stats();
            return Ok((Box::new(model), Some(stats)));
        }
        other => {
            return Err(format!(
                "unknown mix-in {other:?}: choose iterative, threading, forking, scheduled, \
                 preforked, prethreaded or user"
            ));
        }
    };
    Ok((model, None))
}

fn preforked_accept(name: Option<&str>) -> Result<Accept, String> {
    Ok(match name.unwrap_or("shared") {
        "shared" => Accept::Shared,
        "locked" => Accept::Locked(LockKind::File),
        "locked-mutex" => Accept::Locked(LockKind::SharedMutex),
        "reuseport" => Accept::ReusePort,
        "passed" => Accept::Passed(Dispatch::FirstReady),
        "passed-round-robin" => Accept::Passed(Dispatch::RoundRobin),
        "passed-least-busy" => Accept::Passed(Dispatch::LeastBusy),
        other => return Err(format!("preforked: unknown --accept {other:?}")),
    })
}

/// Binds where `--addr` says; `SO_REUSEPORT` when every worker will bind its own.
fn bind(args: &ServeArgs, builder: ServerBuilder<Box<dyn MixIn>>) -> ServerBuilder<Box<dyn MixIn>> {
    if args.accept.as_deref() != Some("reuseport") {
        return builder.bind(args.addr.as_str());
    }
    let listener = args
        .addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .and_then(|addr| {
            Listener::bind_tcp_reuseport(addr, ServerBuilder::<Box<dyn MixIn>>::DEFAULT_BACKLOG)
                .ok()
        });
    match listener {
        Some(listener) => builder.listener(listener),
        None => builder.bind(args.addr.as_str()),
    }
}

/// Builds the server, prints `listening on SCHEME://ADDR` as the first line, and serves
/// until SIGTERM or SIGINT (see [`STOP_BANNER`]); with `--stats`, prints the per-worker table afterwards.
pub fn serve<H: MakeHandler>(args: &ServeArgs, scheme: &str, make_handler: H) -> ExitCode {
    init_logger(false);
    let (model, stats) = match mixin(args) {
        Ok(model) => model,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let name = model.name();
    let mut builder = bind(args, Server::builder(model));
    if let Some(secs) = args.shutdown_timeout {
        builder = builder.shutdown_timeout(std::time::Duration::from_secs(secs));
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
