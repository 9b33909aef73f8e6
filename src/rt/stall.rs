//! The loop-stall detector: a coroutine that keeps its loop's thread too long between
//! two switches (a `std::thread::sleep`, blocking I/O or DNS, a contended std `Mutex`, a
//! long computation) stalls every other coroutine of the loop. The scheduler times each
//! resume and, past [`RuntimeConfig::stall_threshold`](super::RuntimeConfig::stall_threshold),
//! logs a warning naming the coroutine (its [`set_label`](super::set_label): the peer,
//! under the `Scheduled` model) and counts it in [`stall_count`].
//!
//! The cost on the hot path is one clock read per resume (the end of one resume is the
//! start of the next within a batch), nothing when the detector is off; that reading
//! also refreshes the loop's clock ([`super::clock`]), so code on the next coroutine
//! reads none, and arms the idle timeout of a coroutine that just parked for one. A
//! coroutine that never yields is reported when it finally does; until then its loop
//! serves nobody.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Stalls detected in this process, by every runtime.
static STALLS: AtomicU64 = AtomicU64::new(0);

/// How many times, in this process, a coroutine kept its runtime's thread longer than
/// the runtime's [`stall_threshold`](super::RuntimeConfig::stall_threshold). Each is
/// also logged with `log::warn!` (target `mixserve::rt::stall`).
///
/// Under a process-based model each worker process counts its own.
pub fn stall_count() -> u64 {
    STALLS.load(Ordering::Relaxed)
}

/// One runtime's timing of its resumes.
#[derive(Debug)]
pub(crate) struct StallWatch {
    /// Longest a resume may last unreported; `None`: the detector is off.
    threshold: Option<Duration>,
    /// When the next resume starts (the end of the previous one in the same batch).
    stamp: Cell<Option<Instant>>,
    /// Stalls this runtime reported.
    count: Cell<u64>,
}

impl StallWatch {
    /// A watch reporting resumes longer than `threshold` (none if `None`).
    pub(crate) fn new(threshold: Option<Duration>) -> StallWatch {
        StallWatch {
            threshold,
            stamp: Cell::new(None),
            count: Cell::new(0),
        }
    }

    /// A batch of resumes starts at `now` (the loop read the clock after its poll).
    pub(crate) fn begin_batch(&self, now: Instant) {
        if self.threshold.is_some() {
            self.stamp.set(Some(now));
        }
    }

    /// A resume starts: its start time, when the detector is on.
    pub(crate) fn resume_started(&self) -> Option<Instant> {
        self.stamp.get()
    }

    /// Stalls this runtime reported.
    #[cfg(test)]
    fn count(&self) -> u64 {
        self.count.get()
    }

    /// A resume that began at `started` ended; reports it if it lasted too long.
    /// `label` names the coroutine, and is called only then. Returns the clock reading
    /// it took (`None` when the detector is off).
    pub(crate) fn resume_ended(
        &self,
        started: Option<Instant>,
        label: impl FnOnce() -> String,
    ) -> Option<Instant> {
        let (Some(started), Some(threshold)) = (started, self.threshold) else {
            return None;
        };
        let now = super::clock::refresh();
        self.stamp.set(Some(now));
        // Compared as instants: a duration is worked out only for a stall.
        if started
            .checked_add(threshold)
            .is_some_and(|limit| now > limit)
        {
            let held = now.saturating_duration_since(started);
            STALLS.fetch_add(1, Ordering::Relaxed);
            self.count.set(self.count.get() + 1);
            log::warn!(
                target: "mixserve::rt::stall",
                "{} kept its loop's thread for {} ms (stall threshold {} ms); every other \
                 connection on the loop waited meanwhile. Something blocked the thread: \
                 std::thread::sleep, blocking I/O or DNS, a std Mutex, or a long computation \
                 (see the rules in mixserve::rt)",
                label(),
                held.as_millis(),
                threshold.as_millis(),
            );
        }
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_long_resumes_only() {
        let watch = StallWatch::new(Some(Duration::from_millis(100)));
        watch.begin_batch(Instant::now());
        let before = stall_count();
        let started = watch.resume_started();
        assert!(started.is_some());
        watch.resume_ended(started, String::new);
        assert_eq!(watch.count(), 0, "a short resume is not a stall");
        let long_ago = Instant::now().checked_sub(Duration::from_millis(500));
        watch.resume_ended(long_ago, || String::from("test"));
        assert_eq!(watch.count(), 1);
        assert!(stall_count() > before);
        super::super::clock::clear();
    }

    #[test]
    fn off_means_no_clock_and_no_report() {
        let watch = StallWatch::new(None);
        watch.begin_batch(Instant::now());
        assert_eq!(watch.resume_started(), None);
        let long_ago = Instant::now().checked_sub(Duration::from_secs(1));
        watch.resume_ended(long_ago, String::new);
        assert_eq!(watch.count(), 0);
    }
}
