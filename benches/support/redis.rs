//! The comet round across two servers on one Redis (issue 11): a private
//! `redis-server`, two comet servers started with `--redis`, N waiters on each, one
//! notify on the second; every waiter must get 2N. Measured: notify → last answer,
//! the servers' CPU and peak RSS, and Redis's CPU. Used by `benches/comet.rs --redis`
//! (included there by path, so the other benches do not compile it).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::client::get_text;
use crate::support::fleet::{Fleet, Next};
use crate::support::machine;
use crate::support::model::Model;
use crate::support::report::{Table, num};
use crate::support::server_proc::ServerProc;

/// A `redis-server` on a free loopback port without persistence; killed on drop.
struct RedisProc {
    child: Child,
    url: String,
}

impl RedisProc {
    fn start() -> Result<RedisProc, String> {
        let bin = machine::on_path("redis-server")
            .ok_or("redis-server is not installed (apt-get install -y redis-server)")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--maxclients", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let redis = RedisProc {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    /// User + system CPU seconds so far, from `/proc/PID/stat`.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // After the command name: state is field 0, utime 11, stime 12 (in clock ticks).
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(bin_dir: &Path, model: &Model, url: &str) -> Result<ServerProc, String> {
    let mut args = vec!["--addr".to_owned(), "127.0.0.1:0".to_owned()];
    args.extend(model.args.iter().cloned());
    args.extend(["--redis".to_owned(), url.to_owned()]);
    ServerProc::start(&bin_dir.join("comet"), &args).map_err(|e| format!("{}: {e:?}", model.name))
}

/// Waits until `GET /` on `addr` says `want` (the cluster-wide count); the last count.
fn wait_for_count(addr: SocketAddr, want: usize, deadline: Instant) -> usize {
    let mut seen = 0;
    while Instant::now() < deadline {
        seen = get_text(addr, "/")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(seen);
        if seen >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

/// Counts a fleet's answers: `(ok, other)` against the expected body.
fn collect(fleet: &mut Fleet, expected: &str, deadline: Instant) -> (usize, usize) {
    let (mut ok, mut other) = (0, 0);
    let _ = fleet.run(deadline, |status, body, _| {
        if status == 200 && body == expected.as_bytes() {
            ok += 1;
        } else {
            other += 1;
        }
        Next::Done
    });
    (ok, other)
}

/// One cross-server round with `n` waiters on each of `a` and `b`.
pub fn cross_server_section(
    bin_dir: &Path,
    a: &Model,
    b: &Model,
    n: usize,
    per_run: Duration,
) -> Table {
    let mut table = Table::new(
        "Comet across two servers on one Redis: N waiters on each, one notify",
        &[
            "servers",
            "waiters",
            "held",
            "notify said",
            "released ok",
            "failed",
            "setup s",
            "release s",
            "server user s",
            "server sys s",
            "redis CPU s",
            "peak RSS MiB",
        ],
    );
    let name = format!("{} + {}", a.name, b.name);
    let row = match round(bin_dir, a, b, n, per_run) {
        Ok(row) => row,
        Err(why) => {
            table.row(vec![name.clone(), (2 * n).to_string()]);
            table.note(format!("- {name}: n/a ({why})"));
            return table;
        }
    };
    let mut cells = vec![name, (2 * n).to_string()];
    cells.extend(row);
    table.row(cells);
    table
}

fn round(
    bin_dir: &Path,
    a: &Model,
    b: &Model,
    n: usize,
    per_run: Duration,
) -> Result<Vec<String>, String> {
    let redis = RedisProc::start()?;
    let server_a = start_server(bin_dir, a, &redis.url)?;
    let server_b = start_server(bin_dir, b, &redis.url)?;
    let deadline = Instant::now() + per_run;
    let start = Instant::now();
    let wait = |addr: SocketAddr| format!("GET /wait HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut fleet_a = Fleet::connect(server_a.addr(), n, deadline).map_err(|e| e.to_string())?;
    fleet_a.send_all(wait(server_a.addr()).as_bytes());
    let mut fleet_b = Fleet::connect(server_b.addr(), n, deadline).map_err(|e| e.to_string())?;
    fleet_b.send_all(wait(server_b.addr()).as_bytes());
    let held = wait_for_count(server_a.addr(), 2 * n, deadline);
    let setup = start.elapsed();
    server_a.sample_rss_now();
    server_b.sample_rss_now();
    let redis_before = redis.cpu_seconds();
    let notified = Instant::now();
    let said = get_text(server_b.addr(), "/notify").unwrap_or_else(|e| format!("error: {e}"));
    let release_deadline = deadline.min(notified + Duration::from_secs(10 + n as u64 / 500));
    let ((ok_a, other_a), (ok_b, other_b)) = std::thread::scope(|scope| {
        let a = scope.spawn(|| collect(&mut fleet_a, &said, release_deadline));
        let b = collect(&mut fleet_b, &said, release_deadline);
        (a.join().unwrap_or((0, n)), b)
    });
    let release = notified.elapsed();
    let redis_cpu = redis.cpu_seconds() - redis_before;
    let failed = fleet_a.failed + fleet_b.failed + other_a + other_b;
    let (usage_a, usage_b) = (server_a.stop(), server_b.stop());
    Ok(vec![
        held.to_string(),
        said.clone(),
        (ok_a + ok_b).to_string(),
        failed.to_string(),
        num(Some(setup.as_secs_f64()), 2),
        num(Some(release.as_secs_f64()), 3),
        num(Some(usage_a.user + usage_b.user), 2),
        num(Some(usage_a.sys + usage_b.sys), 2),
        num(Some(redis_cpu), 2),
        num(
            Some((usage_a.peak_rss_kib + usage_b.peak_rss_kib) as f64 / 1024.0),
            1,
        ),
    ])
}
