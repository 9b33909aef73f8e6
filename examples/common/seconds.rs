//! Durations on the command line (`--wait-limit`, `--poll-secs`, `--shutdown-timeout`,
//! `--body-deadline`), read in one place so every example refuses the same values,
//! with a message clap prefixes with the option's name.
//!
//! Include it beside `common` with `#[path = "common/seconds.rs"] mod seconds;` (the
//! examples built on `common` reach it as `common::seconds`).

use std::time::Duration;

/// A clap value parser: seconds, whole (`25`, up to `u64::MAX`, which the library
/// takes as no limit) or not (`0.5`). NaN, negative and infinite values, and those
/// past `u64::MAX` seconds, are refused: no `Duration` holds them. A setting whose own
/// check refuses zero (`HttpConfig::body_deadline`) takes this, so its refusal names
/// the setting as the library does.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(whole) = text.parse::<u64>() {
        // Exact: `u64::MAX` as an `f64` rounds up past what a `Duration` holds.
        return Ok(Duration::from_secs(whole));
    }
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "not a number of seconds, such as 30 or 0.5".to_owned())
}

/// A clap value parser: [`seconds`] above 0. For waits and timeouts where zero is no
/// setting at all: a long poll that answers at once has its clients ask again in a
/// tight loop, and a graceful stop given no time closes waiters without their `503`.
pub fn positive_seconds(text: &str) -> Result<Duration, String> {
    match seconds(text)? {
        duration if duration.is_zero() => Err("must be above 0 seconds".to_owned()),
        duration => Ok(duration),
    }
}
