//! The thundering-herd table (csdesign, UNP §30.6): the same client load against the
//! benchmark-only server of [`herd_server`] in each of its four wait styles, side by side:
//! connections, wake-ups and wasted wake-ups per child, their totals, the server CPU per
//! connection during the load, and the evenness (CV) of the connections over the children.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::chart;
use super::client;
use super::herd_server::{FLAG, STYLES};
use super::proc_cpu;
use super::report::{NA, Table, num};
use super::runs;
use super::server_proc::ServerProc;
use super::stats::{self, Summary};

/// The herd load: `children` server processes; `clients` × `conns` connections of `bytes`.
#[derive(Debug, Clone, Copy)]
pub struct HerdLoad {
    /// Children of the server, all waiting on one listener.
    pub children: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Sequential connections per client, over all rounds.
    pub conns: usize,
    /// Interleaved rounds the connections are spread over.
    pub rounds: usize,
    /// Bytes per connection.
    pub bytes: usize,
}

/// One wait style's measurement.
#[derive(Debug, Clone)]
pub struct HerdRun {
    /// The style, as in [`STYLES`].
    pub style: &'static str,
    /// Per child: connections, wake-ups, wasted wake-ups.
    pub children: Vec<[u64; 3]>,
    /// Server CPU µs per connection during the load.
    pub cpu_us_per_conn: Option<f64>,
    /// Times a server process went to sleep (voluntary context switches) per connection.
    pub sleeps_per_conn: Option<f64>,
    /// Connections the clients completed and those that failed.
    pub ok: u64,
    /// Connections that failed or came back short.
    pub errors: u64,
    /// Why it has no measurement.
    pub unavailable: Option<String>,
}

/// Starts one server per style (the bench binary re-executed), then runs the load in
/// `rounds` interleaved slices (poll, blocking, epoll-exclusive, lock, poll, …), so that
/// the machine's noise hits every style alike; CPU and sleeps per connection are the
/// medians over the rounds, the per-child counts the sums.
pub fn run(load: HerdLoad, bar: &ProgressBar) -> Vec<HerdRun> {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut runs: Vec<HerdRun> = Vec::new();
    let mut servers = Vec::new();
    for &style in &STYLES {
        let args = [FLAG.to_owned(), style.to_owned(), load.children.to_string()];
        let mut run = HerdRun {
            style,
            children: Vec::new(),
            cpu_us_per_conn: None,
            sleeps_per_conn: None,
            ok: 0,
            errors: 0,
            unavailable: None,
        };
        match ServerProc::start(&exe, &args) {
            Ok(s) => servers.push(Some(s)),
            Err(e) => {
                run.unavailable = Some(runs::unavailable_note(style, &e));
                servers.push(None);
            }
        }
        runs.push(run);
    }
    let per_round = load.conns.div_ceil(load.rounds.max(1)).max(1);
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    let mut sleeps: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    for round in 0..load.rounds.max(1) {
        bar.set_message(format!("herd round {}", round + 1));
        for (i, server) in servers.iter().enumerate() {
            let Some(server) = server else { continue };
            let before = proc_cpu::snapshot(server.pid());
            let result = client::bytes_load(
                server.addr(),
                load.clients,
                per_round,
                load.bytes,
                Instant::now() + Duration::from_secs(300),
            );
            let after = proc_cpu::snapshot(server.pid());
            runs[i].ok += result.ok;
            runs[i].errors += result.errors;
            if result.ok > 0 {
                let n = result.ok as f64;
                cpu[i].push(after.ns.saturating_sub(before.ns) as f64 / 1e3 / n);
                sleeps[i].push(after.sleeps.saturating_sub(before.sleeps) as f64 / n);
            }
        }
    }
    for ((run, server), (cpu, sleeps)) in runs.iter_mut().zip(servers).zip(cpu.iter().zip(&sleeps))
    {
        let median = |v: &[f64]| (!v.is_empty()).then(|| Summary::of(v).median);
        run.cpu_us_per_conn = median(cpu);
        run.sleeps_per_conn = median(sleeps);
        if let Some(server) = server {
            run.children = server
                .stop()
                .stdout
                .iter()
                .filter_map(|l| parse_child(l))
                .collect();
        }
    }
    bar.inc(STYLES.len() as u64);
    runs
}

