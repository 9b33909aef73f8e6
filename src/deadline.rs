//! Deadlines from durations the user chooses (timeouts, waits, sleeps). `Instant +
//! Duration` panics on overflow, and `Duration::MAX` is a natural way to say "no
//! limit": a deadline past what an `Instant` holds saturates a century out instead.

use std::time::{Duration, Instant};

/// Far enough to mean "never" for a server, near enough for any `Instant` to hold.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `from + after`, or a century after `from` if that does not fit.
pub(crate) fn after(from: Instant, after: Duration) -> Instant {
    from.checked_add(after)
        .unwrap_or_else(|| from.checked_add(FAR).unwrap_or(from))
}

/// [`after`] now.
pub(crate) fn from_now(after: Duration) -> Instant {
    self::after(Instant::now(), after)
}

/// `duration` in whole milliseconds, saturating: a timeout past `u64` milliseconds
/// means "never", not a wrap to a few hundred milliseconds.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_duration_is_a_century_not_a_panic() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(after(now, Duration::MAX), now + FAR);
        assert!(from_now(Duration::MAX) > now + FAR - Duration::from_secs(60));
    }

    #[test]
    fn milliseconds_past_u64_saturate() {
        // A heartbeat timeout this long wrapped to 384 ms and got every worker killed.
        assert_eq!(
            millis(Duration::from_secs(18_446_744_073_709_552)),
            u64::MAX
        );
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(millis(Duration::from_secs(30)), 30_000);
    }
}
