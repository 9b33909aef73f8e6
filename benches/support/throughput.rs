//! Keep-alive throughput and latency of the `hello` workload per model, at several
//! connection counts, with our own mio load generator and with `wrk` when installed
//! (closed loop: the throughput); first, on the same server, the open-loop latency on a
//! few connections at fractions of the closed-loop throughput of that many connections
//! ([`open_loop`]: no coordinated omission).

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::ProgressBar;

use super::chart;
use super::client;
use super::model::Model;
use super::open_loop;
use super::report::{NA, Table, num};
use super::runs;
use super::server_proc::ServerProc;
use super::wrk;

/// How long to load each server.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Unmeasured load before each measurement.
    pub warmup: Duration,
    /// Measured load.
    pub measure: Duration,
}

/// The open-loop runs: `conns` connections at these fractions of the closed-loop req/s
/// that the same connections reach on the same server.
#[derive(Debug, Clone, Copy)]
pub struct OpenPlan<'a> {
    /// Keep-alive connections.
    pub conns: usize,
    /// Rates as fractions of the closed-loop req/s (empty: no open-loop runs).
    pub fractions: &'a [f64],
}

/// Per model: the open-loop rates (one row per model and rate), then every connection
/// count closed-loop (one row per model and count).
pub fn run(
    bin_dir: &Path,
    models: &[Model],
    levels: &[usize],
    timing: Timing,
    plan: OpenPlan,
    wrk_path: Option<&Path>,
    bar: &ProgressBar,
) -> (Table, Table) {
    let mut open = open_table(plan.conns);
    let mut table = Table::new(
        "Keep-alive throughput: GET / on the hello example",
        &[
            "model",
            "conns",
            "connected",
            "served",
            "non-200",
            "req/s",
            "p50 ms",
            "p99 ms",
            "wrk req/s",
            "wrk p50 ms",
            "wrk p99 ms",
            "wrk errors",
        ],
    );
    for model in models {
        bar.set_message(format!("keep-alive {}", model.name));
        let server = match runs::start(bin_dir, "hello", model) {
            Ok(s) => s,
            Err(e) => {
                for &c in levels {
                    table.row(vec![model.name.to_owned(), c.to_string()]);
                }
                table.note(runs::unavailable_note(model.name, &e));
                bar.inc(1);
                continue;
            }
        };
        if !plan.fractions.is_empty() {
            bar.set_message(format!("open loop {}", model.name));
            open_rows(&mut open, &server, model.name, plan, timing);
        }
        for &conns in levels {
            let mut row = vec![model.name.to_owned(), conns.to_string()];
            match client::keepalive(server.addr(), conns, timing.warmup, timing.measure) {
                Ok(k) => {
                    row.extend([
                        k.connected.to_string(),
                        k.served.to_string(),
                        k.non_200.to_string(),
                        num(Some(k.rps), 0),
                        num((k.requests > 0).then(|| k.p50_us as f64 / 1e3), 3),
                        num((k.requests > 0).then(|| k.p99_us as f64 / 1e3), 3),
                    ]);
                }
                Err(e) => {
                    row.extend(std::iter::repeat_n(NA.to_owned(), 6));
                    table.note(format!(
                        "- {} at {conns}: load generator failed: {e}",
                        model.name
                    ));
                }
            }
            let secs = timing.measure.as_secs().max(1);
            match wrk_path.and_then(|w| wrk::run(w, server.addr(), conns, secs)) {
                Some(w) => row.extend([
                    num(Some(w.rps), 0),
                    num(Some(w.p50_us / 1e3), 3),
                    num(Some(w.p99_us / 1e3), 3),
                    w.socket_errors.to_string(),
                ]),
                None => row.extend(std::iter::repeat_n(NA.to_owned(), 4)),
            }
            table.row(row);
        }
        let usage = server.stop();
        if !usage.clean_exit {
            table.note(format!("- {}: did not exit 0 on SIGTERM", model.name));
        }
        bar.inc(1);
    }
    table.note(
        "served = connections answered at least once while measured: a model that serves one \
         connection at a time starves the others (their latency is not in p50/p99).",
    );
    if wrk_path.is_none() {
        table.note("wrk is not on PATH: its columns are n/a.");
    }
    (table, open)
}