/// `herd child I: C connections, W wakeups, X wasted` → `[C, W, X]`.
pub fn parse_child(line: &str) -> Option<[u64; 3]> {
    let rest = line.strip_prefix("herd child ")?;
    let numbers: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [_, c, w, x] => Some([c, w, x]),
        _ => None,
    }
}

/// The summary table (one row per style) and the csdesign table (one row per child).
pub fn tables(runs: &[HerdRun], load: HerdLoad) -> (Table, Table) {
    let mut summary = Table::new(
        &format!(
            "Thundering herd (csdesign): {} children, {} clients × {} connections × {} bytes \
             in {} interleaved rounds",
            load.children, load.clients, load.conns, load.bytes, load.rounds
        ),
        &[
            "wait style",
            "children",
            "connections",
            "errors",
            "wake-ups",
            "wasted",
            "wasted/conn",
            "sleeps/conn",
            "futile kernel wake-ups/conn",
            "CPU µs/conn",
            "CV conns",
        ],
    );
    let blocking = runs
        .iter()
        .find(|r| r.style == "blocking")
        .and_then(|r| r.sleeps_per_conn);
    for r in runs {
        let total = |k: usize| r.children.iter().map(|c| c[k]).sum::<u64>();
        if r.children.is_empty() {
            summary.row(vec![r.style.to_owned()]);
        } else {
            let conns: Vec<u64> = r.children.iter().map(|c| c[0]).collect();
            summary.row(vec![
                r.style.to_owned(),
                r.children.len().to_string(),
                total(0).to_string(),
                r.errors.to_string(),
                total(1).to_string(),
                total(2).to_string(),
                num((total(0) > 0).then(|| total(2) as f64 / total(0) as f64), 2),
                num(r.sleeps_per_conn, 2),
                num(
                    r.sleeps_per_conn
                        .zip(blocking)
                        .map(|(s, b)| (s - b).max(0.0)),
                    2,
                ),
                num(r.cpu_us_per_conn, 1),
                num(stats::cv(&conns), 3),
            ]);
        }
        if let Some(why) = &r.unavailable {
            summary.note(why.clone());
        }
    }
    summary.note(
        "poll = every child poll()s the listener, then accept()s non-blocking (the seed's \
         select design); blocking = accept() blocks; epoll-exclusive = each child's epoll set \
         holds the listener with EPOLLEXCLUSIVE; lock = fcntl lock around a blocking accept. \
         A wake-up is a return from the wait; wasted = it found no connection (EAGAIN). \
         sleeps = voluntary context switches of the server's processes: a child the kernel \
         woke for a connection another child took goes back to sleep inside poll() without \
         returning, so the herd shows there even where `wasted` stays small; futile kernel \
         wake-ups = sleeps/conn minus blocking accept's (same children, same load; 0 when \
         not above it). CPU (over the load windows, all processes) and sleeps are medians over \
         the rounds.",
    );
    let mut columns = vec!["child".to_owned()];
    for r in runs {
        columns.push(format!("{} conns", r.style));
        columns.push(format!("{} wasted", r.style));
    }
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut per_child = Table::new(
        "Thundering herd per child: connections and wasted wake-ups (csdesign table)",
        &columns,
    );
    let longest = runs.iter().map(|r| r.children.len()).max().unwrap_or(0);
    for i in 0..longest {
        let mut row = vec![i.to_string()];
        for r in runs {
            let cell = |k: usize| {
                r.children
                    .get(i)
                    .map_or(NA.to_owned(), |c| c[k].to_string())
            };
            row.push(cell(0));
            row.push(cell(2));
        }
        per_child.row(row);
    }
    (summary, per_child)
}

/// A chart of wasted wake-ups per connection and CPU per connection, per style.
pub fn chart(out_dir: &Path, summary: &Table) -> Vec<PathBuf> {
    let categories: Vec<String> = summary.rows.iter().map(|r| r[0].clone()).collect();
    let series = vec![
        ("wasted/conn".to_owned(), summary.numbers("wasted/conn")),
        ("CPU µs/conn".to_owned(), summary.numbers("CPU µs/conn")),
    ];
    let path = out_dir.join("herd.svg");
    match chart::bars(
        &path,
        "Thundering herd: wasted wake-ups and CPU per connection",
        "per connection",
        &categories,
        &series,
    ) {
        Ok(()) => vec![path],
        Err(_) => Vec::new(),
    }
}
