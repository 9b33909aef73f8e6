//! UNP Figure 30.1 (process-control CPU of each model under the same client load) and
//! Figure 30.2 (connections served by each worker of a fixed pool of 15), measured so that
//! the designs can be told apart on a small, shared machine:
//!
//! - every server is started once and warmed up; its CPU is read from `/proc` right before
//!   and right after each load ([`proc_cpu`]), so start-up and shutdown are not counted;
//! - repetitions are interleaved (A B C … A B C …), so a burst of noise from the rest of
//!   the machine hits every model alike, and Δ over the iterative baseline is the median
//!   of the per-round differences (paired);
//! - the load per repetition is sized from a calibration run (or `--conns`), and rounds
//!   are added until every row's median is known to `target_rel_se` or the budget is
//!   spent. The tables ([`fig30_report`]) say which differences are within noise.
//!
//! [`fig30_report`]: super::fig30_report

use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::client;
use super::model::Model;
use super::proc_cpu;
use super::runs;
use super::server_proc::{ServerProc, ServerUsage};
use super::stats::Summary;

/// How the load is sized and repeated.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Concurrent clients (threads of the bench process).
    pub clients: usize,
    /// Sequential connections per client in one repetition, for every model; `None`:
    /// sized per model by calibration, so that every model's share of a round takes
    /// about `target_wall` and the rounds stay short (the samples paired in a round are
    /// then close in time).
    pub conns: Option<usize>,
    /// Bytes asked for on each connection (`GET /bytes/N`).
    pub bytes: usize,
    /// Wall time the calibration aims at for one model's share of a round.
    pub target_wall: Duration,
    /// Rounds always run.
    pub min_reps: usize,
    /// Rounds at most.
    pub max_reps: usize,
    /// Stop adding rounds once every row's median has this relative standard error.
    pub target_rel_se: f64,
    /// Stop adding rounds after this much time in the measured rounds.
    pub budget: Duration,
}

/// One model's measurements.
#[derive(Debug)]
pub struct Row {
    /// The model.
    pub model: Model,
    /// Why it has no measurement, when it has none.
    pub unavailable: Option<String>,
    /// Server CPU µs per connection, one entry per round (`None`: nothing served).
    pub samples: Vec<Option<f64>>,
    /// Times a server thread went to sleep (voluntary context switches) per connection,
    /// one entry per round.
    pub sleeps: Vec<Option<f64>>,
    /// Connections served correctly over all rounds.
    pub ok: u64,
    /// Connections that failed or came back short over all rounds.
    pub errors: u64,
    /// Sequential connections per client in each of its rounds.
    pub conns: usize,
    /// What the server reported when it stopped (its `--stats` table).
    pub usage: Option<ServerUsage>,
}

/// The whole measurement.
#[derive(Debug)]
pub struct Measured {
    /// One row per model, in the order given.
    pub rows: Vec<Row>,
    /// Concurrent clients.
    pub clients: usize,
    /// Bytes per connection.
    pub bytes: usize,
    /// Rounds run.
    pub rounds: usize,
    /// Whether the rounds stopped because every row reached the target precision.
    pub converged: bool,
    /// The target relative standard error.
    pub target_rel_se: f64,
}

/// Bounded wait for per-connection children to be reaped after a load.
const SETTLE: Duration = Duration::from_secs(2);
/// Connections per client of the unmeasured warm-up and of the calibration run.
const WARMUP_CONNS: usize = 40;
const CALIBRATION_CONNS: usize = 100;

/// Starts every model, then runs interleaved rounds of `load` against them.
pub fn run(bin_dir: &Path, models: &[Model], load: Load, bar: &ProgressBar) -> Measured {
    let mut servers: Vec<Option<ServerProc>> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for model in models {
        bar.set_message(format!("fig 30.1 start {}", model.name));
        let (server, unavailable) = match runs::start(bin_dir, "hello", model) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(runs::unavailable_note(model.name, &e))),
        };
        servers.push(server);
        rows.push(Row {
            model: model.clone(),
            unavailable,
            samples: Vec::new(),
            sleeps: Vec::new(),
            ok: 0,
            errors: 0,
            conns: 0,
            usage: None,
        });
    }
    let deadline = |d: Duration| Instant::now() + d;
    for server in servers.iter().flatten() {
        client::bytes_load(
            server.addr(),
            load.clients,
            WARMUP_CONNS,
            load.bytes,
            deadline(Duration::from_secs(30)),
        );
    }
    for (row, server) in rows.iter_mut().zip(&servers) {
        if let Some(server) = server {
            row.conns = load.conns.unwrap_or_else(|| calibrate(server, load));
        }
    }
    let started = Instant::now();
    let mut rounds = 0;
    let mut converged = false;
    while rounds < load.max_reps {
        bar.set_message(format!("fig 30.1 round {}", rounds + 1));
        for (row, server) in rows.iter_mut().zip(&servers) {
            let Some(server) = server else { continue };
            let once = measure_once(server, load, row.conns);
            row.ok += once.ok;
            row.errors += once.errors;
            row.samples.push(once.cpu_us);
            row.sleeps.push(once.sleeps);
        }
        rounds += 1;
        if rounds >= load.min_reps {
            converged = rows.iter().filter(|r| r.unavailable.is_none()).all(|r| {
                let samples: Vec<f64> = r.samples.iter().flatten().copied().collect();
                Summary::of(&samples).relative_se() <= load.target_rel_se
            });
            if converged || started.elapsed() >= load.budget {
                break;
            }
        }
    }
    bar.inc(1);
    for (row, server) in rows.iter_mut().zip(servers) {
        row.usage = server.map(ServerProc::stop);
    }
    Measured {
        rows,
        clients: load.clients,
        bytes: load.bytes,
        rounds,
        converged,
        target_rel_se: load.target_rel_se,
    }
}

/// What one repetition against one server measured.
struct Once {
    /// CPU µs per good connection.
    cpu_us: Option<f64>,
    /// Voluntary context switches per good connection.
    sleeps: Option<f64>,
    ok: u64,
    errors: u64,
}

fn measure_once(server: &ServerProc, load: Load, conns: usize) -> Once {
    let pgid = server.pid();
    let before = proc_cpu::snapshot(pgid);
    let result = client::bytes_load(
        server.addr(),
        load.clients,
        conns,
        load.bytes,
        Instant::now() + Duration::from_secs(300),
    );
    let after = proc_cpu::settled(pgid, before.processes, SETTLE);
    let per_conn =
        |a: u64, b: u64| (result.ok > 0 && a >= b).then(|| (a - b) as f64 / result.ok as f64);
    Once {
        cpu_us: per_conn(after.ns, before.ns).map(|ns| ns / 1e3),
        sleeps: per_conn(after.sleeps, before.sleeps),
        ok: result.ok,
        errors: result.errors,
    }
}

/// Connections per client so that one repetition against `server` takes about
/// `load.target_wall`.
fn calibrate(server: &ServerProc, load: Load) -> usize {
    let result = client::bytes_load(
        server.addr(),
        load.clients,
        CALIBRATION_CONNS,
        load.bytes,
        Instant::now() + Duration::from_secs(60),
    );
    let per_conn = result.wall.as_secs_f64() / CALIBRATION_CONNS as f64;
    if per_conn <= 0.0 {
        return CALIBRATION_CONNS;
    }
    let conns = (load.target_wall.as_secs_f64() / per_conn).round() as usize;
    conns.clamp(20, 20_000)
}
