//! CPU time of a running server, read from `/proc` so that a measurement can cover the load
//! window only (not start-up and shutdown): every process of the server's process group,
//! each with its live threads, its dead threads and the children it has reaped.
//!
//! Per process `P` of the group, one snapshot counts
//! - P's CPU clock (`clock_getcpuclockid` + `clock_gettime`): every thread of P, the exited
//!   ones included, in nanoseconds. Where that clock cannot be read, the larger of the
//!   schedstat sum of P's live threads (ns, misses exited threads) and `utime + stime`
//!   from `/proc/P/stat` (exited threads included, truncated to a 10 ms clock tick).
//! - `cutime + cstime`: the children `P` has reaped (the forking model's per-connection
//!   children), within a tick.
//!
//! The difference of two snapshots is the group's CPU in between, provided no process of
//! the group exited unreaped by another member in between (true for the fixed pools and the
//! forking model, whose children are reaped by the master).

use std::time::{Duration, Instant};

/// One reading of a process group's CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCpu {
    /// CPU nanoseconds of the group's processes, their exited threads and reaped children.
    pub ns: u64,
    /// Processes in the group at that moment.
    pub processes: usize,
    /// Voluntary context switches of the group's live threads (each time one went to sleep
    /// waiting: a wake-up that found nothing to do shows here even when the kernel hid
    /// it from the program).
    pub sleeps: u64,
}

/// Reads the CPU time of every process whose process group is `pgid`.
pub fn snapshot(pgid: i32) -> GroupCpu {
    let tick_ns = tick_ns();
    let mut cpu = GroupCpu::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return cpu;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Some(stat) = stat_fields(pid) else {
            continue;
        };
        if stat.pgrp != pgid {
            continue;
        }
        let coarse = (stat.utime + stat.stime) * tick_ns;
        let (precise, sleeps) = live_threads(pid);
        cpu.sleeps += sleeps;
        let own = process_clock_ns(pid).unwrap_or(coarse.max(precise));
        cpu.ns += own + (stat.cutime + stat.cstime) * tick_ns;
        cpu.processes += 1;
    }
    cpu
}

/// Waits (bounded by `timeout`) until the group has `processes` processes again, so that
/// per-connection children have exited and been reaped before the closing snapshot; then
/// returns that snapshot.
pub fn settled(pgid: i32, processes: usize, timeout: Duration) -> GroupCpu {
    let deadline = Instant::now() + timeout;
    loop {
        let cpu = snapshot(pgid);
        if cpu.processes <= processes || Instant::now() >= deadline {
            return cpu;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The fields of `/proc/PID/stat` used here, clock ticks for the times.
struct Stat {
    pgrp: i32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

fn stat_fields(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name: state(3) ppid(4) pgrp(5) … utime(14) stime(15)
    // cutime(16) cstime(17); index 0 here is field 3.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let number = |field: usize| -> Option<u64> { fields.get(field - 3)?.parse().ok() };
    Some(Stat {
        pgrp: fields.get(2)?.parse().ok()?,
        utime: number(14)?,
        stime: number(15)?,
        // cutime and cstime are signed in the ABI but never negative in practice.
        cutime: number(16).unwrap_or(0),
        cstime: number(17).unwrap_or(0),
    })
}

/// Σ over the live threads of `pid`: the first field of `schedstat` (ns on a CPU), and
/// `voluntary_ctxt_switches` from `status`.
fn live_threads(pid: i32) -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    let (mut ns, mut sleeps) = (0, 0);
    for task in tasks.flatten() {
        let path = task.path();
        ns += std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        sleeps += std::fs::read_to_string(path.join("status"))
            .ok()
            .and_then(|t| {
                let line = t
                    .lines()
                    .find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .unwrap_or(0);
    }
    (ns, sleeps)
}

/// The CPU time of every thread of `pid`, exited ones included, in nanoseconds.
fn process_clock_ns(pid: i32) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock is a valid, writable clockid_t.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; clock names pid's CPU clock.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Nanoseconds per clock tick (`sysconf(_SC_CLK_TCK)`, usually 100 Hz).
fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}
