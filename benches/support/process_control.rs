//! UNP Figure 30.1 (process-control CPU time of each model under the same client load)
//! and Figure 30.2 (connections served by each worker of a pool), measured in one pass:
//! the pooled models print their per-worker counts with `--stats` when they stop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::chart;
use super::client::{self, BytesLoad};
use super::model::{self, BOOK_FIG_30_1, BOOK_VERIFIED, Model};
use super::report::{NA, Table, num};
use super::runs;
use super::server_proc::ServerUsage;

const DELTA: &str = "Δ vs iterative s";

/// The client load: `clients` × `conns` sequential connections × `bytes` each.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Concurrent clients (threads of the bench process).
    pub clients: usize,
    /// Sequential connections per client.
    pub conns: usize,
    /// Bytes asked for on each connection (`GET /bytes/N`).
    pub bytes: usize,
}

/// One model's measurement (`None` when the example does not offer it).
#[derive(Debug)]
struct Measured {
    model: Model,
    run: Option<(BytesLoad, ServerUsage)>,
}

/// Runs `load` against every model; returns the Fig. 30.1 and Fig. 30.2 tables.
pub fn run(
    bin_dir: &Path,
    models: &[Model],
    load: Load,
    per_run: Duration,
    bar: &ProgressBar,
) -> (Table, Table) {
    let mut notes = Vec::new();
    let measured: Vec<Measured> = models
        .iter()
        .map(|model| {
            bar.set_message(format!("fig 30.1 {}", model.name));
            let run = match runs::start(bin_dir, "hello", model) {
                Ok(server) => {
                    let deadline = Instant::now() + per_run;
                    let result = client::bytes_load(
                        server.addr(),
                        load.clients,
                        load.conns,
                        load.bytes,
                        deadline,
                    );
                    Some((result, server.stop()))
                }
                Err(e) => {
                    notes.push(runs::unavailable_note(model.name, &e));
                    None
                }
            };
            bar.inc(1);
            Measured {
                model: model.clone(),
                run,
            }
        })
        .collect();
    let mut fig1 = cpu_table(&measured, load);
    fig1.notes.extend(notes);
    (fig1, distribution_table(&measured))
}

fn cpu_table(measured: &[Measured], load: Load) -> Table {
    let verified = if BOOK_VERIFIED { "" } else { " †" };
    let title = format!(
        "Process control (UNP Fig. 30.1): {} clients × {} connections × {} bytes, server CPU",
        load.clients, load.conns, load.bytes
    );
    let solaris = format!("book Solaris Δ s{verified}");
    let dunix = format!("book DUnix Δ s{verified}");
    let mut table = Table::new(
        &title,
        &[
            "row",
            "model",
            "ok",
            "errors",
            "wall s",
            "user s",
            "sys s",
            "CPU s",
            "Δ vs iterative s",
            &solaris,
            &dunix,
        ],
    );
    let cpu = |m: &Measured| m.run.as_ref().map(|(_, u)| u.user + u.sys);
    let baseline = measured
        .iter()
        .find(|m| m.model.name == "iterative")
        .and_then(cpu);
    for m in measured {
        let book = m
            .model
            .unp_row
            .and_then(|r| BOOK_FIG_30_1.iter().find(|b| b.row == r));
        let mut row = vec![
            m.model.unp_row.map_or("—".to_owned(), |r| r.to_string()),
            m.model.name.to_owned(),
        ];
        match &m.run {
            Some((load, usage)) => {
                row.extend([
                    load.ok.to_string(),
                    load.errors.to_string(),
                    num(Some(load.wall.as_secs_f64()), 2),
                    num(Some(usage.user), 3),
                    num(Some(usage.sys), 3),
                    num(cpu(m), 3),
                    num(cpu(m).zip(baseline).map(|(c, b)| c - b), 3),
                ]);
                if !usage.clean_exit {
                    table.note(format!("- {}: did not exit 0 on SIGTERM", m.model.name));
                }
            }
            None => row.extend(std::iter::repeat_n(NA.to_owned(), 7)),
        }
        row.push(num(book.and_then(|b| b.solaris), 1));
        row.push(num(book.and_then(|b| b.digital_unix), 1));
        table.row(row);
    }
    table.note("CPU = user + sys of the server and the children it reaped (wait4), start-up and shutdown included.");
    table.note(
        "Book: Stevens, Fenner, Rudoff, UNIX Network Programming vol. 1, 3rd ed., Fig. 30.1 \
         (5 clients × 500 connections × 4,000 bytes; CPU seconds minus the iterative baseline).",
    );
    if !BOOK_VERIFIED {
        table.note("† book values recalled, not yet checked against the printed figure.");
    }
    table
}

fn distribution_table(measured: &[Measured]) -> Table {
    let pooled: Vec<&Measured> = measured.iter().filter(|m| m.model.pooled).collect();
    let counts: Vec<Vec<u64>> = pooled
        .iter()
        .map(|m| {
            m.run
                .as_ref()
                .map(|(_, u)| model::parse_worker_stats(&u.stdout))
                .unwrap_or_default()
        })
        .collect();
    let mut columns = vec!["worker"];
    columns.extend(pooled.iter().map(|m| m.model.name));
    let mut table = Table::new(
        "Connections served per worker (UNP Fig. 30.2, csdesign)",
        &columns,
    );
    let longest = counts.iter().map(Vec::len).max().unwrap_or(0);
    // Without any per-worker table there is nothing to lay out by worker.
    let rows = if longest == 0 {
        0
    } else {
        longest.max(model::POOL)
    };
    for w in 0..rows {
        let mut row = vec![w.to_string()];
        row.extend(
            counts
                .iter()
                .map(|c| c.get(w).map_or(NA.to_owned(), u64::to_string)),
        );
        table.row(row);
    }
    let mut total = vec!["total".to_owned()];
    total.extend(counts.iter().map(|c| {
        if c.is_empty() {
            NA.to_owned()
        } else {
            c.iter().sum::<u64>().to_string()
        }
    }));
    table.row(total);
    for (m, c) in pooled.iter().zip(&counts) {
        if m.run.is_some() && c.is_empty() {
            table.note(format!(
                "- {}: no per-worker table in its --stats output",
                m.model.name
            ));
        }
    }
    table
}

/// Charts: CPU seconds per model (ours and the book's Δ), connections per worker.
pub fn charts(out_dir: &Path, fig1: &Table, fig2: &Table) -> Vec<PathBuf> {
    let mut written = Vec::new();
    let categories: Vec<String> = fig1.rows.iter().map(|r| r[1].clone()).collect();
    let series = vec![
        ("CPU s".to_owned(), fig1.numbers("CPU s")),
        (DELTA.to_owned(), fig1.numbers(DELTA)),
    ];
    let path = out_dir.join("process_control.svg");
    if chart::bars(
        &path,
        "Process control CPU (UNP Fig. 30.1)",
        "seconds",
        &categories,
        &series,
    )
    .is_ok()
    {
        written.push(path);
    }
    let body = &fig2.rows[..fig2.rows.len().saturating_sub(1)];
    let lines: Vec<(String, Vec<f64>)> = (1..fig2.columns.len())
        .filter_map(|i| {
            let values: Vec<f64> = body.iter().filter_map(|r| r[i].parse().ok()).collect();
            (!values.is_empty()).then(|| (fig2.columns[i].clone(), values))
        })
        .collect();
    let path = out_dir.join("distribution.svg");
    if chart::lines(
        &path,
        "Connections per worker (UNP Fig. 30.2)",
        "worker",
        "connections",
        &lines,
    )
    .is_ok()
    {
        written.push(path);
    }
    written
}
