//! Facts about the machine printed at the top of every report, the open-files limit the
//! client side needs, where the example binaries and the output files live, and a SIGINT
//! handler that kills the server process groups still running when the bench is stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// Cores, kernel, CPU model and memory of this machine, as one line.
pub fn describe() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = field(&cpuinfo, "model name").unwrap_or("unknown CPU");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = field(&meminfo, "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!(
        "machine: {cores} cores, {cpu}, {mem_gib:.1} GiB, Linux {}",
        kernel.trim()
    )
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

/// Raises the soft RLIMIT_NOFILE of this process to its hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit whose soft limit does not exceed its hard limit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    lim.rlim_cur
}

/// The crate root (where Cargo.toml is).
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory: `$CARGO_TARGET_DIR` or `<crate>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target"))
}

/// Where the CSV and SVG files go: `<target>/mixserve-bench/`.
pub fn output_dir() -> PathBuf {
    target_dir().join("mixserve-bench")
}

/// Builds the example servers in release mode (`cargo build --release --examples`).
pub fn build_examples() -> std::io::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--examples", "--quiet"])
        .current_dir(manifest_dir())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "building the examples failed: {status}"
        )))
    }
}

/// The directory of the release example binaries.
pub fn default_bin_dir() -> PathBuf {
    target_dir().join("release").join("examples")
}

/// The full path of `name` if an executable of that name is on `$PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_file(p))
}

fn is_file(p: &Path) -> bool {
    p.metadata().is_ok_and(|m| m.is_file())
}

/// Process groups of the servers now running; SIGINT kills them before the bench exits.
static SERVER_GROUPS: [AtomicI32; 8] = [const { AtomicI32::new(0) }; 8];

/// Remembers a server's process group so that a Ctrl-C of the bench kills it too.
pub fn register_group(pgid: i32) {
    for slot in &SERVER_GROUPS {
        if slot
            .compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

/// Forgets a process group registered with [`register_group`].
pub fn unregister_group(pgid: i32) {
    for slot in &SERVER_GROUPS {
        let _ = slot.compare_exchange(pgid, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

extern "C" fn on_interrupt(_: libc::c_int) {
    for slot in &SERVER_GROUPS {
        let pgid = slot.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill is async-signal-safe; a negative pid names the process group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
    // SAFETY: _exit is async-signal-safe and ends the process without unwinding.
    unsafe { libc::_exit(130) };
}

/// Installs the SIGINT/SIGTERM handler that kills registered server groups, then exits.
/// The servers run in their own process groups, so a terminal's Ctrl-C does not reach them.
pub fn kill_servers_on_interrupt() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only calls async-signal-safe functions (kill, _exit).
        unsafe { libc::signal(sig, handler) };
    }
}