fn open_table(conns: usize) -> Table {
    let mut table = Table::new(
        &format!(
            "Keep-alive latency, open loop (no coordinated omission): GET / on {conns} connections \
             at fractions of each model's closed-loop req/s on as many"
        ),
        &[
            "model",
            "closed-loop req/s",
            "load",
            "rate req/s",
            "answered req/s",
            "unanswered",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "client lag p99 ms",
            "tail",
        ],
    );
    table.note(
        "Each connection sends on its own fixed schedule; latency runs from the intended \
         send time, so time a request waited in the client behind a slow answer counts. \
         unanswered = requests due in the window without an answer at its end (counted in \
         the percentiles with their wait so far, a lower bound). client lag = how late the \
         load generator itself sent (its own noise floor); tail = client-bound when that lag \
         is at least half the p99 (over 1 ms): the p99 then measures the load generator \
         starved of CPU, not the server.",
    );
    table
}

/// The closed-loop req/s of `plan.conns` connections, then one open-loop row per fraction.
fn open_rows(table: &mut Table, server: &ServerProc, model: &str, plan: OpenPlan, timing: Timing) {
    let peak = match client::keepalive(server.addr(), plan.conns, timing.warmup, timing.measure) {
        Ok(k) if k.rps > 0.0 => k.rps,
        Ok(_) => {
            table.note(format!(
                "- {model}: no answer in the closed loop, no open loop"
            ));
            return;
        }
        Err(e) => {
            table.note(format!("- {model}: closed loop failed: {e}"));
            return;
        }
    };
    let ms = |us: u64| num(Some(us as f64 / 1e3), 3);
    for &fraction in plan.fractions {
        let rate = (peak * fraction).max(1.0);
        let mut row = vec![
            model.to_owned(),
            num(Some(peak), 0),
            format!("{:.0}%", fraction * 100.0),
            num(Some(rate), 0),
        ];
        match open_loop::run(
            server.addr(),
            plan.conns,
            rate,
            timing.warmup,
            timing.measure,
        ) {
            Ok(o) => row.extend([
                num(Some(o.achieved), 0),
                o.unanswered.to_string(),
                ms(o.p50_us),
                ms(o.p99_us),
                ms(o.p999_us),
                ms(o.max_us),
                ms(o.send_lag_p99_us),
                if o.send_lag_p99_us * 2 >= o.p99_us && o.p99_us > 1_000 {
                    "client-bound".to_owned()
                } else {
                    "server".to_owned()
                },
            ]),
            Err(e) => table.note(format!("- {model} at {rate:.0} req/s: {e}")),
        }
        table.row(row);
    }
}

/// A chart of requests per second: one group per model, one bar per (tool, connections).
pub fn chart(out_dir: &Path, table: &Table, levels: &[usize]) -> Vec<PathBuf> {
    let mut categories: Vec<String> = table.rows.iter().map(|r| r[0].clone()).collect();
    categories.dedup();
    let mut series = Vec::new();
    for (tool, column) in [("ours", "req/s"), ("wrk", "wrk req/s")] {
        let values = table.numbers(column);
        for &c in levels {
            let per_model: Vec<Option<f64>> = categories
                .iter()
                .map(|m| {
                    let i = table
                        .rows
                        .iter()
                        .position(|r| &r[0] == m && r[1] == c.to_string())?;
                    values[i]
                })
                .collect();
            series.push((format!("{tool}, {c} conns"), per_model));
        }
    }
    // A tool that measured nothing (wrk absent) gets no legend entry.
    series.retain(|(_, values)| values.iter().any(Option::is_some));
    let path = out_dir.join("keepalive_rps.svg");
    match chart::bars(
        &path,
        "Keep-alive throughput (hello)",
        "requests/s",
        &categories,
        &series,
    ) {
        Ok(()) => vec![path],
        Err(_) => Vec::new(),
    }
}

/// A chart of the open-loop p99 latency: one group per model, one bar per rate.
pub fn open_loop_chart(out_dir: &Path, table: &Table) -> Vec<PathBuf> {
    let mut categories: Vec<String> = table.rows.iter().map(|r| r[0].clone()).collect();
    categories.dedup();
    let mut loads: Vec<String> = table.rows.iter().map(|r| r[2].clone()).collect();
    loads.sort();
    loads.dedup();
    let p99 = table.numbers("p99 ms");
    let series: Vec<chart::Series> = loads
        .iter()
        .map(|load| {
            let per_model = categories
                .iter()
                .map(|m| {
                    let i = table
                        .rows
                        .iter()
                        .position(|r| &r[0] == m && &r[1] == load)?;
                    p99[i]
                })
                .collect();
            (format!("p99 at {load} of closed-loop req/s"), per_model)
        })
        .collect();
    let path = out_dir.join("keepalive_open_loop_p99.svg");
    match chart::bars(
        &path,
        "Keep-alive p99 latency, open loop (ms, from the intended send time)",
        "ms",
        &categories,
        &series,
    ) {
        Ok(()) => vec![path],
        Err(_) => Vec::new(),
    }
}
