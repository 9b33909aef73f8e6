//! `Accept::Passed` (and the master's share under `Accept::ReusePort`): the master
//! accepts, picks a worker, sends it the fd over its control socket and closes its own
//! copy at once.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};

use super::Dispatch;
use super::pool::Pool;
use crate::conn::Conn;
use crate::mixin::pool_stats::{Scoreboard, SlotState};
use crate::server::source::worker::message;
use crate::sys::fd_passing;

/// Which workers said "ready", and how the next one is picked.
#[derive(Debug)]
pub(super) struct Dispatcher {
    policy: Dispatch,
    /// One entry per "ready" received, oldest first.
    ready: VecDeque<usize>,
    /// The slot served last (round robin).
    last: usize,
}

impl Dispatcher {
    pub(super) fn new(policy: Dispatch) -> Dispatcher {
        Dispatcher {
            policy,
            ready: VecDeque::new(),
            last: 0,
        }
    }

    /// The worker in `slot` is ready for one connection. A worker waits for its answer
    /// before it asks again, so a second "ready" while one stands is noise (a worker's
    /// bug), not a second connection wanted: counted once, or the queue would grow
    /// with whatever the worker writes.
    pub(super) fn ready(&mut self, slot: usize) {
        if !self.ready.contains(&slot) {
            self.ready.push_back(slot);
        }
    }

    /// The worker in `slot` is gone or stopping: forget its readiness.
    pub(super) fn forget(&mut self, slot: usize) {
        self.ready.retain(|&s| s != slot);
    }

    /// Workers ready now.
    pub(super) fn ready_count(&self) -> usize {
        self.ready.len()
    }

    /// Sends `conn` to a ready worker; false if none could take it. Either way the
    /// caller then drops its copy at once.
    pub(super) fn pass(&mut self, conn: &Conn, pool: &Pool, board: &Scoreboard) -> bool {
        // A stopping worker reads no connection passed after its QUIT: never pick one,
        // whatever its READY said before.
        self.pass_fd(conn.as_raw_fd(), |slot| pool.active_control_fd(slot), board)
    }

    /// [`pass`](Self::pass) with the workers' control sockets looked up by `control_of`.
    fn pass_fd(
        &mut self,
        fd: RawFd,
        control_of: impl Fn(usize) -> Option<RawFd>,
        board: &Scoreboard,
    ) -> bool {
        // Workers a send failed for only for now: still waiting for an answer, so still
        // ready (forgotten, one would wait for ever, never asking again).
        let mut kept = Vec::new();
        let mut passed = false;
        while let Some(index) = self.pick(board) {
            let Some(slot) = self.ready.remove(index) else {
                break;
            };
            let Some(control) = control_of(slot) else {
                continue;
            };
            match fd_passing::send_fd(control, message::CONNECTION, fd) {
                Ok(()) => {
                    self.last = slot;
                    passed = true;
                    break;
                }
                Err(error) if fd_passing::is_transient(&error) => {
                    log::warn!(
                        "preforked: cannot pass a connection to worker slot {slot} now: {error}"
                    );
                    kept.push(slot);
                }
                // The worker is gone (its end closed): its READY goes with it.
                Err(_) => {}
            }
        }
        for slot in kept.into_iter().rev() {
            self.ready.push_front(slot);
        }
        passed
    }

    /// Hands `conn` to any active worker, ready or not (the master's share of
    /// `SO_REUSEPORT` connections; the worker reads its socket between accepts).
    /// Idle workers come first, so a connection does not queue behind a long one; a
    /// stopping or killed worker gets none.
    pub(super) fn pass_to_any(&mut self, conn: &Conn, pool: &Pool, board: &Scoreboard) -> bool {
        let controls: Vec<(usize, RawFd)> = pool
            .active_slots()
            .filter_map(|slot| Some((slot, pool.active_control_fd(slot)?)))
            .collect();
        let slots: Vec<usize> = controls.iter().map(|&(slot, _)| slot).collect();
        let idle = |slot: usize| board.state(slot) == SlotState::Idle;
        for slot in any_order(&slots, idle, self.last, board.slots()) {
            let Some(&(_, control)) = controls.iter().find(|&&(s, _)| s == slot) else {
                continue;
            };
            if fd_passing::send_fd(control, message::CONNECTION, conn.as_raw_fd()).is_ok() {
                self.last = slot;
                return true;
            }
        }
        false
    }

