//! The c100k round (`cargo bench --bench comet -- --c100k`): N waiters (100,000 by
//! default) held by `preforked --inner scheduled` with enough workers that each stays
//! under its open-file limit, released by one notify, each answered with N.
//!
//! The waiters come from several client processes (each under its own fd limit), and
//! each client spreads its sockets over several loopback source addresses (each
//! `127.0.0.x` has its own ephemeral ports, see `ip_local_port_range`). Each client
//! process is this bench binary again (`--c100k-client`, see [`super::c100k_client`]).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::c100k_client::now_ns;
use super::client::get_text;
use super::proc_cpu;
use super::report::{Table, num};
use super::server_proc::ServerProc;

/// The shape of a c100k round.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Waiters in all.
    pub waiters: usize,
    /// Server worker processes (`--workers`).
    pub workers: usize,
    /// Client processes.
    pub clients: usize,
    /// Loopback source addresses (`127.0.0.2` on).
    pub sources: usize,
    /// Longest the whole round may take.
    pub limit: Duration,
}

/// What one client process said.
#[derive(Debug, Default)]
struct ClientReport {
    connected: usize,
    failed: usize,
    answered: usize,
    last_ns: u128,
    tally: String,
}

/// Runs the round against the `comet` example in `bin_dir`; a table of one row.
pub fn round(bin_dir: &Path, plan: &Plan) -> Table {
    let mut table = Table::new(
        "Comet c100k: preforked × scheduled, one notify",
        &[
            "waiters",
            "workers",
            "clients × sources",
            "held",
            "answered N",
            "failed",
            "setup s",
            "notify→last s",
            "wall s",
            "server CPU s",
            "peak RSS MiB",
            "KiB/waiter",
            "master fds",
        ],
    );
    let start = Instant::now();
    let args: Vec<String> = [
        "--addr",
        "127.0.0.1:0",
        "--mixin",
        "preforked",
        "--workers",
        &plan.workers.to_string(),
        "--max-workers",
        &plan.workers.to_string(),
        "--inner",
        "scheduled",
        "--accept",
        "reuseport",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = match ServerProc::start(&bin_dir.join("comet"), &args) {
        Ok(server) => server,
        Err(e) => {
            table.note(format!("- the server did not start: {e:?}"));
            return table;
        }
    };
    let addr = server.addr();
    let sources: Vec<String> = (0..plan.sources)
        .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8).to_string())
        .collect();
    let (reports, children) = spawn_clients(addr, plan, &sources.join(","));
    let mut clients: Vec<ClientReport> = (0..children.len())
        .map(|_| ClientReport::default())
        .collect();
    // Every client opened its share.
    let mut ready = 0;
    let mut done = 0;
    let deadline = start + plan.limit;
    while ready < clients.len() && Instant::now() < deadline {
        if let Ok((i, line)) = reports.recv_timeout(Duration::from_millis(200)) {
            note(&mut clients[i], &line, &mut ready, &mut done);
        }
    }
    let connected: usize = clients.iter().map(|c| c.connected).sum();
    // The server holds every one of them.
    let mut held = 0;
    let mut last_growth = Instant::now();
    while Instant::now() < deadline && last_growth.elapsed() < Duration::from_secs(20) {
        if let Ok(Ok(k)) = get_text(addr, "/").map(|t| t.parse::<usize>()) {
            if k > held {
                last_growth = Instant::now();
            }
            held = k;
            if k >= connected {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let setup = start.elapsed();
    server.sample_rss_now();
    let master_fds =
        std::fs::read_dir(format!("/proc/{}/fd", server.pid())).map_or(0, |d| d.count());
    let cpu_before = proc_cpu::snapshot(server.pid());
    let notified_ns = now_ns();
    let notify = get_text(addr, "/notify").ok();
    while done < clients.len() && Instant::now() < deadline {
        if let Ok((i, line)) = reports.recv_timeout(Duration::from_millis(200)) {
            note(&mut clients[i], &line, &mut ready, &mut done);
        }
    }
    let cpu_after = proc_cpu::snapshot(server.pid());
    let wall = start.elapsed();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let usage = server.stop();
    let expected = notify.clone().unwrap_or_default();
    let answered_n: usize = clients
        .iter()
        .flat_map(|c| c.tally.split(','))
        .filter_map(|entry| entry.split_once('='))
        .filter(|(answer, _)| *answer == format!("200:{expected}"))
        .filter_map(|(_, count)| count.parse::<usize>().ok())
        .sum();
    let failed: usize = clients.iter().map(|c| c.failed).sum();
    let last_ns = clients.iter().map(|c| c.last_ns).max().unwrap_or(0);
    let release = (last_ns > notified_ns).then(|| (last_ns - notified_ns) as f64 / 1e9);
    let cpu = cpu_after.ns.saturating_sub(cpu_before.ns) as f64 / 1e9;
    let rss_mib = usage.peak_rss_kib as f64 / 1024.0;
    table.row(vec![
        plan.waiters.to_string(),
        plan.workers.to_string(),
        format!("{} × {}", plan.clients, plan.sources),
        held.to_string(),
        answered_n.to_string(),
        failed.to_string(),
        num(Some(setup.as_secs_f64()), 1),
        num(release, 3),
        num(Some(wall.as_secs_f64()), 1),
        format!(
            "{} ({} + {})",
            num(Some(usage.user + usage.sys), 2),
            num(Some(usage.user), 2),
            num(Some(usage.sys), 2)
        ),
        num(Some(rss_mib), 0),
        num(
            (held > 0).then(|| usage.peak_rss_kib as f64 / held as f64),
            1,
        ),
        master_fds.to_string(),
    ]);
    table.note(format!(
        "- notify said {}; server CPU over the release alone: {cpu:.2} s; the CPU column \
         is the whole run (user + sys, every process of the server)",
        notify.as_deref().unwrap_or("nothing")
    ));
    let answers: Vec<&str> = clients.iter().map(|c| c.tally.as_str()).collect();
    if answered_n < plan.waiters {
        table.note(format!("- answers per client: {answers:?}"));
    }
    table
}

/// Starts the client processes; their stdout lines arrive on the channel by index.
fn spawn_clients(
    addr: SocketAddr,
    plan: &Plan,
    sources: &str,
) -> (mpsc::Receiver<(usize, String)>, Vec<Child>) {
    let (tx, rx) = mpsc::channel();
    let mut children = Vec::new();
    let me = std::env::current_exe().unwrap_or_else(|_| "comet".into());
    for i in 0..plan.clients {
        let share = plan.waiters / plan.clients + usize::from(i < plan.waiters % plan.clients);
        let child = Command::new(&me)
            .args(["--c100k-client", "--c100k-target", &addr.to_string()])
            .args(["--c100k-sources-list", sources])
            .args(["--c100k-count", &share.to_string()])
            .args(["--c100k-seconds", &plan.limit.as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            continue;
        };
        let index = children.len();
        if let Some(stdout) = child.stdout.take() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send((index, line)).is_err() {
                        return;
                    }
                }
            });
        }
        children.push(child);
    }
    (rx, children)
}

/// Takes one line of a client's report.
fn note(client: &mut ClientReport, line: &str, ready: &mut usize, done: &mut usize) {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("ready") => {
            client.connected = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            client.failed = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            *ready += 1;
        }
        Some("done") => {
            client.answered = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            client.failed = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            client.last_ns = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            client.tally = words.next().unwrap_or("").to_owned();
            *done += 1;
        }
        _ => {}
    }
}

/// The client side: parses the source list and runs one client process.
pub fn client(target: &str, sources: &str, count: usize, seconds: u64) -> std::io::Result<()> {
    let addr: SocketAddr = target.parse().map_err(std::io::Error::other)?;
    let sources: Vec<IpAddr> = sources
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if sources.is_empty() {
        return Err(std::io::Error::other("no source address"));
    }
    super::c100k_client::run(addr, &sources, count, Duration::from_secs(seconds))
}
