//! Exponential back-off with a ceiling, one per worker slot (and one for the pool's
//! resources): a slot whose worker cannot start is tried again after 100 ms, 200 ms,
//! 400 ms… up to [`CEILING`], and only that slot's own healthy worker resets it, never a
//! healthy sibling — so a worker that can never start costs at most one fork per
//! ceiling, while the others serve.

use std::time::{Duration, Instant};

/// The first delay after a failure.
const FIRST: Duration = Duration::from_millis(100);
/// The longest delay between two attempts.
pub(super) const CEILING: Duration = Duration::from_secs(10);

/// Consecutive failures and when the next attempt may be made.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    failures: u32,
    not_before: Instant,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff {
            failures: 0,
            not_before: Instant::now(),
        }
    }

    /// Whether an attempt may be made now.
    pub(super) fn ready(&self, now: Instant) -> bool {
        now >= self.not_before
    }

    /// An attempt failed: the delay before the next one.
    pub(super) fn failed(&mut self) -> Duration {
        let delay = delay_after(self.failures);
        self.failures = self.failures.saturating_add(1);
        self.not_before = Instant::now() + delay;
        delay
    }

    /// The attempt succeeded (for a slot: its worker served).
    pub(super) fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// The delay after `failures` earlier consecutive failures.
fn delay_after(failures: u32) -> Duration {
    FIRST
        .checked_mul(1u32 << failures.min(16))
        .map_or(CEILING, |d| d.min(CEILING))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_and_reset_on_success() {
        let mut backoff = Backoff::new();
        assert!(backoff.ready(Instant::now()));
        let delays: Vec<Duration> = (0..10).map(|_| backoff.failed()).collect();
        assert_eq!(delays[0], FIRST);
        assert_eq!(delays[1], FIRST * 2);
        assert_eq!(delays[9], CEILING);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert!(!backoff.ready(Instant::now()));
        backoff.succeeded();
        assert_eq!(backoff.failed(), FIRST);
    }

    #[test]
    fn after_ten_seconds_of_failures_at_most_one_attempt_a_second() {
        // Attempts made as soon as allowed: every gap after the first 10 s is >= 1 s.
        let (mut at, mut backoff) = (Duration::ZERO, Backoff::new());
        while at < Duration::from_secs(60) {
            let delay = backoff.failed();
            if at >= Duration::from_secs(10) {
                assert!(delay >= Duration::from_secs(1), "{delay:?} at {at:?}");
            }
            at += delay;
        }
    }
}
