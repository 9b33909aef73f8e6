//! The scheduler's side of the timers: which expired entry wakes whom, and arming the
//! later deadline of a coroutine whose entry fired early (see [`crate::rt::timer`]).

use std::time::Instant;

use super::{Core, CoroutineId, State, WaitTicket, WakeReason};

/// What an expired timer entry turned out to be.
enum Expired {
    /// Its coroutine armed another entry since, or ended.
    Stale,
    /// Its coroutine's deadline passed: wake it with this ticket.
    Due(WaitTicket),
    /// Its coroutine parked again with this later deadline, now armed.
    Later(Instant),
    /// Its coroutine is not waiting with a deadline now.
    NotWaiting,
}

impl Core {
    /// Wakes every coroutine whose deadline passed; arms the later deadline of one whose
    /// entry fired early (it parked again since, with a later deadline).
    pub(crate) fn fire_timers(&self, now: Instant) {
        loop {
            let expired = self.timers.borrow_mut().pop_expired(now);
            let Some((id, at)) = expired else {
                break;
            };
            match self.expired_entry(id, at, now) {
                Expired::Stale => self.timers.borrow_mut().note_stale_expired(),
                Expired::Due(ticket) => {
                    self.wake(ticket, WakeReason::TimedOut);
                }
                Expired::Later(deadline) => self.timers.borrow_mut().insert(deadline, id),
                Expired::NotWaiting => {}
            }
        }
        let mut timers = self.timers.borrow_mut();
        let slots = self.slots.borrow();
        timers.compact(|id, at| {
            slots
                .slots
                .get(id.index as usize)
                .is_some_and(|slot| slot.generation == id.generation && slot.armed == Some(at))
        });
    }

    /// What the timer entry of `id` for `at`, expired at `now`, means.
    fn expired_entry(&self, id: CoroutineId, at: Instant, now: Instant) -> Expired {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(id).filter(|slot| slot.armed == Some(at)) else {
            return Expired::Stale;
        };
        slot.armed = None;
        match (slot.state, slot.deadline) {
            (State::Parked(_), Some(deadline)) if deadline <= now => {
                Expired::Due(WaitTicket { id, seq: slot.seq })
            }
            (State::Parked(_), Some(deadline)) => {
                slot.armed = Some(deadline);
                Expired::Later(deadline)
            }
            _ => Expired::NotWaiting,
        }
    }
}
