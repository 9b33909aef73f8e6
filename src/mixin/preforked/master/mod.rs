//! The master's loop: one thread, one mio `Poll` for the wake-up pipe (signals and
//! shutdown requests), the listener (when the master accepts), each worker's control
//! socket, the hub, and a binary upgrade's readiness pipe. It never runs a handler.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use nix::sys::signal::Signal;

mod accept;

use super::control::{ControlRead, read_control};
use super::dispatch::Dispatcher;
use super::pool::{CONTROL_BASE, Pool, WorkerPlan};
use super::upgrade::{Progress, REPORT, Upgrade};
use super::{Accept, Preforked};
use crate::server::Context;
use crate::server::source::worker::message;
use crate::sync::hub::HubServer;
use crate::sys::exec::Program;
use crate::sys::fork::{self, SingleThreaded};
use crate::sys::{signal, upgrade};

const WAKE: Token = Token(0);
const LISTENER: Token = Token(1);
/// How long before a stopping worker's drain runs out its waiters are answered.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);
/// The housekeeping tick: growth, heartbeats, re-signalling.
const TICK: Duration = Duration::from_millis(100);
/// After stopping the workers, how long to wait before answering pending waiters, so
/// each worker has seen its stop and answers with `Connection: close`.
const ANSWER_WAITERS_AFTER: Duration = Duration::from_millis(50);

/// Where the master is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Workers asked to stop at `since`; waiters answered yet or not.
    Draining {
        since: Instant,
        answered: bool,
    },
}

/// Runs the master until shutdown; every worker is reaped before it returns.
pub(super) fn run(model: &mut Preforked, ctx: &Arc<Context>) -> io::Result<()> {
    let proof = SingleThreaded::check("preforked")?;
    // What the master's open-file limit can supervise caps the pool (and its capacity).
    let budget = super::budget::cap(model.workers, model.max_workers)?;
    model.max_workers = budget.max_workers;
    ctx.scope()
        .set_max_blocked(crate::mixin::MixIn::max_blocked(model));
    // The inner model moves into the plan the workers are forked with, and back.
    let plan = WorkerPlan::new(model, ctx)?;
    let master_accepts = matches!(model.accept, Accept::Passed(_) | Accept::ReusePort);
    if upgrade::awaiting_ready() {
        super::upgrade::same_accept_class(ctx, master_accepts)?;
    }
    // O_NONBLOCK is shared by every copy of the listener: set it once, for the run.
    ctx.listener().set_nonblocking(master_accepts)?;
    // Mapped before any fork, so workers see whether the listener is shared.
    upgrade::prepare();
    let mut hub = HubServer::bind(Arc::clone(ctx.scope()))?;
    // Every worker alive has a control socket: twice the pool while a SIGHUP runs old
    // and new side by side (within the budget).
    hub.reserve_for_workers((2 * model.max_workers).min(budget.fit));
    let mut poll = Poll::new()?;
    let _signals = signal::register(
        ctx.shutdown.signal_fd(),
        &[
            Signal::SIGHUP,
            Signal::SIGTTIN,
            Signal::SIGTTOU,
            Signal::SIGUSR2,
        ],
    )?;
    // The loop registers through a clone while it polls; the clone is the master's too.
    let registry = poll.registry().try_clone()?;
    let mut own_fds = vec![poll.as_raw_fd(), registry.as_raw_fd()];
    if master_accepts {
        own_fds.push(ctx.listener_fd());
    }
    own_fds.iter().for_each(|&fd| fork::close_in_child(fd));
    let mut master = Master {
        ctx,
        pool: Pool::new(model, plan.board.slots(), budget.fit, proof),
        plan,
        dispatcher: Dispatcher::new(match model.accept {
            Accept::Passed(policy) => policy,
            _ => super::Dispatch::RoundRobin,
        }),
        master_accepts,
        listener_pending: false,
        skips_left_over: false,
        control_pending: Vec::new(),
        grow_asked: false,
        phase: Phase::Serving,
        program: Program::capture(),
        upgrade: None,
        upgrade_timeout: super::upgrade::timeout(model.upgrade_timeout),
        hold_logged: false,
    };
    let result = master.serve(&mut poll, &registry, &mut hub);
    master.pool.kill_all(&master.plan.board, poll.registry());
    hub.close(poll.registry());
    own_fds.iter().for_each(|&fd| fork::forget_in_child(fd));
    model.inner = master
        .plan
        .inner
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    result
}

