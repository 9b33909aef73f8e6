//! `wrk` as a second opinion on keep-alive throughput, when it is on `$PATH`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What wrk reported.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    /// `Requests/sec:`.
    pub rps: f64,
    /// 50% latency, microseconds.
    pub p50_us: f64,
    /// 99% latency, microseconds.
    pub p99_us: f64,
    /// Sum of the `Socket errors:` counts.
    pub socket_errors: u64,
}

/// Runs `wrk -t2 -cC -dDs --latency http://addr/`, killed if it overruns by 15 s.
pub fn run(wrk: &Path, addr: SocketAddr, conns: usize, secs: u64) -> Option<WrkResult> {
    let mut child = Command::new(wrk)
        .args([
            "-t",
            &conns.clamp(1, 2).to_string(),
            "-c",
            &conns.to_string(),
            "-d",
            &format!("{secs}s"),
            "--latency",
            &format!("http://{addr}/"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(secs + 15);
    while child.try_wait().ok()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().ok()?;
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// Parses wrk's `--latency` report.
pub fn parse(text: &str) -> Option<WrkResult> {
    let mut result = WrkResult::default();
    let mut have_rps = false;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            result.rps = v.trim().parse().ok()?;
            have_rps = true;
        } else if let Some(v) = line.strip_prefix("50%") {
            result.p50_us = duration_us(v.trim())?;
        } else if let Some(v) = line.strip_prefix("99%") {
            result.p99_us = duration_us(v.trim())?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            result.socket_errors = v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    have_rps.then_some(result)
}

/// `123.45us`, `1.20ms`, `2.00s`, `1.5m` → microseconds.
fn duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        _ => return None,
    };
    Some(value * scale)
}
