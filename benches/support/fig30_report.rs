//! The tables and charts of UNP Figures 30.1 and 30.2 from a [`Measured`] run: medians
//! with their spread, Δ over the iterative baseline from paired rounds, which differences
//! are within noise, the per-worker counts of each fixed pool with their coefficient of
//! variation, and the check that another run orders the distinct rows the same way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::chart;
use super::model::{self, BOOK_FIG_30_1, BOOK_VERIFIED};
use super::process_control::{Measured, Row};
use super::report::{NA, Table, num};
use super::stats::{self, DISTINCT_SE, Summary};

const MEDIAN: &str = "CPU µs/conn";
const Q1: &str = "q1 µs";
const Q3: &str = "q3 µs";

/// The median and quartiles of a row's rounds.
fn summary(row: &Row) -> Summary {
    let samples: Vec<f64> = row.samples.iter().flatten().copied().collect();
    Summary::of(&samples)
}

/// The Fig. 30.1 table: CPU µs per connection (median, ± standard error, quartiles) and Δ
/// over the iterative baseline, `≈ 0` when within noise.
pub fn cpu_table(m: &Measured) -> Table {
    let verified = if BOOK_VERIFIED { "" } else { " †" };
    let title = format!(
        "Process control (UNP Fig. 30.1): {} interleaved rounds, {} clients × `conns` \
         connections × {} bytes per model per round, server CPU during the load",
        m.rounds, m.clients, m.bytes
    );
    let solaris = format!("book Solaris Δ s{verified}");
    let dunix = format!("book DUnix Δ s{verified}");
    let mut table = Table::new(
        &title,
        &[
            "row",
            "model",
            "conns",
            "errors",
            MEDIAN,
            "± µs",
            Q1,
            Q3,
            "Δ vs iterative µs",
            "Δ ± µs",
            "sleeps/conn",
            &solaris,
            &dunix,
        ],
    );
    let baseline = m.rows.iter().find(|r| r.model.name == "iterative");
    let mut below_baseline = false;
    for row in &m.rows {
        let book = row
            .model
            .unp_row
            .and_then(|r| BOOK_FIG_30_1.iter().find(|b| b.row == r));
        let mut cells = vec![
            row.model.unp_row.map_or("—".to_owned(), |r| r.to_string()),
            row.model.name.to_owned(),
        ];
        let s = summary(row);
        if row.unavailable.is_some() || s.n == 0 {
            cells.extend(std::iter::repeat_n(NA.to_owned(), 9));
        } else {
            cells.extend([
                row.conns.to_string(),
                row.errors.to_string(),
                num(Some(s.median), 1),
                num(Some(s.se()).filter(|v| v.is_finite()), 1),
                num(Some(s.q1), 1),
                num(Some(s.q3), 1),
            ]);
            match baseline {
                Some(b) => {
                    let d = Summary::of(&stats::paired(&row.samples, &b.samples));
                    let text = if std::ptr::eq(row, b) {
                        "0 (baseline)".to_owned()
                    } else if compare(&row.samples, &b.samples).0 {
                        if d.median < 0.0 {
                            below_baseline = true;
                            format!("{} ‡", num(Some(d.median), 1))
                        } else {
                            num(Some(d.median), 1)
                        }
                    } else {
                        "≈ 0 (noise)".to_owned()
                    };
                    cells.push(text);
                    cells.push(num(Some(d.se()).filter(|v| v.is_finite()), 1));
                }
                None => cells.extend([NA.to_owned(), NA.to_owned()]),
            }
            let sleeps: Vec<f64> = row.sleeps.iter().flatten().copied().collect();
            cells.push(num(
                (!sleeps.is_empty()).then(|| Summary::of(&sleeps).median),
                2,
            ));
        }
        cells.push(num(book.and_then(|b| b.solaris), 1));
        cells.push(num(book.and_then(|b| b.digital_unix), 1));
        table.row(cells);
    }
    for row in &m.rows {
        if let Some(why) = &row.unavailable {
            table.note(why.clone());
        }
        if row.usage.as_ref().is_some_and(|u| !u.clean_exit) {
            table.note(format!("- {}: did not exit 0 on SIGTERM", row.model.name));
        }
    }
    if below_baseline {
        table.note(
            "‡ Distinctly cheaper than the iterative baseline: not a negative process-control \
             cost but a saving elsewhere. A model that serves several clients' connections \
             from one event loop sleeps and wakes less per connection than the iterative \
             server, which blocks in accept() and read() for each one (compare sleeps/conn).",
        );
    }
    table.note(format!(
        "Order (cheapest first; `<` distinct, `≈` within noise): {}",
        order_line(m)
    ));
    table.note(format!("Within noise: {}", within_noise(m)));
    table.note(format!(
        "conns = sequential connections per client in each round, sized so that every model's \
         share of a round takes about the same time. CPU = user + sys of all the server's processes, their exited threads and reaped \
         children, read from /proc right before and after each load (start-up and shutdown \
         not counted), per connection served; sleeps/conn = voluntary context switches of the server's live \
         threads per connection (median; the per-connection threads and children of threading \
         and forking exit uncounted). Median of {} interleaved rounds; ± is the \
         standard error of the median (1.25 × IQR / √n); q1/q3 the quartiles. Δ is the median \
         of the per-round differences from the iterative server (± its standard error); two \
         rows differ when the median of their per-round log-ratios is more than \
         {DISTINCT_SE} standard errors from 0 (a Δ that does not is printed as noise). {}",
        m.rounds,
        if m.converged {
            format!("Every row reached ±{:.1}%.", m.target_rel_se * 100.0)
        } else {
            format!(
                "Rounds stopped (at the maximum or by the time budget) before every row \
                 reached ±{:.1}%.",
                m.target_rel_se * 100.0
            )
        }
    ));
    table.note(
        "Book: Stevens, Fenner, Rudoff, UNIX Network Programming vol. 1, 3rd ed., Fig. 30.1 \
         (5 clients × 500 connections × 4,000 bytes; CPU seconds minus the iterative baseline).",
    );
    if !BOOK_VERIFIED {
        table.note("† book values recalled, not yet checked against the printed figure.");
    }
    table
}

