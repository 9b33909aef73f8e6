//! Idle waits, and the drain's wake of them ([`wake_idle`](Core::wake_idle)).
//!
//! An idle wait may hold no stack: a coroutine whose connection waits for its next
//! request can end its turn by handing the scheduler what to run when the wait ends.
//! Its stack goes back to the pool; its slot stays (the same id, wait ticket and timer),
//! so the reactor, the timers and a drain's [`wake_idle`](Core::wake_idle) wake it as
//! any parked coroutine. When woken it gets a stack from the pool, the one used last,
//! still in the CPU's cache, and runs the continuation on it as its new body.
//!
//! This is what nginx does with a keep-alive connection: between requests it is an
//! entry in epoll and a timer, nothing more. With a stack per waiting connection, a
//! loop serving a thousand clients finds every stack out of the cache when its next
//! request comes, and pays a miss for each line of frames it touches.

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use super::super::Interest;
use super::super::coroutine::{self, Co};
use super::super::reactor::SourceKey;
use super::super::stack_pool::GuardedStack;
use super::{Core, CoroutineId, ParkKind, State, WaitTicket, WakeReason, context, tearing_down};

/// What waits without a stack: it goes on, as a coroutine's body, when its wait ends.
///
/// A trait on the boxed state itself, not a boxed closure around it: a box the caller
/// already has becomes the continuation without a second allocation per wait.
pub(crate) trait Resume {
    /// Runs on when the wait ended (as the body of a coroutine on a pooled stack).
    fn resume(self: Box<Self>);
}

/// What an idle wait that holds no stack runs when it ends, and the source it waits on.
pub(crate) struct Continuation {
    run: Box<dyn Resume>,
    key: SourceKey,
}