struct Master<'a> {
    ctx: &'a Arc<Context>,
    plan: WorkerPlan,
    pool: Pool,
    dispatcher: Dispatcher,
    master_accepts: bool,
    /// The listener may hold connections the master has not accepted yet.
    listener_pending: bool,
    /// The last turn stopped accepting after [`accept::SKIPS_PER_TURN`] skipped
    /// accepts: the next poll does not wait.
    skips_left_over: bool,
    /// Workers whose control socket may hold bytes the master has not read yet (it reads
    /// a bounded amount per turn, so one worker cannot keep it from the others).
    control_pending: Vec<usize>,
    /// A worker took the last idle slot.
    grow_asked: bool,
    phase: Phase,
    /// How to start this program again (SIGUSR2), captured at start.
    program: io::Result<Program>,
    /// A binary upgrade in progress.
    upgrade: Option<Upgrade>,
    /// How long a new master may take to report ready.
    upgrade_timeout: Duration,
    /// The test hook that holds the ready report said so.
    hold_logged: bool,
}

impl Master<'_> {
    fn serve(
        &mut self,
        poll: &mut Poll,
        registry: &Registry,
        hub: &mut HubServer,
    ) -> io::Result<()> {
        registry.register(&mut SourceFd(&self.ctx.wake_fd()), WAKE, Interest::READABLE)?;
        if self.master_accepts {
            let fd = self.ctx.listener_fd();
            registry.register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)?;
        }
        hub.register(registry, CONTROL_BASE + self.pool.workers.len())?;
        self.pool.maintain(self.ctx, &self.plan, registry, None)?;
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = hub.next_deadline().map_or(TICK, |d| {
                d.saturating_duration_since(Instant::now()).min(TICK)
            });
            let timeout = if self.control_pending.is_empty() && !self.skips_left_over {
                timeout
            } else {
                Duration::ZERO
            };
            match poll.poll(&mut events, Some(timeout)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
                other => other?,
            }
            for event in events.iter() {
                match event.token() {
                    WAKE => self.on_wake(registry),
                    LISTENER => self.listener_pending = true,
                    REPORT => {
                        let progress = self.upgrade.as_mut().map(|u| u.on_report(registry));
                        self.upgrade_progress(progress);
                    }
                    Token(t)
                        if (CONTROL_BASE..CONTROL_BASE + self.pool.workers.len()).contains(&t) =>
                    {
                        self.on_control(t - CONTROL_BASE, registry)
                    }
                    token => hub.on_event(registry, token, event),
                }
            }
            for slot in std::mem::take(&mut self.control_pending) {
                self.on_control(slot, registry);
            }
            hub.expire_timeouts(registry);
            // Workers being replaced or retired keep their waiters (the next notify
            // releases them) until just before their drain runs out: answered then.
            let waited = self.ctx.shutdown_timeout().saturating_sub(ANSWER_MARGIN);
            hub.answer_waiters_of(registry, &self.pool.overdue_pids(waited));
            let status = self.ctx.status();
            for slot in self.pool.reap(&self.plan.board, &status, registry) {
                self.dispatcher.forget(slot);
            }
            // Once this master stops, a new master still starting is left to run on its
            // own (`begin_drain` says so): its start is no longer timed.
            let timeout = match self.phase {
                Phase::Serving => self.upgrade_timeout,
                Phase::Draining { .. } => Duration::MAX,
            };
            let progress = self.upgrade.as_mut().map(|u| u.tend(registry, timeout));
            self.upgrade_progress(progress);
            if self.ctx.is_shutting_down() && self.phase == Phase::Serving {
                self.begin_drain(registry);
            }
            if self.ctx.shutdown.is_fast() {
                return Ok(());
            }
            match self.phase {
                Phase::Serving => {
                    self.accept_and_pass();
                    // A worker's "grow" only wakes the loop: the pool is looked at every turn.
                    self.grow_asked = false;
                    let free = self.passed_free();
                    self.pool.maintain(self.ctx, &self.plan, registry, free)?;
                    // A worker it retired or killed takes no more passed connections.
                    self.forget_stopped();
                    if upgrade::awaiting_ready()
                        && self.pool.all_serving(&self.plan.board)
                        && !super::upgrade::ready_held(&mut self.hold_logged)
                    {
                        log::info!(
                            "preforked: master {} started by an upgrade serves; telling the \
                             old master",
                            std::process::id()
                        );
                        upgrade::report_ready();
                    }
                    self.ctx.service_actions();
                }
                Phase::Draining { since, answered } => {
                    if !answered && since.elapsed() >= ANSWER_WAITERS_AFTER {
                        crate::sync::close_waiters_of(self.ctx.scope());
                        hub.close_waiters(registry);
                        self.phase = Phase::Draining {
                            since,
                            answered: true,
                        };
                    }
                    self.pool.tend(&self.plan, self.ctx.shutdown_timeout());
                    if self.pool.live() == 0 {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Under `Passed`, the master knows exactly how many workers are free: those
    /// that said ready, plus those still starting.
    fn passed_free(&self) -> Option<usize> {
        if !matches!(self.plan.accept, Accept::Passed(_)) {
            return None;
        }
        let starting = self
            .pool
            .active_slots()
            .filter(|&s| self.plan.board.state(s) == crate::mixin::pool_stats::SlotState::Starting)
            .count();
        let free = self.dispatcher.ready_count() + starting;
        Some(if self.listener_pending {
            free
        } else {
            free.max(1)
        })
    }

    /// Signals and shutdown requests.
    fn on_wake(&mut self, registry: &Registry) {
        self.ctx.shutdown.clear_wakeups();
        self.ctx.shutdown.take_stop_signals();
        let fd = self.ctx.shutdown.signal_fd();
        if signal::take(fd, Signal::SIGUSR2) {
            if self.phase != Phase::Serving || self.ctx.is_shutting_down() {
                log::warn!("preforked: SIGUSR2 ignored: this master is stopping");
            } else {
                self.begin_upgrade(registry);
            }
        }
        if self.phase != Phase::Serving {
            return;
        }
        if signal::take(fd, Signal::SIGHUP) {
            log::info!("preforked: SIGHUP, replacing every worker");
            self.pool.stop_all(&self.plan);
            self.forget_stopped();
        }
        if signal::take(fd, Signal::SIGTTIN) {
            self.pool.raise_target();
        }
        if signal::take(fd, Signal::SIGTTOU) && self.pool.target > 1 {
            self.pool.target -= 1;
            let board = &self.plan.board;
            let slots: Vec<usize> = self.pool.active_slots().collect();
            let idle = |&&s: &&usize| board.state(s) == crate::mixin::pool_stats::SlotState::Idle;
            let victim = slots
                .iter()
                .rev()
                .find(|&&s| board.is_free(s))
                .or_else(|| slots.iter().rev().find(idle))
                .or(slots.last())
                .copied();
            if let Some(slot) = victim {
                self.pool.stop(slot, &self.plan);
                self.forget_stopped();
            }
        }
    }

    /// SIGUSR2: starts the program again on the same listener (unless an upgrade is
    /// under way, or the accept mode cannot hand its connections over).
    fn begin_upgrade(&mut self, registry: &Registry) {
        if let Some(upgrade) = &self.upgrade {
            let what = if upgrade.is_stopping() {
                "the failed new master is still stopping"
            } else {
                "an upgrade is in progress"
            };
            log::warn!(
                "preforked: SIGUSR2 ignored: {what} (new master pid {})",
                upgrade.pid()
            );
            return;
        }
        // Its own ready report would mark the socket as this master's alone while a
        // third one shares it, and its drain would then shut the socket for all.
        if upgrade::awaiting_ready() {
            log::warn!(
                "preforked: SIGUSR2 ignored: this master, started by an upgrade, is not ready \
                 yet"
            );
            return;
        }
        if self.plan.accept == Accept::ReusePort {
            log::warn!(
                "preforked: SIGUSR2 ignored: Accept::ReusePort cannot be upgraded without \
                 dropping connections (each worker's own SO_REUSEPORT queue is reset when it \
                 closes, unless net.ipv4.tcp_migrate_req=1); use Shared, Locked or Passed, \
                 or restart"
            );
            return;
        }
        let started = match &self.program {
            Ok(program) => Upgrade::start(program, self.ctx.listener_fd(), registry),
            Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
        };
        match started {
            Ok(upgrade) => self.upgrade = Some(upgrade),
            Err(error) => log::warn!(
                "preforked: upgrade failed: cannot start the new binary: {error}; this \
                 master serves on"
            ),
        }
    }

    /// Acts on what an upgrade's look found.
    fn upgrade_progress(&mut self, progress: Option<Progress>) {
        match progress {
            Some(Progress::Ready) => {
                self.upgrade = None;
                // The listener stays marked shared: this master never shuts it now.
                self.ctx.shutdown.request();
            }
            Some(Progress::Failed) => self.upgrade = None,
            Some(Progress::Pending) | None => {}
        }
    }

    /// Stopping (or killed) workers take no more passed connections.
    fn forget_stopped(&mut self) {
        for slot in 0..self.pool.workers.len() {
            if self.pool.workers[slot]
                .as_ref()
                .is_some_and(|w| !w.takes_passes())
            {
                self.dispatcher.forget(slot);
            }
        }
    }

    /// Reads a worker's control bytes: ready, grow, or its end closing.
    fn on_control(&mut self, slot: usize, registry: &Registry) {
        let Some(fd) = self.pool.control_fd(slot) else {
            return;
        };
        let active = self.pool.workers[slot]
            .as_ref()
            .is_some_and(|w| w.takes_passes());
        let (mut ready, mut grow, mut retiring) = (false, false, false);
        let read = read_control(fd, |byte| match byte {
            message::READY => ready = true,
            message::GROW => grow = true,
            message::RETIRING => retiring = true,
            _ => {}
        });
        if ready && active {
            self.dispatcher.ready(slot);
        }
        if retiring && active {
            // It stops on its own (its quota): no more of the port's connections for it;
            // the stop's QUIT tells it nothing follows.
            self.pool.stop(slot, &self.plan);
            self.forget_stopped();
        }
        self.grow_asked |= grow;
        match read {
            ControlRead::Closed => {
                self.dispatcher.forget(slot);
                self.pool.close_control(slot, registry);
            }
            ControlRead::More if !self.control_pending.contains(&slot) => {
                self.control_pending.push(slot);
            }
            ControlRead::More | ControlRead::Drained => {}
        }
    }

    /// Graceful shutdown: stop accepting and ask every worker to finish.
    fn begin_drain(&mut self, registry: &Registry) {
        if let Some(upgrade) = self.upgrade.as_ref().filter(|u| !u.is_stopping()) {
            log::warn!(
                "preforked: stopping while the new master (pid {}) starts: it is left to run \
                 on its own",
                upgrade.pid()
            );
        }
        self.ctx.shutdown.begin_drain();
        self.skips_left_over = false;
        if self.master_accepts {
            let fd = self.ctx.listener_fd();
            let _ = registry.deregister(&mut SourceFd(&fd));
        }
        self.pool.stop_all(&self.plan);
        self.forget_stopped();
        self.phase = Phase::Draining {
            since: Instant::now(),
            answered: false,
        };
    }
}
