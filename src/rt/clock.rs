//! The loop's clock: one reading of `CLOCK_MONOTONIC` serves every deadline a batch of
//! resumes sets or checks, as nginx's cached `ngx_current_msec` does.
//!
//! A keep-alive request under `Scheduled` used to read the clock five times (the idle
//! deadline, the header deadline, the check before each park, the `Date` header, the
//! stall detector); each read is a `clock_gettime` through the vDSO. The loop now reads
//! it once after each `epoll_wait`, and the stall detector's reading at the end of each
//! resume (when it is on) refreshes it; the checks before a park, the header deadline
//! taken just after input woke the coroutine, and the `Date` line ask [`now`] instead.
//! The idle timeout between requests is armed by the loop itself, from the reading it
//! takes once the coroutine has parked (the stall detector's; a fresh one when that is
//! off): a keep-alive request reads no clock of its own.
//!
//! The cached time is behind the real one by at most one resume (stall detector on, the
//! default) or one batch of resumes (off). Deadlines set from it come that much early and
//! checks against it that much late; the timers themselves fire on a fresh reading. So
//! [`now`] is only for deadlines that are then waited for by parking. A loop that spins
//! until a time passes without parking must read the real clock: the cached one does not
//! move within a resume. Nor is it for a timeout that must run from the start of a wait
//! that may follow a long resume (a slow handler): a connection's read and write
//! timeouts read the real clock when a call first has to wait, which costs nothing on
//! the calls that do not wait; HTTP's pipelined-header, body and linger deadlines start
//! on the real clock; and the idle timeout starts at the park, on the loop's reading
//! after it (`rt::IdleLimit`).
//!
//! Off a runtime's thread (thread- and process-based models) [`now`] is `Instant::now()`.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    /// The loop's last reading; `None` on a thread that runs no loop.
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Now, as this thread's loop last read the clock; the clock itself off a loop.
pub(crate) fn now() -> Instant {
    NOW.try_with(Cell::get)
        .ok()
        .flatten()
        .unwrap_or_else(Instant::now)
}

/// Reads the clock and makes it this thread's loop time.
pub(crate) fn refresh() -> Instant {
    let now = Instant::now();
    set(now);
    now
}

/// Makes `now`, a fresh reading, this thread's loop time.
pub(crate) fn set(now: Instant) {
    let _ = NOW.try_with(|cached| cached.set(Some(now)));
}

/// The loop time, forgotten (see [`clear`]).
pub(crate) fn take() -> Option<Instant> {
    NOW.try_with(|cached| cached.take()).ok().flatten()
}

/// Forgets the loop time: the loop left this thread.
pub(crate) fn clear() {
    let _ = NOW.try_with(|cached| cached.set(None));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rt::{Runtime, RuntimeConfig};

    #[test]
    fn off_a_loop_it_is_the_real_clock_and_on_one_the_last_reading() {
        clear();
        let before = Instant::now();
        assert!(now() >= before);
        let reading = refresh();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(now(), reading, "cached until the loop reads again");
        let later = refresh();
        assert!(later > reading);
        assert_eq!(now(), later);
        clear();
        std::thread::sleep(Duration::from_millis(1));
        assert!(now() > later, "after the loop left, the real clock again");
    }

    #[test]
    fn a_runtime_leaves_no_loop_time_behind_after_running_or_being_dropped() {
        fn cached() -> Option<Instant> {
            NOW.with(Cell::get)
        }
        let on_loop = std::rc::Rc::new(Cell::new(None));
        let seen = std::rc::Rc::clone(&on_loop);
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        runtime.spawn(move || seen.set(cached())).unwrap();
        runtime.run().unwrap();
        assert!(on_loop.get().is_some(), "a coroutine sees the loop's time");
        assert_eq!(cached(), None, "after run");
        // Stopped with a coroutine parked; dropping it unwinds that one.
        let mut runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let handle = runtime.handle();
        runtime.spawn(|| crate::rt::park(None)).unwrap();
        runtime.spawn(move || handle.stop()).unwrap();
        runtime.run().unwrap();
        assert_eq!(runtime.coroutine_count(), 1);
        assert_eq!(cached(), None, "after a stopped run");
        drop(runtime);
        assert_eq!(cached(), None, "after the drop");
    }
}
