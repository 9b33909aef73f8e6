//! The model-comparison benchmark (issues 5 and 15, DESIGN §9): every concurrency model's
//! example server started as its own process and measured side by side in one run.
//!
//! - **fig30** — process-control cost after UNP Fig. 30.1: C clients × M sequential
//!   connections × B bytes (`GET /bytes/B` on `hello`) against every model, in interleaved
//!   rounds (A B C … A B C …); server CPU over each load window only, read from `/proc`, as
//!   µs per connection with median and spread, Δ over the iterative baseline, and which
//!   differences are within noise. The same servers give UNP Fig. 30.2: connections served
//!   by each worker of the fixed pools of 15, with their coefficient of variation.
//! - **herd** — the csdesign thundering-herd table: 10 children of a benchmark-only server
//!   waiting on one listener with poll + non-blocking accept, blocking accept,
//!   EPOLLEXCLUSIVE, or an fcntl lock; wake-ups, wasted wake-ups, CPU per connection.
//! - **comet** — N waiters and one notify per model that can hold them.
//! - **keepalive** — `GET /` on `hello` at 50 and 1,000 keep-alive connections: req/s,
//!   p50/p99 (closed loop: the throughput), with our mio load generator and with `wrk`
//!   when it is on `PATH`; then open-loop latency at fractions of each model's req/s
//!   (constant rate, latency from the intended send time: no coordinated omission).
//!
//! ```text
//! cargo bench --bench models                     # full run, about 15 min on 2 cores
//! cargo bench --bench models -- --quick          # about 3 minutes
//! cargo bench --bench models -- --only fig30 --models iterative,forking,preforked
//! cargo bench --bench models -- --only fig30 --against earlier/process_control_rounds.csv
//! ```
//! Models the examples do not offer yet show as `n/a`. Output: Markdown on stdout, and
//! `results.md`, one CSV and one or more SVG charts per measurement under
//! `target/mixserve-bench/` (`process_control_rounds.csv` holds every round of Fig. 30.1).

#[allow(dead_code)]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use support::fig30_report;
use support::herd::{self, HerdLoad};
use support::herd_server;
use support::process_control::{self, Load};
use support::report::Table;
use support::throughput::{self, Timing};
use support::{machine, model, runs};