/// Whether rows `a` and `b` differ, and the sign of `a - b`: the median of the per-round
/// log-ratios, tested against 0.
fn compare(a: &[Option<f64>], b: &[Option<f64>]) -> (bool, f64) {
    let d = Summary::of(&stats::paired_log(a, b));
    (stats::distinct_from_zero(&d), d.median)
}

fn measured_rows(m: &Measured) -> Vec<&Row> {
    let mut rows: Vec<&Row> = m.rows.iter().filter(|r| summary(r).n > 0).collect();
    rows.sort_by(|a, b| summary(a).median.total_cmp(&summary(b).median));
    rows
}

/// `a < b ≈ c < …`: the rows by median, each step marked distinct or within noise.
pub fn order_line(m: &Measured) -> String {
    let rows = measured_rows(m);
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            let (distinct, _) = compare(&row.samples, &rows[i - 1].samples);
            out += if distinct { " < " } else { " ≈ " };
        }
        out += row.model.name;
    }
    out
}

/// Every pair of rows whose difference is within noise, or `none`.
fn within_noise(m: &Measured) -> String {
    let rows = measured_rows(m);
    let mut pairs = Vec::new();
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            if !compare(&a.samples, &b.samples).0 {
                pairs.push(format!("{} ≈ {}", a.model.name, b.model.name));
            }
        }
    }
    if pairs.is_empty() {
        "none; every pair of rows differs.".to_owned()
    } else {
        format!("{}; every other pair differs.", pairs.join(", "))
    }
}

/// The per-round samples as a table (written as CSV, read back by [`agreement`]).
pub fn rounds_table(m: &Measured) -> Table {
    let mut columns = vec!["model".to_owned()];
    columns.extend((1..=m.rounds).map(|r| format!("round {r}")));
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut table = Table::new("Fig. 30.1 rounds: CPU µs per connection", &columns);
    for row in &m.rows {
        let mut cells = vec![row.model.name.to_owned()];
        cells.extend(row.samples.iter().map(|s| num(*s, 2)));
        table.row(cells);
    }
    table
}

