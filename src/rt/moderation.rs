//! Wake-up moderation: when every peer is slow to come back, a loop that ran dry naps
//! for a moment before it looks at epoll again, instead of blocking and being woken by
//! the very next arrival (the idea of a network card's interrupt moderation).
//!
//! Under many busy keep-alive connections (wrk at c=1000, say) the loop answers faster
//! than its clients ask, so it runs dry after every few requests: at 200,000 requests a
//! second it blocked in `epoll_wait` about 1,700 times a second, and each time the
//! client's next write had to wake it (an inter-processor interrupt, a VM exit on a
//! guest). The requests then waited at the client, a thousand sockets deep. A short nap
//! instead lets requests gather at the server and the loop answer them in one long
//! batch. Measured side by side (server and wrk -t2 on a core each, medians of four
//! 5 s rounds), hello at c=1000 went from 221k to 241k requests a second with less CPU
//! per request; c=50 and c=10 are unchanged, as the loop does not nap there.
//!
//! A nap delays whatever arrives during it, so the loop naps only when that delay is
//! small beside the time the peers themselves take: each read wake-up is a sample of
//! how long its peer took to come back (from the park to the edge, on the loop's
//! clock). Over a window (256 samples or 10 ms), if fewer than one sample in eight came
//! back within [`SLOW_FACTOR`] naps, the next window naps; otherwise it blocks as
//! before. At c=50 the peers come back within 200 µs and the loop never naps (napping
//! there halved the throughput); a lone fast client among idle keep-alive connections
//! keeps it off too, and so does a window with fewer than [`MIN_SAMPLES`] wake-ups (a
//! quiet loop has no batch to gather). A loop naps only right after a poll that found
//! work, and never past its next timer.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Naps taken in this process, by every runtime.
static NAPS: AtomicU64 = AtomicU64::new(0);

/// How many times, in this process, a runtime's loop napped instead of blocking (wake-up
/// moderation; see [`RuntimeConfig::moderation_nap`](super::RuntimeConfig::moderation_nap)).
/// [`Runtime::nap_count`](super::Runtime::nap_count) counts one runtime's.
///
/// Under a process-based model each worker process counts its own.
pub fn nap_count() -> u64 {
    NAPS.load(Ordering::Relaxed)
}

/// A peer that comes back within this many naps is fast: napping would slow it down.
pub(crate) const SLOW_FACTOR: u32 = 10;
/// A window closes after this many samples...
const WINDOW_SAMPLES: u32 = 256;
/// ...or this long, whichever comes first (checked when the loop runs dry).
const WINDOW_TIME: Duration = Duration::from_millis(10);
/// Fewer samples than this in a window: too quiet to gather anything, no nap.
pub(crate) const MIN_SAMPLES: u32 = 64;
/// At most one sample in this many may be fast for the next window to nap.
const FAST_SHARE: u32 = 8;

/// One loop's moderation state; see the module documentation.
#[derive(Debug)]
pub(crate) struct Moderation {
    /// The nap; `None`: moderation off, no samples taken.
    nap: Option<Duration>,
    /// Turnarounds shorter than this are fast.
    fast_below: Duration,
    samples: Cell<u32>,
    fast: Cell<u32>,
    window_start: Cell<Option<Instant>>,
    napping: Cell<bool>,
    /// Naps handed out so far.
    naps: Cell<u64>,
}

impl Moderation {
    /// Moderation with this nap; `None` turns it off.
    pub(crate) fn new(nap: Option<Duration>) -> Moderation {
        let nap = nap.filter(|nap| !nap.is_zero());
        Moderation {
            nap,
            // Saturating: any nap is a setting, and `Duration * u32` panics on overflow.
            fast_below: nap.map_or(Duration::ZERO, |nap| {
                nap.checked_mul(SLOW_FACTOR).unwrap_or(Duration::MAX)
            }),
            samples: Cell::new(0),
            fast: Cell::new(0),
            window_start: Cell::new(None),
            napping: Cell::new(false),
            naps: Cell::new(0),
        }
    }

    /// Whether samples are wanted (moderation on).
    pub(crate) fn enabled(&self) -> bool {
        self.nap.is_some()
    }

