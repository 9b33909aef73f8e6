//! The master's worker table: spawning into free slots, reaping, respawning with
//! back-off, growing when every worker is busy, shrinking back, the heartbeat check,
//! and stopping workers (gracefully, or at once).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::worker::{self, EXIT_BOOT_FAILED};
use super::{Accept, LockKind, Preforked};
use crate::mixin::MixIn;
use crate::mixin::pool_stats::{Scoreboard, SlotState};
use crate::server::source::worker::{AcceptLock, Way, WorkerSeat};
use crate::server::{Context, ListenAddr};
use crate::sys::fd_passing;
use crate::sys::fork::{self, Forked, SingleThreaded};
use crate::sys::process_lock::{FileLock, SharedMutex};

/// Worker control sockets use tokens from here (one per slot).
pub(super) const CONTROL_BASE: usize = 16;
/// Consecutive deaths at start-up after which the master gives up.
const MAX_BOOT_FAILURES: u32 = 5;
/// A stopping worker is signalled again this often (a signal can land just before
/// it blocks in `accept`).
const RESIGNAL_EVERY: Duration = Duration::from_millis(200);
/// A stopping worker still there this long after the shutdown timeout is killed.
const KILL_AFTER: Duration = Duration::from_secs(2);
/// An extra (grown) worker idle this long is retired.
const SHRINK_AFTER: Duration = Duration::from_secs(2);

/// Everything a worker needs, made by the master before it forks.
pub(crate) struct WorkerPlan {
    pub(super) accept: Accept,
    /// The model each worker runs (each worker owns its copy after the fork).
    pub(super) inner: std::sync::Mutex<Box<dyn MixIn>>,
    pub(super) board: Arc<Scoreboard>,
    /// How workers take connections (its lock made before the fork).
    way: Way,
    max_requests: Option<u64>,
    jitter: u64,
}

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
            Accept::ReusePort => Way::ReusePort(reuseport_addr(ctx)?),
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
        Some(max + (seed >> 32) % (self.jitter + 1))
    }

    /// Whether workers also get their stop in band (a quit byte on their socket,
    /// after the fds passed to them): those that read their socket.
    fn stops_in_band(&self) -> bool {
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
             SO_REUSEPORT: build with .listener(Listener::bind_tcp_reuseport(addr, backlog)?)",
        ));
    }
    Ok(addr)
}

/// One live worker, as the master sees it.
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) pid: Pid,
    /// The master's end of the control socket (`None` once the worker closed it).
    pub(super) control: Option<OwnedFd>,
    /// When it was asked to stop, and when it was last signalled.
    stopping: Option<(Instant, Instant)>,
    started: Instant,
}

impl Worker {
    pub(super) fn is_active(&self) -> bool {
        self.stopping.is_none()
    }
}

/// The master's worker table.
#[derive(Debug)]
pub(super) struct Pool {
    pub(super) workers: Vec<Option<Worker>>,
    /// Workers to keep running (changed by SIGTTIN/SIGTTOU).
    pub(super) target: usize,
    max: usize,
    heartbeat_timeout: Duration,
    boot_failures: u32,
    spawn_not_before: Instant,
    last_shrink: Instant,
    proof: SingleThreaded,
}

impl Pool {
    pub(super) fn new(model: &Preforked, slots: usize, proof: SingleThreaded) -> Pool {
        Pool {
            workers: (0..slots).map(|_| None).collect(),
            target: model.workers,
            max: model.max_workers,
            heartbeat_timeout: model.heartbeat_timeout,
            boot_failures: 0,
            spawn_not_before: Instant::now(),
            last_shrink: Instant::now(),
            proof,
        }
    }

    pub(super) fn live(&self) -> usize {
        self.workers.iter().flatten().count()
    }

    pub(super) fn active(&self) -> usize {
        self.workers
            .iter()
            .flatten()
            .filter(|w| w.is_active())
            .count()
    }

    /// Active workers that are free to take a connection (or about to be).
    fn free(&self, board: &Scoreboard) -> usize {
        self.active_slots()
            .filter(|&slot| matches!(board.state(slot), SlotState::Idle | SlotState::Starting))
            .count()
    }