impl Core {
    /// Ends the turn of the running coroutine `id` in an idle wait for `key`'s
    /// readability that holds no stack: a [`ParkKind::Idle`] park (so a drain's
    /// `wake_idle` also ends it) with `timeout` from the end of this turn. `then` runs,
    /// as the coroutine's body on a stack from the pool, once the wait ends; if input
    /// came since the last look, at the loop's next turn.
    ///
    /// The caller's body must return right after this, without waiting again: its
    /// stack is given back when it does (see `Core::resume`).
    pub(crate) fn idle_then(
        &self,
        id: CoroutineId,
        key: SourceKey,
        timeout: Duration,
        then: Box<dyn Resume>,
    ) {
        let ready = self.reactor.take_ready(key, Interest::Readable);
        let ticket = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(id) else {
                return;
            };
            slot.resume_with = Some(Continuation { run: then, key });
            slot.deadline = None;
            if ready || timeout.is_zero() {
                slot.state = State::Runnable;
                slot.reason = WakeReason::Woken;
                self.run_queue.borrow_mut().push_back(id);
                return;
            }
            slot.state = State::Parked(ParkKind::Idle);
            slot.timeout = Some(timeout);
            WaitTicket { id, seq: slot.seq }
        };
        self.reactor.add_waiter(key, Interest::Readable, ticket);
    }

    /// Wakes every coroutine parked in an idle wait (spuriously, as far as its fd is
    /// concerned): each looks at the drain flag before it waits again.
    pub(crate) fn wake_idle(&self) {
        let idle: Vec<WaitTicket> = self
            .slots
            .borrow()
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.state == State::Parked(ParkKind::Idle))
            .map(|(index, slot)| WaitTicket {
                id: CoroutineId {
                    index: index as u32,
                    generation: slot.generation,
                },
                seq: slot.seq,
            })
            .collect();
        for ticket in idle {
            self.wake(ticket, WakeReason::Woken);
        }
    }

    /// Whether coroutine `id` ended its turn in [`idle_then`](Core::idle_then).
    pub(super) fn waits_stackless(&self, id: CoroutineId) -> bool {
        self.slots
            .borrow_mut()
            .get_mut(id)
            .is_some_and(|slot| slot.resume_with.is_some())
    }

    /// The coroutine that runs coroutine `id`'s continuation, its wait over, on a stack
    /// from the pool. `None` when it had none, or no stack could be had (the mapping
    /// failed): the continuation is dropped then (its connection closes) and the slot
    /// freed.
    pub(super) fn start_continuation(&self, id: CoroutineId) -> Option<Co> {
        let Continuation { run, key } = self.slots.borrow_mut().get_mut(id)?.resume_with.take()?;
        self.reactor.remove_waiter(key, Interest::Readable, id);
        // The edge that woke it: the continuation reads the socket first anyway.
        self.reactor.take_ready(key, Interest::Readable);
        // Never at the cap: `spawn` keeps the coroutines alive, with a stack or not,
        // within the stacks allowed.
        let taken = self.stacks.borrow_mut().take();
        let GuardedStack { guard, stack } = match taken {
            Ok(stack) => stack,
            Err(error) => {
                log::warn!(
                    "closing an idle connection: no stack to serve its next request: {error}"
                );
                drop(self.free_slot(id));
                drop(run);
                return None;
            }
        };
        let co = coroutine::new(stack, move || run.resume(), tearing_down);
        if let Some(slot) = self.slots.borrow_mut().get_mut(id) {
            slot.guard = guard;
        }
        Some(co)
    }

    /// Drops the continuation of slot `index` if it waits without a stack (the runtime
    /// is torn down): its connection closes, with this slot's id current.
    pub(super) fn drop_continuation(&self, index: usize) {
        let id = {
            let slots = self.slots.borrow();
            let slot = &slots.slots[index];
            if slot.resume_with.is_none() {
                return;
            }
            CoroutineId {
                index: index as u32,
                generation: slot.generation,
            }
        };
        context::set_current(Some(id));
        let dropped = panic::catch_unwind(AssertUnwindSafe(|| drop(self.free_slot(id))));
        context::set_current(None);
        if dropped.is_err() {
            log::error!("dropping an idle connection panicked at runtime drop");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use super::Resume;
    use crate::rt::{self, Runtime, RuntimeConfig, context};

    /// Stacks in the pool, idle, of the runtime running here.
    fn idle_stacks() -> usize {
        context::core().unwrap().stacks.borrow().idle()
    }

    /// What a continuation saw.
    #[derive(Default)]
    struct Seen {
        ran: Cell<bool>,
        on_coroutine: Cell<bool>,
        read: RefCell<Vec<u8>>,
        waited: Cell<Duration>,
        idle_while_waiting: Cell<usize>,
    }

    struct Waiting {
        socket: UnixStream,
        seen: Rc<Seen>,
        since: Instant,
    }

    impl Resume for Waiting {
        fn resume(self: Box<Self>) {
            resumed(*self);
        }
    }

    fn resumed(mut waiting: Waiting) {
        let seen = &waiting.seen;
        seen.ran.set(true);
        seen.on_coroutine.set(crate::rt::coroutine::on_coroutine());
        seen.waited.set(waiting.since.elapsed());
        let mut buf = [0; 16];
        if let Ok(n) = waiting.socket.read(&mut buf) {
            seen.read.borrow_mut().extend_from_slice(&buf[..n]);
        }
        rt::forget_fd(waiting.socket.as_raw_fd());
    }

    /// Starts a coroutine that waits, without a stack, on a socket whose other end it
    /// returns, for `timeout`.
    fn wait_stackless(runtime: &Runtime, timeout: Duration, seen: &Rc<Seen>) -> UnixStream {
        let (client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let seen = Rc::clone(seen);
        runtime
            .spawn(move || {
                let fd = server.as_raw_fd();
                let waiting = Waiting {
                    socket: server,
                    seen,
                    since: Instant::now(),
                };
                assert!(rt::idle_then(fd, timeout, Box::new(waiting)).is_ok());
            })
            .unwrap();
        client
    }

    #[test]
    fn an_idle_wait_gives_its_stack_back_and_input_resumes_it_on_a_pooled_one() {
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let seen = Rc::new(Seen::default());
        let mut client = wait_stackless(&runtime, Duration::from_secs(30), &seen);
        let report = Rc::clone(&seen);
        runtime
            .spawn(move || {
                // The waiter ran first and gave its stack back: this one's is the
                // other stack in existence.
                rt::sleep(Duration::from_millis(20));
                report.idle_while_waiting.set(idle_stacks());
                assert!(!report.ran.get(), "nothing to read yet");
                client.write_all(b"next").unwrap();
            })
            .unwrap();
        runtime.run().unwrap();
        assert_eq!(
            seen.idle_while_waiting.get(),
            1,
            "the waiter's stack was pooled"
        );
        assert!(seen.ran.get() && seen.on_coroutine.get());
        assert_eq!(&*seen.read.borrow(), b"next");
        assert!(
            seen.waited.get() < Duration::from_secs(10),
            "woken by the input"
        );
    }

    #[test]
    fn an_idle_wait_ends_at_its_timeout_and_at_a_drain() {
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let timed = Rc::new(Seen::default());
        let _quiet = wait_stackless(&runtime, Duration::from_millis(50), &timed);
        let drained = Rc::new(Seen::default());
        let _also_quiet = wait_stackless(&runtime, Duration::from_secs(30), &drained);
        runtime
            .spawn(|| {
                rt::sleep(Duration::from_millis(100));
                rt::wake_idle();
            })
            .unwrap();
        runtime.run().unwrap();
        assert!(timed.ran.get() && timed.read.borrow().is_empty());
        assert!(
            timed.waited.get() >= Duration::from_millis(50),
            "not before the timeout"
        );
        assert!(drained.ran.get() && drained.read.borrow().is_empty());
        assert!(
            drained.waited.get() < Duration::from_secs(10),
            "woken by the drain"
        );
    }

    #[test]
    fn input_already_there_resumes_at_the_next_turn() {
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let seen = Rc::new(Seen::default());
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let report = Rc::clone(&seen);
        runtime
            .spawn(move || {
                let fd = server.as_raw_fd();
                // A wait registers the socket (nothing to read yet) ...
                let soon = Instant::now() + Duration::from_millis(5);
                let waited = rt::wait_fd(fd, rt::Interest::Readable, Some(soon));
                assert_eq!(waited.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
                // ... and the loop records the edge of bytes that come with no waiter.
                client.write_all(b"early").unwrap();
                rt::sleep(Duration::from_millis(10));
                let waiting = Waiting {
                    socket: server,
                    seen: report,
                    since: Instant::now(),
                };
                assert!(rt::idle_then(fd, Duration::from_secs(30), Box::new(waiting)).is_ok());
            })
            .unwrap();
        runtime.run().unwrap();
        assert_eq!(&*seen.read.borrow(), b"early");
        assert!(seen.waited.get() < Duration::from_secs(10));
    }

    #[test]
    fn a_dropped_runtime_drops_what_waits_without_a_stack() {
        /// Says when it is dropped; holds the socket it waits on open till then.
        struct Flag {
            dropped: Rc<Cell<bool>>,
            _socket: UnixStream,
        }
        impl Drop for Flag {
            fn drop(&mut self) {
                self.dropped.set(true);
            }
        }
        impl Resume for Flag {
            fn resume(self: Box<Self>) {}
        }
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let (_client, server) = UnixStream::pair().unwrap();
        let dropped = Rc::new(Cell::new(false));
        let dropped_flag = Rc::clone(&dropped);
        runtime
            .spawn(move || {
                let fd = server.as_raw_fd();
                let state = Box::new(Flag {
                    dropped: Rc::clone(&dropped_flag),
                    _socket: server,
                });
                assert!(rt::idle_then(fd, Duration::from_secs(30), state).is_ok());
            })
            .unwrap();
        let handle = runtime.handle();
        runtime
            .spawn(move || {
                rt::yield_now();
                handle.stop();
            })
            .unwrap();
        let mut runtime = runtime;
        runtime.run().unwrap();
        assert!(!dropped.get(), "still waiting when the loop stopped");
        drop(runtime);
        assert!(dropped.get(), "dropped with the runtime");
    }

    /// A burst that frees many stacks at once keeps them past the pool's size until the
    /// loop runs dry, then the extra ones go.
    #[test]
    fn stacks_freed_in_a_burst_are_unmapped_once_the_loop_is_quiet() {
        let config = RuntimeConfig {
            max_idle_stacks: 4,
            ..RuntimeConfig::default()
        };
        let mut runtime = Runtime::new(config).unwrap();
        for _ in 0..64 {
            runtime
                .spawn(|| rt::sleep(Duration::from_millis(5)))
                .unwrap();
        }
        let idle = Rc::new(Cell::new(0));
        let report = Rc::clone(&idle);
        runtime
            .spawn(move || {
                rt::sleep(Duration::from_millis(1));
                // The 64 sleepers hold their stacks; then they end together.
                rt::sleep(Duration::from_millis(50));
                report.set(idle_stacks());
            })
            .unwrap();
        runtime.run().unwrap();
        let quiet = idle.get();
        assert!(quiet <= 4, "{quiet} idle stacks kept past the pool's 4");
    }

    #[test]
    fn off_a_coroutine_the_state_comes_back() {
        let (_client, server) = UnixStream::pair().unwrap();
        let fd = server.as_raw_fd();
        struct Seven(u8);
        impl Resume for Seven {
            fn resume(self: Box<Self>) {}
        }
        let back = rt::idle_then(fd, Duration::from_secs(1), Box::new(Seven(7)));
        assert_eq!(back.err().map(|seven| seven.0), Some(7));
    }
}
