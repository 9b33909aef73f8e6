//! The seed's comet test as a benchmark (issue 3, item 7): N clients connect and send
//! `GET /wait`, a poller waits until `GET /` says N, one `GET /notify`, and every waiter
//! must get N back. `scheduled` and `threading` side by side in one run: wall time,
//! server user and sys CPU (children included), their ratio, and peak RSS.
//!
//! ```text
//! cargo bench --bench comet                 # N = 10,000 for both models
//! cargo bench --bench comet -- --quick      # N = 1,000
//! cargo bench --bench comet -- --n 5000 --models scheduled
//! cargo bench --bench comet -- --redis      # also: 5,000 waiters on each of two servers
//!                                           # sharing one Redis, one notify
//! cargo bench --bench comet -- --c100k      # only the c100k round: 100,000 waiters on
//!                                           # preforked × scheduled (see README)
//! ```
//! Output: a Markdown table on stdout; `comet.csv` and `comet_*.svg` under
//! `target/mixserve-bench/`.

#[allow(dead_code)]
mod support;

#[path = "support/redis.rs"]
mod cross_server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use support::{c100k, machine, model, runs};

/// Command line of `cargo bench --bench comet -- …`.
#[derive(Debug, Parser)]
#[command(about = "Comet c10k: scheduled vs threading")]
struct Args {
    /// Waiters per model.
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// 1,000 waiters instead of the default.
    #[arg(long)]
    quick: bool,
    /// Comma-separated model names (substrings) to run.
    #[arg(long, default_value = "scheduled,threading")]
    models: String,
    /// Also run the round across two servers sharing one Redis (`redis-server` needed):
    /// half the waiters on each of the first two `--redis-models`.
    #[arg(long)]
    redis: bool,
    /// The two servers of the `--redis` round.
    #[arg(long, default_value = "scheduled,preforked-2x-scheduled")]
    redis_models: String,
    /// Run only the c100k round: `--c100k-waiters` waiters held by `preforked
    /// --inner scheduled --accept reuseport`, one notify (see the README's needs).
    #[arg(long)]
    c100k: bool,
    /// Waiters of the c100k round.
    #[arg(long, default_value_t = 100_000)]
    c100k_waiters: usize,
    /// Worker processes of the c100k round: each holds at most 10,000 connections
    /// (the examples' cap for `--inner scheduled`, well under a 20,000 fd limit).
    #[arg(long, default_value_t = 12)]
    c100k_workers: usize,
    /// Client processes of the c100k round (each stays under its fd limit).
    #[arg(long, default_value_t = 6)]
    c100k_clients: usize,
    /// Loopback source addresses of the c100k round (127.0.0.2 on), ~28k ports each.
    #[arg(long, default_value_t = 5)]
    c100k_sources: usize,
    /// Internal: run as one c100k client process.
    #[arg(long, hide = true)]
    c100k_client: bool,
    /// Internal (client process): the server's address.
    #[arg(long, hide = true, default_value = "")]
    c100k_target: String,
    /// Internal (client process): comma-separated source addresses.
    #[arg(long, hide = true, default_value = "")]
    c100k_sources_list: String,
    /// Internal (client process): its waiters.
    #[arg(long, hide = true, default_value_t = 0)]
    c100k_count: usize,
    /// Internal (client process): how long it may run.
    #[arg(long, hide = true, default_value_t = 600)]
    c100k_seconds: u64,
    /// Use the example binaries in this directory instead of building them.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Filters passed by `cargo bench NAME`; ignored.
    #[arg(hide = true)]
    filter: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.c100k_client {
        machine::raise_nofile_limit();
        let sources = &args.c100k_sources_list;
        return match c100k::client(
            &args.c100k_target,
            sources,
            args.c100k_count,
            args.c100k_seconds,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("c100k client: {e}");
                ExitCode::FAILURE
            }
        };
    }
    machine::kill_servers_on_interrupt();
    let nofile = machine::raise_nofile_limit();
    println!("{}", machine::describe());
    let n = if args.quick {
        args.n.min(1_000)
    } else {
        args.n
    };
    if n + 64 > nofile as usize {
        eprintln!("warning: {n} waiters need more open files than the limit {nofile}");
    }
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => {
            if let Err(e) = machine::build_examples() {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            machine::default_bin_dir()
        }
    };
    if args.c100k {
        let plan = c100k::Plan {
            waiters: args.c100k_waiters,
            workers: args.c100k_workers,
            clients: args.c100k_clients,
            sources: args.c100k_sources,
            limit: Duration::from_secs(300 + args.c100k_waiters as u64 / 500),
        };
        println!("{}", c100k::round(&bin_dir, &plan).markdown());
        return ExitCode::SUCCESS;
    }
    let names: Vec<&str> = args.models.split(',').map(str::trim).collect();
    let models: Vec<(model::Model, usize)> = model::comet()
        .into_iter()
        .filter(|(m, _)| names.contains(&m.name))
        .map(|(m, _)| (m, n))
        .collect();
    let bar = runs::progress(models.len());
    let per_run = Duration::from_secs(60 + n as u64 / 100);
    let (table, _) = runs::comet_section(&bin_dir, &models, per_run, &bar);
    bar.finish_and_clear();
    println!("{}", table.markdown());
    let out = machine::output_dir();
    if let Err(e) =
        std::fs::create_dir_all(&out).and_then(|()| table.write_csv(&out.join("comet.csv")))
    {
        eprintln!("writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    for svg in runs::comet_charts(&out, &table) {
        println!("chart: {}", svg.display());
    }
    println!("csv: {}", out.join("comet.csv").display());
    if args.redis {
        let pair: Vec<model::Model> = args
            .redis_models
            .split(',')
            .filter_map(|name| {
                model::comet()
                    .into_iter()
                    .find(|(m, _)| m.name == name.trim())
            })
            .map(|(m, _)| m)
            .collect();
        let [a, b] = pair.as_slice() else {
            eprintln!("--redis-models: name two comet models");
            return ExitCode::FAILURE;
        };
        let cross = cross_server::cross_server_section(&bin_dir, a, b, n / 2, per_run);
        println!("{}", cross.markdown());
        if let Err(e) = cross.write_csv(&out.join("comet_redis.csv")) {
            eprintln!("writing comet_redis.csv: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
