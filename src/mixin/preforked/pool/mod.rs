//! The master's worker table: spawning into free slots, reaping, respawning with
//! back-off, growing when every worker is busy, shrinking back; the heartbeat check and
//! stopping workers (gracefully, or at once) are in [`stopping`].
//!
//! The pool degrades, it never dies of its own failures: a worker that cannot be
//! started (`fork`, `socketpair` or a registration failing with `EMFILE`, `EAGAIN`,
//! `ENOMEM`…) or that dies while starting is logged with the reason, counted in the
//! slot's stats and backed off (per slot for a worker's own boot, pool-wide for the
//! master's resources), and the master serves on with the workers it has. Only a pool
//! none of whose workers ever started gives up, with an error.

mod stopping;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::Preforked;
use super::backoff::Backoff;
use super::worker::{self, EXIT_BOOT_FAILED};
use crate::mixin::pool_stats::{Scoreboard, SlotState};
use crate::server::Context;
use crate::status::StatusHandle;
use crate::sys::fd_passing;
use crate::sys::fork::{self, Forked, SingleThreaded};

pub(crate) use super::plan::WorkerPlan;

/// Worker control sockets use tokens from here (one per slot).
pub(super) const CONTROL_BASE: usize = 16;
/// Consecutive deaths at start-up, before any worker ever served, after which the
/// master gives up (the configuration cannot work; later failures only back off).
const MAX_BOOT_FAILURES: u32 = 5;
/// The pool at its limit with every worker busy is logged at most this often.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);
/// An extra (grown) worker idle this long is retired.
const SHRINK_AFTER: Duration = Duration::from_secs(2);

/// One live worker, as the master sees it.
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) pid: Pid,
    /// The master's end of the control socket (`None` once the worker closed it).
    pub(super) control: Option<OwnedFd>,
    /// When it was asked to stop (it is signalled once: its watchdog re-sends the
    /// stop to its own waiting thread as long as needed).
    stopping: Option<Instant>,
    /// SIGKILL sent (once; it is reaped next).
    killed: bool,
    started: Instant,
}

impl Worker {
    pub(super) fn is_active(&self) -> bool {
        self.stopping.is_none()
    }

    /// Active and not killed (dead until reaped): it may be passed a connection.
    pub(super) fn takes_passes(&self) -> bool {
        self.is_active() && !self.killed
    }
}

/// The master's worker table.
#[derive(Debug)]
pub(super) struct Pool {
    pub(super) workers: Vec<Option<Worker>>,
    /// Workers to keep running (changed by SIGTTIN/SIGTTOU).
    pub(super) target: usize,
    max: usize,
    /// Live workers (stopping ones too: the master holds their fds until they exit)
    /// that the master's fd budget fits.
    fit: usize,
    heartbeat_timeout: Duration,
    /// Consecutive deaths at start-up while no worker has ever served.
    boot_failures: u32,
    /// Some worker reached its serving loop once.
    ever_served: bool,
    /// Per slot: a worker that dies while starting backs its slot off; only that
    /// slot's own worker serving resets it, never a healthy sibling.
    backoff: Vec<Backoff>,
    /// The master's own resources (fork, socketpair, registration) failed.
    resources: Backoff,
    /// When the pool at its limit was last logged.
    limit_logged: Option<Instant>,
    /// When a start held back by workers still finishing was last logged.
    full_logged: Option<Instant>,
    last_shrink: Instant,
    proof: SingleThreaded,
}

