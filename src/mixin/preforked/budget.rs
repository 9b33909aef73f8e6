//! The master's file-descriptor budget: how many workers its `RLIMIT_NOFILE` can
//! supervise, computed once at start so the pool stops growing before the master runs
//! out of fds (instead of failing mid-growth).
//!
//! Each live worker costs the master [`PER_WORKER`] fds: the master's end of its
//! control socket and at least one hub connection (a remote wait or send). A worker
//! finishing after a stop (SIGHUP, SIGTTOU, retirement) still costs them until it
//! exits, so the pool starts no worker while the live ones fill the budget, and grows
//! to half of it at most: a SIGHUP then runs a full pool's replacements beside it (with
//! more workers than half, it replaces them a few at a time, as they exit). Spawning
//! briefly needs two more (the socketpair), and the master keeps [`RESERVE`] free for
//! the connections it accepts and passes, extra hub connections and its own files.

use std::io;

/// Fds the master holds per live worker.
const PER_WORKER: u64 = 2;
/// Fds kept free for everything else the master opens while serving.
const RESERVE: u64 = 64;

/// How many workers fit: `None` when the limit cannot be read (no cap).
fn workers_that_fit() -> Option<usize> {
    let limit = crate::sys::fd_passing::open_files_limit()?;
    Some(fit(limit, open_now()))
}

/// Workers that fit in `limit` fds when `open` are already taken.
fn fit(limit: u64, open: u64) -> usize {
    let spare = limit.saturating_sub(open + RESERVE + 2);
    usize::try_from(spare / PER_WORKER).unwrap_or(usize::MAX)
}

/// Fds open in this process now (a generous guess when `/proc` cannot be read).
fn open_now() -> u64 {
    crate::sys::fd_passing::open_fds_now(64) as u64
}

/// What the master's fds allow, decided once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Budget {
    /// How far the pool may grow: half the workers that fit, so a SIGHUP can run a
    /// full pool's replacements beside it (never below `workers`).
    pub(super) max_workers: usize,
    /// Workers that may be alive at once, finishing ones included (`usize::MAX` when
    /// the limit cannot be read).
    pub(super) fit: usize,
}

/// Checks `workers` and `max_workers` against the budget: the `max_workers` to use
/// (capped, with a warning, when the budget is smaller) and the workers that fit, or
/// an error when not even `workers` fit.
pub(super) fn cap(workers: usize, max_workers: usize) -> io::Result<Budget> {
    let Some(fit) = workers_that_fit() else {
        return Ok(Budget {
            max_workers,
            fit: usize::MAX,
        });
    };
    let limit = crate::sys::fd_passing::open_files_limit().unwrap_or(0);
    if workers > fit {
        return Err(io::Error::other(format!(
            "preforked: {workers} workers do not fit in the master's open-file limit \
             (RLIMIT_NOFILE {limit}: about {PER_WORKER} fds per worker plus {RESERVE} \
             spare, so at most {fit} workers); raise `ulimit -n` or start fewer workers"
        )));
    }
    let side_by_side = (fit / 2).max(workers).min(super::Preforked::MAX_WORKERS);
    let why = format!(
        "the master's open-file limit (RLIMIT_NOFILE {limit}) fits {fit} workers alive at \
         once (about {PER_WORKER} fds each plus {RESERVE} spare), and a SIGHUP runs the new \
         ones beside the old"
    );
    if workers > fit / 2 {
        log::warn!(
            "preforked: a SIGHUP will replace the {workers} workers a few at a time: {why}; \
             raise `ulimit -n` to replace them at once"
        );
    }
    if max_workers > side_by_side {
        log::warn!(
            "preforked: max_workers {max_workers} capped to {side_by_side}: {why}; raise \
             `ulimit -n` to grow further"
        );
    }
    Ok(Budget {
        max_workers: max_workers.min(side_by_side),
        fit,
    })
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn the_budget_leaves_the_reserve_and_the_fds_already_open() {
        assert_eq!(fit(1024, 10), (1024 - 10 - 64 - 2) / 2);
        assert_eq!(fit(64, 10), 0);
        assert_eq!(fit(1 << 20, 10), ((1 << 20) - 76) / 2);
    }
}
