//! What the master prepares once, before any fork, for every worker it will start:
//! the way workers take connections (its lock made before the fork), the inner model,
//! the scoreboard, the connection quota.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use super::{Accept, LockKind, Preforked};
use crate::mixin::MixIn;
use crate::mixin::pool_stats::Scoreboard;
use crate::server::source::worker::{AcceptLock, Way, WorkerSeat};
use crate::server::{Context, ListenAddr};
use crate::sys::process_lock::{FileLock, SharedMutex};

/// Everything a worker needs, made by the master before it forks.
pub(crate) struct WorkerPlan {
    pub(super) accept: Accept,
    /// The model each worker runs (each worker owns its copy after the fork).
    pub(super) inner: std::sync::Mutex<Box<dyn MixIn>>,
    pub(super) board: Arc<Scoreboard>,
    /// How workers take connections (its lock made before the fork).
    pub(super) way: Way,
    max_requests: Option<u64>,
    jitter: u64,
    /// The slot whose workers fail to start on purpose (the supervision tests set
    /// [`FAIL_BOOT_VAR`]; read once, before any fork).
    pub(super) fail_boot: Option<usize>,
    /// How long each worker waits right after its fork, before any set-up (the
    /// supervision tests set [`SLOW_START_VAR`] to stop the pool while workers start).
    pub(super) slow_start: Option<Duration>,
}

/// Test hook: `MIXSERVE_TEST_SLOW_START_MS=<ms>` makes every worker sleep that long
/// right after its fork, before it sets up its own signal handling, so a test can stop
/// the pool while its workers start. Nothing else reads it.
const SLOW_START_VAR: &str = "MIXSERVE_TEST_SLOW_START_MS";

/// Test hook: `MIXSERVE_TEST_FAIL_BOOT=<slot>` makes every worker started in that slot
/// fail before serving, so the tests can watch the master back off while the others
/// serve. Nothing else reads it.
const FAIL_BOOT_VAR: &str = "MIXSERVE_TEST_FAIL_BOOT";

impl std::fmt::Debug for WorkerPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPlan")
            .field("accept", &self.accept)
            .field("way", &self.way)
            .finish_non_exhaustive()
    }
}

impl WorkerPlan {
    /// The plan for `model`'s workers; its inner model moves in (once everything
    /// else succeeded) until the master gives it back.
    pub(super) fn new(model: &mut Preforked, ctx: &Context) -> io::Result<WorkerPlan> {
        let way = match model.accept {
            Accept::Shared => Way::Shared,
            Accept::Locked(LockKind::File) => {
                Way::Locked(Arc::new(AcceptLock::File(FileLock::new()?)))
            }
            Accept::Locked(LockKind::SharedMutex) => {
                Way::Locked(Arc::new(AcceptLock::Mutex(SharedMutex::new()?)))
            }
            Accept::ReusePort => Way::ReusePort {
                addr: reuseport_addr(ctx)?,
                nodelay: ctx.listener().nodelay()?,
            },
            Accept::Passed(_) => Way::Passed,
        };
        let board = model
            .board
            .clone()
            .ok_or_else(|| io::Error::other("preforked: no scoreboard memory"))?;
        Ok(WorkerPlan {
            accept: model.accept,
            board,
            way,
            max_requests: model.max_requests,
            jitter: model.max_requests_jitter,
            fail_boot: std::env::var(FAIL_BOOT_VAR)
                .ok()
                .and_then(|v| v.parse().ok()),
            slow_start: std::env::var(SLOW_START_VAR)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
            inner: std::sync::Mutex::new(std::mem::replace(
                &mut model.inner,
                Box::new(crate::mixin::Iterative::new()),
            )),
        })
    }

    /// The worker's seat in `slot`, made in the worker after the fork.
    pub(super) fn seat(&self, slot: usize, control: RawFd) -> WorkerSeat {
        WorkerSeat {
            board: Arc::clone(&self.board),
            slot,
            control,
            way: self.way.clone(),
            quota: self.quota(),
        }
    }

    /// This worker's connection quota: `max_requests` plus a per-process jitter.
    fn quota(&self) -> Option<u64> {
        let max = self.max_requests?;
        let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Some(quota_for(max, self.jitter, seed))
    }

    /// Whether workers also get their stop in band (a quit byte on their socket,
    /// after the fds passed to them): those that read their socket.
    pub(super) fn stops_in_band(&self) -> bool {
        matches!(self.accept, Accept::Passed(_) | Accept::ReusePort)
    }
}

/// The address each worker binds its own `SO_REUSEPORT` listener to: the server's,
/// which must be TCP and bound with `SO_REUSEPORT` itself.
fn reuseport_addr(ctx: &Context) -> io::Result<SocketAddr> {
    let ListenAddr::Tcp(addr) = ctx.listener().local_addr()? else {
        return Err(io::Error::other(
            "preforked: Accept::ReusePort needs a TCP listener",
        ));
    };
    if !crate::sys::accept::has_reuseport(ctx.listener_fd()) {
        return Err(io::Error::other(
            "preforked: Accept::ReusePort needs the server's listener bound with \
             SO_REUSEPORT: build with .reuse_port(true) (or \
             .listener(Listener::bind_tcp_reuseport(addr, backlog)?)); a socket from \
             systemd needs ReusePort=yes in its socket unit",
        ));
    }
    Ok(addr)
}

/// `max` plus a jitter below `jitter + 1` picked by `seed`; saturating, so a huge
/// `max_requests` ("no limit") stays huge instead of wrapping to a small quota.
fn quota_for(max: u64, jitter: u64, seed: u64) -> u64 {
    match jitter.checked_add(1) {
        Some(span) => max.saturating_add((seed >> 32) % span),
        None => max.saturating_add(seed >> 32),
    }
}

#[cfg(test)]
mod tests {
    use super::quota_for;

    #[test]
    fn a_huge_quota_saturates_instead_of_wrapping() {
        assert_eq!(quota_for(u64::MAX, u64::MAX / 10, u64::MAX), u64::MAX);
        assert_eq!(quota_for(u64::MAX, u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(quota_for(1000, 0, u64::MAX), 1000);
        assert!((1000..=1100).contains(&quota_for(1000, 100, 0x1234_5678_9abc_def0)));
    }
}