    /// Index in `ready` of the worker to use next.
    fn pick(&self, board: &Scoreboard) -> Option<usize> {
        if self.ready.is_empty() {
            return None;
        }
        match self.policy {
            Dispatch::FirstReady => Some(0),
            Dispatch::RoundRobin => {
                let n = board.slots();
                let after = |slot: usize| (slot + n - (self.last + 1) % n) % n;
                (0..self.ready.len()).min_by_key(|&i| after(self.ready[i]))
            }
            Dispatch::LeastBusy => {
                (0..self.ready.len()).min_by_key(|&i| board.connections(self.ready[i]))
            }
        }
    }
}

/// The order [`Dispatcher::pass_to_any`] tries `slots` in: idle ones first, each group
/// in turn after the slot served `last` (of `n`).
fn any_order(slots: &[usize], idle: impl Fn(usize) -> bool, last: usize, n: usize) -> Vec<usize> {
    let n = n.max(1);
    let after = |slot: usize| (slot + n - (last + 1) % n) % n;
    let mut order = slots.to_vec();
    order.sort_by_key(|&slot| (!idle(slot), after(slot)));
    order
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::Dispatcher;
    use crate::mixin::pool_stats::Scoreboard;
    use crate::mixin::preforked::Dispatch;

    #[test]
    fn a_worker_a_pass_failed_for_only_now_stays_ready() {
        let (master, worker) = UnixStream::pair().unwrap();
        master.set_nonblocking(true).unwrap();
        // The worker's receive queue is full: the next send says EAGAIN.
        let mut filling = &master;
        while filling.write(&[0u8; 4096]).is_ok() {}
        let (conn, _client) = UnixStream::pair().unwrap();
        let board = Scoreboard::new(4).unwrap();
        let mut dispatcher = Dispatcher::new(Dispatch::FirstReady);
        dispatcher.ready(2);
        let control = |slot| (slot == 2).then(|| master.as_raw_fd());
        assert!(!dispatcher.pass_fd(conn.as_raw_fd(), control, &board));
        assert_eq!(
            dispatcher.ready_count(),
            1,
            "the worker waits for an answer still"
        );
        drop(worker);
        assert!(!dispatcher.pass_fd(conn.as_raw_fd(), control, &board));
        assert_eq!(
            dispatcher.ready_count(),
            0,
            "a worker gone is ready no more"
        );
    }

    #[test]
    fn a_worker_is_ready_once_however_often_it_says_so() {
        let mut dispatcher = Dispatcher::new(Dispatch::FirstReady);
        for _ in 0..1000 {
            dispatcher.ready(3);
        }
        dispatcher.ready(1);
        assert_eq!(dispatcher.ready_count(), 2);
        dispatcher.forget(3);
        assert_eq!(dispatcher.ready_count(), 1);
    }

    /// The master's share under `SO_REUSEPORT` goes to idle workers first, in turn: it
    /// used to start the turn at the slot after the last served, idle or not, so one in
    /// three connections queued behind a busy worker while two sat idle.
    #[test]
    fn a_pass_to_any_worker_tries_the_idle_ones_first_in_turn() {
        let idle = |slot: usize| slot != 2;
        assert_eq!(super::any_order(&[0, 1, 2], idle, 1, 8), vec![0, 1, 2]);
        assert_eq!(super::any_order(&[0, 1, 2], idle, 0, 8), vec![1, 0, 2]);
        assert_eq!(super::any_order(&[0, 1, 2], |_| true, 1, 3), vec![2, 0, 1]);
        assert_eq!(super::any_order(&[0, 3, 5], |_| false, 3, 8), vec![5, 0, 3]);
    }
}