    /// A read wake-up: its peer took `turnaround` from the park to the edge.
    pub(crate) fn record(&self, turnaround: Duration) {
        self.samples.set(self.samples.get().saturating_add(1));
        if turnaround < self.fast_below {
            self.fast.set(self.fast.get().saturating_add(1));
        }
    }

    /// The loop ran dry at `now` and would block; `found_work`: its last poll returned
    /// events. The nap to take first (never past `timeout`, the loop's next timer), or
    /// `None` to block at once.
    pub(crate) fn nap_before_blocking(
        &self,
        now: Instant,
        found_work: bool,
        timeout: Option<Duration>,
    ) -> Option<Duration> {
        let nap = self.nap?;
        self.close_window_if_due(now);
        if !(self.napping.get() && found_work) {
            return None;
        }
        let nap = timeout.map_or(nap, |timeout| nap.min(timeout));
        if nap.is_zero() {
            return None;
        }
        self.naps.set(self.naps.get() + 1);
        NAPS.fetch_add(1, Ordering::Relaxed);
        Some(nap)
    }

    /// Naps handed out so far.
    pub(crate) fn naps(&self) -> u64 {
        self.naps.get()
    }

    /// Ends the window when it is full or old, and decides the next one.
    fn close_window_if_due(&self, now: Instant) {
        let start = *self.window_start.get().get_or_insert(now);
        self.window_start.set(Some(start));
        let samples = self.samples.get();
        if samples < WINDOW_SAMPLES && now.saturating_duration_since(start) < WINDOW_TIME {
            return;
        }
        let fast = self.fast.get();
        self.napping
            .set(samples >= MIN_SAMPLES && fast.saturating_mul(FAST_SHARE) <= samples);
        self.samples.set(0);
        self.fast.set(0);
        self.window_start.set(Some(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAP: Duration = Duration::from_micros(100);

    /// Fills a window with `slow` slow and `fast` fast samples and closes it.
    fn window(moderation: &Moderation, start: Instant, slow: u32, fast: u32) -> Instant {
        for _ in 0..slow {
            moderation.record(NAP * SLOW_FACTOR);
        }
        for _ in 0..fast {
            moderation.record(NAP * SLOW_FACTOR - Duration::from_micros(1));
        }
        let end = start + WINDOW_TIME;
        let _ = moderation.nap_before_blocking(end, true, None);
        end
    }

    #[test]
    fn slow_peers_turn_naps_on_and_fast_ones_turn_them_off() {
        let moderation = Moderation::new(Some(NAP));
        let start = Instant::now();
        assert_eq!(
            moderation.nap_before_blocking(start, true, None),
            None,
            "no window yet"
        );
        let t = window(&moderation, start, 300, 0);
        assert_eq!(moderation.nap_before_blocking(t, true, None), Some(NAP));
        assert_eq!(
            moderation.nap_before_blocking(t, false, None),
            None,
            "found no work"
        );
        let t = window(&moderation, t, 200, 100);
        assert_eq!(
            moderation.nap_before_blocking(t, true, None),
            None,
            "a third were fast"
        );
        let t = window(&moderation, t, 224, 32);
        assert_eq!(
            moderation.nap_before_blocking(t, true, None),
            Some(NAP),
            "one in eight"
        );
    }

    #[test]
    fn a_quiet_window_does_not_nap() {
        let moderation = Moderation::new(Some(NAP));
        let start = Instant::now();
        let t = window(&moderation, start, MIN_SAMPLES - 1, 0);
        assert_eq!(moderation.nap_before_blocking(t, true, None), None);
    }

    #[test]
    fn the_nap_ends_before_the_next_timer() {
        let moderation = Moderation::new(Some(NAP));
        let t = window(&moderation, Instant::now(), 300, 0);
        let soon = Duration::from_micros(30);
        assert_eq!(
            moderation.nap_before_blocking(t, true, Some(soon)),
            Some(soon)
        );
        assert_eq!(
            moderation.nap_before_blocking(t, true, Some(Duration::ZERO)),
            None
        );
    }

    #[test]
    fn no_nap_means_off() {
        for nap in [None, Some(Duration::ZERO)] {
            let moderation = Moderation::new(nap);
            assert!(!moderation.enabled());
            for _ in 0..1000 {
                moderation.record(Duration::from_secs(1));
            }
            let later = Instant::now() + WINDOW_TIME * 2;
            assert_eq!(moderation.nap_before_blocking(later, true, None), None);
        }
    }
}
