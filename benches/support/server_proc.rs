//! One example server run as a child process and measured from outside: its address from
//! the first stdout line, its peak memory sampled from `/proc` while it runs, and its CPU
//! time (user and sys, its reaped children included) from `wait4` when it exits.
//!
//! The server runs in a process group of its own. [`ServerProc`]'s `Drop` kills that group
//! and reaps the server, so no early return or panic of the bench leaves servers behind.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::machine;

/// Why a server did not start.
#[derive(Debug)]
pub enum StartError {
    /// The example exited before listening: it does not offer this model (yet). The text is
    /// the first line of its stderr.
    Unavailable(String),
    /// It could not be spawned, or did not say where it listens in time.
    Failed(String),
}

/// What was measured of a server that has exited.
#[derive(Debug, Clone, Default)]
pub struct ServerUsage {
    /// User CPU seconds of the server and of the children it reaped.
    pub user: f64,
    /// System CPU seconds of the server and of the children it reaped.
    pub sys: f64,
    /// Highest sum of resident memory over the server's process group, in KiB.
    pub peak_rss_kib: u64,
    /// Whether it exited 0 on SIGTERM within the deadline.
    pub clean_exit: bool,
    /// Everything it printed on stdout after the `listening on` line.
    pub stdout: Vec<String>,
}

/// A running example server; killed and reaped on drop.
#[derive(Debug)]
pub struct ServerProc {
    /// Process id, also the process group id.
    pid: i32,
    /// The address from its `listening on` line.
    addr: SocketAddr,
    /// Stdout lines after the first.
    lines: Arc<Mutex<Vec<String>>>,
    /// Set to stop the memory sampler.
    stop_sampling: Arc<AtomicBool>,
    /// Highest group RSS seen so far, KiB.
    peak_rss: Arc<AtomicU64>,
    /// The memory sampler thread.
    sampler: Option<JoinHandle<()>>,
    /// Whether the server has been reaped.
    reaped: bool,
}

const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

impl ServerProc {
    /// Starts `bin args…` and waits for its `listening on SCHEME://ADDR` line.
    pub fn start(bin: &Path, args: &[String]) -> Result<ServerProc, StartError> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| StartError::Failed(format!("{}: {e}", bin.display())))?;
        let pid = child.id() as i32;
        machine::register_group(pid);
        let mut server = ServerProc {
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines: Arc::new(Mutex::new(Vec::new())),
            stop_sampling: Arc::new(AtomicBool::new(false)),
            peak_rss: Arc::new(AtomicU64::new(0)),
            sampler: None,
            reaped: false,
        };
        let (first_tx, first_rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let lines = Arc::clone(&server.lines);
            std::thread::spawn(move || read_stdout(out, first_tx, lines));
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                if let Ok(mut s) = stderr.lock() {
                    *s = text;
                }
            });
        }
        match first_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => match parse_listening(&line) {
                Some(addr) => server.addr = addr,
                None => {
                    return Err(StartError::Failed(format!(
                        "unexpected first line {line:?}"
                    )));
                }
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = server.reap(Duration::from_secs(5)).map(|(s, _)| s);
                std::thread::sleep(Duration::from_millis(50));
                let text = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                let why = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                return Err(StartError::Unavailable(format!(
                    "exited ({}) before listening: {why}",
                    status.map_or("?".into(), |s| s.to_string())
                )));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(StartError::Failed("no `listening on` line in time".into()));
            }
        }
        let (stop, peak) = (
            Arc::clone(&server.stop_sampling),
            Arc::clone(&server.peak_rss),
        );
        server.sampler = Some(std::thread::spawn(move || sample_rss(pid, &stop, &peak)));
        Ok(server)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id, which is also its process group id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Samples the group's memory now (in addition to the periodic sampler).
    pub fn sample_rss_now(&self) {
        self.peak_rss
            .fetch_max(group_rss_kib(self.pid), Ordering::Relaxed);
    }

    /// Sends SIGTERM, waits for a graceful exit (SIGKILL after a deadline), and returns what
    /// was measured.
    pub fn stop(mut self) -> ServerUsage {
        self.sample_rss_now();
        self.stop_sampling.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        // SAFETY: kill with a pid we spawned and have not reaped yet.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let (status, usage) = self.reap(STOP_TIMEOUT).unwrap_or((-1, zero_rusage()));
        // Give the stdout reader a moment to collect the `--stats` lines printed at exit.
        std::thread::sleep(Duration::from_millis(100));
        ServerUsage {
            user: seconds(usage.ru_utime),
            sys: seconds(usage.ru_stime),
            peak_rss_kib: self.peak_rss.load(Ordering::Relaxed),
            clean_exit: status == 0,
            stdout: self.lines.lock().map(|l| l.clone()).unwrap_or_default(),
        }
    }

    /// Waits up to `timeout` for the server to exit, then kills its whole group and reaps it.
    /// Returns the exit code (or -signal) and the rusage of the server and its children.
    fn reap(&mut self, timeout: Duration) -> Option<(i32, libc::rusage)> {
        if self.reaped {
            return None;
        }
        let deadline = Instant::now() + timeout;
        let mut result = None;
        while result.is_none() && Instant::now() < deadline {
            result = wait4(self.pid, libc::WNOHANG);
            if result.is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if result.is_none() {
            // SAFETY: the group was created for this server; kill it whole.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            result = wait4(self.pid, 0);
        }
        // Workers the server failed to stop must not outlive the measurement.
        // SAFETY: as above; ESRCH when the group is already empty is expected.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        self.reaped = true;
        machine::unregister_group(self.pid);
        result
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.stop_sampling.store(true, Ordering::Relaxed);
        if !self.reaped {
            // SAFETY: kill the server's own process group, then reap the server.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            self.reap(Duration::from_secs(5));
        }
    }
}

fn read_stdout(out: impl Read, first: mpsc::Sender<String>, lines: Arc<Mutex<Vec<String>>>) {
    let mut reader = BufReader::new(out).lines();
    if let Some(Ok(line)) = reader.next() {
        let _ = first.send(line);
    }
    drop(first);
    for line in reader.map_while(Result::ok) {
        if let Ok(mut l) = lines.lock() {
            l.push(line);
        }
    }
}

/// `listening on http://127.0.0.1:4000` (or `tcp://…`) → the address.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("listening on ")?;
    let addr = rest.split_once("://").map_or(rest, |(_, a)| a);
    addr.trim_end_matches('/').parse().ok()
}

/// `wait4(pid)`; `None` while the child is still running (with WNOHANG) or on error.
fn wait4(pid: i32, flags: i32) -> Option<(i32, libc::rusage)> {
    let mut status = 0;
    let mut usage = zero_rusage();
    loop {
        // SAFETY: status and usage are valid and writable; pid is our child.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if r == pid {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -libc::WTERMSIG(status)
            };
            return Some((code, usage));
        }
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

fn zero_rusage() -> libc::rusage {
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn sample_rss(pgid: i32, stop: &AtomicBool, peak: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        peak.fetch_max(group_rss_kib(pgid), Ordering::Relaxed);
        std::thread::sleep(SAMPLE_EVERY);
    }
}

/// Resident memory summed over the processes of group `pgid`, in KiB; the leader's own
/// high-water mark (VmHWM) when that is higher.
pub fn group_rss_kib(pgid: i32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut sum = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == pgid || process_group(pid) == Some(pgid) {
            sum += status_kib(pid, "VmRSS:");
        }
    }
    sum.max(status_kib(pgid, "VmHWM:"))
}

fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state ppid pgrp …
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(2)?.parse().ok()
}

fn status_kib(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(key))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}
