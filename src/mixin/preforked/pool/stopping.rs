//! Stopping workers: gracefully (in band and by signal), all at once, and killing
//! those whose heartbeat stopped or whose stop ran past the shutdown timeout.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::Registry;
use nix::sys::signal::Signal;

use super::{Pool, WorkerPlan};
use crate::mixin::pool_stats::{Scoreboard, SlotState};
use crate::sys::fd_passing;
use crate::sys::fork;

/// A stopping worker still there this long after the shutdown timeout is killed.
const KILL_AFTER: Duration = Duration::from_secs(2);

impl Pool {
    /// Kills workers whose heartbeat stopped, and stopping workers still there after
    /// `timeout`. Runs while draining too.
    pub(in crate::mixin::preforked) fn tend(&mut self, plan: &WorkerPlan, timeout: Duration) {
        self.check_heartbeats(&plan.board);
        self.kill_overdue(timeout);
    }

    fn check_heartbeats(&mut self, board: &Scoreboard) {
        let limit = crate::deadline::millis(self.heartbeat_timeout);
        for (slot, worker) in self.workers.iter_mut().enumerate() {
            if let Some(worker) = worker {
                if board.silent_for_millis(slot) > limit {
                    log::warn!(
                        "preforked: worker {} (slot {slot}) silent for {} ms (its serving \
                         loop is stuck); killing it",
                        worker.pid,
                        board.silent_for_millis(slot)
                    );
                    fork::kill(worker.pid, Signal::SIGKILL);
                    board.beat(slot);
                    // Dead until reaped: no connection is passed to it meanwhile.
                    worker.killed = true;
                }
            }
        }
    }

    /// Kills stopping workers past the shutdown timeout.
    fn kill_overdue(&mut self, timeout: Duration) {
        for worker in self.workers.iter_mut().flatten() {
            let overdue = |since: Instant| since.elapsed() > timeout.saturating_add(KILL_AFTER);
            if !worker.killed && worker.stopping.is_some_and(overdue) {
                log::warn!(
                    "preforked: worker {} still there {timeout:?} after its stop; killing it",
                    worker.pid
                );
                fork::kill(worker.pid, Signal::SIGKILL);
                worker.killed = true;
            }
        }
    }

    /// Asks the worker in `slot` to finish what it holds and exit.
    pub(in crate::mixin::preforked) fn stop(&mut self, slot: usize, plan: &WorkerPlan) {
        let Some(worker) = self.workers.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if worker.stopping.is_some() {
            return;
        }
        worker.stopping = Some(Instant::now());
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
    pub(in crate::mixin::preforked) fn overdue_pids(&self, waited: Duration) -> Vec<u32> {
        self.workers
            .iter()
            .flatten()
            .filter(|worker| {
                worker
                    .stopping
                    .is_some_and(|since| since.elapsed() >= waited)
            })
            .map(|worker| worker.pid.as_raw() as u32)
            .collect()
    }

    /// Asks every active worker to stop.
    pub(in crate::mixin::preforked) fn stop_all(&mut self, plan: &WorkerPlan) {
        let slots: Vec<usize> = self.active_slots().collect();
        slots.into_iter().for_each(|slot| self.stop(slot, plan));
    }

    /// Kills every worker and waits for each.
    pub(in crate::mixin::preforked) fn kill_all(
        &mut self,
        board: &Scoreboard,
        registry: &Registry,
    ) {
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
}