impl Pool {
    /// A pool of `slots` slots whose live workers stay within `fit` (the master's fd
    /// budget, [`Budget::fit`](super::budget::Budget::fit)).
    pub(super) fn new(model: &Preforked, slots: usize, fit: usize, proof: SingleThreaded) -> Pool {
        Pool {
            workers: (0..slots).map(|_| None).collect(),
            target: model.workers,
            max: model.max_workers,
            fit: fit.min(slots),
            heartbeat_timeout: model.heartbeat_timeout,
            boot_failures: 0,
            ever_served: false,
            backoff: vec![Backoff::new(); slots],
            resources: Backoff::new(),
            limit_logged: None,
            full_logged: None,
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

    /// Whether the pool is at its size and every worker in it serves (none starting).
    pub(super) fn all_serving(&self, board: &Scoreboard) -> bool {
        self.active() >= self.target
            && self
                .active_slots()
                .all(|slot| matches!(board.state(slot), SlotState::Idle | SlotState::Busy))
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

    /// Empty slots waiting out their back-off (their worker died while starting): a
    /// replacement is owed to each, so they count towards the target.
    fn backing_off(&self, now: Instant) -> usize {
        (0..self.workers.len())
            .filter(|&s| self.workers[s].is_none() && !self.backoff[s].ready(now))
            .count()
    }

    /// Starts a worker in the lowest free slot unless it is backing off (`why`: for
    /// the log).
    /// A failure is logged, counted and backed off, and the pool goes on with the
    /// workers it has. Returns whether a worker started.
    fn try_spawn(
        &mut self,
        ctx: &Arc<Context>,
        plan: &WorkerPlan,
        registry: &Registry,
        why: &str,
    ) -> bool {
        let now = Instant::now();
        if !self.resources.ready(now) {
            return false;
        }
        if self.live() >= self.fit {
            self.log_full(why);
            return false;
        }
        // Always the lowest free slot: a slot backing off holds back every start (a
        // fresh slot would dodge its back-off), so a worker that cannot start costs at
        // most one fork per back-off.
        let Some(slot) = self.workers.iter().position(Option::is_none) else {
            return false;
        };
        if !self.backoff[slot].ready(now) {
            return false;
        }
        match self.spawn(slot, ctx, plan, registry) {
            Ok(()) => {
                self.resources.succeeded();
                true
            }
            Err(error) => {
                plan.board.count_spawn_failure(slot);
                plan.board.count_backoff(slot);
                let delay = self.resources.failed();
                log::warn!(
                    "preforked: cannot start a worker ({why}) in slot {slot}: {error}; \
                     serving on with {} workers, next attempt in {delay:?}",
                    self.active()
                );
                false
            }
        }
    }

    /// Says (at most every [`LIMIT_LOG_EVERY`]) that a start waits for workers still
    /// finishing after a stop (SIGHUP, SIGTTOU, retirement) to exit.
    fn log_full(&mut self, why: &str) {
        if self
            .full_logged
            .is_some_and(|at| at.elapsed() < LIMIT_LOG_EVERY)
        {
            return;
        }
        self.full_logged = Some(Instant::now());
        let finishing = self.live() - self.active();
        log::warn!(
            "preforked: a worker ({why}) waits to start: {} workers are alive, {finishing} \
             of them finishing after a stop, and the master's open-file limit fits {} \
             (about 2 fds each); it starts as they exit",
            self.live(),
            self.fit
        );
    }

    /// SIGTTIN: one worker more, up to `max_workers`.
    pub(super) fn raise_target(&mut self) {
        if self.target >= self.max {
            log::warn!(
                "preforked: SIGTTIN ignored: the pool's size is already max_workers ({})",
                self.max
            );
            return;
        }
        self.target += 1;
    }

    /// Forks a worker into `slot` (free).
    fn spawn(
        &mut self,
        slot: usize,
        ctx: &Arc<Context>,
        plan: &WorkerPlan,
        registry: &Registry,
    ) -> io::Result<()> {
        let (master_end, worker_end) = fd_passing::socketpair()
            .map_err(|e| io::Error::new(e.kind(), format!("socketpair: {e}")))?;
        // The master's end only (the worker's end is another open file description).
        fd_passing::set_nonblocking(&master_end, true)?;
        let master = std::process::id();
        plan.board.prepare(slot);
        let forked = fork::fork(&self.proof).map_err(|e| {
            plan.board.set_state(slot, SlotState::Empty);
            io::Error::new(e.kind(), format!("fork: {e}"))
        })?;
        match forked {
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
                    killed: false,
                    started: Instant::now(),
                });
                fork::close_in_child(fd);
                let token = Token(CONTROL_BASE + slot);
                let registered = registry.register(&mut SourceFd(&fd), token, Interest::READABLE);
                if let Err(error) = registered {
                    // The master cannot hear this worker: it goes (reaped as asked to).
                    fork::kill(pid, Signal::SIGKILL);
                    if let Some(worker) = self.workers[slot].as_mut() {
                        worker.stopping = Some(Instant::now());
                    }
                    plan.board.set_state(slot, SlotState::Exiting);
                    return Err(io::Error::new(
                        error.kind(),
                        format!("registering worker {pid}'s control socket: {error}"),
                    ));
                }
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

    /// Reaps exited workers; returns the slots freed. Each freed slot's status gauges
    /// are zeroed: a worker killed mid-request left them raised, and the slot may stay
    /// empty (a grown pool back at its size), so no successor would zero them.
    pub(super) fn reap(
        &mut self,
        board: &Scoreboard,
        status: &StatusHandle,
        registry: &Registry,
    ) -> Vec<usize> {
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
            status.board().worker_reaped(slot);
            freed.push(slot);
            if worker.stopping.is_some() {
                log::debug!("preforked: worker {pid} (slot {slot}) exited as asked ({code})");
                continue;
            }
            if at_boot {
                if !self.ever_served {
                    self.boot_failures += 1;
                }
                board.count_spawn_failure(slot);
                board.count_backoff(slot);
                let delay = self.backoff[slot].failed();
                log::warn!(
                    "preforked: worker {pid} (slot {slot}) died while starting ({}); \
                     {} other workers serve on; retrying the slot in {delay:?}",
                    worker::exit_reason(code),
                    self.active()
                );
            } else {
                board.count_restart(slot);
                let uptime = worker.started.elapsed();
                match code {
                    0 => log::info!(
                        "preforked: worker {pid} (slot {slot}) retired after {uptime:?}; \
                         replacing it"
                    ),
                    _ => log::warn!(
                        "preforked: worker {pid} (slot {slot}) died ({}) after {uptime:?}; \
                         replacing it",
                        worker::exit_reason(code)
                    ),
                }
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
                "preforked: {} workers in a row died while starting and none ever served; \
                 stopping instead of fork-looping (see the workers' errors above)",
                self.boot_failures
            )));
        }
        let board = Arc::clone(&plan.board);
        let serving: Vec<usize> = self
            .active_slots()
            .filter(|&slot| matches!(board.state(slot), SlotState::Idle | SlotState::Busy))
            .collect();
        for slot in serving {
            // Only the slot's own worker serving ends its back-off.
            self.backoff[slot].succeeded();
            self.ever_served = true;
            self.boot_failures = 0;
        }
        let now = Instant::now();
        while self.active() + self.backing_off(now) < self.target {
            if !self.try_spawn(ctx, plan, registry, "to keep the pool's size") {
                break;
            }
        }
        let free = free.unwrap_or_else(|| self.free(&board));
        if free == 0 && self.active() < self.max {
            self.try_spawn(ctx, plan, registry, "growing: every worker is busy");
        } else if free == 0
            && self
                .limit_logged
                .is_none_or(|at| at.elapsed() > LIMIT_LOG_EVERY)
        {
            self.limit_logged = Some(now);
            log::warn!(
                "preforked: every worker is busy and the pool is at max_workers ({}): not \
                 growing; waits beyond its capacity are answered 503",
                self.max
            );
        }
        let board = &plan.board;
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

    /// The master's end of a worker's control socket.
    pub(super) fn control_fd(&self, slot: usize) -> Option<RawFd> {
        let worker = self.workers.get(slot)?.as_ref()?;
        worker.control.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// [`control_fd`](Self::control_fd) of a worker that is neither stopping nor killed.
    pub(super) fn active_control_fd(&self, slot: usize) -> Option<RawFd> {
        let worker = self.workers.get(slot)?.as_ref()?;
        if !worker.takes_passes() {
            return None;
        }
        worker.control.as_ref().map(AsRawFd::as_raw_fd)
    }
}