/// Compares this run with the rounds CSV of another: for every pair of models distinct in
/// both runs, whether they are in the same order; and the pairs distinct in one run only.
pub fn agreement(previous: &Path, m: &Measured) -> String {
    let text = match std::fs::read_to_string(previous) {
        Ok(t) => t,
        Err(e) => return format!("cannot read {}: {e}", previous.display()),
    };
    let other: HashMap<String, Vec<Option<f64>>> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cells = l.split(',');
            let name = cells.next()?.to_owned();
            Some((name, cells.map(|c| c.parse().ok()).collect()))
        })
        .collect();
    let rows: Vec<&Row> = m
        .rows
        .iter()
        .filter(|r| other.contains_key(r.model.name))
        .collect();
    let (mut both, mut same, mut one_only) = (0, 0, 0);
    let mut problems = Vec::new();
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            let (d_now, sign_now) = compare(&a.samples, &b.samples);
            let (d_then, sign_then) = compare(&other[a.model.name], &other[b.model.name]);
            let agree = sign_now.signum() == sign_then.signum();
            match (d_now, d_then) {
                (true, true) => {
                    both += 1;
                    if agree {
                        same += 1;
                    } else {
                        problems.push(format!("{} vs {}", a.model.name, b.model.name));
                    }
                }
                (true, false) | (false, true) => one_only += 1,
                (false, false) => {}
            }
        }
    }
    let verdict = if problems.is_empty() {
        "no pair reversed".to_owned()
    } else {
        format!("REVERSED: {}", problems.join(", "))
    };
    format!(
        "Against {}: {both} pairs distinct in both runs, {same} in the same order ({verdict}); \
         {one_only} pairs distinct in one run only.",
        previous.display()
    )
}

/// Fig. 30.2: connections per worker of each fixed pool over all rounds, and the
/// coefficient of variation of each column.
pub fn distribution_table(m: &Measured) -> Table {
    let pooled: Vec<&Row> = m.rows.iter().filter(|r| r.model.pooled).collect();
    let counts: Vec<Vec<u64>> = pooled
        .iter()
        .map(|r| {
            r.usage
                .as_ref()
                .map(|u| model::parse_worker_stats(&u.stdout))
                .unwrap_or_default()
        })
        .collect();
    let mut columns = vec!["worker"];
    columns.extend(pooled.iter().map(|r| r.model.name));
    let mut table = Table::new(
        &format!(
            "Connections served per worker, fixed pools of {} (UNP Fig. 30.2, csdesign)",
            model::POOL
        ),
        &columns,
    );
    let longest = counts.iter().map(Vec::len).max().unwrap_or(0);
    for w in 0..longest {
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
    let mut cv = vec!["CV".to_owned()];
    cv.extend(counts.iter().map(|c| num(stats::cv(c), 3)));
    table.row(cv);
    table.note(
        "Counts over every round and the warm-up. CV = standard deviation / mean of the \
         per-worker counts: 0 is perfectly even.",
    );
    for (r, c) in pooled.iter().zip(&counts) {
        if r.usage.is_some() && c.is_empty() {
            table.note(format!(
                "- {}: no per-worker table in its --stats output",
                r.model.name
            ));
        } else if !c.is_empty() && c.len() != model::POOL {
            table.note(format!(
                "- {}: {} workers, not the fixed {}",
                r.model.name,
                c.len(),
                model::POOL
            ));
        }
    }
    table
}

/// Charts: CPU µs per connection with its quartiles, connections per worker.
pub fn charts(out_dir: &Path, fig1: &Table, fig2: &Table) -> Vec<PathBuf> {
    let mut written = Vec::new();
    let categories: Vec<String> = fig1.rows.iter().map(|r| r[1].clone()).collect();
    let spread: Vec<Option<(f64, f64)>> = fig1
        .numbers(Q1)
        .into_iter()
        .zip(fig1.numbers(Q3))
        .map(|(a, b)| a.zip(b))
        .collect();
    let path = out_dir.join("process_control.svg");
    if chart::bars_with_spread(
        &path,
        "Server CPU per connection (UNP Fig. 30.1), median and quartiles",
        "CPU µs per connection",
        &categories,
        &fig1.numbers(MEDIAN),
        &spread,
    )
    .is_ok()
    {
        written.push(path);
    }
    let body: Vec<&Vec<String>> = fig2
        .rows
        .iter()
        .filter(|r| r[0].parse::<usize>().is_ok())
        .collect();
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
