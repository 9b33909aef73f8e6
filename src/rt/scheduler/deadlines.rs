//! The scheduler's side of the timers: arming a parked coroutine's deadline, which
//! expired entry wakes whom, and arming the later deadline of a coroutine whose entry
//! fired early (see [`crate::rt::timer`]).

use std::time::Instant;

use super::{Core, CoroutineId, Slot, State, WaitTicket, WakeReason};

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

    /// Makes sure a timer entry fires by the deadline of `slot` (coroutine `id`'s).
    pub(super) fn arm(&self, id: CoroutineId, slot: &mut Slot) {
        match (slot.deadline, slot.armed) {
            // The armed entry fires first; it arms this deadline then.
            (Some(deadline), Some(armed)) if armed <= deadline => {}
            (Some(deadline), armed) => {
                let mut timers = self.timers.borrow_mut();
                if armed.is_some() {
                    timers.note_stale();
                }
                timers.insert(deadline, id);
                slot.armed = Some(deadline);
            }
            (None, _) => {}
        }
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use crate::rt::{self, Interest, Runtime, RuntimeConfig, context};

    /// A coroutine that armed an entry and finished leaves it in the heap; the next
    /// coroutine in its slot (same index, next generation) must not be woken by it.
    #[test]
    fn a_wait_in_a_reused_slot_times_out_at_its_own_deadline_not_the_last_occupants() {
        let first = Rc::new(Cell::new(None));
        let second = Rc::new(Cell::new(None));
        let outcome = Rc::new(Cell::new(None));
        let (first_in, second_in, out) = (first.clone(), second.clone(), outcome.clone());
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        runtime
            .spawn(move || {
                let waker_out = Rc::new(Cell::new(None));
                let waker_in = Rc::clone(&waker_out);
                rt::spawn(move || {
                    first_in.set(context::current());
                    waker_in.set(rt::current_waker());
                    // Woken long before this deadline: its entry stays armed.
                    rt::park(Some(Instant::now() + Duration::from_millis(200)));
                })
                .unwrap();
                rt::yield_now();
                if let Some(waker) = waker_out.take() {
                    waker.wake();
                }
                while rt::coroutine_count() > 1 {
                    rt::yield_now();
                }
                rt::spawn(move || {
                    second_in.set(context::current());
                    let (silent, _peer) = UnixStream::pair().unwrap();
                    silent.set_nonblocking(true).unwrap();
                    let deadline = Instant::now() + Duration::from_millis(800);
                    let result = rt::IoSource::new(silent.as_raw_fd())
                        .unwrap()
                        .wait(Interest::Readable, Some(deadline));
                    out.set(Some((
                        result.map_err(|e| e.kind()),
                        Instant::now() >= deadline,
                    )));
                })
                .unwrap();
            })
            .unwrap();
        runtime.run().unwrap();
        let (first, second) = (first.get().unwrap(), second.get().unwrap());
        assert_eq!(first.index, second.index, "the slot was reused");
        assert_ne!(first.generation, second.generation);
        assert_eq!(
            outcome.get(),
            Some((Err(io::ErrorKind::TimedOut), true)),
            "timed out at its own deadline"
        );
    }
}