    pub(super) fn active_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.as_ref().is_some_and(Worker::is_active))
            .map(|(slot, _)| slot)
    }

    /// Forks a worker into the lowest free slot.
    pub(super) fn spawn(
        &mut self,
        ctx: &Arc<Context>,
        plan: &WorkerPlan,
        registry: &Registry,
    ) -> io::Result<()> {
        let slot = self
            .workers
            .iter()
            .position(Option::is_none)
            .ok_or_else(|| io::Error::other("preforked: no free worker slot"))?;
        let (master_end, worker_end) = fd_passing::socketpair()?;
        let master = std::process::id();
        plan.board.prepare(slot);
        match fork::fork(&self.proof)? {
            Forked::Child => {
                drop(master_end);
                // Never unwind into the master's loop: its destructors would act on the
                // master's workers and fds.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker::run(ctx, plan, slot, worker_end, master)
                }));
                fork::exit_child(worker::EXIT_PANICKED)
            }
            Forked::Parent(pid) => {
                drop(worker_end);
                plan.board.set_pid(slot, pid.as_raw() as u32);
                let fd = master_end.as_raw_fd();
                // Tracked before anything can fail, so a failure still reaps it.
                self.workers[slot] = Some(Worker {
                    pid,
                    control: Some(master_end),
                    stopping: None,
                    started: Instant::now(),
                });
                fork::close_in_child(fd);
                let control = self.workers[slot].as_ref().and_then(|w| w.control.as_ref());
                if let Some(control) = control {
                    fd_passing::set_nonblocking(control, true)?;
                }
                registry.register(
                    &mut SourceFd(&fd),
                    Token(CONTROL_BASE + slot),
                    Interest::READABLE,
                )?;
                Ok(())
            }
        }
    }

    /// The worker closed its control socket: forget the master's end.
    pub(super) fn close_control(&mut self, slot: usize, registry: &Registry) {
        if let Some(worker) = self.workers.get_mut(slot).and_then(Option::as_mut) {
            if let Some(control) = worker.control.take() {
                let fd = control.as_raw_fd();
                let _ = registry.deregister(&mut SourceFd(&fd));
                fork::forget_in_child(fd);
            }
        }
    }

    /// Reaps exited workers; returns the slots freed.
    pub(super) fn reap(&mut self, board: &Scoreboard, registry: &Registry) -> Vec<usize> {
        let mut freed = Vec::new();
        for (pid, code) in fork::reap_exited() {
            let Some(slot) = self
                .workers
                .iter()
                .position(|w| w.as_ref().is_some_and(|w| w.pid == pid))
            else {
                continue;
            };
            self.close_control(slot, registry);
            let Some(worker) = self.workers[slot].take() else {
                continue;
            };
            let at_boot = board.state(slot) == SlotState::Starting || code == EXIT_BOOT_FAILED;
            board.set_state(slot, SlotState::Empty);
            freed.push(slot);
            if worker.stopping.is_some() {
                continue;
            }
            if at_boot {
                self.boot_failures += 1;
                let backoff = Duration::from_millis(100 << self.boot_failures.min(6));
                self.spawn_not_before = Instant::now() + backoff;
                log::warn!(
                    "preforked: worker {pid} died while starting (exit {code}); \
                     retrying in {backoff:?}"
                );
            } else if code != 0 {
                log::warn!(
                    "preforked: worker {pid} died (exit {code}) after {:?}; replacing it",
                    worker.started.elapsed()
                );
            }
        }
        freed
    }

    /// Keeps the pool at its target, grows it when every worker is busy (`free`
    /// overrides the scoreboard's count when the master knows better), shrinks grown
    /// workers that stay idle, and kills workers whose heartbeat stopped.
    pub(super) fn maintain(
        &mut self,
        ctx: &Arc<Context>,
        plan: &WorkerPlan,
        registry: &Registry,
        free: Option<usize>,
    ) -> io::Result<()> {
        if self.boot_failures >= MAX_BOOT_FAILURES {
            return Err(io::Error::other(format!(
                "preforked: {} workers in a row died while starting; stopping instead of \
                 fork-looping (see the workers' errors above)",
                self.boot_failures
            )));
        }
        let board = &plan.board;
        if self
            .active_slots()
            .any(|slot| matches!(board.state(slot), SlotState::Idle | SlotState::Busy))
        {
            self.boot_failures = 0;
        }
        let now = Instant::now();
        if now >= self.spawn_not_before {
            while self.active() < self.target {
                self.spawn(ctx, plan, registry)?;
            }
            let free = free.unwrap_or_else(|| self.free(board));
            if free == 0 && self.active() < self.max {
                self.spawn(ctx, plan, registry)?;
            }
        }
        // Only a worker that holds nobody is retired: a waiter stays with its worker.
        let idle: Vec<usize> = self
            .active_slots()
            .filter(|&slot| board.is_free(slot))
            .collect();
        if self.active() > self.target
            && idle.len() > 1
            && self.last_shrink.elapsed() > SHRINK_AFTER
        {
            if let Some(&slot) = idle.last() {
                self.stop(slot, plan);
                self.last_shrink = now;
            }
        }
        if idle.len() < 2 {
            self.last_shrink = now;
        }
        self.tend(plan, ctx.shutdown_timeout());
        Ok(())
    }

    /// Kills workers whose heartbeat stopped; signals stopping workers again and
    /// kills those still there after `timeout`. Runs while draining too.
    pub(super) fn tend(&mut self, plan: &WorkerPlan, timeout: Duration) {
        self.check_heartbeats(&plan.board);
        self.resignal_stopping(timeout);
    }

    fn check_heartbeats(&self, board: &Scoreboard) {
        let limit = self.heartbeat_timeout.as_millis() as u64;
        for (slot, worker) in self.workers.iter().enumerate() {
            if let Some(worker) = worker {
                if board.silent_for_millis(slot) > limit {
                    log::warn!(
                        "preforked: worker {} silent for {} ms; killing it",
                        worker.pid,
                        board.silent_for_millis(slot)
                    );
                    fork::kill(worker.pid, Signal::SIGKILL);
                    board.beat(slot);
                }
            }
        }
    }

    /// Signals stopping workers again; kills those past the shutdown timeout.
    fn resignal_stopping(&mut self, timeout: Duration) {
        for worker in self.workers.iter_mut().flatten() {
            let Some((since, last)) = worker.stopping.as_mut() else {
                continue;
            };
            if since.elapsed() > timeout + KILL_AFTER {
                fork::kill(worker.pid, Signal::SIGKILL);
            } else if last.elapsed() > RESIGNAL_EVERY {
                fork::kill(worker.pid, Signal::SIGTERM);
                *last = Instant::now();
            }
        }
    }

    /// Asks the worker in `slot` to finish what it holds and exit.
    pub(super) fn stop(&mut self, slot: usize, plan: &WorkerPlan) {
        let Some(worker) = self.workers.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if worker.stopping.is_some() {
            return;
        }
        let now = Instant::now();
        worker.stopping = Some((now, now));
        plan.board.set_state(slot, SlotState::Exiting);
        // A worker that reads its control socket gets the quit in band too, after
        // every fd passed to it; the signal makes it stop at once (its connections
        // answer with `Connection: close`) and serve those fds as leftovers.
        if plan.stops_in_band() {
            if let Some(control) = worker.control.as_ref() {
                let quit = crate::server::source::worker::message::QUIT;
                let _ = fd_passing::send_byte(control.as_raw_fd(), quit);
            }
        }
        fork::kill(worker.pid, Signal::SIGTERM);
    }

    /// Pids of the workers asked to stop at least `waited` ago and not yet gone: the
    /// waiters they still hold get their answer now, before the worker's own drain
    /// runs out and forces their connections.
    pub(super) fn overdue_pids(&self, waited: Duration) -> Vec<u32> {
        self.workers
            .iter()
            .flatten()
            .filter(|worker| {
                worker
                    .stopping
                    .is_some_and(|(since, _)| since.elapsed() >= waited)
            })
            .map(|worker| worker.pid.as_raw() as u32)
            .collect()
    }

    /// Asks every active worker to stop.
    pub(super) fn stop_all(&mut self, plan: &WorkerPlan) {
        let slots: Vec<usize> = self.active_slots().collect();
        slots.into_iter().for_each(|slot| self.stop(slot, plan));
    }

    /// Kills every worker and waits for each.
    pub(super) fn kill_all(&mut self, board: &Scoreboard, registry: &Registry) {
        for worker in self.workers.iter().flatten() {
            fork::kill(worker.pid, Signal::SIGKILL);
        }
        for slot in 0..self.workers.len() {
            self.close_control(slot, registry);
            if let Some(worker) = self.workers[slot].take() {
                fork::wait_child(worker.pid);
                board.set_state(slot, SlotState::Empty);
            }
        }
    }

    /// The master's end of a worker's control socket.
    pub(super) fn control_fd(&self, slot: usize) -> Option<RawFd> {
        let worker = self.workers.get(slot)?.as_ref()?;
        worker.control.as_ref().map(AsRawFd::as_raw_fd)
    }
}