/// Command line of `cargo bench --bench models -- …`.
#[derive(Debug, Parser)]
#[command(about = "Compare mixserve's concurrency models side by side")]
struct Args {
    /// Short run (about a minute): smaller loads, 1 s of keep-alive per point.
    #[arg(long)]
    quick: bool,
    /// Comma-separated measurements: fig30, herd, comet, keepalive.
    #[arg(long, default_value = "fig30,herd,comet,keepalive")]
    only: String,
    /// Comma-separated model names or parts of names (e.g. `preforked,scheduled`).
    #[arg(long, default_value = "")]
    models: String,
    /// Fig. 30.1: concurrent clients.
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// Fig. 30.1: sequential connections per client per model in one round [default: sized
    /// per model so that its share of a round takes about 0.1 s, quick: 0.05 s].
    #[arg(long)]
    conns: Option<usize>,
    /// Fig. 30.1: interleaved rounds, fixed [default: 20 to 400, more while a row's median
    /// is less precise than 1.5% and for at most 5 minutes; quick: 5 to 40, 40 s].
    #[arg(long)]
    rounds: Option<usize>,
    /// Fig. 30.1: compare the ordering with the rounds CSV of an earlier run
    /// (`process_control_rounds.csv`).
    #[arg(long)]
    against: Option<PathBuf>,
    /// Fig. 30.1: bytes asked for per connection.
    #[arg(long, default_value_t = 4000)]
    bytes: usize,
    /// Comet: waiters for every model, instead of each model's default.
    #[arg(long)]
    comet_n: Option<usize>,
    /// Herd: children of the server, all waiting on one listener.
    #[arg(long, default_value_t = 10)]
    herd_children: usize,
    /// Keep-alive: comma-separated connection counts.
    #[arg(long, default_value = "50,1000")]
    levels: String,
    /// Keep-alive open loop: comma-separated rates, as fractions of each model's
    /// closed-loop req/s on `--open-conns` connections (empty: no open-loop run).
    #[arg(long, default_value = "0.25,0.5,0.75")]
    rates: String,
    /// Keep-alive open loop: connections (at most the pools' 15 workers, so that the
    /// pools serve them all and the latency shows queueing, not starvation).
    #[arg(long, default_value_t = 10)]
    open_conns: usize,
    /// Keep-alive: measured seconds per point [default: 5, quick: 1].
    #[arg(long)]
    seconds: Option<u64>,
    /// Do not use wrk even when it is installed.
    #[arg(long)]
    no_wrk: bool,
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
    // The herd server re-executes this binary; it must fork before any thread exists.
    if let Some(code) = herd_server::main_if_asked() {
        return code;
    }
    let args = Args::parse();
    machine::kill_servers_on_interrupt();
    let nofile = machine::raise_nofile_limit();
    println!("{}", machine::describe());
    println!("open files limit of the client (bench) process: {nofile}");
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => match machine::build_examples() {
            Ok(()) => machine::default_bin_dir(),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let out = machine::output_dir();
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("creating {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let wanted = |s: &str| args.only.split(',').any(|w| w.trim() == s);
    let fig30_models = model::select(model::all(), &args.models);
    let comet_models = comet_models(&args);
    let keepalive_models = fig30_models.clone();
    let steps = [
        (wanted("fig30"), 0),
        (wanted("herd"), herd_server::STYLES.len()),
        (wanted("comet"), comet_models.len()),
        (wanted("keepalive"), keepalive_models.len()),
    ];
    let bar = runs::progress(steps.iter().filter(|s| s.0).map(|s| s.1).sum());
    let mut tables: Vec<(&str, Table)> = Vec::new();
    let mut charts = Vec::new();

    if wanted("fig30") {
        let (min_reps, max_reps) = match (args.rounds, args.quick) {
            (Some(n), _) => (n, n),
            (None, true) => (5, 40),
            (None, false) => (20, 400),
        };
        let load = Load {
            clients: args.clients,
            conns: args.conns,
            bytes: args.bytes,
            target_wall: Duration::from_millis(if args.quick { 50 } else { 100 }),
            min_reps,
            max_reps,
            target_rel_se: 0.015,
            budget: Duration::from_secs(if args.quick { 40 } else { 300 }),
        };
        bar.inc_length(1);
        let measured = process_control::run(&bin_dir, &fig30_models, load, &bar);
        let mut fig1 = fig30_report::cpu_table(&measured);
        if let Some(previous) = &args.against {
            fig1.note(fig30_report::agreement(previous, &measured));
        }
        let fig2 = fig30_report::distribution_table(&measured);
        charts.extend(fig30_report::charts(&out, &fig1, &fig2));
        let rounds = fig30_report::rounds_table(&measured);
        if let Err(e) = rounds.write_csv(&out.join("process_control_rounds.csv")) {
            eprintln!("writing process_control_rounds.csv: {e}");
        }
        tables.push(("process_control", fig1));
        tables.push(("distribution", fig2));
    }
    if wanted("herd") {
        let load = HerdLoad {
            children: args.herd_children,
            clients: args.clients,
            conns: if args.quick { 200 } else { 1000 },
            rounds: if args.quick { 5 } else { 20 },
            bytes: args.bytes,
        };
        let runs = herd::run(load, &bar);
        let (summary, per_child) = herd::tables(&runs, load);
        charts.extend(herd::chart(&out, &summary));
        tables.push(("herd", summary));
        tables.push(("herd_children", per_child));
    }
    if wanted("comet") {
        let per_run = Duration::from_secs(if args.quick { 30 } else { 90 });
        let (table, _) = runs::comet_section(&bin_dir, &comet_models, per_run, &bar);
        charts.extend(runs::comet_charts(&out, &table));
        tables.push(("comet", table));
    }
    if wanted("keepalive") {
        let levels: Vec<usize> = args
            .levels
            .split(',')
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let seconds = args.seconds.unwrap_or(if args.quick { 1 } else { 5 });
        let timing = Timing {
            warmup: Duration::from_millis(if args.quick { 250 } else { 1000 }),
            measure: Duration::from_secs(seconds),
        };
        let wrk = if args.no_wrk {
            None
        } else {
            machine::on_path("wrk")
        };
        let fractions: Vec<f64> = args
            .rates
            .split(',')
            .filter_map(|r| r.trim().parse().ok())
            .filter(|r| *r > 0.0)
            .collect();
        let (table, open) = throughput::run(
            &bin_dir,
            &keepalive_models,
            &levels,
            timing,
            throughput::OpenPlan {
                conns: args.open_conns,
                fractions: &fractions,
            },
            wrk.as_deref(),
            &bar,
        );
        charts.extend(throughput::chart(&out, &table, &levels));
        tables.push(("keepalive", table));
        if !fractions.is_empty() {
            charts.extend(throughput::open_loop_chart(&out, &open));
            tables.push(("keepalive_open_loop", open));
        }
    }
    bar.finish_and_clear();
    let mut markdown = String::new();
    for (name, table) in &tables {
        markdown += &table.markdown();
        if let Err(e) = table.write_csv(&out.join(format!("{name}.csv"))) {
            eprintln!("writing {name}.csv: {e}");
        }
    }
    print!("{markdown}");
    let markdown = format!("{}\n{markdown}", machine::describe());
    if let Err(e) = std::fs::write(out.join("results.md"), &markdown) {
        eprintln!("writing results.md: {e}");
    }
    println!("\nwritten to {}: results.md, CSV files, and", out.display());
    for chart in charts {
        println!("  {}", chart.display());
    }
    ExitCode::SUCCESS
}

/// The comet models and their waiter counts: each model's default (a fifth in quick mode),
/// or `--comet-n` for all; filtered by `--models`.
fn comet_models(args: &Args) -> Vec<(model::Model, usize)> {
    let words: Vec<&str> = args
        .models
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    model::comet()
        .into_iter()
        .filter(|(m, _)| words.is_empty() || words.iter().any(|w| m.name.contains(w)))
        .map(|(m, n)| {
            (
                m,
                args.comet_n.unwrap_or(if args.quick { n / 5 } else { n }),
            )
        })
        .collect()
}
